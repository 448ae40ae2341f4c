"""The alarms read EMF metrics by name: each name must be one the functions emit."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from infra.stacks.monitoring import ALARMED_METRICS

ROOT = Path(__file__).resolve().parents[2]
NOT_YET_EMITTED: dict[str, str] = {}


def _emitted() -> set[str]:
    names: set[str] = set()
    for folder in ("functions", "pushpipe"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"add_metric\(\s*name=\"(\w+)\"", path.read_text()))
    return names


@pytest.mark.parametrize(
    "metric",
    [
        pytest.param(m, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_EMITTED[m]))
        if m in NOT_YET_EMITTED
        else m
        for m in ALARMED_METRICS
    ],
)
def test_alarmed_metric_is_emitted_by_some_function(metric):
    assert metric in _emitted(), f"an alarm reads {metric!r} but no function emits it"
