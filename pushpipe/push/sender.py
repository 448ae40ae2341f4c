"""Turns a batch of PushMessages into RFC 8030 requests to push services, fast.

Per message the floor is one ephemeral ECDH key and one key agreement (RFC 8291
demands a fresh sender key per message); everything else is kept off the hot path:

- one long-lived ``aiohttp.ClientSession`` with keep-alive connections, and a pool
  of ``concurrency`` workers per batch, so a batch is a window of requests in flight;
- one VAPID JWT per push-service origin (``VapidSigner``), not one per message;
- pywebpush's ``WebPusher.encode`` (http_ece, aes128gcm) on a pusher whose keys
  are set per message, instead of building a ``WebPusher`` (which deep-copies the
  subscription) and going through its generic ``send_async``;
- a message to retry waits on a timer, not in a worker, so a 429 never holds up
  the rest of the batch.

Lambda handlers are synchronous: ``send()`` runs the batch on an event loop owned
by the sender, which (with its session and connections) survives warm invocations.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
import time
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.payload import BytesPayload
from pywebpush import WebPusher
from yarl import URL

from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy, GuardedResolver
from pushpipe.push.models import (
    MAX_PLAINTEXT,
    MAX_TTL_S,
    URGENCIES,
    PushMessage,
    SendResult,
)
from pushpipe.push.origins import OriginGates
from pushpipe.push.outcomes import (
    OUT_OF_TIME,
    Disposition,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
)
from pushpipe.push.vapid import VapidSigner, origin_of
from pushpipe.push.window import Batch, Invalid, Prepared

CONTENT_ENCODING = "aes128gcm"
USER_AGENT = "pushpipe"
MAX_TOPIC_CHARS = 32  # RFC 8030 section 5.4
_B64URL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TO_STANDARD_B64 = str.maketrans("-_", "+/")
_ERROR_BODY_BYTES = 1024  # of a push service's error answer, kept for the reason


def _b64url_decode(value: str, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise Invalid(f"invalid subscription keys: {what} is missing")
    # base64url without padding (RFC 8291); plain base64 from a careless client works too.
    text = value.strip().rstrip("=").translate(_TO_STANDARD_B64)
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"invalid subscription keys: {what} is not base64url") from None


class WebPushSender:
    """Sends Web Push messages (RFC 8030/8291/8292) with bounded concurrency.

    ``vapid``: signs the Authorization header, one JWT per push-service origin.
    ``concurrency``: requests in flight at most (also the connection pool size).
    ``timeout_s``: per request, connect to answer.
    ``max_attempts``: per message, including the first (429, 5xx, timeouts, connection
        errors are retried with backoff honouring Retry-After).
    ``dry_run``: every step, encryption included, but the final POST: SKIPPED;
        except recipients whose ``recipient_id`` is in ``allow_list``, who do receive it.
    ``retry``: full retry policy; when given it replaces ``max_attempts``.
    ``limit_per_host``: connections per push-service host (default: ``concurrency``).
    ``keepalive_s``: how long an idle connection is kept for the next batch.
    ``policy``: where pushes may go (``pushpipe.push.endpoints``): checked per origin
        before a message is encrypted, and on every address its host resolves to.
    ``dns``: the resolver the policy wraps (aiohttp's threaded resolver by default).
    ``rng``: randomness for retry jitter (tests pass a seeded one).
    ``loop_factory``: makes the loop ``send()`` runs on (e.g. ``uvloop.new_event_loop``).

    ``send(messages, dry_run=None, budget_s=None)`` for synchronous callers and
    ``await send_async(...)`` inside a loop return one ``SendResult`` per message, in
    order; ``close()`` / ``await aclose()`` release the connections.
    """

    def __init__(
        self,
        vapid: VapidSigner,
        concurrency: int = 200,
        timeout_s: float = 10,
        max_attempts: int = 4,
        dry_run: bool = False,
        allow_list: frozenset[str] = frozenset(),
        *,
        retry: RetryPolicy | None = None,
        limit_per_host: int | None = None,
        keepalive_s: float = 30.0,
        policy: EndpointPolicy = BROWSERS_ONLY,
        dns: AbstractResolver | None = None,
        rng: random.Random | None = None,
        loop_factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.vapid = vapid
        self.concurrency = concurrency
        self.timeout_s = float(timeout_s)
        self._timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        self.retry = retry or RetryPolicy(max_attempts=max_attempts)
        self.dry_run = dry_run
        self.allow_list = frozenset(allow_list)
        self.limit_per_host = limit_per_host or concurrency
        self.keepalive_s = keepalive_s
        self.policy = policy
        self.gates = OriginGates()  # per origin: throttle and circuit, for the sender's life
        self._dns = dns
        self._rng = rng or random.Random()
        self._loop_factory = loop_factory
        self._loop: asyncio.AbstractEventLoop | None = None  # owned, for send()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._origins: dict[str, str] = {}  # "scheme://netloc" prefix -> origin
        # One pusher reused for every message: encode() only reads its two keys.
        self._pusher = WebPusher.__new__(WebPusher)
        self._pusher.verbose = False
        self.requests = 0  # HTTP requests made over the sender's life

    # ----------------------------------------------------------------- public API
    def throttles(self) -> dict[str, float]:
        """Origins that asked to slow down, and until when (epoch s)."""
        return self.gates.throttles()

    def adopt_throttles(self, throttles: dict[str, float]) -> None:
        """Hold back origins that throttled another sender (another chain of the run)."""
        self.gates.adopt(throttles)

    def send(
        self,
        messages: Sequence[PushMessage],
        *,
        budget_s: float | None = None,
        dry_run: bool | None = None,
    ) -> list[SendResult]:
        """Send a batch and wait for every result (same order as ``messages``).

        For synchronous callers (Lambda handlers). Runs on the sender's own event
        loop, created on first use and kept, with its connections, for the next call.
        ``budget_s``: wall time the batch may take; retries that would end later
        are not made (the message is DEFERRED, with the reason) and requests are cut short.
        ``dry_run``: overrides the sender's own setting for this batch (None keeps it).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "WebPushSender.send() was called from a running event loop; "
                "await send_async() there instead"
            )
        if self._loop is None or self._loop.is_closed():
            self._loop = self._loop_factory()
        return self._loop.run_until_complete(
            self.send_async(messages, budget_s=budget_s, dry_run=dry_run)
        )

    async def send_async(
        self,
        messages: Sequence[PushMessage],
        *,
        budget_s: float | None = None,
        dry_run: bool | None = None,
    ) -> list[SendResult]:
        """Send a batch on the running loop; results in the order of ``messages``.

        ``dry_run`` overrides the sender's own setting for this batch (a campaign can
        ask for a dry run while the function sends for real)."""
        if not messages:
            return []
        loop = asyncio.get_running_loop()
        batch = Batch(
            sender=self,
            session=self._session_for(loop),
            loop=loop,
            messages=messages,
            dry_run=self.dry_run if dry_run is None else dry_run,
            deadline=None if budget_s is None else time.monotonic() + budget_s,
        )
        return await batch.run()

    def close(self) -> None:
        """Close the session, its connections and the sender's own loop."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            loop = self._session_loop
            if loop is not None and not loop.is_closed():
                if loop.is_running():
                    self._session = session
                    raise RuntimeError(
                        "the sender's session lives on a running event loop: await aclose() there"
                    )
                loop.run_until_complete(session.close())
        self._session_loop = None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.close()
        self._loop = None

    async def aclose(self) -> None:
        """Close the session from inside the loop it was used on."""
        session, self._session = self._session, None
        self._session_loop = None
        if session is not None and not session.closed:
            await session.close()

    def __enter__(self) -> WebPushSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> WebPushSender:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ internals

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        if self._session is not None and not self._session.closed:
            if self._session_loop is loop:
                return self._session
            if self._session_loop is not None and not self._session_loop.is_closed():
                raise RuntimeError(
                    "WebPushSender is bound to another event loop; use one sender per loop "
                    "(or aclose() it on the first loop before moving)"
                )
        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            limit_per_host=self.limit_per_host,
            keepalive_timeout=self.keepalive_s,
            ttl_dns_cache=300,
            resolver=GuardedResolver(self.policy, self._dns),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        self._session_loop = loop
        return self._session

    def _origin(self, endpoint: str) -> str:
        # "https://host:port/rest" -> cache key "https://host:port"; parse once per key.
        cut = endpoint.find("/", 8)
        prefix = endpoint if cut < 0 else endpoint[:cut]
        origin = self._origins.get(prefix)
        if origin is None:
            refused = self.policy.refusal(endpoint)
            if refused is not None:
                raise Invalid(f"endpoint refused: {refused}")
            try:
                origin = origin_of(endpoint)
            except ValueError as exc:
                raise Invalid(f"invalid subscription: {exc}") from None
            if len(self._origins) < 10_000:
                self._origins[prefix] = origin
        return origin

    def _prepare(self, message: PushMessage) -> Prepared:
        """Validate, encrypt and build the request; raise Invalid for what cannot go."""
        payload = message.payload
        if len(payload) > MAX_PLAINTEXT:
            raise Invalid(
                f"payload too large: {len(payload)} bytes, at most {MAX_PLAINTEXT} "
                "fit in one aes128gcm record"
            )
        if not payload:
            raise Invalid("empty payload: nothing to encrypt")
        receiver = _b64url_decode(message.p256dh, "p256dh")
        if len(receiver) != 65 or receiver[0] != 4:
            raise Invalid(
                "invalid subscription keys: p256dh must be an uncompressed P-256 point "
                f"(65 bytes starting 0x04), got {len(receiver)} bytes"
            )
        auth = _b64url_decode(message.auth, "auth")
        if len(auth) != 16:
            raise Invalid(f"invalid subscription keys: auth must be 16 bytes, got {len(auth)}")
        origin = self._origin(message.endpoint)
        headers = {
            "User-Agent": USER_AGENT,
            "Authorization": self._authorization(origin),
            "Content-Encoding": CONTENT_ENCODING,
            "TTL": str(self._ttl(message.ttl)),
            "Urgency": self._urgency(message.urgency),
        }
        if message.topic is not None:
            headers["Topic"] = self._topic(message.topic)
        pusher = self._pusher
        pusher.receiver_key, pusher.auth_key = receiver, auth
        try:
            body = pusher.encode(payload, CONTENT_ENCODING)["body"]
        except ValueError as exc:  # p256dh is not a point on the curve
            raise Invalid(f"invalid subscription keys: p256dh rejected: {exc}") from None
        return Prepared(URL(message.endpoint, encoded=True), origin, BytesPayload(body), headers)

    def _authorization(self, origin: str) -> str:
        try:
            return self.vapid.authorization_for_origin(origin)
        except ValueError as exc:  # py_vapid refuses the origin as an audience
            raise Invalid(f"invalid subscription: {exc}") from None

    @staticmethod
    def _ttl(ttl: int) -> int:
        if not isinstance(ttl, int) or ttl < 0:
            raise Invalid(f"invalid TTL {ttl!r}: seconds, zero or more")
        return min(ttl, MAX_TTL_S)  # push services cap it anyway (FCM: 28 days)

    @staticmethod
    def _urgency(urgency: str) -> str:
        if urgency not in URGENCIES:
            raise Invalid(f"invalid urgency {urgency!r}: one of {', '.join(URGENCIES)}")
        return urgency

    @staticmethod
    def _topic(topic: str) -> str:
        if not topic or len(topic) > MAX_TOPIC_CHARS or not _B64URL_CHARS.issuperset(topic):
            raise Invalid(
                f"invalid topic {topic[:40]!r}: 1 to {MAX_TOPIC_CHARS} base64url characters"
            )
        return topic

    async def _post(
        self, session: aiohttp.ClientSession, prepared: Prepared, deadline: float | None
    ) -> Verdict:
        timeout = self._timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return Verdict(Disposition.RETRY, None, OUT_OF_TIME)
            if left < self.timeout_s:
                timeout = aiohttp.ClientTimeout(total=left)
        self.requests += 1
        try:
            async with session.post(
                prepared.url,
                data=prepared.body,
                headers=prepared.headers,
                allow_redirects=False,  # a push resource does not move; a 3xx is a failure
                timeout=timeout,
            ) as response:
                status = response.status
                if 200 <= status < 300:
                    await response.read()  # drain, so the connection goes back to the pool
                    return Verdict(Disposition.SENT, status)
                raw = await response.content.read(_ERROR_BODY_BYTES)
                return classify_status(
                    status,
                    raw.decode("utf-8", errors="replace"),
                    response.headers.get("Retry-After"),
                )
        except Exception as exc:  # every transport failure becomes a verdict
            return classify_exception(exc)
