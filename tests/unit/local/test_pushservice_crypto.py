"""The local push service's crypto and push decision, without HTTP.

RFC 8291 Appendix A decrypts through the same ``decrypt_push`` the service uses; VAPID
tokens are built by hand so every defect an application server can make is covered.
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from multidict import CIMultiDict
from py_vapid import Vapid
from pywebpush import WebPusher

from pushpipe_local.pushservice import (
    MAX_BODY_OCTETS,
    DecryptionError,
    FaultRule,
    PushService,
    Subscriber,
    VapidError,
    VapidVerifier,
    b64url_decode,
    b64url_encode,
    decrypt_push,
    describe_payload,
    generate_subscribers,
    verify_vapid,
)

# RFC 8291 Appendix A (published test data, not credentials).
RFC8291_UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
RFC8291_UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
RFC8291_AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
RFC8291_BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml"
    "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT"
    "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
)
RFC8291_PLAINTEXT = b"When I grow up, I want to be a watermelon"

ORIGIN = "http://127.0.0.1:8999"
NOW = 1_800_000_000.0


def _rfc_receiver() -> Subscriber:
    return Subscriber.from_record(
        {
            "id": "rfc8291",
            "private_key": RFC8291_UA_PRIVATE,
            "p256dh": RFC8291_UA_PUBLIC,
            "auth": RFC8291_AUTH,
        }
    )


# ---------------------------------------------------------------- decryption


def test_rfc8291_appendix_a_message_decrypts_to_the_watermelon() -> None:
    receiver = _rfc_receiver()

    plaintext = decrypt_push(
        b64url_decode(RFC8291_BODY), receiver.private_key, receiver.auth_secret
    )

    assert plaintext == RFC8291_PLAINTEXT
    assert receiver.p256dh == RFC8291_UA_PUBLIC  # the private key yields the RFC's public key


def test_tampered_or_wrongly_keyed_bodies_are_refused() -> None:
    receiver = _rfc_receiver()
    body = bytearray(b64url_decode(RFC8291_BODY))
    body[-1] ^= 0x40

    with pytest.raises(DecryptionError, match="decryption failed"):
        decrypt_push(bytes(body), receiver.private_key, receiver.auth_secret)
    with pytest.raises(DecryptionError):
        decrypt_push(b64url_decode(RFC8291_BODY), receiver.private_key, b"\0" * 16)
    with pytest.raises(DecryptionError):
        decrypt_push(b"short", receiver.private_key, receiver.auth_secret)


def test_what_pywebpush_encrypts_for_a_generated_subscriber_decrypts() -> None:
    (sub,) = generate_subscribers(1)
    body = WebPusher(sub.subscription(ORIGIN)).encode(b'{"nid": "n-1"}')["body"]

    assert decrypt_push(body, sub.private_key, sub.auth_secret) == b'{"nid": "n-1"}'


def test_generated_subscribers_look_like_browser_subscriptions() -> None:
    subs = generate_subscribers(3)
    info = subs[0].subscription(ORIGIN + "/")

    assert len({s.id for s in subs}) == 3
    assert info["endpoint"] == f"{ORIGIN}/wpush/v2/{subs[0].id}"
    point = b64url_decode(info["keys"]["p256dh"])
    assert len(point) == 65 and point[0] == 4
    assert len(b64url_decode(info["keys"]["auth"])) == 16


def test_subscriber_records_round_trip_and_reject_mismatched_keys() -> None:
    sub, other = generate_subscribers(2)

    restored = Subscriber.from_record(json.loads(json.dumps(sub.to_record())))
    assert restored.public_key == sub.public_key and restored.auth_secret == sub.auth_secret

    forged = sub.to_record() | {"p256dh": other.p256dh}
    with pytest.raises(ValueError, match="does not match"):
        Subscriber.from_record(forged)
    with pytest.raises(ValueError, match="auth secret"):
        Subscriber.from_record(sub.to_record() | {"auth": b64url_encode(b"short")})


# ---------------------------------------------------------------- VAPID


def _jwt(signer: ec.EllipticCurvePrivateKey, claims: dict, alg: str = "ES256") -> str:
    header = b64url_encode(json.dumps({"typ": "JWT", "alg": alg}).encode())
    payload = b64url_encode(json.dumps(claims).encode())
    der = signer.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{header}.{payload}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _authorization(
    key: ec.EllipticCurvePrivateKey,
    claims: dict,
    signer: ec.EllipticCurvePrivateKey | None = None,
    alg: str = "ES256",
) -> str:
    k = b64url_encode(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    return f"vapid t={_jwt(signer or key, claims, alg)}, k={k}"


@pytest.fixture(scope="module")
def vapid_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _claims(**overrides: object) -> dict:
    claims = {"aud": ORIGIN, "exp": int(NOW) + 3600, "sub": "mailto:ops@example.com"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_a_good_vapid_token_verifies(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    claims = verify_vapid(_authorization(vapid_key, _claims()), ORIGIN, now=NOW)

    assert claims.aud == ORIGIN and claims.sub == "mailto:ops@example.com"


def test_py_vapid_headers_verify() -> None:
    vapid = Vapid()
    vapid.generate_keys()
    header = vapid.sign({"aud": ORIGIN, "sub": "https://shop.example", "exp": int(NOW) + 60})

    assert verify_vapid(header["Authorization"], ORIGIN, now=NOW).sub == "https://shop.example"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        (_claims(aud="http://127.0.0.1:9000"), "does not match the push resource origin"),
        (_claims(aud=ORIGIN + "/"), "does not match the push resource origin"),
        (_claims(aud=None), "no 'aud'"),
        (_claims(exp=int(NOW) - 1), "expired"),
        (_claims(exp=int(NOW) + 24 * 3600 + 60), "at most 24 hours"),
        (_claims(exp=None), "no numeric 'exp'"),
        (_claims(sub=None), "no 'sub'"),
        (_claims(sub="ops@example.com"), "mailto: or https:"),
        (_claims(sub="http://shop.example"), "mailto: or https:"),
        (_claims(sub="mailto:nobody"), "not a mailto: address"),
    ],
)
def test_bad_claims_are_forbidden(
    vapid_key: ec.EllipticCurvePrivateKey, claims: dict, reason: str
) -> None:
    with pytest.raises(VapidError, match=reason) as caught:
        verify_vapid(_authorization(vapid_key, claims), ORIGIN, now=NOW)
    assert caught.value.status == 403


def test_a_token_signed_by_another_key_is_forbidden(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    impostor = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(VapidError, match="signature does not verify") as caught:
        verify_vapid(_authorization(vapid_key, _claims(), signer=impostor), ORIGIN, now=NOW)
    assert caught.value.status == 403


def test_a_non_es256_token_is_forbidden(vapid_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(VapidError, match="alg must be ES256"):
        verify_vapid(_authorization(vapid_key, _claims(), alg="HS256"), ORIGIN, now=NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization"),
        ("WebPush eyJhbGciOiJFUzI1NiJ9.e30.c2ln", "unsupported Authorization scheme"),
        ("vapid t=abc", r"lacks the t= \(token\) or k= \(key\)"),
    ],
)
def test_absent_or_unusable_vapid_is_unauthorized(header: str | None, reason: str) -> None:
    with pytest.raises(VapidError, match=reason) as caught:
        verify_vapid(header, ORIGIN, now=NOW)
    assert caught.value.status == 401


def test_the_verifier_caches_tokens_but_rechecks_aud_and_exp(
    vapid_key: ec.EllipticCurvePrivateKey,
) -> None:
    verifier = VapidVerifier()
    header = _authorization(vapid_key, _claims())

    verifier.verify(header, ORIGIN, now=NOW)
    verifier.verify(header, ORIGIN, now=NOW + 1)
    assert (verifier.hits, verifier.misses) == (1, 1)

    with pytest.raises(VapidError, match="expired"):
        verifier.verify(header, ORIGIN, now=NOW + 3601)
    with pytest.raises(VapidError, match="does not match"):
        verifier.verify(header, "http://other:1", now=NOW)
    impostor = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VapidError, match="signature"):  # same t, other k: not a cache hit
        token = header.split("t=", 1)[1].split(",")[0]
        other_k = _authorization(impostor, _claims()).split("k=", 1)[1]
        verifier.verify(f"vapid t={token}, k={other_k}", ORIGIN, now=NOW)


# ---------------------------------------------------------------- faults


def test_fraction_rules_pick_a_stable_share_of_subscribers() -> None:
    ids = [f"sub-{i}" for i in range(2000)]
    rule = FaultRule(status=503, fraction=0.25, seed="bench")

    hit = {i for i in ids if rule.matches(i)}

    assert 400 < len(hit) < 600
    assert hit == {i for i in ids if FaultRule(status=503, fraction=0.25, seed="bench").matches(i)}
    assert hit != {i for i in ids if FaultRule(status=503, fraction=0.25, seed="x").matches(i)}


def test_times_limits_a_rule_per_subscriber() -> None:
    rule = FaultRule(status=429, subscribers=frozenset({"a", "b"}), times=1)

    assert [rule.take("a"), rule.take("a"), rule.take("b"), rule.take("c")] == [
        True,
        False,
        True,
        False,
    ]
    assert rule.retry_after == 1  # a 429 always tells the sender when to come back
    assert rule.fired == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"status": 418}, "not supported"),
        ({}, "exactly one of 'status' or 'timeout'"),
        ({"status": 429, "timeout": 3}, "exactly one"),
        ({"status": 500, "fraction": 1.5}, "between 0 and 1"),
        ({"status": 500, "subscribers": ["a"], "fraction": 0.5}, "not both"),
        ({"status": 500, "times": 0}, "'times' must be >= 1"),
        ({"status": 500, "colour": "red"}, "unknown fault rule field"),
    ],
)
def test_invalid_fault_rules_are_explained(data: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        FaultRule.from_json(data)


# ---------------------------------------------------------------- the push decision


@pytest.fixture
def service_and_sender() -> tuple[PushService, Subscriber, str]:
    service = PushService()
    (sub,) = service.create_subscribers(1)
    vapid = Vapid()
    vapid.generate_keys()
    header = vapid.sign({"aud": ORIGIN, "sub": "mailto:ops@example.com", "exp": int(NOW) + 600})
    return service, sub, header["Authorization"]


def _push(
    service: PushService,
    sub: Subscriber,
    authorization: str,
    payload: bytes | None = b'{"nid": "n-1", "title": "Hi"}',
    **headers: str,
):
    body = WebPusher(sub.subscription(ORIGIN)).encode(payload)["body"] if payload else b""
    all_headers = CIMultiDict(
        {"TTL": "60", "Content-Encoding": "aes128gcm", "Authorization": authorization}
    )
    for name, value in headers.items():
        all_headers[name.replace("_", "-")] = value
    return service.accept(sub.id, all_headers, body, audiences=(ORIGIN,), now=NOW)


def test_an_accepted_push_is_decrypted_and_recorded(service_and_sender) -> None:
    service, sub, auth = service_and_sender

    outcome = _push(service, sub, auth, Urgency="high", Topic="promo-1")

    assert outcome.status == 201
    (record,) = service.received()["records"]
    assert record["subscriber"] == sub.id
    assert record["payload"] == {"nid": "n-1", "title": "Hi"}
    assert (record["nid"], record["ttl"], record["urgency"], record["topic"]) == (
        "n-1",
        60,
        "high",
        "promo-1",
    )
    assert record["received_at"] == NOW


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"TTL": None}, 400, "missing TTL"),
        ({"TTL": "-5"}, 400, "non-negative integer"),
        ({"Urgency": "urgent"}, 400, "very-low, low, normal, high"),
        ({"Topic": "a" * 33}, 400, "1-32 characters"),
        ({"Topic": "no spaces"}, 400, "base64url alphabet"),
        ({"Content-Encoding": "aesgcm"}, 400, "must be aes128gcm"),
        ({"Authorization": None}, 401, "missing Authorization"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(
    service_and_sender, headers: dict, status: int, reason: str
) -> None:
    service, sub, auth = service_and_sender
    base = {"TTL": "60", "Content-Encoding": "aes128gcm", "Authorization": auth}
    merged = CIMultiDict({k: v for k, v in (base | headers).items() if v is not None})
    body = WebPusher(sub.subscription(ORIGIN)).encode(b"hello")["body"]

    outcome = service.accept(sub.id, merged, body, audiences=(ORIGIN,), now=NOW)

    assert outcome.status == status
    assert reason in outcome.reason
    assert service.received()["records"] == []


def test_oversized_unknown_and_undecryptable_pushes(service_and_sender) -> None:
    service, sub, auth = service_and_sender
    headers = CIMultiDict({"TTL": "0", "Content-Encoding": "aes128gcm", "Authorization": auth})
    (stranger,) = generate_subscribers(1)
    foreign_body = WebPusher(stranger.subscription(ORIGIN)).encode(b"hello")["body"]

    too_big = service.accept(
        sub.id, headers, b"\0" * (MAX_BODY_OCTETS + 1), audiences=(ORIGIN,), now=NOW
    )
    unknown = service.accept("nobody", headers, foreign_body, audiences=(ORIGIN,), now=NOW)
    garbled = service.accept(sub.id, headers, foreign_body, audiences=(ORIGIN,), now=NOW)

    assert (too_big.status, unknown.status, garbled.status) == (413, 404, 400)
    assert "decryption failed" in garbled.reason
    assert service.stats()["by_status"] == {"413": 1, "404": 1, "400": 1}


def test_topic_collapses_pending_messages_and_nids_count_duplicates(service_and_sender) -> None:
    service, sub, auth = service_and_sender

    _push(service, sub, auth, b'{"nid": "a"}', Topic="score")
    _push(service, sub, auth, b'{"nid": "b"}', Topic="score")
    _push(service, sub, auth, b'{"nid": "b"}')
    _push(service, sub, auth, b'{"nid": "c"}')

    pending = service.pending(sub.id)
    assert [m["nid"] for m in pending] == ["b", "b", "c"]
    stats = service.stats()
    assert stats["receptions"] == 4
    assert stats["distinct_notifications"] == 3
    assert (stats["duplicates"], stats["duplicate_pairs"]) == (1, 1)
    assert stats["topic_replacements"] == 1


def test_a_gone_fault_sticks_and_a_429_carries_retry_after(service_and_sender) -> None:
    service, sub, auth = service_and_sender

    service.set_faults(rules=[{"status": 429, "retry_after": 9, "times": 1}])
    rule = service.pick_fault(sub.id)
    throttled = service.accept(
        sub.id, CIMultiDict({"TTL": "1"}), b"", audiences=(ORIGIN,), fault=rule, now=NOW
    )
    assert (throttled.status, throttled.headers.get("Retry-After")) == (429, "9")
    assert service.pick_fault(sub.id) is None  # times=1: the retry goes through

    service.set_faults(rules=[{"status": 410, "times": 1}])
    rule = service.pick_fault(sub.id)
    first = service.accept(sub.id, CIMultiDict(), b"", audiences=(ORIGIN,), fault=rule, now=NOW)
    later = _push(service, sub, auth)
    assert (first.status, later.status) == (410, 410)


def test_describe_payload_keeps_json_text_and_binary() -> None:
    assert describe_payload(b'{"nid": 7}') == ({"nid": 7}, "json", "7")
    assert describe_payload(b"plain words") == ("plain words", "text", None)
    assert describe_payload(b"\xff\x00") == (b64url_encode(b"\xff\x00"), "base64url", None)
    assert describe_payload(b"") == (None, "empty", None)


def test_the_state_file_keeps_subscriber_keys_across_restarts(tmp_path) -> None:
    state = tmp_path / "pushservice.json"
    first = PushService(state_file=state)
    created = first.create_subscribers(3)

    again = PushService(state_file=state)

    assert [s.to_record() for s in again.subscribers] == [s.to_record() for s in created]


def test_accept_records_wall_clock_time_by_default(service_and_sender) -> None:
    service, sub, _ = service_and_sender
    vapid = Vapid()
    vapid.generate_keys()
    live = vapid.sign({"aud": ORIGIN, "sub": "mailto:a@example.com", "exp": int(time.time()) + 60})
    body = WebPusher(sub.subscription(ORIGIN)).encode(b"x")["body"]
    headers = CIMultiDict(
        {"TTL": "5", "Content-Encoding": "aes128gcm", "Authorization": live["Authorization"]}
    )

    before = time.time()
    assert service.accept(sub.id, headers, body, audiences=(ORIGIN,)).status == 201
    assert before <= service.stats()["first_received_at"] <= time.time()


def test_old_deliveries_are_dropped_beyond_the_retention_limit() -> None:
    service = PushService(max_records=3)
    (sub,) = service.create_subscribers(1)
    vapid = Vapid()
    vapid.generate_keys()
    auth = vapid.sign({"aud": ORIGIN, "sub": "mailto:ops@example.com", "exp": int(NOW) + 60})

    for i in range(5):
        assert (
            _push(service, sub, auth["Authorization"], f'{{"nid": "{i}"}}'.encode()).status == 201
        )

    page = service.received(after=0)
    assert [r["nid"] for r in page["records"]] == ["2", "3", "4"]
    assert page["oldest_seq"] == 3 and service.delivery(1) is None
    assert service.stats()["receptions"] == 5


def test_a_restricted_subscription_only_accepts_its_application_server_key() -> None:
    owner, intruder = Vapid(), Vapid()
    owner.generate_keys()
    intruder.generate_keys()
    owner_k = owner.sign({"aud": ORIGIN, "sub": "mailto:a@example.com", "exp": int(NOW) + 60})
    service = PushService()
    owner_public = b64url_encode(
        owner.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    (sub,) = service.create_subscribers(1, application_server_key=owner_public)
    intruder_auth = intruder.sign(
        {"aud": ORIGIN, "sub": "mailto:b@example.com", "exp": int(NOW) + 60}
    )["Authorization"]

    refused = _push(service, sub, intruder_auth)
    accepted = _push(service, sub, owner_k["Authorization"])

    assert (refused.status, accepted.status) == (403, 201)
    assert "applicationServerKey" in refused.reason
