"""cfn-lint on the synthesized template: no error, no warning."""

from __future__ import annotations

from cfnlint.api import ManualArgs, lint_file

# W3005 "DependsOn already enforced by a GetAtt": CDK adds an explicit dependency of
# every Lambda function on its role (and of S3 notifications on the queue policy) on
# purpose, so the role's policies exist before the function does; the extra DependsOn
# is harmless and not ours to remove.
IGNORED = ["W3005"]
REGIONS = ["us-east-1", "eu-west-1"]


def test_template_is_cfn_lint_clean(synth):
    matches = lint_file(
        synth.outdir / "Pushpipe.template.json",
        ManualArgs(ignore_checks=IGNORED, regions=REGIONS),
    )
    assert [str(m) for m in matches] == []
