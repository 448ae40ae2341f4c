"""Byte-level primitives of Web Push: base64url, P-256 point encoding, aes128gcm decryption.

``decrypt_push`` decrypts an RFC 8291 message body exactly as the receiving browser does,
with the subscriber's private key and auth secret.
"""

from __future__ import annotations

import base64
import binascii

import http_ece
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as Web Push keys and JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url with or without padding; raise ValueError on bad input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.strip().rstrip(b"=")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64url: {exc}") from exc


def public_key_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    """The key as a 65-octet uncompressed point (the form of ``p256dh`` and VAPID ``k``)."""
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


class DecryptionError(ValueError):
    """The body could not be decrypted with the subscriber's keys (answered with 400)."""


def decrypt_push(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """Decrypt an RFC 8291 aes128gcm push message body as the receiving browser does."""
    try:
        return http_ece.decrypt(
            body, private_key=private_key, auth_secret=auth_secret, version="aes128gcm"
        )
    except http_ece.ECEException as exc:
        raise DecryptionError(f"aes128gcm decryption failed: {exc.message}") from exc
    except (ValueError, TypeError, IndexError) as exc:
        # e.g. the keyid in the header is not a P-256 point
        raise DecryptionError(f"aes128gcm decryption failed: {exc}") from exc
