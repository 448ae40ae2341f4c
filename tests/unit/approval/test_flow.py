"""The approval flow against moto (in-process): request → count → e-mails → links →
approve / reject → release exactly once; refusals change nothing."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from pushpipe.approval.decisions import inspect, perform
from pushpipe.approval.links import LinkClaims, new_claims, sign_link
from pushpipe.approval.models import (
    Action,
    AlreadyDecided,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    NotAnApprover,
    NoTestDevice,
    RequestClosed,
    RequestIn,
    RequestInvalid,
    SelfApproval,
    State,
)
from pushpipe.approval.service import (
    audience_key_for,
    prepare,
    release,
    submit,
    sweep,
)
from pushpipe.subscriptions.models import Subscription, SubscriptionKeys
from tests.support.approval import (
    APPROVERS,
    BUCKET,
    KEYS,
    make_env,
    read_object,
    real_keys,
    token_of,
)

REQUESTER = "mallory.marketing@example.com"


@pytest.fixture
def env():
    with mock_aws():
        yield make_env()


def _request(**over) -> RequestIn:
    body = {
        "tenant": "acme",
        "requester": REQUESTER,
        "title": "Flash sale",
        "body": "Everything 30% off until midnight",
        "url": "https://shop.example/flash",
        "audience": {"kind": "file", "key": "drafts/acme/flash.json"},
        "variants": [
            {"id": "a", "percent": 45},
            {"id": "b", "percent": 45, "title": "Last hours: 30% off"},
        ],
        "control_percent": 10,
        **over,
    }
    return RequestIn.model_validate(body)


def _submitted(env, n: int = 120, malformed: int = 0, **over):
    env.put_audience("drafts/acme/flash.json", n, malformed)
    req = submit(_request(**over), env.ports, env.config)
    [event] = env.invoker.take("prepare")
    assert prepare(event["request"], env.ports, env.config) == "mailed"
    return req


def _links(env, approver: str) -> dict[str, str]:
    [mail] = env.mails_to(approver)
    return mail["links"]


# --- the request -----------------------------------------------------------------------
def test_a_request_is_counted_by_streaming_and_mailed_to_approvers_and_requester(env):
    req = _submitted(env, n=120, malformed=3)
    stored = env.ports.store.get(req.id)
    assert stored.state == State.PENDING and stored.audience_total == 123
    assert stored.audience_malformed == 3
    # every approver (each with their own links) and the requester got one e-mail
    for approver in APPROVERS:
        [mail] = env.mails_to(approver)
        assert set(mail["links"]) == {"approve", "reject", "test", "device"}
        assert "120" in mail["subject"] and "120" in mail["text"]
        assert "Approve" in mail["html"] and "Send test push to me" in mail["html"]
    [mine] = env.mails_to(REQUESTER)
    assert mine["links"] == {}, "the requester's copy has no decision buttons"
    assert "waits for 1 approval" in mine["text"]
    # the exact JSON payload per variant, with the variant's override
    text = _links and env.mails_to(APPROVERS[0])[0]["text"]
    assert '"title": "Last hours: 30% off"' in text and '"variant": "b"' in text
    assert '"url": "https://shop.example/flash"' in text and "control" in text
    # approvers' links are personal
    assert _links(env, APPROVERS[0])["approve"] != _links(env, APPROVERS[1])["approve"]


def test_another_tenants_draft_gets_the_answer_a_missing_one_gets(env):
    """A request may name only its own tenant's drafts, and the refusal of another
    tenant's existing draft is word for word that of a draft that does not exist: it
    tells nothing of which of their files exist or how big they are."""
    env.put_audience("drafts/globex/secret.json", 5000)
    env.put_audience("flash.json", 5)  # outside every tenant's drafts

    def refusal(key: str) -> str:
        with pytest.raises(RequestInvalid) as err:
            submit(_request(audience={"kind": "file", "key": key}), env.ports, env.config)
        return str(err.value).replace(key, "<key>")

    assert refusal("drafts/globex/secret.json") == refusal("drafts/globex/nothing.json")
    assert refusal("drafts/globex/secret.json") == refusal("drafts/acme/nothing.json")
    assert "drafts/acme/" in refusal("flash.json")
    assert env.invoker.events == [] and env.mails() == []


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"variants": [{"id": "a", "percent": 60}], "control_percent": 10}, "add up to 100"),
        (
            {
                "variants": [{"id": "a", "percent": 50}, {"id": "a", "percent": 50}],
                "control_percent": 0,
            },
            "unique",
        ),
        ({"audience": {"kind": "file", "key": "audiences/acme/now.json"}}, "no draft"),
        ({"audience": {"kind": "file", "key": "drafts/acme/missing.json"}}, "no draft"),
    ],
)
def test_invalid_requests_are_refused_before_anyone_is_asked(env, over, message):
    env.put_audience("drafts/acme/flash.json", 5)
    with pytest.raises(RequestInvalid) as err:
        submit(_request(**over), env.ports, env.config)
    assert message in str(err.value)
    assert env.invoker.events == [] and env.mails() == []


def test_an_oversized_payload_is_refused_with_its_size(env):
    env.put_audience("drafts/acme/flash.json", 5)
    big = {"title": "T" * 200, "body": "B" * 1000, "url": "https://x.example/" + "u" * 1000}
    big_variants = [
        {"id": "a", "percent": 50, "body": "é" * 1000},
        {"id": "b", "percent": 50, "body": "€" * 1000},
    ]
    with pytest.raises(RequestInvalid) as err:
        submit(_request(**big, variants=big_variants, control_percent=0), env.ports, env.config)
    assert "3993 bytes" in str(err.value) and "variant 'b'" in str(err.value)


def test_a_request_needs_enough_approvers_other_than_the_requester(env):
    env.put_audience("drafts/acme/flash.json", 5)
    env.config.approvers = (REQUESTER, "alice@example.com")
    env.config.approvals_required = 2
    with pytest.raises(RequestInvalid, match="only 1 approver"):
        submit(_request(), env.ports, env.config)


def test_a_campaign_id_is_never_reused(env):
    env.put_audience("drafts/acme/flash.json", 5)
    submit(_request(campaign="spring-1"), env.ports, env.config)
    with pytest.raises(RequestInvalid, match="already used"):
        submit(_request(campaign="spring-1"), env.ports, env.config)


def test_an_audience_file_that_is_not_one_is_refused_and_the_requester_told(env):
    env.s3.put_object(Bucket=BUCKET, Key="drafts/acme/flash.json", Body=b'{"campaign": [1,2')
    req = submit(_request(), env.ports, env.config)
    assert prepare(req.id, env.ports, env.config) == "refused"
    stored = env.ports.store.get(req.id)
    assert stored.state == State.REJECTED and "not usable" in stored.reason
    [mail] = env.mails_to(REQUESTER)
    assert "refused" in mail["subject"]
    assert all(not env.mails_to(a) for a in APPROVERS)


# --- links -------------------------------------------------------------------------------
def test_approve_releases_the_audience_exactly_once(env):
    req = _submitted(env, n=120, malformed=2)
    link = _links(env, "alice@example.com")["approve"]
    # GET (a mail scanner prefetching the link) changes nothing
    inspect(token_of(link), env.ports, env.config)
    inspect(token_of(link), env.ports, env.config)
    assert env.ports.store.get(req.id).state == State.PENDING

    result = perform(token_of(link), env.ports, env.config)
    assert result.title == "Approved"
    [event] = env.invoker.take("release")
    assert release(event["request"], env.ports, env.config) == "released"
    # a second release (async retry, sweeper) writes nothing new
    assert release(event["request"], env.ports, env.config).startswith("not-approved")
    key = audience_key_for(env.config, req)
    doc = read_object(env.s3, key)
    assert doc["campaign"]["id"] == req.campaign
    assert doc["campaign"]["variants"][1]["message"] == {"title": "Last hours: 30% off"}
    assert doc["campaign"]["control_percent"] == 10
    assert len(doc["recipients"]) == 120, "malformed entries are left out"
    listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="audiences/")["KeyCount"]
    assert listed == 1
    stored = env.ports.store.get(req.id)
    assert stored.state == State.SENT and stored.released == 120
    assert [d.action for d in stored.decisions] == [
        "request",
        "count",
        "approve",
        "release",
    ]
    assert stored.decisions[2].who == "alice@example.com"
    assert any("approved and sent" in m["subject"] for m in env.mails_to(REQUESTER))


def test_double_approve_and_a_second_approver_after_approval_send_once(env):
    req = _submitted(env)
    link = _links(env, "alice@example.com")["approve"]
    perform(token_of(link), env.ports, env.config)
    with pytest.raises(LinkUsed):
        perform(token_of(link), env.ports, env.config)
    with pytest.raises(RequestClosed, match="already been approved"):
        perform(token_of(_links(env, "bob@example.com")["approve"]), env.ports, env.config)
    assert len(env.invoker.take("release")) == 1
    assert env.ports.store.get(req.id).approvals == 1


def test_reject_never_sends_and_tells_the_requester_why(env):
    req = _submitted(env)
    perform(
        token_of(_links(env, "bob@example.com")["reject"]),
        env.ports,
        env.config,
        reason="Wrong   discount,\n it is 20%",
    )
    stored = env.ports.store.get(req.id)
    assert stored.state == State.REJECTED and stored.reason == "Wrong discount, it is 20%"
    assert stored.decisions[-1].who == "bob@example.com"
    with pytest.raises(RequestClosed, match="rejected"):
        perform(token_of(_links(env, "alice@example.com")["approve"]), env.ports, env.config)
    assert env.invoker.take("release") == []
    # even a stray release event writes nothing for a rejected request
    assert release(req.id, env.ports, env.config).startswith("not-approved")
    assert env.s3.list_objects_v2(Bucket=BUCKET, Prefix="audiences/")["KeyCount"] == 0
    [mail] = [m for m in env.mails_to(REQUESTER) if "rejected" in m["subject"]]
    assert "bob@example.com" in mail["text"] and "it is 20%" in mail["text"]


def test_forged_links_change_nothing(env):
    req = _submitted(env)
    good = token_of(_links(env, "alice@example.com")["approve"])
    head, kid, body, mac = good.split(".")
    # claims rewritten to another approver, signature kept
    claims = json.loads(__import__("base64").urlsafe_b64decode(body + "=="))
    claims["approver"] = "bob@example.com"
    forged_body = (
        __import__("base64").urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    )
    for token in (
        f"{head}.{kid}.{forged_body}.{mac}",
        f"{head}.{kid}.{body}.{mac[:-2]}AA",
        "a1.k9." + body + "." + mac,
        good.replace("a1.", "v1.", 1),
        "",
    ):
        with pytest.raises(LinkInvalid):
            perform(token, env.ports, env.config)
    # a link signed with another key (as an attacker would) is refused too
    from pushpipe.shared.tokens import SigningKeys

    other = SigningKeys.from_secret({"active": "k1", "keys": {"k1": "Z" * 43}})
    claims_ok = LinkClaims(req.id, "alice@example.com", "approve", int(env.clock.now) + 60, "x")
    with pytest.raises(LinkInvalid):
        perform(sign_link(claims_ok, other), env.ports, env.config)
    assert env.ports.store.get(req.id).state == State.PENDING
    assert env.ports.store.get(req.id).approvals == 0


def test_a_link_opened_as_another_action_is_refused(env):
    _submitted(env)
    from pushpipe.approval.decisions import perform as do

    with pytest.raises(LinkInvalid, match="approve"):
        do(
            token_of(_links(env, "alice@example.com")["approve"]),
            env.ports,
            env.config,
            expect=Action.REJECT,
        )


def test_expired_links_and_requests_change_nothing(env):
    req = _submitted(env)
    link = token_of(_links(env, "alice@example.com")["approve"])
    env.clock.now = req.expires_at + 1
    with pytest.raises(LinkExpired):
        perform(link, env.ports, env.config)
    # a fresh link for an expired request: the request is expired on the spot
    fresh = sign_link(
        new_claims(req.id, "bob@example.com", Action.APPROVE, req.expires_at + 3600), KEYS
    )
    with pytest.raises(LinkExpired, match="request has expired"):
        perform(fresh, env.ports, env.config)
    stored = env.ports.store.get(req.id)
    assert stored.state == State.EXPIRED and stored.approvals == 0
    assert env.invoker.take("release") == []
    assert any("expired" in m["subject"] for m in env.mails_to(REQUESTER))


def test_the_sweeper_expires_undecided_requests(env):
    req = _submitted(env)
    assert sweep(env.ports, env.config) == {"expired": 0, "released": 0}
    env.clock.now = req.expires_at + 60
    assert sweep(env.ports, env.config) == {"expired": 1, "released": 0}
    assert env.ports.store.get(req.id).state == State.EXPIRED
    assert sweep(env.ports, env.config) == {"expired": 0, "released": 0}


def test_the_sweeper_finishes_an_interrupted_release_once(env):
    req = _submitted(env)
    perform(token_of(_links(env, "alice@example.com")["approve"]), env.ports, env.config)
    env.invoker.take("release")  # the async release never ran (say, its invocation died)
    assert sweep(env.ports, env.config)["released"] == 0, "too early: it may still run"
    env.clock.now += env.config.release_grace_s + 1
    assert sweep(env.ports, env.config)["released"] == 1
    assert env.ports.store.get(req.id).state == State.SENT
    assert sweep(env.ports, env.config)["released"] == 0


def test_a_non_approver_link_is_refused(env):
    req = _submitted(env)
    stranger = sign_link(
        new_claims(req.id, "eve@example.com", Action.APPROVE, req.expires_at), KEYS
    )
    with pytest.raises(NotAnApprover):
        perform(stranger, env.ports, env.config)
    # an approver removed from the configuration loses their links at once
    link = token_of(_links(env, "carol@example.com")["approve"])
    env.config.approvers = ("alice@example.com", "bob@example.com")
    with pytest.raises(NotAnApprover):
        perform(link, env.ports, env.config)
    assert env.ports.store.get(req.id).approvals == 0


def test_the_requester_cannot_approve_their_own_request(env):
    env.config.approvers = (*APPROVERS, REQUESTER)
    req = _submitted(env)
    assert "approve" not in (env.mails_to(REQUESTER)[0]["links"])
    own = sign_link(new_claims(req.id, REQUESTER, Action.APPROVE, req.expires_at), KEYS)
    with pytest.raises(SelfApproval):
        perform(own, env.ports, env.config)
    assert env.ports.store.get(req.id).approvals == 0


def test_n_of_m_approvals(env):
    env.config.approvals_required = 2
    req = _submitted(env)
    first = perform(token_of(_links(env, "alice@example.com")["approve"]), env.ports, env.config)
    assert first.title == "Approval recorded" and "1 of 2" in first.message
    assert env.invoker.take("release") == []
    # alice again, with a second link signed for her: counts once
    again = sign_link(new_claims(req.id, "alice@example.com", Action.APPROVE, req.expires_at), KEYS)
    with pytest.raises(AlreadyDecided):
        perform(again, env.ports, env.config)
    second = perform(token_of(_links(env, "bob@example.com")["approve"]), env.ports, env.config)
    assert second.title == "Approved"
    assert len(env.invoker.take("release")) == 1
    assert env.ports.store.get(req.id).state == State.APPROVED


# --- test pushes and devices -------------------------------------------------------------
def test_test_push_goes_to_the_approvers_registered_devices_only(env):
    req = _submitted(env)
    test_link = token_of(_links(env, "alice@example.com")["test"])
    with pytest.raises(NoTestDevice):
        perform(test_link, env.ports, env.config)
    device_link = token_of(_links(env, "alice@example.com")["device"])
    sub = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/alice-laptop",
        "keys": {"p256dh": "B" * 87, "auth": "A" * 22},
    }
    perform(device_link, env.ports, env.config, subscription=sub)
    with pytest.raises(LinkUsed):
        perform(device_link, env.ports, env.config, subscription=sub)
    result = perform(test_link, env.ports, env.config)  # not used up by the refusal above
    assert result.title == "Test push sent"
    sent = env.sender.messages
    assert [m.endpoint for m in sent] == [sub["endpoint"]] * 2  # one per variant
    payloads = [json.loads(m.payload) for m in sent]
    assert {p["variant"] for p in payloads} == {"a", "b"}
    assert all(p["test"] is True and "ping" not in p for p in payloads), "tests count nothing"
    assert payloads[1]["title"] == "Last hours: 30% off"
    stored = env.ports.store.get(req.id)
    assert stored.state == State.PENDING
    assert [d.action for d in stored.decisions][-2:] == ["device", "test"]


# --- segments ----------------------------------------------------------------------------
def test_a_segment_audience_is_counted_and_released_from_the_subscriptions(env):
    store = env.ports.subscriptions
    keys = real_keys()
    for i in range(30):
        store.put(
            Subscription(
                id=f"s{i}",
                tenant="acme",
                endpoint=f"https://fcm.googleapis.com/fcm/send/s{i}",
                keys=SubscriptionKeys(**keys),
                topics=["shoes"] if i % 3 == 0 else ["hats"],
                country="DE" if i % 2 else "FR",
                muted=i == 3,
            )
        )
    segment = {"kind": "segment", "topics": ["shoes"], "countries": ["DE", "FR"]}
    req = submit(_request(audience=segment), env.ports, env.config)
    prepare(req.id, env.ports, env.config)
    assert env.ports.store.get(req.id).audience_total == 9  # 10 shoe subscribers, one muted
    perform(token_of(_links(env, "carol@example.com")["approve"]), env.ports, env.config)
    release(req.id, env.ports, env.config)
    doc = read_object(env.s3, audience_key_for(env.config, req))
    assert sorted(r["id"] for r in doc["recipients"]) == sorted(
        f"s{i}" for i in range(30) if i % 3 == 0 and i != 3
    )


def test_release_streams_big_audiences_in_parts_and_writes_once(env, monkeypatch):
    # S3 wants parts of 5 MiB; smaller ones here keep the test small
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 16 * 1024)
    env.ports.writer.part_bytes = 64 * 1024
    req = _submitted(env, n=3000)
    perform(token_of(_links(env, "alice@example.com")["approve"]), env.ports, env.config)
    assert release(req.id, env.ports, env.config) == "released"
    doc = read_object(env.s3, audience_key_for(env.config, req))
    assert len(doc["recipients"]) == 3000
    # a racing second writer finds the object there and creates nothing
    again = env.ports.writer.write_once(BUCKET, audience_key_for(env.config, req), iter([b"{}"]))
    assert again.created is False
    assert read_object(env.s3, audience_key_for(env.config, req))["recipients"]


def test_an_audience_file_replaced_after_counting_fails_the_release_and_sends_nothing(env):
    req = _submitted(env, n=50)
    perform(token_of(_links(env, "alice@example.com")["approve"]), env.ports, env.config)
    env.put_audience("drafts/acme/flash.json", 5000, prefix="other")
    assert release(req.id, env.ports, env.config) == "failed"
    stored = env.ports.store.get(req.id)
    assert stored.state == State.FAILED and "changed" in stored.reason
    assert env.s3.list_objects_v2(Bucket=BUCKET, Prefix="audiences/")["KeyCount"] == 0
