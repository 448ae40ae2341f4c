"""Where pushes may go: one endpoint policy, applied three times.

A push subscription's endpoint is a URL that a browser (or anyone posting to the
subscription API, or writing an audience file) hands us, and the sender POSTs to it
from inside the AWS account. Unchecked, it reaches instance metadata
(``169.254.169.254``), the Lambda Runtime API (``127.0.0.1:9001``) or anything in the
VPC. So the same ``EndpointPolicy`` is applied

1. at subscription intake (the subscription API refuses it with the reason),
2. at admission (the recipient is rejected and counted with the reason), and
3. at connect time in the sender (``GuardedResolver``): the addresses a host resolves to
   are checked again, so DNS that answers a private address cannot get around 1 and 2.

The rule: ``https`` only, on a host of a browser push service (``BROWSER_PUSH_SERVICES``,
extended per deploy by the ``pushPushHosts`` parameter), never an IP literal in any
notation, and never a host that resolves to an address that is not globally routable
(loopback, private, link-local, CGNAT, multicast, reserved, unspecified, documentation;
IPv4 and IPv6, IPv4-mapped included). The local cloud's push service is allowed by its
exact origin (``PUSH_ORIGINS_ALLOWED``), a setting only the local cloud sets.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from pushpipe.shared.settings import push_endpoint_settings

MAX_ENDPOINT_CHARS = 2048

# The push services of the browsers, each with the domain its endpoints live under
# (an endpoint host must be the domain itself or a subdomain of it).
BROWSER_PUSH_SERVICES: dict[str, str] = {
    "fcm.googleapis.com": "Chrome, Edge on Android, Opera, Samsung Internet, Brave (FCM)",
    "android.googleapis.com": "older Chrome subscriptions (legacy GCM endpoints)",
    "push.services.mozilla.com": "Firefox (Mozilla autopush)",
    "notify.windows.com": "Edge on Windows (WNS, <region>.notify.windows.com)",
    "push.apple.com": "Safari on macOS and iOS (web.push.apple.com)",
}

# What each of those services is called in the sends archive (column ``service``), so an
# archive query can pick one service's subscriptions (pushpipe/subscriptions/engagement.py).
SERVICE_NAMES: dict[str, str] = {
    "fcm.googleapis.com": "fcm",
    "android.googleapis.com": "fcm",
    "push.services.mozilla.com": "mozilla",
    "notify.windows.com": "wns",
    "push.apple.com": "apple",
}
OTHER_SERVICE = "other"  # a deploy's extra push hosts, the local cloud's push service

_UNKNOWN: Any = object()
_URL_CHARS = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
_IPV4_NUMERIC = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class EndpointRefused(OSError):
    """An endpoint (or the address its host resolves to) that pushes may not go to."""


def literal_address(host: str) -> Address | None:
    """The IP address ``host`` spells, in any notation a resolver accepts (dotted,
    shortened ``127.1``, one number ``2130706433``, hex and octal parts, IPv6), or None."""
    bare = host.strip("[]").lower()
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    if _IPV4_NUMERIC.match(bare):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def address_refusal(address: Address) -> str | None:
    """Why pushes may not go to ``address`` (None if it is globally routable)."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:
            reason = address_refusal(mapped)
            return f"{address} maps to {mapped}: {reason}" if reason else None
    for kind in ("loopback", "unspecified", "link_local", "multicast", "reserved", "private"):
        if getattr(address, f"is_{kind}"):
            return f"{address} is a {kind.replace('_', '-')} address"
    if not address.is_global:
        return f"{address} is not a globally routable address"
    return None


def _origin(scheme: str, host: str, port: int | None) -> str:
    default = {"https": 443, "http": 80}.get(scheme)
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class EndpointPolicy:
    """``hosts``: domains whose hosts (and subdomains) are push services; ``origins``:
    exact origins allowed as they are, even over http or on loopback (the local cloud's
    push service, set only by the local cloud)."""

    hosts: tuple[str, ...] = tuple(BROWSER_PUSH_SERVICES)
    origins: frozenset[str] = field(default_factory=frozenset)
    _verdicts: dict[str, str | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    @classmethod
    def from_settings(
        cls, extra_hosts: Iterable[str] = (), origins: Iterable[str] = ()
    ) -> EndpointPolicy:
        hosts = tuple(BROWSER_PUSH_SERVICES) + tuple(
            h.strip().lower().strip(".") for h in extra_hosts if h.strip()
        )
        return cls(hosts, frozenset(o.strip().rstrip("/").lower() for o in origins if o.strip()))

    def refusal(self, endpoint: Any) -> str | None:
        """Why a push may not go to ``endpoint`` (None if it may). Runs once per
        recipient: the verdict on an endpoint's origin part is cached, and the common
        case (a known origin, a printable ASCII URL) costs a few string operations."""
        if type(endpoint) is not str or not endpoint:
            return "endpoint is not a URL"
        cut = endpoint.find("/", 8)
        prefix = endpoint[:cut] if cut > 0 else endpoint
        verdict = self._verdicts.get(prefix, _UNKNOWN)
        if (
            verdict is None
            and len(endpoint) <= MAX_ENDPOINT_CHARS
            and endpoint.isascii()
            and endpoint.isprintable()
            and " " not in endpoint
        ):
            return None
        if len(endpoint) > MAX_ENDPOINT_CHARS:
            return f"endpoint is longer than {MAX_ENDPOINT_CHARS} characters"
        if not _URL_CHARS.match(endpoint):
            return "endpoint has spaces, control or non-ASCII characters"
        if verdict is not _UNKNOWN:
            return verdict  # type: ignore[return-value]
        if cut < 0 or "?" in prefix or "#" in prefix:
            return self._refusal(endpoint)
        verdict = self._refusal(prefix + "/")
        if len(self._verdicts) < 4096:
            self._verdicts[prefix] = verdict
        return verdict

    def _refusal(self, endpoint: str) -> str | None:
        try:
            url = urlsplit(endpoint)
            port = url.port
        except ValueError as exc:
            return f"endpoint is not a valid URL: {exc}"
        scheme, host = url.scheme.lower(), (url.hostname or "").rstrip(".")
        if not host:
            return "endpoint has no host"
        if _origin(scheme, host, port) in self.origins:
            return None
        if scheme != "https":
            return f"endpoint must be https, not {scheme or 'a relative URL'}"
        if url.username is not None or url.password is not None:
            return "endpoint must not carry credentials"
        address = literal_address(host)
        if address is not None:
            why = address_refusal(address)
            return f"endpoint host is an IP address ({why or address}), not a push service"
        if not _HOST.match(host):
            return f"endpoint host {host!r} is not a valid host name"
        if not self.is_push_service(host):
            return (
                f"endpoint host {host} is not a browser push service (allowed: "
                f"{', '.join(self.hosts)}; a deploy adds more with pushPushHosts)"
            )
        return None

    def is_push_service(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.hosts)

    def allows_connection(self, host: str, port: int) -> bool:
        """Whether (host, port) is one of the exact origins allowed as they are: only
        those may resolve to a non-global address."""
        return any(
            _origin(scheme, host.lower(), port) in self.origins for scheme in ("http", "https")
        )


BROWSERS_ONLY = EndpointPolicy()


@lru_cache(maxsize=4096)
def _service_of_host(host: str) -> str:
    for domain, name in SERVICE_NAMES.items():
        if host == domain or host.endswith("." + domain):
            return name
    return OTHER_SERVICE


def service_of(endpoint: str) -> str:
    """The push service an endpoint belongs to (``apple``, ``fcm``, ``mozilla``, ``wns``,
    or ``other``), from its host alone; a few string operations per call."""
    start = endpoint.find("://") + 3
    end = len(endpoint)
    for sep in "/?#":
        cut = endpoint.find(sep, start)
        if 0 <= cut < end:
            end = cut
    host = endpoint[start:end].rpartition("@")[2].lower()
    if host.startswith("["):
        return OTHER_SERVICE
    return _service_of_host(host.partition(":")[0].rstrip("."))


def endpoint_fingerprint(endpoint: str) -> str:
    """16 hex characters that name one endpoint in the archive (column ``ep``) without
    storing the URL itself: a subscriber whose endpoint changes starts a new history."""
    return hashlib.blake2b(endpoint.encode(), digest_size=8).hexdigest()


def deployed_policy() -> EndpointPolicy:
    """The policy of this function: the browsers' push services, the deploy's extra
    domains, and the exact origins the local cloud allows (settings, read once)."""
    s = push_endpoint_settings()
    return _policy(s.push_hosts, s.push_origins_allowed)


@lru_cache(maxsize=4)
def _policy(hosts: tuple[str, ...], origins: tuple[str, ...]) -> EndpointPolicy:
    return EndpointPolicy.from_settings(hosts, origins)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, checking every address a push host resolves to (connect-time
    enforcement of the policy: DNS rebinding cannot point a push at a private address)."""

    def __init__(self, policy: EndpointPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self.inner.resolve(host, port, family)
        if self.policy.allows_connection(host, port):
            return infos
        allowed = []
        reasons = []
        for info in infos:
            why = address_refusal(ipaddress.ip_address(info["host"].split("%", 1)[0]))
            if why is None:
                allowed.append(info)
            else:
                reasons.append(why)
        if not allowed:
            raise EndpointRefused(f"endpoint refused: {host} resolves to {'; '.join(reasons)}")
        return allowed

    async def close(self) -> None:
        await self.inner.close()
