"""cdk-nag AwsSolutions: nothing unacknowledged, and every acknowledgement earns its place.

The main synth (conftest) runs with the AwsSolutions plugin: an unacknowledged finding
fails it. A second synth with acknowledgements switched off shows the raw findings;
each must be covered by exactly the acknowledgements we wrote, so none is stale and
none is broader than a real finding.
"""

from __future__ import annotations

import json

import pytest

from infra.stacks.nag import MIN_REASON

ACK = "aws:cdk:acknowledged-rules"
STACK = "Pushpipe"


def _acknowledgements(metadata: dict) -> list[tuple[str, str, str]]:
    """(construct path, rule, reason) of every acknowledgement in the cloud assembly."""
    out = []
    for path, entries in metadata.items():
        for entry in entries:
            if entry["type"] == ACK:
                for key, reason in entry["data"].items():
                    out.append((path, key.removeprefix("Annotation::"), reason))
    return out


def _violations(report: dict) -> list[tuple[str, str]]:
    """(construct path, rule) of every finding in a policy validation report."""
    return [
        ("/" + construct["constructPath"], violation["ruleName"])
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    ]


@pytest.fixture(scope="module")
def raw_findings(raw_nag_report) -> list[tuple[str, str]]:
    assert [p["pluginName"] for p in raw_nag_report["pluginReports"]] == ["AwsSolutions"]
    return _violations(raw_nag_report)


def test_synth_has_no_unacknowledged_finding(synth):
    report = json.loads((synth.outdir / "validation-report.json").read_text())
    assert _violations(report) == []


def test_every_acknowledgement_names_its_resource_and_gives_a_reason(synth):
    acks = _acknowledgements(synth.metadata)
    assert acks
    for path, rule, reason in acks:
        assert path.startswith(f"/{STACK}/") and path != f"/{STACK}", (
            "no stack-wide acknowledgement"
        )
        assert rule.startswith("AwsSolutions-")
        assert len(reason) >= MIN_REASON, f"{path} {rule}: reason too short"


def test_each_acknowledgement_silences_a_real_finding_and_each_finding_is_acknowledged(
    synth, raw_findings
):
    acks = _acknowledgements(synth.metadata)
    assert raw_findings, "the raw synth found nothing: is the nag plugin still attached?"

    def covers(ack_path: str, ack_rule: str, path: str, rule: str) -> bool:
        return rule == ack_rule and (path == ack_path or path.startswith(ack_path + "/"))

    unused = [
        (p, r) for p, r, _ in acks if not any(covers(p, r, fp, fr) for fp, fr in raw_findings)
    ]
    assert unused == [], f"acknowledgements with no finding behind them: {unused}"
    uncovered = [
        (fp, fr) for fp, fr in raw_findings if not any(covers(p, r, fp, fr) for p, r, _ in acks)
    ]
    assert uncovered == [], f"findings nobody acknowledged: {uncovered}"
