"""The pushpipe CDK stack and its constructs, built from ``pushpipe.topology``."""
