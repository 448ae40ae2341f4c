"""What tests share and Lambda never bundles: ``events`` (the triggers' events from
``tests/events/*.json`` and a Lambda context), ``pings`` (the ping path's resources,
tokens and a tiny gateway) and ``approval`` (the approval flow's environment and fakes)."""
