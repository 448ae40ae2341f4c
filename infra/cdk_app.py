"""CDK entry point: ``python -m infra.cdk_app`` (the ``app`` command in cdk.json).

Reads the deploy parameters from context, builds the Lambda bundle (no Docker), adds
the pushpipe stack and runs cdk-nag's AwsSolutions pack as a policy-validation plugin:
an unacknowledged finding fails the synth and is listed in the cloud assembly's
``policy-validation-report.json``.
"""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from cdk_nag import AwsSolutionsChecks

from infra.stacks.bundling import build_asset
from infra.stacks.config import ConfigError, DeployConfig
from infra.stacks.pushpipe_stack import PushpipeStack


def build_app(app: cdk.App | None = None) -> tuple[cdk.App, PushpipeStack]:
    """The app with the stack and the cdk-nag plugin (tests call this in-process)."""
    app = app or cdk.App()
    config = DeployConfig.from_context(app.node.try_get_context)
    asset = build_asset()
    code = lambda_.Code.from_asset(
        str(asset.path), asset_hash=asset.asset_hash, asset_hash_type=cdk.AssetHashType.CUSTOM
    )
    env = cdk.Environment(
        account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
    )
    stack = PushpipeStack(app, "Pushpipe", config=config, code=code, env=env)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> None:
    try:
        app, _ = build_app()
    except ConfigError as exc:
        sys.exit(str(exc))
    app.synth()


if __name__ == "__main__":
    main()
