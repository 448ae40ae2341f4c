"""The entry point of the ``pushpipe`` command (``pushpipe_local.cli.main:main``).

The parser is assembled from the command modules, each with ``register(subparsers)``:
the built-in ones (``local``, ``demo``, ``sends``), then the plugin modules of
``pushpipe_local.cli.plugins`` (report and query, approval requests and the local mail).
"""

from __future__ import annotations

import argparse
import sys

from pushpipe_local.cli import demo, local, sends
from pushpipe_local.cli.plugins import plugin_modules

DESCRIPTION = "The ``pushpipe`` command: the local cloud, the demo, sends and their status."
# Registered in this order: ``local`` comes first, the approval plugin adds ``local mail``.
COMMANDS = (local, demo, sends)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushpipe", description=DESCRIPTION)
    parser.add_argument("--home", default=".pushpipe", help="local cloud state folder")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (*COMMANDS, *plugin_modules()):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
