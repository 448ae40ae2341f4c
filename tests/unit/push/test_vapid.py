"""VAPID (RFC 8292): key loading, one JWT per origin, renewal near expiry."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02
from py_vapid.jwt import decode as jwt_decode

from pushpipe.push.vapid import (
    MAX_LIFETIME_S,
    VapidSigner,
    generate_vapid_keypair,
    origin_of,
)
from pushpipe.shared.errors import ConfigurationError

SUBJECT = "mailto:ops@example.com"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def split_header(authorization: str) -> tuple[str, str]:
    scheme, _, params = authorization.partition(" ")
    assert scheme == "vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert set(parts) == {"t", "k"}
    return parts["t"], parts["k"]


def claims_of(authorization: str) -> dict:
    token, key = split_header(authorization)
    return jwt_decode(token, key)  # raises InvalidSignature unless signed by key


@pytest.fixture
def keypair() -> tuple[str, str]:
    return generate_vapid_keypair()


def test_generated_keypair_is_a_p256_pem_and_its_application_server_key(keypair) -> None:
    private_pem, public_b64 = keypair
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.curve.name == "secp256r1"
    raw = base64.urlsafe_b64decode(public_b64 + "==")
    assert len(raw) == 65 and raw[0] == 4
    assert "=" not in public_b64
    assert VapidSigner(private_pem, SUBJECT).public_key == public_b64


def test_loads_pem_raw_and_der_forms_of_the_same_key(keypair) -> None:
    private_pem, public_b64 = keypair
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    raw = key.private_numbers().private_value.to_bytes(32, "big")
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    sec1_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    for form in (private_pem, private_pem.encode(), b64url(raw), b64url(der), sec1_pem):
        signer = VapidSigner(form, SUBJECT)
        assert signer.public_key == public_b64
        claims = claims_of(signer.headers_for("https://push.example.net/x")["Authorization"])
        assert claims["aud"] == "https://push.example.net"


@pytest.mark.parametrize("bad", ["", "not a key", b64url(b"\x01" * 20), "-----BEGIN junk"])
def test_unusable_private_key_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="VAPID private key"):
        VapidSigner(bad, SUBJECT)


@pytest.mark.parametrize(
    "subject", ["", "ops@example.com", "mailto:nobody", "http://example.com", "https://"]
)
def test_subject_must_be_mailto_or_https(keypair, subject: str) -> None:
    with pytest.raises(ConfigurationError, match="subject"):
        VapidSigner(keypair[0], subject)


@pytest.mark.parametrize("subject", ["mailto:ops@example.com", "https://shop.example.com"])
def test_accepted_subjects_end_up_in_sub(keypair, subject: str) -> None:
    header = VapidSigner(keypair[0], subject).headers_for("https://fcm.googleapis.com/fcm/send/1")
    assert claims_of(header["Authorization"])["sub"] == subject


def test_header_has_rfc8292_shape_and_verifies(keypair) -> None:
    signer = VapidSigner(keypair[0], SUBJECT, clock=Clock())
    header = signer.headers_for("https://updates.push.services.mozilla.com/wpush/v2/abc")
    assert list(header) == ["Authorization"]
    assert header["Authorization"].startswith("vapid t=")
    assert ", k=" in header["Authorization"]
    token, key = split_header(header["Authorization"])
    assert key == signer.public_key
    jwt_header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert jwt_header == {"typ": "JWT", "alg": "ES256"}
    claims = claims_of(header["Authorization"])
    assert claims == {
        "aud": "https://updates.push.services.mozilla.com",
        "exp": int(T0) + 12 * 3600,
        "sub": SUBJECT,
    }
    # py_vapid's own verifier accepts it once the RFC's ", " separator is normalised.
    assert Vapid02.verify(header["Authorization"].replace(", k=", ",k="))


def test_same_origin_reuses_one_signature(keypair, monkeypatch) -> None:
    calls: list[dict] = []
    original = Vapid02.sign

    def counting_sign(self, claims, crypto_key=None):
        calls.append(dict(claims))
        return original(self, claims, crypto_key)

    monkeypatch.setattr(Vapid02, "sign", counting_sign)
    signer = VapidSigner(keypair[0], SUBJECT, clock=Clock())
    headers = [
        signer.headers_for(f"https://fcm.googleapis.com/fcm/send/token-{i}") for i in range(50)
    ]
    assert len({h["Authorization"] for h in headers}) == 1
    assert len(calls) == 1
    assert signer.signatures == 1


def test_each_origin_gets_its_own_token(keypair) -> None:
    signer = VapidSigner(keypair[0], SUBJECT, clock=Clock())
    endpoints = {
        "https://fcm.googleapis.com/fcm/send/a": "https://fcm.googleapis.com",
        "https://updates.push.services.mozilla.com/wpush/v2/b": (
            "https://updates.push.services.mozilla.com"
        ),
        "https://web.push.apple.com/QAbc": "https://web.push.apple.com",
        "http://127.0.0.1:8099/push/c": "http://127.0.0.1:8099",
    }
    seen = set()
    for endpoint, origin in endpoints.items():
        authorization = signer.headers_for(endpoint)["Authorization"]
        assert claims_of(authorization)["aud"] == origin
        assert signer.claims_for(origin)["aud"] == origin
        seen.add(authorization)
    assert len(seen) == 4
    assert signer.signatures == 4
    for endpoint in endpoints:  # all cached now
        signer.headers_for(endpoint + "/again")
    assert signer.signatures == 4


def test_token_is_renewed_when_less_than_an_hour_is_left(keypair) -> None:
    clock = Clock()
    signer = VapidSigner(keypair[0], SUBJECT, clock=clock)
    endpoint = "https://fcm.googleapis.com/fcm/send/x"
    first = signer.headers_for(endpoint)["Authorization"]
    assert claims_of(first)["exp"] == int(T0) + 12 * 3600

    clock.now = T0 + 11 * 3600 - 1  # 1 h + 1 s left: still good
    assert signer.headers_for(endpoint)["Authorization"] == first
    assert signer.signatures == 1

    clock.now = T0 + 11 * 3600 + 1  # under an hour left: re-sign
    renewed = signer.headers_for(endpoint)["Authorization"]
    assert renewed != first
    assert signer.signatures == 2
    assert claims_of(renewed)["exp"] == int(clock.now) + 12 * 3600

    clock.now = T0 + 30 * 24 * 3600  # a container kept warm for a month
    later = claims_of(signer.headers_for(endpoint)["Authorization"])
    assert 0 < later["exp"] - clock.now <= MAX_LIFETIME_S


def test_exp_is_never_more_than_24_hours_ahead(keypair) -> None:
    clock = Clock()
    signer = VapidSigner(keypair[0], SUBJECT, lifetime_s=MAX_LIFETIME_S, clock=clock)
    claims = claims_of(signer.headers_for("https://push.example.net/1")["Authorization"])
    assert claims["exp"] - T0 <= 24 * 3600
    with pytest.raises(ConfigurationError, match="lifetime"):
        VapidSigner(keypair[0], SUBJECT, lifetime_s=MAX_LIFETIME_S + 1)
    with pytest.raises(ConfigurationError, match="renew_before_s"):
        VapidSigner(keypair[0], SUBJECT, lifetime_s=3600, renew_before_s=3600)


@pytest.mark.parametrize(
    ("endpoint", "origin"),
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "https://fcm.googleapis.com"),
        ("https://FCM.GoogleAPIs.com:443/fcm/send/abc", "https://fcm.googleapis.com"),
        ("HTTPS://push.example.com:8443/a/b?c=d", "https://push.example.com:8443"),
        ("http://127.0.0.1:80/x", "http://127.0.0.1"),
        ("http://user:pw@localhost:9000/x", "http://localhost:9000"),
        ("https://[::1]:4443/x", "https://[::1]:4443"),
    ],
)
def test_origin_is_scheme_host_and_non_default_port(endpoint: str, origin: str) -> None:
    assert origin_of(endpoint) == origin


@pytest.mark.parametrize(
    "endpoint",
    ["", "fcm.googleapis.com/fcm/send/x", "ftp://host/x", "https://", "https://h:99999/"],
)
def test_origin_rejects_what_is_not_an_http_url(endpoint: str) -> None:
    with pytest.raises(ValueError, match="invalid push endpoint"):
        origin_of(endpoint)
