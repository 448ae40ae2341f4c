"""The endpoint policy: pushes go to the browsers' push services over https, and to no
address that is not globally routable, however it is written."""

from __future__ import annotations

import ipaddress

import pytest

from pushpipe.push.endpoints import (
    BROWSER_PUSH_SERVICES,
    EndpointPolicy,
    address_refusal,
    literal_address,
)

POLICY = EndpointPolicy()


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/dXNlci0x:APA91bExample",
        "https://android.googleapis.com/gcm/send/abc",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAAB",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA%2b",
        "https://web.push.apple.com/QGuQyavXutnMH",
        "https://FCM.GoogleAPIs.com:443/fcm/send/x",
        "https://fcm.googleapis.com./fcm/send/x",
    ],
)
def test_the_browsers_push_services_are_allowed(endpoint: str) -> None:
    assert POLICY.refusal(endpoint) is None


@pytest.mark.parametrize(
    "endpoint, why",
    [
        ("http://fcm.googleapis.com/fcm/send/x", "must be https"),
        ("ftp://fcm.googleapis.com/x", "must be https"),
        ("//fcm.googleapis.com/x", "must be https"),
        ("https://user:pw@fcm.googleapis.com/x", "credentials"),
        ("https://fcm.googleapis.com.evil.example/x", "not a browser push service"),
        ("https://evilfcm.googleapis.com/x", "not a browser push service"),
        ("https://localhost/x", "not a valid host name"),
        ("https://push.example.com/x", "not a browser push service"),
        ("https://fcm.googleapis.com:99999/x", "not a valid URL"),
        ("https://fcm.googleapis.com/a b", "spaces"),
        ("https://fcm.googleapis.com/\u00e9", "non-ASCII"),
        ("https://" + "a" * 2050, "longer than 2048"),
        ("", "not a URL"),
        (None, "not a URL"),
        (42, "not a URL"),
    ],
)
def test_everything_else_is_refused_with_a_reason(endpoint, why: str) -> None:
    refusal = POLICY.refusal(endpoint)
    assert refusal is not None and why in refusal


@pytest.mark.parametrize(
    "host, address",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # one number
        ("0x7f000001", "127.0.0.1"),  # hex
        ("0177.0.0.1", "127.0.0.1"),  # octal part
        ("127.1", "127.0.0.1"),  # shortened
        ("0x7f.1", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),  # instance metadata
        ("10.0.0.1", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("[fd00::1]", "fd00::1"),
        ("[2002:7f00:1::]", "2002:7f00:1::"),  # 6to4 of 127.0.0.1
    ],
)
def test_ip_literals_in_every_notation_are_refused(host: str, address: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(address)
    refusal = POLICY.refusal(f"https://{host}/push")
    assert refusal is not None and "is an IP address" in refusal


@pytest.mark.parametrize(
    "address, kind",
    [
        ("127.0.0.53", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a globally routable"),  # carrier-grade NAT
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("ff02::1", "multicast"),
        ("fc00::1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ],
)
def test_non_global_addresses_are_refused_with_their_class(address: str, kind: str) -> None:
    why = address_refusal(ipaddress.ip_address(address))
    assert why is not None and kind in why


@pytest.mark.parametrize("address", ["142.250.74.106", "2a00:1450:4001:82b::200a", "1.1.1.1"])
def test_global_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_a_deploy_adds_push_service_domains() -> None:
    policy = EndpointPolicy.from_settings(extra_hosts=["push.example.com", " "])
    assert policy.refusal("https://eu.push.example.com/x") is None
    assert policy.refusal("https://fcm.googleapis.com/x") is None  # the browsers' stay
    assert set(BROWSER_PUSH_SERVICES) <= set(policy.hosts)


def test_an_allowed_origin_is_allowed_exactly() -> None:
    policy = EndpointPolicy.from_settings(origins=["http://127.0.0.1:8099/"])
    assert policy.refusal("http://127.0.0.1:8099/push/1") is None
    assert policy.allows_connection("127.0.0.1", 8099)
    for other in ("http://127.0.0.1:8098/push/1", "https://127.0.0.1:8099/x", "http://[::1]:8099/"):
        assert policy.refusal(other) is not None
    assert not policy.allows_connection("127.0.0.1", 9001)  # the Lambda Runtime API


def test_the_verdict_is_per_endpoint_not_just_per_origin() -> None:
    good = "https://fcm.googleapis.com/fcm/send/a"
    assert POLICY.refusal(good) is None
    assert POLICY.refusal(good + " b") is not None  # same origin, a bad path
    assert POLICY.refusal("https://fcm.googleapis.com?x") is None
