"""``python -m pushpipe_local.pushservice``: run the local push service until signalled.

The first line on stdout is the service's base URL (``start_pushservice_process`` waits
for it); logs go to stderr. ``--state-file`` keeps subscriber keys across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from pushpipe_local.pushservice.http import PushServer
from pushpipe_local.pushservice.service import PushService


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pushpipe_local.pushservice",
        description="Local RFC 8030 push service (VAPID check, aes128gcm decryption, faults).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-file", help="JSON file that keeps subscriber keys across runs")
    parser.add_argument("--url-file", help="also write the base URL to this file")
    parser.add_argument("--public-url", help="base URL used in endpoints (default: bound URL)")
    parser.add_argument(
        "--subscribers", type=int, default=0, help="make sure at least this many subscribers exist"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per push")
    parser.add_argument(
        "--max-records",
        type=int,
        default=100_000,
        help="deliveries kept for /_admin/received (about 2 KB each); older ones are dropped",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    service = PushService(
        public_url=args.public_url,
        state_file=args.state_file,
        max_records=args.max_records,
    )
    missing = args.subscribers - len(service.subscribers)
    if missing > 0:
        service.create_subscribers(missing)
    if args.latency_ms:
        service.set_faults(latency_ms=args.latency_ms)
    server = PushServer(service, args.host, args.port)
    url = await server.start()
    if args.url_file:
        Path(args.url_file).write_text(url + "\n")
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the push service until SIGINT/SIGTERM; the first stdout line is its URL."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        asyncio.run(_serve_forever(args))
    except (OSError, ValueError) as exc:
        print(f"pushservice: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
