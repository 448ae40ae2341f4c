"""Every recorded event in ``tests/events/`` through its real handler, in the local
runtime (the function's own environment, process and Powertools decorators): what each
trigger delivers ends in the answer a user of that trigger relies on."""

from __future__ import annotations

import base64
import io
import json
import time
from collections import Counter
from urllib.parse import quote_plus

from pushpipe import topology as t
from pushpipe.pings.counters import CounterStore
from pushpipe.sending.runs import FINAL_STATES, run_id_for
from pushpipe_local.cloud.provision import physical_name
from pushpipe_local.sim.audiences import demo_campaign, recipient, write_audience
from tests.support.events import load_event, sqs_s3_event

from .conftest import SendHarness


def _invoke(send: SendHarness, function: str, event: dict) -> dict:
    assert send.cloud.runtime is not None
    result = send.cloud.runtime.invoke(function, event)
    assert result.ok, result.error
    return result.payload


def test_s3_test_event_is_acknowledged_and_starts_nothing(send):
    before = send.stats()["receptions"]
    assert _invoke(send, "send_batch", load_event("sqs_s3_test_event")) == {"batchItemFailures": []}
    assert send.stats()["receptions"] == before


def test_a_url_encoded_key_is_decoded_and_sent_once(send, campaign_id):
    subs = send.subscribers(20)
    key = f"{t.AUDIENCE_PREFIX}demo-shop/{campaign_id} été: 50% off+more.json"
    buf = io.BytesIO()
    write_audience(buf, demo_campaign(campaign_id), (recipient(s["id"], s) for s in subs))
    etag = send.s3.put_object(Bucket=send.bucket, Key=key, Body=buf.getvalue())["ETag"]
    # the bucket's own notification and this recorded-shape event both arrive: one send
    event = sqs_s3_event(send.bucket, key, etag, size=len(buf.getvalue()))
    assert "%25" in event["Records"][0]["body"]  # the key really is URL-encoded
    assert _invoke(send, "send_batch", event) == {"batchItemFailures": []}
    run_id = run_id_for(send.bucket, key, etag)
    end = time.time() + 120
    while (view := send.store.view(run_id)) is None or view.state not in FINAL_STATES:
        assert time.time() < end, f"run did not finish: {view}"
        time.sleep(0.1)
    assert send.cloud.runtime.wait_idle(30)
    assert view.state == "done" and view.counts["sent"] == 20
    assert send.store.view(run_id_for(send.bucket, quote_plus(key, safe="/"), etag)) is None
    got = Counter(r["subscriber"] for r in send.received() if campaign_id in json.dumps(r))
    assert len(got) == 20 and set(got.values()) == {1}


def test_a_chain_hand_off_for_a_run_nobody_started_sends_nothing(send):
    out = _invoke(send, "send_batch", load_event("send_chain"))
    assert out["status"] == "not-acquired"
    assert send.stats()["receptions"] == 0


def test_the_sweep_schedule_resumes_only_stalled_chains(send):
    assert _invoke(send, "send_batch", load_event("send_sweep")) == {"resumed": []}


def test_an_api_gateway_request_with_a_forged_ping_is_refused(send):
    out = _invoke(send, "ping_handler", load_event("apigw_http_v2"))
    assert out["statusCode"] == 401
    assert json.loads(out["body"])["error"] == "token_invalid"


def test_a_kinesis_batch_is_counted_once_and_a_bad_record_reported(send, campaign_id):
    event = load_event("kinesis_batch")
    good = event["Records"][0]
    line = json.loads(base64.b64decode(good["kinesis"]["data"]))
    line.update(campaign=campaign_id, ts=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()))
    seq = str(int(time.time() * 1000))
    good["kinesis"]["data"] = base64.b64encode(json.dumps(line).encode()).decode()
    good["kinesis"]["sequenceNumber"] = seq
    bad = json.loads(json.dumps(good))
    bad["kinesis"]["data"] = base64.b64encode(b"not a ping").decode()
    bad["kinesis"]["sequenceNumber"] = seq + "1"
    event["Records"].append(bad)
    assert _invoke(send, "aggregate", event) == {
        "batchItemFailures": [{"itemIdentifier": seq + "1"}]
    }
    # the same batch again (Lambda retries it whole): the good ping counts once
    _invoke(send, "aggregate", event)
    store = CounterStore(physical_name("table", "counters"), client=send.cloud.client("dynamodb"))
    delivered = sum(
        int(row.metrics.get("delivered", 0)) for row in store.campaign_rows("acme", campaign_id)
    )
    assert delivered == 1


def test_the_hourly_schedule_writes_each_days_audience_once(send):
    event = load_event("scheduled")
    first = _invoke(send, "scheduler", event)
    again = _invoke(send, "scheduler", event)
    assert set(first) == {"written", "empty", "skipped"}
    assert again["written"] == []
    done = {"/".join(w["key"].removesuffix(".json").split("/")[-2:]) for w in first["written"]}
    assert done | set(first["empty"]) <= set(again["skipped"])
    assert send.cloud.runtime.wait_idle(120)


def test_the_approval_sweep_reports_what_it_did(send):
    assert _invoke(send, "approval", load_event("approval_sweep")) == {
        "expired": 0,
        "released": 0,
    }
