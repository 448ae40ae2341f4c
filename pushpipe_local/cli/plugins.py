"""The CLI's plugin modules: each exports ``register(subparsers)`` and may export
``DEMO_STAGES`` (run by ``pushpipe demo`` after the send)."""

from __future__ import annotations

import importlib
from types import ModuleType

# Modules that add subcommands: each exports ``register(subparsers)``.
PLUGINS = ("pushpipe_local.cli.pings", "pushpipe_local.cli.approval")


def plugin_modules() -> list[ModuleType]:
    """The plugin modules that are installed (a missing one is skipped, a broken one is not)."""
    found: list[ModuleType] = []
    for name in PLUGINS:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return found
