"""Admission against hostile and unlucky files: every file ends admitted or rejected with
a reason a user can act on, never a crash, never a run left admitting or a chain that
the sweeper re-invokes for ever; refused endpoints are counted, never sent to."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pushpipe.audience.format import (
    FORMAT,
    HEADER_MAX_BYTES,
    MAX_RECIPIENT_BYTES,
    iter_recipients,
)
from pushpipe.sending.runs import FINAL_STATES, run_id_for
from pushpipe.sending.service import SendConfig, admit, run_chain
from pushpipe.shared.errors import AudienceRejected
from pushpipe_local.sim.audiences import demo_campaign
from tests.support.sending import AUTH, BUCKET, P256DH, TABLE, drive

KEYS = {"p256dh": P256DH, "auth": AUTH}
CAMPAIGN = json.dumps(demo_campaign("c1"))
_counter: Iterator[int] = iter(range(10**9))


def _recipient(i: int, endpoint: str | None = None) -> str:
    endpoint = endpoint or f"https://fcm.googleapis.com/fcm/send/{i}"
    return json.dumps({"id": f"s{i}", "subscription": {"endpoint": endpoint, "keys": KEYS}})


def _admit(world, body: bytes) -> tuple:
    ports, _, s3 = world
    key = f"audiences/demo-shop/f{next(_counter)}.json"
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    result = admit(BUCKET, key, etag, ports, SendConfig(batch_size=50), 60_000)
    head = ports.runs.run_header(run_id_for(BUCKET, key, etag))
    return result, head


def _file(campaign: str = CAMPAIGN, recipients: str = "[]", before: str = "") -> bytes:
    return (
        f'{{"format": "{FORMAT}", {before}"campaign": {campaign}, "recipients": {recipients}}}'
    ).encode()


REJECTED = [
    pytest.param(b"", "not valid JSON", id="empty"),
    pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
    pytest.param(b'{"format": "pushpipe.audience/v1", "campaign": ', "not valid JSON", id="cut"),
    pytest.param(
        _file('{"id": "c1"' + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"), "deeper", id="deep"
    ),
    pytest.param(
        _file(json.dumps({**demo_campaign("c1"), "pad": "x" * HEADER_MAX_BYTES})),
        "first 64 KiB",
        id="header-over-64KiB",
    ),
    pytest.param(
        _file(CAMPAIGN[:-1] + ', "ttl": 60}'), "'ttl' appears twice", id="duplicate-header-key"
    ),
    pytest.param(
        _file(CAMPAIGN.replace('"title": ', '"title": "a", "title": ', 1)),
        "appears twice",
        id="duplicate-nested-key",
    ),
    pytest.param(_file(before=f'"format": "{FORMAT}", '), "appears twice", id="two-formats"),
    pytest.param(_file(before=f'"campaign": {CAMPAIGN}, '), "appears twice", id="two-campaigns"),
    pytest.param(_file(recipients='{"a": 1}'), "must be an array, got an object", id="rcpt-object"),
    pytest.param(_file(recipients='"all"'), "must be an array, got a string", id="rcpt-string"),
    pytest.param(_file(recipients="null"), "must be an array, got null", id="rcpt-null"),
    pytest.param(_file(recipients="7"), "must be an array, got a number", id="rcpt-number"),
    pytest.param(
        f'{{"format": "{FORMAT}", "campaign": {CAMPAIGN}}}'.encode(),
        "no recipients array",
        id="no-recipients",
    ),
    pytest.param(
        _file(recipients=f'[{_recipient(0)}], "recipients": [{_recipient(1)}]'),
        "second recipients key",
        id="two-recipients-arrays",
    ),
    pytest.param(
        _file(recipients=f'[{_recipient(0)}], "recipient\\u0073": [{_recipient(1)}]'),
        "second recipients key",
        id="second-recipients-key-spelled-with-an-escape",
    ),
    pytest.param(
        _file(recipients=f'[{_recipient(0)}], "recipients": 7'),
        "second recipients key",
        id="second-recipients-not-an-array",
    ),
    pytest.param(
        _file(
            json.dumps(
                {
                    **demo_campaign("c1"),
                    "variants": [{"id": str(i), "percent": 10} for i in range(11)],
                }
            )
        ),
        "invalid",
        id="eleven-variants",
    ),
    pytest.param(
        _file(
            json.dumps(
                {
                    **demo_campaign("c1"),
                    "message": {
                        "title": "t",
                        "url": "https://x.example",
                        "localized": {
                            f"l{chr(97 + i // 26)}{chr(97 + i % 26)}": {"title": "x"}
                            for i in range(51)
                        },
                    },
                }
            )
        ),
        "invalid",
        id="51-languages",
    ),
]


@pytest.mark.parametrize("body, why", REJECTED)
def test_a_hostile_file_is_rejected_with_a_reason_and_sends_nothing(world, body, why):
    ports = world[0]
    result, head = _admit(world, body)
    assert result.status == "rejected", result
    assert why in result.reason, result.reason
    assert head["state"] == "rejected" and head["reason"] == result.reason
    assert ports.invoker.events == [] and ports.sender.sent == []


def test_a_recipients_key_inside_a_recipient_or_the_header_is_not_a_second_array(world):
    nested = json.dumps({"id": "s1", "recipients": "x", "subscription": {"keys": KEYS}})
    nested = nested.replace('"keys"', '"endpoint": "https://fcm.googleapis.com/fcm/send/1", "keys"')
    header = demo_campaign("c1")
    header["message"]["body"] = "recipients: été"  # json.dumps writes \\u00e9
    campaign = json.dumps(header)
    result, _ = _admit(world, _file(campaign, f"[{_recipient(0)}, {nested}]"))
    assert result.status == "started" and result.total == 2, result


def test_only_files_that_could_spell_a_second_key_pay_for_the_structural_pass():
    from pushpipe.audience.format import scan_recipients

    plain = _file(recipients=f"[{_recipient(0)}, {_recipient(1)}]")
    assert not scan_recipients(io.BytesIO(plain)).ambiguous
    nested = _file(recipients=f'[{_recipient(0)}, {{"recipients": 1}}]')
    assert scan_recipients(io.BytesIO(nested)).ambiguous


def test_one_huge_recipient_rejects_the_file_before_the_parser_holds_it_whole(world):
    huge = json.dumps({"id": "s1", "note": "x" * 1_000_000, "subscription": {"keys": KEYS}})
    result, head = _admit(world, _file(recipients=f"[{_recipient(0)}, {huge}]"))
    assert result.status == "rejected" and head["state"] == "rejected"
    assert "recipient #1 (with what precedes it) is larger than 128 KiB" in result.reason
    assert world[0].sender.sent == []


class _Lazy(io.RawIOBase):
    """A file of one recipient whose id is ``size`` bytes long, produced as it is read."""

    def __init__(self, size: int) -> None:
        self.parts = iter(
            [_file(recipients="[")[:-1] + b'{"id": "', *([b"y" * 65536] * (size // 65536))]
        )

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return b"" if n == 0 else next(self.parts, b"")


def test_a_recipient_of_any_size_costs_at_most_its_limit_in_memory():
    tracemalloc.start()
    with pytest.raises(AudienceRejected, match="larger than 128 KiB"):
        list(iter_recipients(_Lazy(200 * 1024 * 1024)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 * MAX_RECIPIENT_BYTES, peak


def test_text_that_is_not_unicode_is_rejected_not_crashed_on_later():
    # ijson reads a lone "\ud800" escape as "?"; a header from anywhere else is checked
    from pushpipe.audience.format import CampaignHeader
    from pushpipe.shared.errors import AudienceRejected

    bad = {**demo_campaign("c1"), "message": {"title": "a\ud800", "url": "https://x.example"}}
    with pytest.raises(AudienceRejected, match="not Unicode"):
        CampaignHeader.parse(bad)


def test_an_empty_recipients_array_is_a_finished_send_of_nobody(world):
    ports = world[0]
    result, _ = _admit(world, _file(recipients="[]"))
    assert result.status == "started" and result.total == 0
    drive(ports, SendConfig(batch_size=50))
    assert ports.sender.sent == []


REFUSED = [
    "http://fcm.googleapis.com/fcm/send/1",
    "https://127.0.0.1/push",
    "https://localhost/push",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.1/push",
    "https://2130706433/push",
    "https://[::ffff:127.0.0.1]/push",
    "http://127.0.0.1:9001/2018-06-01/runtime/invocation/next",
    "https://push.attacker.example/x",
]


def test_refused_endpoints_are_counted_with_their_reason_and_never_sent_to(world):
    ports = world[0]
    good = [_recipient(i) for i in range(5)]
    bad = [_recipient(100 + i, e) for i, e in enumerate(REFUSED)]
    result, _ = _admit(world, _file(recipients="[" + ", ".join(good + bad) + "]"))
    assert result.status == "started" and result.total == 5 + len(REFUSED)
    drive(ports, SendConfig(batch_size=50))
    assert sorted(ports.sender.sent) == [f"s{i}" for i in range(5)]
    view = ports.runs.view(result.run_id)
    assert view.state == "done"
    assert view.counts["sent"] == 5 and view.counts["rejected"] == len(REFUSED)


def test_a_chain_whose_run_has_no_admitted_header_fails_once_and_for_all(world):
    ports = world[0]
    result, _ = _admit(
        world, _file(recipients="[" + ", ".join(_recipient(i) for i in range(3)) + "]")
    )
    ports.runs.client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"RUN#{result.run_id}"}, "sk": {"S": "HEADER"}},
        UpdateExpression="REMOVE #h",
        ExpressionAttributeNames={"#h": "header"},
    )
    from pushpipe.sending import service as sending

    sending.forget_streams()
    sending.streams._HEADERS.clear()
    event = ports.invoker.events.pop(0)
    out = run_chain(
        sending.Cursor.from_event(event["cursor"]), ports, SendConfig(), lambda: 900_000
    )
    assert out.status == "aborted" and "no admitted header" in out.detail
    view = ports.runs.view(result.run_id)
    assert view.state == "failed" and "no admitted header" in view.reason
    assert ports.runs.stalled_chains(0) == []  # the sweeper leaves it alone from now on
    assert ports.sender.sent == []


# --- property-based: whatever the bytes, admission ends in a defined state -------------
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_recipient_like = (
    st.fixed_dictionaries(
        {
            "id": st.text(min_size=0, max_size=140),
            "subscription": st.fixed_dictionaries(
                {
                    "endpoint": st.sampled_from([*REFUSED, "https://fcm.googleapis.com/x", ""])
                    | st.text(max_size=30),
                    "keys": st.just(KEYS) | _json,
                }
            )
            | _json,
        }
    )
    | _json
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    campaign=st.just(demo_campaign("c1"))
    | st.dictionaries(st.text(max_size=10), _json, max_size=5)
    | _json,
    recipients=st.lists(_recipient_like, max_size=8) | _json,
    extra=st.dictionaries(st.sampled_from(["format", "campaign", "x"]), _json, max_size=2),
)
def test_any_document_ends_admitted_or_rejected(world, campaign, recipients, extra):
    ports = world[0]
    doc = {"format": FORMAT, **extra, "campaign": campaign, "recipients": recipients}
    result, head = _admit(world, json.dumps(doc).encode())
    assert result.status in ("started", "rejected")
    if result.status == "rejected":
        assert result.reason and head["state"] == "rejected"
        return
    drive(ports, SendConfig(batch_size=50))
    view = ports.runs.view(result.run_id)
    assert view.state in FINAL_STATES
    assert (
        view.counts.get("sent", 0)
        + view.counts.get("rejected", 0)
        + view.counts.get("control", 0)
        + view.counts.get("skipped", 0)
        == view.total
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_bytes_end_rejected_with_a_reason(world, body):
    result, head = _admit(world, body)
    assert result.status == "rejected" and result.reason
    assert head["state"] == "rejected"


def test_an_admission_that_died_and_whose_retries_are_over_is_failed_by_the_sweeper(world):
    from pushpipe.sending.service import sweep

    ports, clock, _ = world
    run_id = "deadbeefdeadbeef0000"
    assert ports.runs.claim_run(
        run_id, BUCKET, "audiences/demo-shop/lost.json", "e", lease_ms=900_000
    )
    config = SendConfig()
    clock.now += 900 + 60  # the lease lapsed, but SQS may still redeliver: leave it
    assert sweep(ports, config) == []
    assert ports.runs.run_header(run_id)["state"] == "admitting"
    clock.now += config.admission_stale_ms / 1000  # every redelivery is over
    sweep(ports, config)
    head = ports.runs.run_header(run_id)
    assert head["state"] == "failed" and "admission did not finish" in head["reason"]
    assert ports.runs.stale_admissions(0) == []  # once
    clock.now += 3600
    assert not ports.runs.claim_run(run_id, BUCKET, "audiences/demo-shop/lost.json", "e", 900_000)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("audiences/acme/spring.json", "under tenant 'acme'"),  # header: demo-shop
        ("audiences/spring.json", "not under a tenant's prefix"),
        ("audiences/demo-shop", "not under a tenant's prefix"),
        ("audiences/../demo-shop/x.json", "not under a tenant's prefix"),
    ],
)
def test_a_file_is_sent_only_from_its_own_tenants_prefix(world, key, says):
    """A file's tenant is where it lies: a tenant cannot send as another by naming it in
    the header, and the rejected run is shown to the prefix's owner, not to the tenant
    the file claims to be."""
    ports, _, s3 = world
    body = _file(recipients="[" + _recipient(1) + "]")
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    result = admit(BUCKET, key, etag, ports, SendConfig(batch_size=50), 60_000)
    assert result.status == "rejected" and says in result.reason, result
    head = ports.runs.run_header(run_id_for(BUCKET, key, etag))
    assert head.get("tenant") != "demo-shop"
    assert ports.invoker.events == [] and ports.sender.sent == []
