"""Audience files: the documented format, header validation and streaming.

An audience file is one JSON document (schema: ``pushpipe/audience/schemas/audience.schema.json``)::

    {"format": "pushpipe.audience/v1",
     "campaign": {"id": "spring-sale", "tenant": "shop-1", "message": {...}, ...},
     "recipients": [{"id": "sub-1", "subscription": {"endpoint": ..., "keys": {...}}}, ...]}

The header (``campaign``) comes first. It is read from the first 64 KiB and validated
against the JSON Schema; a header that does not validate rejects the whole file before
anything is sent. Recipients are then streamed with ijson's C backend, never loaded
whole; a malformed recipient is skipped and counted with its reason.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import IO, Any

import ijson
from aws_lambda_powertools.utilities.validation import SchemaValidationError, validate

from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy
from pushpipe.shared.errors import AudienceRejected

HEADER_MAX_BYTES = 64 * 1024  # format and campaign must fit in the file's first 64 KiB
HEADER_MAX_DEPTH = 16  # nesting inside the campaign object (the schema needs 6)
FORMAT = "pushpipe.audience/v1"
CONTROL = "control"

# Subscriber ids are the tenant's own: any 1-128 printable characters.
# (A lone surrogate, which JSON can spell as "\ud800", is not a character: refused.)
_SUBSCRIBER_ID = re.compile(r"^[^\x00-\x1f\x7f\ud800-\udfff]{1,128}$")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# base64url of 65 bytes (an uncompressed P-256 point) and of 16 bytes, padded or not.
_P256DH = re.compile(r"^B[A-Za-z0-9_-]{86}(=?)$")
_AUTH = re.compile(r"^[A-Za-z0-9_-]{22}(==)?$")


@cache
def schema() -> dict:
    text = resources.files("pushpipe.audience").joinpath("schemas/audience.schema.json").read_text()
    return json.loads(text)


@cache
def _campaign_schema() -> dict:
    full = schema()
    return {
        "$schema": full["$schema"],
        "definitions": full["definitions"],
        **full["definitions"]["campaign"],
    }


@dataclass(frozen=True)
class Variant:
    id: str
    percent: float
    message: dict


@dataclass(frozen=True)
class CampaignHeader:
    id: str
    tenant: str
    message: dict
    ttl: int = 86400
    urgency: str = "normal"
    topic: str | None = None
    variants: tuple[Variant, ...] = ()
    control_percent: float = 0.0
    countries: frozenset[str] = field(default_factory=frozenset)
    dry_run: bool = False
    declarative: bool = False  # the Declarative Web Push shape (payloads.declarative)

    @classmethod
    def parse(cls, raw: Any) -> CampaignHeader:
        """Validate ``raw`` against the schema and the rules a schema cannot say."""
        if not isinstance(raw, dict):
            raise AudienceRejected("campaign header must be a JSON object")
        try:
            json.dumps(raw, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise AudienceRejected(
                "campaign header is invalid: it has text that is not Unicode (a lone "
                f"surrogate such as \\ud800 at character {exc.start})"
            ) from exc
        try:
            validate(event=raw, schema=_campaign_schema())
        except SchemaValidationError as exc:
            detail = re.sub(r"^data\b", "campaign", exc.validation_message or str(exc))
            raise AudienceRejected(f"campaign header is invalid: {detail}") from exc
        variants = tuple(
            Variant(v["id"], float(v["percent"]), v.get("message", {}))
            for v in raw.get("variants", [])
        )
        control = float(raw.get("control_percent", 0))
        if variants:
            ids = [v.id for v in variants]
            if len(set(ids)) != len(ids):
                raise AudienceRejected("campaign header is invalid: variant ids must be unique")
            total = sum(v.percent for v in variants) + control
            if abs(total - 100.0) > 1e-6:
                raise AudienceRejected(
                    "campaign header is invalid: variant percents plus control_percent "
                    f"must add up to 100, got {total:g}"
                )
        elif control:
            raise AudienceRejected(
                "campaign header is invalid: control_percent needs variants (their percents "
                "and the control's add up to 100)"
            )
        return cls(
            id=raw["id"],
            tenant=raw["tenant"],
            message=raw["message"],
            ttl=int(raw.get("ttl", 86400)),
            urgency=raw.get("urgency", "normal"),
            topic=raw.get("topic"),
            variants=variants,
            control_percent=control,
            countries=frozenset(raw.get("countries", ())),
            dry_run=bool(raw.get("dry_run", False)),
            declarative=bool(raw.get("declarative", False)),
        )


@dataclass(frozen=True, slots=True)
class Recipient:
    index: int  # position in the recipients array, the cursor's unit
    id: str
    endpoint: str
    p256dh: str
    auth: str
    language: str | None = None
    country: str | None = None
    muted: bool = False


@dataclass(frozen=True, slots=True)
class Malformed:
    index: int
    reason: str


def check_recipient(
    index: int, raw: Any, policy: EndpointPolicy = BROWSERS_ONLY
) -> Recipient | Malformed:
    """The schema's recipient rules, checked by hand: this runs once per recipient, and
    a generic validator costs more than the encryption it guards. The endpoint must pass
    the endpoint policy (``pushpipe.push.endpoints``)."""
    if not isinstance(raw, dict):
        return Malformed(index, "recipient is not an object")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _SUBSCRIBER_ID.match(rid):
        return Malformed(index, "recipient id is missing or invalid")
    sub = raw.get("subscription")
    if not isinstance(sub, dict):
        return Malformed(index, f"{rid}: subscription is missing")
    endpoint = sub.get("endpoint")
    refused = policy.refusal(endpoint)
    if refused is not None or not isinstance(endpoint, str):
        return Malformed(index, f"{rid}: {refused}")
    keys = sub.get("keys")
    if not isinstance(keys, dict):
        return Malformed(index, f"{rid}: subscription keys are missing")
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    # "B" first: base64url of a 0x04-prefixed (uncompressed) point. Whether the point
    # lies on the curve is found by the ECDH at send time, which fails that recipient.
    if not isinstance(p256dh, str) or not _P256DH.match(p256dh):
        return Malformed(index, f"{rid}: p256dh is not a base64url 65-byte P-256 public key")
    if not isinstance(auth, str) or not _AUTH.match(auth):
        return Malformed(index, f"{rid}: auth is not a base64url 16-byte secret")
    language, country = raw.get("language"), raw.get("country")
    if language is not None and (
        not isinstance(language, str) or len(language) > 35 or not _LANG.match(language)
    ):
        return Malformed(index, f"{rid}: language is not a BCP 47 tag")
    if country is not None and (not isinstance(country, str) or not _COUNTRY.match(country)):
        return Malformed(index, f"{rid}: country is not an ISO 3166 alpha-2 code")
    return Recipient(
        index, rid, endpoint, p256dh, auth, language, country, bool(raw.get("muted", False))
    )


class _HeaderReader:
    """The top of the file as parse events: ``format``, then ``campaign`` (built, with
    every map's keys checked for duplicates and the nesting bounded), then ``recipients``."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.builder: ijson.ObjectBuilder | None = None
        self.done = False  # the campaign object is complete
        self.keys: list[set[str]] = []  # the keys of each open map inside the campaign

    def top(self, event: str, value: Any) -> bool:
        """A top-level event; True when the header is read."""
        if event == "start_map":
            return False
        if event == "end_map":
            return True
        if event != "map_key":
            raise AudienceRejected("an audience file must be a JSON object")
        if value in self.seen:
            raise AudienceRejected(f"the top-level key {value!r} appears twice")
        self.seen.add(value)
        if value == "recipients":
            if not self.done:
                raise AudienceRejected("the campaign header must come before recipients")
            return True
        if value not in ("format", "campaign"):
            raise AudienceRejected(f"unknown top-level key {_short(value)!r}")
        if value == "campaign":
            self.builder = ijson.ObjectBuilder()
        return False

    def campaign(self, prefix: str, event: str, value: Any) -> None:
        if event in ("start_map", "start_array"):
            if len(self.keys) >= HEADER_MAX_DEPTH:
                raise AudienceRejected(
                    f"the campaign header is nested deeper than {HEADER_MAX_DEPTH} levels"
                )
            self.keys.append(set())
        elif event in ("end_map", "end_array"):
            self.keys.pop()
        elif event == "map_key":
            if value in self.keys[-1]:
                raise AudienceRejected(f"the key {_short(value)!r} appears twice in {prefix}")
            self.keys[-1].add(value)
        assert self.builder is not None
        self.builder.event(event, value)
        if not self.keys:
            self.done = True


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."


def read_header(stream: IO[bytes]) -> CampaignHeader:
    """Parse and validate the campaign header from the start of the file.

    Reads only the first ``HEADER_MAX_BYTES``: a header that does not end within them is
    rejected, and the caller may close the stream afterwards. Duplicate keys anywhere in
    the header (or at the top level) reject the file, so that it means to pushpipe what
    it means to every JSON parser.
    """
    head = stream.read(HEADER_MAX_BYTES)
    reader = _HeaderReader()
    try:
        for prefix, event, value in ijson.parse(io.BytesIO(head), use_float=True):
            if prefix == "":
                if reader.top(event, value):
                    break
            elif prefix == "format" or prefix.startswith("format."):
                if event != "string" or value != FORMAT:
                    raise AudienceRejected(f"format must be {FORMAT!r}, got {_short(value)!r}")
            elif reader.builder is not None and not reader.done:
                reader.campaign(prefix, event, value)
    except ijson.IncompleteJSONError as exc:
        if not reader.done:
            if len(head) >= HEADER_MAX_BYTES:
                raise AudienceRejected(
                    f"the campaign header must end within the first {HEADER_MAX_BYTES // 1024}"
                    " KiB of the file"
                ) from exc
            raise AudienceRejected(f"the audience file is not valid JSON: {exc}") from exc
    except ijson.JSONError as exc:
        raise AudienceRejected(f"the audience file is not valid JSON: {exc}") from exc
    if reader.builder is None or not reader.done:
        raise AudienceRejected("the audience file has no campaign header")
    return CampaignHeader.parse(reader.builder.value)  # ``format`` is optional


# What one recipient may take of the file, with whatever precedes it (the header before
# the first one): recipients are a few hundred bytes; a single value of megabytes would be
# held whole in memory by the parser, so the file is rejected before that happens.
MAX_RECIPIENT_BYTES = 128 * 1024
READ_CHUNK = 64 * 1024


class _BoundedItems:
    """The stream as ijson reads it, refusing to go on once more than
    ``MAX_RECIPIENT_BYTES`` (plus one read chunk) were read without a recipient ending."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.read_bytes = 0
        self.mark = 0
        self.index = 0

    def read(self, n: int = -1) -> bytes:
        if self.read_bytes - self.mark > MAX_RECIPIENT_BYTES + READ_CHUNK:
            raise AudienceRejected(
                f"recipient #{self.index} (with what precedes it) is larger than "
                f"{MAX_RECIPIENT_BYTES // 1024} KiB; a recipient is a few hundred bytes"
            )
        data = self.stream.read(n)
        self.read_bytes += len(data)
        return data

    def ended(self, index: int) -> None:
        self.mark = self.read_bytes
        self.index = index + 1


def iter_recipients(
    stream: IO[bytes],
    start: int = 0,
    chain: int = 0,
    chains: int = 1,
    policy: EndpointPolicy = BROWSERS_ONLY,
) -> Iterator[Recipient | Malformed]:
    """Stream the recipients array, yielding each checked recipient of chain ``chain`` (of
    ``chains``: recipient ``i`` belongs to chain ``i % chains``) from index ``start`` on.

    Raises ``AudienceRejected`` if the document turns out not to be valid JSON, or a
    recipient is over ``MAX_RECIPIENT_BYTES``.
    """
    bounded = _BoundedItems(stream)
    items = ijson.items(bounded, "recipients.item", use_float=True, buf_size=READ_CHUNK)
    try:
        for index, raw in enumerate(items):
            bounded.ended(index)
            if index >= start and index % chains == chain:
                yield check_recipient(index, raw, policy)
    except ijson.JSONError as exc:
        raise AudienceRejected(f"the audience file is not valid JSON: {exc}") from exc


@dataclass
class AudienceStats:
    """What the admission pass found in a whole file."""

    total: int = 0  # entries in the recipients array
    malformed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)  # reason kind -> count
    examples: list[str] = field(default_factory=list)  # first few reasons in full
    ambiguous: bool = False  # could hold a second recipients key: check_structure tells

    def add(self, bad: Malformed) -> None:
        self.malformed += 1
        kind = bad.reason.split(": ", 1)[-1]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1
        if len(self.examples) < 10:
            self.examples.append(f"#{bad.index} {bad.reason}")


_KINDS = {
    "start_map": "an object",
    "string": "a string",
    "number": "a number",
    "integer": "a number",
    "double": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def check_structure(stream: IO[bytes]) -> None:
    """Reject a file unless it has exactly one top-level ``recipients`` key and its value
    is an array. Streams the whole file event by event: used only where the fast pass
    cannot tell (no recipient found, or bytes that could spell a second key)."""
    seen = 0
    expect = False
    try:
        for prefix, event, value in ijson.parse(stream, use_float=True):
            if expect and event != "start_array":
                raise AudienceRejected(
                    f"recipients must be an array, got {_KINDS.get(event, event)}"
                )
            expect = prefix == "" and event == "map_key" and value == "recipients"
            if expect:
                seen += 1
                if seen > 1:
                    raise AudienceRejected(
                        "the audience file has a second recipients key; JSON parsers "
                        "disagree on what that means, so write one recipients array"
                    )
    except ijson.JSONError as exc:
        raise AudienceRejected(f"the audience file is not valid JSON: {exc}") from exc
    if not seen:
        raise AudienceRejected("the audience file has no recipients array")


class _KeyWatch:
    """The stream, watched for bytes that could be a second ``recipients`` key: the
    literal ``"recipients"`` once more, or a ``\\u`` escape (with which a key can spell
    the same name) after the first. A file without either has exactly one such key."""

    LITERAL = b'"recipients"'

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.literals = 0
        self.escaped = False
        self.carry = b""

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        window = self.carry + data  # the carry is shorter than the literal: no double count
        if self.literals == 0:
            found = window.find(self.LITERAL)
            after = window[found:] if found >= 0 else b""
        else:
            after = window
        self.literals += window.count(self.LITERAL)
        self.escaped = self.escaped or b"\\u" in after
        self.carry = window[-(len(self.LITERAL) - 1) :]
        return data

    @property
    def ambiguous(self) -> bool:
        return self.literals != 1 or self.escaped


def scan_recipients(stream: IO[bytes], policy: EndpointPolicy = BROWSERS_ONLY) -> AudienceStats:
    """Admission: read the whole recipients array once, counting good and malformed
    entries. A syntax error anywhere rejects the file before anything is sent."""
    stats = AudienceStats()
    watch = _KeyWatch(stream)
    for item in iter_recipients(watch, policy=policy):
        stats.total += 1
        if isinstance(item, Malformed):
            stats.add(item)
    stats.ambiguous = watch.ambiguous
    return stats
