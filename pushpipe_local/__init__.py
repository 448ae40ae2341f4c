"""pushpipe CLI and the embedded local cloud (never shipped to Lambda)."""
