"""Simulated browsers: do what sw.js does for every push the local push service decrypted.

They follow the push service's delivery log (``GET /_admin/received?after=<seq>``) and,
for each push carrying a ping token, post the pings a real service worker would:
``delivered`` for the share of pushes a browser shows and reports (default 30%:
300,000 delivery pings per 1,000,000 sends), ``clicked`` for a share of those
(default 5%: 15,000 clicks), ``closed`` for a share of the rest. Decisions are a
deterministic hash of the notification id and a seed, so a run is reproducible and a
redelivered push (same notification) gets the same decision, as the same browser would.

Pings are posted one per request, ``text/plain``, as sw.js sends them.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from pushpipe.audience.payloads import flat

DELIVERED_RATE = 0.30
CLICK_RATE = 0.05  # of the pushes that pinged delivered
CLOSE_RATE = 0.20  # of the delivered ones not clicked


@dataclass(frozen=True)
class Rates:
    delivered: float = DELIVERED_RATE
    clicked: float = CLICK_RATE
    closed: float = CLOSE_RATE
    seed: int = 0

    def decide(self, nid: str, what: str, rate: float) -> bool:
        if rate >= 1.0:
            return True
        digest = hashlib.sha256(f"{self.seed}:{what}:{nid}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < rate


@dataclass
class BrowserStats:
    deliveries: int = 0  # pushes the push service accepted and decrypted
    without_ping: int = 0  # pushes with no ping token (not ours, or a malformed payload)
    posted: int = 0
    accepted: int = 0  # pings the API answered 202
    refused: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    errors: int = 0
    # unique notifications per (campaign, variant, type) that were accepted: what the
    # report must show
    pinged: dict[tuple[str, str, str], set[str]] = field(default_factory=lambda: defaultdict(set))

    def counts(self, campaign: str) -> dict[str, dict[str, int]]:
        """{variant: {type: unique notifications}} for one campaign."""
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for (c, variant, kind), nids in self.pinged.items():
            if c == campaign:
                out[variant][kind] = len(nids)
        return dict(out)


def _payload_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """A delivery's decrypted payload as a dict (it is JSON text when sw.js would parse
    it), flat whichever shape it was sent in (declarative too), or None if it is not a
    JSON object."""
    payload = record.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    return flat(payload) if isinstance(payload, dict) else None


def _ping_target(record: dict[str, Any]) -> tuple[dict[str, Any], str, str] | None:
    """A delivery's payload with its ping URL and token, if it carries a ping token."""
    payload = _payload_of(record)
    ping = payload.get("ping") if payload is not None else None
    if payload is None or not isinstance(ping, dict) or not ping.get("token"):
        return None
    if not ping.get("url"):
        return None
    return payload, str(ping["url"]), str(ping["token"])


class SimulatedBrowsers:
    """Browsers that follow the push service's delivery log and ping like sw.js."""

    def __init__(
        self,
        push_url: str,
        rates: Rates | None = None,
        concurrency: int = 16,
        ping_url: str | None = None,
        after: int = 0,
    ) -> None:
        """``ping_url`` overrides the URL in the payloads (e.g. the API moved ports)."""
        self.push_url = push_url.rstrip("/")
        self.rates = rates or Rates()
        self.ping_url = ping_url
        self.cursor = after
        self.stats = BrowserStats()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="browser")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- one browser's behaviour ---------------------------------------------------------
    def pings_for(self, payload: dict[str, Any]) -> list[str]:
        nid = str(payload.get("nid") or "")
        if not self.rates.decide(nid, "delivered", self.rates.delivered):
            return []  # offline, blocked, or the worker never reported
        kinds = ["delivered"]
        if self.rates.decide(nid, "clicked", self.rates.clicked):
            kinds.append("clicked")
        elif self.rates.decide(nid, "closed", self.rates.closed):
            kinds.append("closed")
        return kinds

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _post(self, url: str, token: str, kind: str, payload: dict) -> None:
        body = json.dumps(
            {"type": kind, "token": token, "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        )
        try:
            resp = self._session().post(
                url, data=body, headers={"Content-Type": "text/plain;charset=UTF-8"}, timeout=30
            )
        except requests.RequestException:
            with self._lock:
                self.stats.posted += 1
                self.stats.errors += 1
            return
        with self._lock:
            self.stats.posted += 1
            if resp.status_code == 202:
                self.stats.accepted += 1
                key = (str(payload.get("campaign")), str(payload.get("variant")), kind)
                self.stats.pinged[key].add(str(payload.get("nid")))
            else:
                self.stats.refused[resp.status_code] += 1

    def _browse(self, payload: dict, url: str, token: str) -> None:
        for kind in self.pings_for(payload):
            self._post(url, token, kind, payload)  # in order: delivered before clicked

    # --- following the push service --------------------------------------------------------
    def poll_once(self, limit: int = 2000) -> int:
        """Handle the deliveries after the cursor; returns how many were read."""
        resp = requests.get(
            f"{self.push_url}/_admin/received",
            params={"after": self.cursor, "limit": limit},
            timeout=30,
        )
        resp.raise_for_status()
        data = resp.json()
        records = data.get("records", [])
        futures = []
        for record in records:
            self.stats.deliveries += 1
            target = _ping_target(record)
            if target is None:
                self.stats.without_ping += 1
                continue
            payload, url, token = target
            futures.append(self._pool.submit(self._browse, payload, self.ping_url or url, token))
        for f in futures:
            f.result()
        if records:
            self.cursor = max(self.cursor, int(data.get("next") or records[-1]["seq"]))
        return len(records)

    def run_until_idle(self, idle_s: float = 2.0, timeout_s: float = 300.0) -> BrowserStats:
        """Poll until nothing new has arrived for ``idle_s``."""
        end = time.time() + timeout_s
        quiet_since = time.time()
        while time.time() < end:
            if self.poll_once():
                quiet_since = time.time()
            elif time.time() - quiet_since >= idle_s:
                break
            else:
                time.sleep(0.1)
        return self.stats

    def start(self, interval_s: float = 0.2) -> SimulatedBrowsers:
        """Follow the push service in a background thread until ``stop()``."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if not self.poll_once():
                        self._stop.wait(interval_s)
                except requests.RequestException:
                    self._stop.wait(1.0)

        self._thread = threading.Thread(target=loop, name="browsers", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> BrowserStats:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)
        return self.stats
