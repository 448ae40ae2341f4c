"""The audience format: header validation, recipient checks, streaming."""

from __future__ import annotations

import io
import json

import pytest

from pushpipe.audience import format as audience
from pushpipe.audience.format import CampaignHeader, Malformed, Recipient
from pushpipe.shared.errors import AudienceRejected
from pushpipe_local.sim.audiences import audience_bytes, demo_campaign

P256DH = "B" + "A" * 86
AUTH = "A" * 22


def rec(i: int, **kw) -> dict:
    sub = {
        "endpoint": f"https://fcm.googleapis.com/fcm/send/{i}",
        "keys": {"p256dh": P256DH, "auth": AUTH},
    }
    return {"id": f"sub-{i}", "subscription": sub, **kw}


def test_the_documented_example_validates_against_the_schema():
    from aws_lambda_powertools.utilities.validation import validate

    doc = json.loads(audience_bytes(demo_campaign("c1"), [rec(1, language="de", country="DE")]))
    validate(event=doc, schema=audience.schema())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"message": {"url": "https://x"}}, "title"),
        ({"id": ""}, "campaign.id"),
        ({"urgency": "urgent"}, "urgency"),
        ({"ttl": 30 * 24 * 3600}, "ttl"),
        ({"topic": "has spaces"}, "topic"),
        ({"variants": [{"id": "A", "percent": 60}, {"id": "B", "percent": 30}]}, "add up to 100"),
        ({"variants": [{"id": "A", "percent": 50}, {"id": "A", "percent": 50}]}, "unique"),
        ({"control_percent": 10}, "control_percent needs variants"),
        ({"variants": [{"id": "control", "percent": 100}]}, "campaign"),
        ({"surprise": 1}, "campaign must not contain {'surprise'}"),
    ],
)
def test_an_invalid_header_is_rejected_with_the_reason(change, reason):
    raw = {**demo_campaign("c1"), **change}
    with pytest.raises(AudienceRejected) as err:
        CampaignHeader.parse(raw)
    assert reason in str(err.value)
    assert str(err.value).startswith("campaign header is invalid")


def test_variants_and_control_that_add_up_are_accepted():
    h = CampaignHeader.parse(
        {
            **demo_campaign("c1"),
            "variants": [
                {"id": "A", "percent": 45},
                {"id": "B", "percent": 45, "message": {"title": "B title"}},
            ],
            "control_percent": 10,
        }
    )
    assert [v.id for v in h.variants] == ["A", "B"]
    assert h.control_percent == 10


def test_read_header_stops_at_the_recipients_and_needs_them_after_it():
    data = audience_bytes(demo_campaign("c1"), (rec(i) for i in range(3)))
    assert audience.read_header(io.BytesIO(data)).id == "c1"
    backwards = json.dumps({"recipients": [], "campaign": demo_campaign("c1")}).encode()
    with pytest.raises(AudienceRejected, match="must come before recipients"):
        audience.read_header(io.BytesIO(backwards))
    with pytest.raises(AudienceRejected, match="not valid JSON"):
        audience.read_header(io.BytesIO(b"\x89PNG"))
    with pytest.raises(AudienceRejected, match="must be a JSON object"):
        audience.read_header(io.BytesIO(b"[1, 2]"))
    with pytest.raises(AudienceRejected, match="format must be"):
        audience.read_header(io.BytesIO(b'{"format": "other/v9", "campaign": {}}'))


def test_malformed_recipients_are_reported_with_their_reason_and_index():
    good = rec(0)
    cases = [
        good,
        "not an object",
        {"subscription": good["subscription"]},
        {"id": "x", "subscription": {"endpoint": "ftp://x", "keys": good["subscription"]["keys"]}},
        {
            "id": "x",
            "subscription": {
                "endpoint": "https://fcm.googleapis.com/x",
                "keys": {"p256dh": "A" * 87, "auth": AUTH},
            },
        },
        {
            "id": "x",
            "subscription": {
                "endpoint": "https://fcm.googleapis.com/x",
                "keys": {"p256dh": P256DH, "auth": "short"},
            },
        },
        rec(6, country="Germany"),
        rec(7, language="EN_us"),
    ]
    long_tag = audience.check_recipient(9, rec(9, language="en" + "-abcdefgh" * 10))
    assert isinstance(long_tag, Malformed) and "BCP 47" in long_tag.reason
    checked = [audience.check_recipient(i, c) for i, c in enumerate(cases)]
    assert isinstance(checked[0], Recipient)
    reasons = [c.reason for c in checked[1:]]
    assert all(isinstance(c, Malformed) for c in checked[1:])
    assert "not an object" in reasons[0]
    assert "id is missing" in reasons[1]
    assert "must be https" in reasons[2]
    assert "p256dh" in reasons[3]
    assert "auth" in reasons[4]
    assert "country" in reasons[5]
    assert "language" in reasons[6]
    assert [c.index for c in checked] == list(range(8))


def test_recipients_stream_per_chain_from_a_position():
    data = audience_bytes(demo_campaign("c1"), (rec(i) for i in range(10)))
    chain1 = [r.index for r in audience.iter_recipients(io.BytesIO(data), chain=1, chains=3)]
    assert chain1 == [1, 4, 7]
    resumed = [r.index for r in audience.iter_recipients(io.BytesIO(data), 4, chain=1, chains=3)]
    assert resumed == [4, 7]
    every = [
        r.index
        for c in range(3)
        for r in audience.iter_recipients(io.BytesIO(data), chain=c, chains=3)
    ]
    assert sorted(every) == list(range(10))


def test_scan_counts_everything_and_rejects_a_truncated_document():
    data = audience_bytes(demo_campaign("c1"), [rec(0), {"id": "bad"}, rec(2)])
    stats = audience.scan_recipients(io.BytesIO(data))
    assert (stats.total, stats.malformed) == (3, 1)
    assert stats.examples == ["#1 bad: subscription is missing"]
    with pytest.raises(AudienceRejected, match="not valid JSON"):
        audience.scan_recipients(io.BytesIO(data[:-5]))


def test_the_readme_example_is_a_valid_audience_file():
    from pathlib import Path

    from aws_lambda_powertools.utilities.validation import validate

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = readme.split("```json", 1)[1].split("```", 1)[0]
    doc = json.loads(block)
    validate(event=doc, schema=audience.schema())
    header = audience.read_header(io.BytesIO(block.encode()))
    assert [v.id for v in header.variants] == ["A", "B"]
    assert all(
        isinstance(r, Recipient) for r in audience.iter_recipients(io.BytesIO(block.encode()))
    )
