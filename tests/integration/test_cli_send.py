"""``pushpipe send`` against the local cloud: it says why recipients were rejected or the
file was, and its exit code says whether anything was sent."""

from __future__ import annotations

import json

from pushpipe_local.cli.main import main
from pushpipe_local.sim.audiences import audience_bytes, demo_campaign


def _send(local_cloud, tmp_path, capsys, body: bytes, name: str) -> tuple[int, str]:
    path = tmp_path / name
    path.write_bytes(body)
    code = main(["--home", str(local_cloud.home), "send", str(path)])
    return code, capsys.readouterr().out


def test_send_prints_the_top_rejection_reasons_and_succeeds(
    send, local_cloud, tmp_path, capsys, campaign_id
):
    subs = send.subscribers(5)
    recipients = [{"id": s["id"], "subscription": s} for s in subs]
    recipients += [
        {"id": f"evil{i}", "subscription": {**subs[0], "endpoint": e}}
        for i, e in enumerate(
            ["https://169.254.169.254/x", "http://10.0.0.1/x", "https://10.0.0.2/"]
        )
    ]
    body = audience_bytes(demo_campaign(campaign_id), recipients)
    code, out = _send(local_cloud, tmp_path, capsys, body, f"{campaign_id}.json")
    assert code == 0, out
    assert "3 recipients rejected" in out
    assert "link-local" in out and "private" in out


def test_send_of_a_rejected_file_says_why_and_exits_non_zero(
    send, local_cloud, tmp_path, capsys, campaign_id
):
    body = json.dumps({"campaign": demo_campaign(campaign_id), "recipients": {"a": 1}}).encode()
    code, out = _send(local_cloud, tmp_path, capsys, body, f"{campaign_id}-bad.json")
    assert code == 1
    assert "recipients must be an array" in " ".join(out.split())


def test_send_of_a_file_that_reaches_nobody_exits_non_zero(
    send, local_cloud, tmp_path, capsys, campaign_id
):
    sub = send.subscribers(1)[0]
    recipients = [{"id": "x", "subscription": {**sub, "endpoint": "https://127.0.0.1/x"}}]
    body = audience_bytes(demo_campaign(campaign_id), recipients)
    code, out = _send(local_cloud, tmp_path, capsys, body, f"{campaign_id}-nobody.json")
    assert code == 1
    assert "nothing was sent" in out and "loopback" in out
