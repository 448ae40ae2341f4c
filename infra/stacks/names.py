"""Construct ids and physical names derived from the topology's logical names."""

from __future__ import annotations

MAX_FUNCTION_NAME = 64


def cid(name: str, suffix: str = "") -> str:
    """``audience-events`` + ``Queue`` → ``AudienceEventsQueue`` (a construct id)."""
    parts = name.replace("_", "-").replace("/", "-").split("-")
    return "".join(part[:1].upper() + part[1:] for part in parts if part) + suffix


def function_name(stack_name: str, name: str) -> str:
    """The fixed Lambda function name, known before the function exists.

    A function that invokes itself needs its own name in its environment and in its
    policy; a name CloudFormation generates would make the function depend on itself.
    """
    physical = f"{stack_name}-{name.replace('_', '-')}"
    if len(physical) > MAX_FUNCTION_NAME:
        raise ValueError(
            f"function name {physical!r} is longer than {MAX_FUNCTION_NAME} characters; "
            "use a shorter stack name (-c pushpipe:stackName=...)"
        )
    return physical
