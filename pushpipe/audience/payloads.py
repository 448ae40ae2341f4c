"""The push payload each recipient's service worker receives.

Compact JSON, localized by the recipient's language, carrying the notification id and
the signed ping token the ping handler verifies. Its size is checked against the
aes128gcm limit before anything is sent (``worst_case_size``).
"""

from __future__ import annotations

import json
import time

from pushpipe.audience.format import CampaignHeader, Recipient
from pushpipe.push.models import MAX_PLAINTEXT
from pushpipe.shared.errors import PayloadTooLarge
from pushpipe.shared.tokens import DEFAULT_TTL_S, PingClaims, SigningKeys, notification_id, sign

_MESSAGE_FIELDS = ("title", "body", "url", "icon")
WIDEST_ID = "\U0010fffd" * 128


def message_for(header: CampaignHeader, variant: str, language: str | None) -> dict:
    """The campaign message, overridden by the variant's, then by the language's."""
    base = header.message
    for v in header.variants:
        if v.id == variant:
            base = {**base, **v.message}
            break
    msg = {k: base[k] for k in _MESSAGE_FIELDS if k in base}
    if language:
        localized = base.get("localized", {})
        override = localized.get(language) or localized.get(language.split("-")[0])
        if override:
            msg.update(override)
    return msg


class PayloadBuilder:
    """Builds the encrypted-to-be plaintext for one recipient."""

    def __init__(
        self, header: CampaignHeader, keys: SigningKeys, ping_url: str, token_ttl_s: int = 0
    ) -> None:
        self.header = header
        self.keys = keys
        self.ping_url = ping_url
        self.token_ttl_s = token_ttl_s or max(DEFAULT_TTL_S, header.ttl + 7 * 24 * 3600)
        self._messages: dict[tuple[str, str | None], dict] = {}

    def _message(self, variant: str, language: str | None) -> dict:
        key = (variant, language)
        msg = self._messages.get(key)
        if msg is None:
            msg = self._messages[key] = message_for(self.header, variant, language)
        return msg

    def build(self, recipient: Recipient, variant: str, now: float | None = None) -> bytes:
        nid = notification_id(self.header.id, recipient.id)
        exp = int((time.time() if now is None else now) + self.token_ttl_s)
        token = sign(
            PingClaims(self.header.tenant, self.header.id, variant, nid, recipient.id, exp),
            self.keys,
        )
        body = {
            "nid": nid,
            "campaign": self.header.id,
            "variant": variant,
            **self._message(variant, recipient.language),
            "ping": {"url": self.ping_url, "token": token},
        }
        if self.header.declarative:
            body = declarative(body, recipient.language)
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()

    def worst_case_size(self) -> tuple[int, str]:
        """The largest payload any recipient could get (longest id, every variant and
        language), and which variant/language gives it."""
        languages: list[str | None] = [None]
        for msg in [self.header.message, *(v.message for v in self.header.variants)]:
            languages.extend(msg.get("localized", {}))
        variants = [v.id for v in self.header.variants] or ["default"]
        # the longest id the format allows, in the characters that encode longest (4 bytes
        # of UTF-8 each; JSON escapes are shorter): no admitted recipient is larger
        probe = Recipient(0, WIDEST_ID, "https://push.invalid/", "", "", None, None)
        worst, where = 0, ""
        for variant in variants:
            for language in languages:
                p = Recipient(**{**_as_dict(probe), "language": language})
                # a variant id appears twice (payload, and base64 in the token)
                size = len(self.build(p, variant)) + 3 * (32 - len(variant))
                if size > worst:
                    worst, where = size, f"variant {variant!r}, language {language or 'default'}"
        return worst, where

    def check_size(self) -> None:
        size, where = self.worst_case_size()
        if size > MAX_PLAINTEXT:
            raise PayloadTooLarge(
                f"the push payload is {size} bytes for {where}; Web Push allows at most "
                f"{MAX_PLAINTEXT} bytes of plaintext (aes128gcm): shorten title/body/url"
            )


def declarative(body: dict, language: str | None = None) -> dict:
    """The Declarative Web Push shape of a payload (WebKit, Safari 18.4+; the W3C Push
    API draft): the browser shows ``notification`` itself, even without a service
    worker; ``mutable: true`` lets sw.js still run, show it and ping delivery. Our fields
    travel in ``notification.data``."""
    notification: dict = {"title": body["title"], "navigate": body.get("url", "/")}
    for ours, theirs in (("body", "body"), ("icon", "icon")):
        if body.get(ours):
            notification[theirs] = body[ours]
    if language:
        notification["lang"] = language
    notification["tag"] = body["nid"]  # a resent duplicate replaces, not stacks
    notification["data"] = {k: body[k] for k in ("nid", "campaign", "variant", "ping")}
    return {"web_push": 8030, "notification": notification, "mutable": True}


def flat(payload: dict) -> dict:
    """Either shape as the flat one (nid, campaign, variant, title, body, url, icon, ping):
    what sw.js does first, and the local cloud's browsers too."""
    if payload.get("web_push") != 8030 or not isinstance(payload.get("notification"), dict):
        return payload
    n = payload["notification"]
    data = n.get("data") if isinstance(n.get("data"), dict) else {}
    out = {**data, "title": n.get("title"), "url": n.get("navigate")}
    for k in ("body", "icon"):
        if n.get(k):
            out[k] = n[k]
    return out


def _as_dict(r: Recipient) -> dict:
    return {s: getattr(r, s) for s in Recipient.__slots__}
