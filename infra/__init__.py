"""pushpipe CDK app: ``python -m infra.cdk_app`` (see cdk.json)."""
