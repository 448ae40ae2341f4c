"""moto's server with the writes it does not make thread-safe serialised.

``python -m pushpipe_local.cloud.moto_server -H 127.0.0.1 -p PORT`` (same arguments as
``python -m moto.server``). The server handles requests in threads, and two of moto's
write paths are not safe under concurrent requests, which the local cloud makes all the
time (several Lambda workers, the pollers, the Firehose pump):

* Kinesis ``Shard.put_record`` takes ``max(sequence number) + 1`` and stores under it:
  two concurrent puts can get the same number and one record is silently lost
  (measured: 10 of 3,600 records lost with 24 concurrent writers).
* DynamoDB ``transact_write_items`` deep-copies each table it touches and, if the
  transaction is cancelled (a failed condition), puts the copies back, erasing whatever
  another request wrote to those tables in between.

Both get a lock here (one per service), so the local cloud does not lose records or
counter updates that AWS would keep.
"""

from __future__ import annotations

import functools
import sys
import threading
from typing import Any


def _serialise(cls: type, names: tuple[str, ...], lock: threading.RLock) -> None:
    for name in names:
        original = getattr(cls, name, None)
        if original is None or getattr(original, "_pushpipe_locked", False):
            continue

        @functools.wraps(original)
        def locked(self: Any, *args: Any, __original=original, **kwargs: Any) -> Any:
            with lock:
                return __original(self, *args, **kwargs)

        locked._pushpipe_locked = True  # type: ignore[attr-defined]
        setattr(cls, name, locked)


def patch_moto() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.kinesis.models import Shard

    _serialise(Shard, ("put_record",), threading.RLock())
    _serialise(
        DynamoDBBackend,
        (
            "put_item",
            "update_item",
            "delete_item",
            "batch_write_item",
            "transact_write_items",
        ),
        threading.RLock(),
    )


def main(argv: list[str] | None = None) -> int:
    patch_moto()
    from moto.server import main as moto_main

    moto_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
