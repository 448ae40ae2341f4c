"""cdk-nag acknowledgements: one rule (or one finding) at a time, always with a reason.

cdk-nag 3 is a policy-validation plugin (``Validations.of(app).add_plugins(...)``);
acknowledgements use CDK's own ``Validations.of(construct).acknowledge``. Keeping them
behind this helper lets the tests list every acknowledgement with its construct path.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON = 20
# Context switch for the tests only: synthesize without acknowledgements to prove that
# each one silences a finding that really exists (tests/infra/test_nag.py).
RAW_FINDINGS_CONTEXT = "pushpipe:rawNagFindings"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``AwsSolutions-IAM5[Resource::*]``) on ``construct``."""
    if not rule.startswith("AwsSolutions-"):
        raise ValueError(f"only AwsSolutions rules are acknowledged here, got {rule!r}")
    if len(reason.strip()) < MIN_REASON:
        raise ValueError(f"acknowledging {rule} needs a real reason, got {reason!r}")
    if construct.node.try_get_context(RAW_FINDINGS_CONTEXT):
        return
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))
