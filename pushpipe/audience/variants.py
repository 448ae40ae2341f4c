"""A/B variant assignment: a deterministic hash of campaign and subscriber.

The same subscriber always lands in the same bucket of a campaign, in every chain,
recursion and retry, and independently across campaigns. The control group receives
nothing but is recorded, so its conversions can be compared with each variant's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pushpipe.audience.format import CONTROL, Variant

DEFAULT_VARIANT = "default"
_SCALE = float(1 << 64)


def bucket(campaign: str, subscriber: str) -> float:
    """A uniform number in [0, 100) fixed by campaign and subscriber."""
    digest = hashlib.blake2b(f"{campaign}\x1f{subscriber}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE * 100.0


def assign(
    campaign: str, subscriber: str, variants: Sequence[Variant], control_percent: float
) -> str:
    """The variant id (or ``"control"``) for this subscriber in this campaign."""
    if not variants:
        return DEFAULT_VARIANT
    point = bucket(campaign, subscriber)
    if point < control_percent:
        return CONTROL
    edge = control_percent
    for variant in variants:
        edge += variant.percent
        if point < edge:
            return variant.id
    return variants[-1].id  # float rounding at the top edge
