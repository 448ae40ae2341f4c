"""Benchmark of stale-subscription bookkeeping. ``python -m bench.bench_engagement [--quick]``

What tracking engagement per subscription costs, side by side:

* ours: no write per send; the archive record each send already has gains two columns
  (``service``, ``ep``) — measured here as gzip bytes per send record, with and without
  them, on records built by the real ``record()`` with real payloads; one archive query a
  day, whose Athena scan is the gzip bytes of the lookback window; one delete per stale
  subscription;
* the naive baseline: a per-subscription counter in DynamoDB (one UpdateItem per send to
  count it, one per delivered ping to reset it);
* the floor: zero writes per send.

It also runs the daily query (DuckDB, as the local cloud does) over 1,000,000 Safari send
records of 30 daily campaigns, with a tenth of the subscribers revoked (never pinging) and
the rest pinging most deliveries, and checks that it finds exactly the revoked ones.

Writes ``bench/results/engagement.json`` and ``bench/results/engagement.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pushpipe.audience.format import CampaignHeader, Recipient
from pushpipe.audience.payloads import PayloadBuilder
from pushpipe.push.models import Outcome, SendResult
from pushpipe.sending.batch import record, utc
from pushpipe.sending.runs import Cursor
from pushpipe.shared.tokens import SigningKeys, notification_id
from pushpipe.subscriptions.engagement import StalePolicy, stale_query
from pushpipe_local.cloud.athena import LocalAthena

RESULTS = Path(__file__).resolve().parent / "results"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ATHENA_USD_PER_TB = 5.0
DAYS = 30
REVOKED_SHARE = 0.10
PING_RATE = 0.9  # of the live subscribers' deliveries
SIGNING = SigningKeys.from_secret({"active": "k1", "keys": {"k1": "b" * 64}})


def _header(day: int) -> CampaignHeader:
    return CampaignHeader.parse(
        {
            "id": f"daily-{day:02d}",
            "tenant": "acme",
            "message": {
                "title": "Today's picks: 20% off",
                "body": "Only today, on everything in the shop. Free delivery over 50 EUR.",
                "url": "https://shop.example/today?utm_source=push&utm_campaign=daily",
            },
            "ttl": 86400,
        }
    )


def build_archive(root: Path, subscribers: int) -> dict:
    """One campaign a day for ``DAYS`` days to every subscriber (Safari endpoints), and
    the pings of the live ones; written as the local Athena's cache (JSON Lines per
    table and hour). Returns sizes."""
    rng = random.Random(7)
    revoked = {f"sub-{i:07d}" for i in range(subscribers) if rng.random() < REVOKED_SHARE}
    sizes = {"sends": 0, "sends_gzip": 0, "sends_gzip_without_new_columns": 0, "pings_gzip": 0}
    counts = {"sends": 0, "pings": 0}
    for day in range(DAYS):
        header = _header(day)
        builder = PayloadBuilder(header, SIGNING, "https://api.example/v1/pings")
        when = NOW - timedelta(days=DAYS - day)
        ts = utc(when.timestamp())
        cursor = Cursor(f"run-{day}", header.id, "b", "k", "e", 0, 1)
        sends, pings = [], []
        for i in range(subscribers):
            sub = f"sub-{i:07d}"
            endpoint = f"https://web.push.apple.com/QG{i:07d}VsbXsYh0rV3o2Z0rXl9bE5mKx2Qe1"
            payload = builder.build(Recipient(i, sub, endpoint, "p", "a", "en", None), "a")
            result = SendResult(sub, Outcome.SENT, 201, None, 1)
            sends.append(record(header, cursor, sub, "a", "sent", ts, result, payload, endpoint))
            if sub not in revoked and rng.random() < PING_RATE:
                pings.append(
                    {
                        "v": 1,
                        "ts": ts,
                        "seen_at": ts,
                        "type": "delivered",
                        "tenant": "acme",
                        "campaign": header.id,
                        "variant": "a",
                        "notification": notification_id(header.id, sub),
                        "subscriber": sub,
                        "exp": int(when.timestamp()) + 86400,
                    }
                )
        hour = f"{when:%Y/%m/%d/%H}"
        for table, rows in (("sends", sends), ("pings", pings)):
            body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
            folder = root / table / hour
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "part.json").write_bytes(body)
            packed = len(gzip.compress(body, 6))
            if table == "sends":
                sizes["sends"] += len(body)
                sizes["sends_gzip"] += packed
                slim = b"".join(
                    json.dumps({k: v for k, v in r.items() if k not in ("service", "ep")}).encode()
                    + b"\n"
                    for r in rows
                )
                sizes["sends_gzip_without_new_columns"] += len(gzip.compress(slim, 6))
            else:
                sizes["pings_gzip"] += packed
            counts[table] += len(rows)
        print(f"  day {day + 1}/{DAYS}: {counts['sends']:,} sends", file=sys.stderr, end="\r")
    print(file=sys.stderr)
    return {"revoked": revoked, "sizes": sizes, "counts": counts}


def run(subscribers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-engagement-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        built = build_archive(root, subscribers)
        build_s = time.perf_counter() - t0
        athena = LocalAthena(None, "unused", root)
        policy = StalePolicy(services=("apple",), silent_sends=10, lookback_days=31)
        sql, params = stale_query(policy, NOW)
        con = athena.connect()
        t0 = time.perf_counter()
        rows = con.execute(sql, params).fetchall()
        query_s = time.perf_counter() - t0
        con.close()
    found = {r[1] for r in rows}
    sizes, counts = built["sizes"], built["counts"]
    per_send = sizes["sends_gzip"] / counts["sends"]
    extra = (sizes["sends_gzip"] - sizes["sends_gzip_without_new_columns"]) / counts["sends"]
    scanned = sizes["sends_gzip"] + sizes["pings_gzip"]
    return {
        "subscribers": subscribers,
        "sends": counts["sends"],
        "pings": counts["pings"],
        "build_s": round(build_s, 1),
        "revoked": len(built["revoked"]),
        "found_stale": len(found),
        "found_exactly_the_revoked": found == built["revoked"],
        "gzip_bytes_per_send_record": round(per_send, 1),
        "gzip_bytes_added_per_send_by_service_and_ep": round(extra, 1),
        "json_bytes_per_send_record": round(sizes["sends"] / counts["sends"], 1),
        "daily_query_scan_bytes": scanned,
        "daily_query_usd": round(scanned / 1e12 * ATHENA_USD_PER_TB, 6),
        "scan_usd_per_million_sends_in_window": round(
            scanned / counts["sends"] * 1e6 / 1e12 * ATHENA_USD_PER_TB, 6
        ),
        "daily_query_duckdb_s": round(query_s, 2),
        "writes_per_1000_sends_ours": 0,
        "writes_per_1000_sends_naive": round(1000 + 1000 * counts["pings"] / counts["sends"], 1),
        "writes_per_1000_sends_floor": 0,
    }


def markdown(r: dict) -> str:
    return f"""## Stale subscriptions (`python -m bench.bench_engagement`)

Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on this machine ({os.cpu_count()} cores), one run:
{r["sends"]:,} Safari sends ({r["subscribers"]:,} subscribers x {DAYS} daily campaigns, real
payloads and archive records), {r["pings"]:,} delivery pings, {r["revoked"]:,} subscribers
revoked (they never ping).

| what | ours | naive | floor |
|---|---|---|---|
| DynamoDB writes per 1,000 sends for the bookkeeping | **{r["writes_per_1000_sends_ours"]}** | {r["writes_per_1000_sends_naive"]:,} (a counter per subscription: +1 per send, reset per ping) | {r["writes_per_1000_sends_floor"]} |
| archive bytes per send (gzip, what Athena bills) | {r["gzip_bytes_per_send_record"]} B, of which `service` + `ep` add **{r["gzip_bytes_added_per_send_by_service_and_ep"]} B** | | |
| the daily query: bytes Athena scans (the sends and pings of the 30-day window) | {r["daily_query_scan_bytes"] / 1e6:,.1f} MB for {r["sends"]:,} sends = **${r["daily_query_usd"]:.4f}** a run at ${ATHENA_USD_PER_TB}/TB (${r["scan_usd_per_million_sends_in_window"]:.4f} per million sends in the window) | | |
| the daily query on DuckDB (local cloud) | {r["daily_query_duckdb_s"]} s | | |
| stale subscriptions found | {r["found_stale"]:,} of {r["revoked"]:,} revoked: {"exactly the revoked ones" if r["found_exactly_the_revoked"] else "NOT the revoked set"} | | |

The daily scan grows with the sends of the lookback window (30 days by default): a
stack that sends a million pushes a day (30 million in the window) pays about
${30 * r["scan_usd_per_million_sends_in_window"]:.2f} a day for it; the workgroup's
per-query limit (100 GB) caps a runaway one. Pruning costs one DynamoDB
transaction per stale subscription, and nothing per send.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 sends instead of 1M")
    args = parser.parse_args()
    subscribers = 3_334 if args.quick else 33_334
    result = run(subscribers)
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    (RESULTS / f"engagement{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"engagement{suffix}.md").write_text(markdown(result))
    return 0 if result["found_exactly_the_revoked"] else 1


if __name__ == "__main__":
    sys.exit(main())
