"""Domain errors. Each carries what failed so handlers can answer with a reason."""

from __future__ import annotations


class PushpipeError(Exception):
    """Base of every error the domain raises on purpose."""


class ConfigurationError(PushpipeError):
    """The function's environment is incomplete or invalid."""


class AudienceRejected(PushpipeError):
    """The audience file as a whole cannot be sent (bad header, not JSON, truncated)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AudienceChanged(PushpipeError):
    """The audience object no longer has the ETag the run pinned."""

    def __init__(self, key: str, pinned: str, current: str | None) -> None:
        super().__init__(f"audience file changed: {key} pinned {pinned}, now {current or 'gone'}")
        self.key, self.pinned, self.current = key, pinned, current


class PayloadTooLarge(PushpipeError):
    """A push payload over the 3,993-byte aes128gcm plaintext limit."""


class InvalidSubscription(PushpipeError):
    """A PushSubscription whose endpoint or keys cannot be used."""


class Fenced(PushpipeError):
    """Another invocation owns this chain's cursor now; stop without sending more."""


class RunStopped(PushpipeError):
    """The run was aborted or failed while this chain's batch was out: the batch's
    outcomes are recorded, and the chain stops."""


class StoreError(PushpipeError):
    """A storage call failed; carries the operation and the AWS error code."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        super().__init__(f"{operation} failed: {code}: {message}")
        self.operation, self.code = operation, code
