"""The local Lambda runtime: warm worker pools, the Invoke API, the HTTP API gateway and
the event-source pollers, assembled by ``runtime.Runtime``."""
