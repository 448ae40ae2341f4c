"""A/B assignment, ping tokens and the push payload."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pushpipe.audience.format import CampaignHeader, Recipient, Variant, check_recipient
from pushpipe.audience.payloads import PayloadBuilder, flat
from pushpipe.audience.variants import assign
from pushpipe.push.models import MAX_PLAINTEXT
from pushpipe.shared import tokens
from pushpipe.shared.errors import PayloadTooLarge
from pushpipe_local.sim.audiences import demo_campaign

KEYS = tokens.SigningKeys.from_secret({"active": "k1", "keys": {"k1": "a" * 43}})


def test_variants_split_100k_subscribers_within_tolerance_and_stay_put():
    variants = (Variant("A", 45, {}), Variant("B", 45, {}))
    counts = Counter(assign("camp", f"sub-{i}", variants, 10) for i in range(100_000))
    # binomial standard deviation at n=100k is < 160; 4 sigma is ~0.65 percentage points
    assert abs(counts["control"] - 10_000) < 650
    assert abs(counts["A"] - 45_000) < 650
    assert abs(counts["B"] - 45_000) < 650
    assert assign("camp", "sub-7", variants, 10) == assign("camp", "sub-7", variants, 10)
    other = Counter(
        assign("camp", f"sub-{i}", variants, 10) == assign("other", f"sub-{i}", variants, 10)
        for i in range(10_000)
    )
    assert other[False] > 3_000, "assignment must be independent across campaigns"


def test_ping_tokens_verify_and_refuse_forgery_expiry_and_unknown_keys():
    claims = tokens.PingClaims("t1", "c1", "A", "n1", "s1", exp=2_000_000_000)
    token = tokens.sign(claims, KEYS)
    assert tokens.verify(token, KEYS, now=1_900_000_000) == claims
    body = token.split(".")[2]
    forged_claims = json.dumps({**asdict(claims), "tenant": "t2"}, separators=(",", ":"))
    forged = token.replace(body, tokens._b64(forged_claims.encode()))
    with pytest.raises(tokens.TokenInvalid, match="does not match"):
        tokens.verify(forged, KEYS, now=1_900_000_000)
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(token, KEYS, now=2_000_000_001)
    rotated = tokens.SigningKeys.from_secret({"active": "k2", "keys": {"k2": "b" * 43}})
    with pytest.raises(tokens.TokenInvalid, match="unknown key"):
        tokens.verify(token, rotated)
    with pytest.raises(tokens.TokenInvalid, match="malformed"):
        tokens.verify("v1.k1.nope", KEYS)
    with pytest.raises(Exception, match="at least 32 bytes"):
        tokens.SigningKeys.from_secret({"active": "k", "keys": {"k": "c2hvcnQ"}})


def test_payload_is_localized_per_variant_and_carries_a_valid_token():
    header = CampaignHeader.parse(
        {
            **demo_campaign("c1"),
            "variants": [
                {"id": "A", "percent": 50},
                {"id": "B", "percent": 50, "message": {"title": "B wins"}},
            ],
        }
    )
    builder = PayloadBuilder(header, KEYS, "https://api.example/v1/pings")
    r = Recipient(0, "s1", "https://fcm.googleapis.com/fcm/send/1", "p", "a", "de-AT", "AT")
    de = json.loads(builder.build(r, "A"))
    assert de["title"] == "Frühlingsangebot: 20% Rabatt" and de["variant"] == "A"
    assert de["nid"] == tokens.notification_id("c1", "s1")
    claims = tokens.verify(de["ping"]["token"], KEYS)
    assert (claims.tenant, claims.campaign, claims.variant, claims.subscriber) == (
        "demo-shop",
        "c1",
        "A",
        "s1",
    )
    en = json.loads(builder.build(Recipient(1, "s2", "https://p/2", "p", "a"), "B"))
    assert en["title"] == "B wins" and en["url"] == "https://shop.example/spring"
    builder.check_size()


def test_an_oversized_message_is_refused_before_anything_is_sent():
    header = CampaignHeader.parse(
        {
            **demo_campaign("c1"),
            "message": {
                "title": "t",
                "url": "https://x.example/",
                "body": "x" * 1000,
                "localized": {"de": {"body": "ü" * 1000}, "fr": {"body": "é" * 1000}},
            },
        }
    )
    builder = PayloadBuilder(header, KEYS, "https://api.example/v1/pings")
    size, where = builder.worst_case_size()
    assert size > 2000 and "language" in where
    big = CampaignHeader.parse(
        {
            **demo_campaign("c1"),
            "message": {
                "title": "t" * 200,
                "url": "https://x.example/" + "p" * 1000,
                "body": "x" * 1000,
                "icon": "https://x.example/" + "i" * 1000,
                "localized": {"de": {"body": "ü" * 1000}},
            },
        }
    )
    with pytest.raises(PayloadTooLarge, match=f"at most {MAX_PLAINTEXT} bytes"):
        PayloadBuilder(big, KEYS, "https://api.example/v1/pings").check_size()


SUB = {
    "endpoint": "https://fcm.googleapis.com/fcm/send/x",
    "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22},
}
_ID_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x7f").filter(
    lambda c: ord(c) > 0x1F
)


@settings(max_examples=300, deadline=None)
@example(rid="\U0001f600" * 128, variant="A", language="de-AT")
@example(rid='"' * 128, variant="B", language=None)
@example(rid="\\" * 128, variant="A", language="fr")
@example(rid="\u2028" * 128, variant="A", language=None)
@given(
    rid=st.text(_ID_CHARS, min_size=1, max_size=128),
    variant=st.sampled_from(["A", "B"]),
    language=st.sampled_from([None, "de", "de-AT", "fr"]),
)
def test_no_admitted_subscriber_id_makes_a_payload_larger_than_the_admission_check(
    rid, variant, language
):
    """The size check at admission holds for every id the format allows: multi-byte,
    astral, quotes and backslashes that JSON escapes."""
    assert check_recipient(0, {"id": rid, "subscription": SUB}).__class__ is Recipient
    header = CampaignHeader.parse(
        demo_campaign("c1", variants=[{"id": "A", "percent": 50}, {"id": "B", "percent": 50}])
    )
    builder = PayloadBuilder(header, KEYS, "https://api.example/v1/pings")
    worst, _ = builder.worst_case_size()
    recipient = Recipient(0, rid, SUB["endpoint"], "p", "a", language, None)
    assert len(builder.build(recipient, variant)) <= worst


def test_a_declarative_campaign_sends_the_declarative_web_push_shape():
    header = CampaignHeader.parse({**demo_campaign("c1"), "declarative": True})
    builder = PayloadBuilder(header, KEYS, "https://api.example/v1/pings")
    r = Recipient(0, "s1", SUB["endpoint"], "p", "a", "de", "DE")
    payload = json.loads(builder.build(r, "default"))
    assert payload["web_push"] == 8030 and payload["mutable"] is True
    n = payload["notification"]
    assert n["title"] == "Frühlingsangebot: 20% Rabatt" and n["lang"] == "de"
    assert n["navigate"] == "https://shop.example/spring"
    assert n["data"]["ping"]["token"].startswith("v1.") and n["tag"] == n["data"]["nid"]
    # what sw.js reads first: the flat shape, the same fields as a plain campaign's
    plain = json.loads(
        PayloadBuilder(
            CampaignHeader.parse(demo_campaign("c1")), KEYS, "https://api.example/v1/pings"
        ).build(r, "default")
    )
    flat_one = flat(payload)
    for k in ("nid", "campaign", "variant", "title", "body", "url", "icon"):
        assert flat_one[k] == plain[k], k
    assert builder.worst_case_size()[0] >= len(builder.build(r, "default"))


def test_the_token_of_the_widest_ids_fits_the_ping_api_and_verifies():
    from pushpipe.audience.payloads import WIDEST_ID
    from pushpipe.pings.ingest import MAX_TOKEN_CHARS

    claims = tokens.PingClaims(
        "t" * 128, "c" * 128, "v" * 32, tokens.notification_id("c", WIDEST_ID), WIDEST_ID, 2**33
    )
    token = tokens.sign(claims, KEYS)
    assert len(token) <= MAX_TOKEN_CHARS
    assert tokens.verify(token, KEYS, now=0).subscriber == WIDEST_ID
