"""The ``pushpipe`` command: its entry point, one module per command group, the demo."""
