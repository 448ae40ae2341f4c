"""Local push service: the receiving side of RFC 8030 that stands in for FCM / autopush.

A sender talks to it exactly as it talks to a browser vendor's push service:

    POST /wpush/v2/{id}   TTL, Urgency, Topic, Content-Encoding: aes128gcm,
                          Authorization: vapid t=<JWT>, k=<key>  ->  201 Created

It checks the request headers (RFC 8030 section 5), the VAPID token and its signature
(RFC 8292), decrypts the aes128gcm body (RFC 8291) with the subscriber's private key and
records the plaintext, so tests and the demo can check what each subscriber really got.
Faults (latency, 429 with Retry-After, 5xx, 404/410, 400/403/413, timeouts) are injected
per subscriber through ``/_admin/faults``.

Modules:

- ``crypto``: base64url, P-256 point encoding, aes128gcm decryption (``decrypt_push``).
- ``keys``: simulated subscribers (``Subscriber``) and the state file that keeps them.
- ``vapid``: the RFC 8292 check (``verify_vapid``, the caching ``VapidVerifier``).
- ``faults``: injected faults (``FaultRule``, ``FaultConfig``).
- ``protocol``: RFC 8030 header checks and the endpoint's answer (``PushOutcome``).
- ``deliveries``: what subscribers received (``Delivery``, ``DeliveryLog``).
- ``service``: ``PushService``, the state and the push decision (``accept``).
- ``http``: ``PushServer``, the aiohttp routes and server of a ``PushService``.
- ``runners``: ``PushServiceThread`` (a background thread, for tests) and
  ``start_pushservice_process`` (a child process, for the local cloud and benchmarks).
- ``__main__``: ``python -m pushpipe_local.pushservice``.

The pure parts (``decrypt_push``, ``verify_vapid``, ``VapidVerifier``, ``FaultRule``) work
without HTTP; ``PushService.accept`` is the whole push decision without the transport.
"""

from pushpipe_local.pushservice.crypto import (
    DecryptionError,
    b64url_decode,
    b64url_encode,
    decrypt_push,
)
from pushpipe_local.pushservice.deliveries import Delivery, describe_payload
from pushpipe_local.pushservice.faults import FaultConfig, FaultRule
from pushpipe_local.pushservice.http import PushServer
from pushpipe_local.pushservice.keys import Subscriber, generate_subscribers, new_subscriber
from pushpipe_local.pushservice.protocol import MAX_BODY_OCTETS, PushOutcome
from pushpipe_local.pushservice.runners import (
    PushServiceProcess,
    PushServiceThread,
    start_pushservice_process,
)
from pushpipe_local.pushservice.service import PushService
from pushpipe_local.pushservice.vapid import VapidClaims, VapidError, VapidVerifier, verify_vapid

__all__ = [
    "MAX_BODY_OCTETS",
    "DecryptionError",
    "Delivery",
    "FaultConfig",
    "FaultRule",
    "PushOutcome",
    "PushServer",
    "PushService",
    "PushServiceProcess",
    "PushServiceThread",
    "Subscriber",
    "VapidClaims",
    "VapidError",
    "VapidVerifier",
    "b64url_decode",
    "b64url_encode",
    "decrypt_push",
    "describe_payload",
    "generate_subscribers",
    "new_subscriber",
    "start_pushservice_process",
    "verify_vapid",
]
