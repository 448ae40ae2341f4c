"""Object-level bucket grants, scoped to the key prefixes a function declares.

``topology.Function.prefixes`` names, per bucket, the key prefixes a function reads (and,
with ``writes=``, writes): send_batch only audiences/, approval only drafts/ and
audiences/, the scheduler its own prefixes. A bucket without declared prefixes is
granted whole (one bucket's objects, never another bucket, never bucket-level writes).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3

from infra.stacks.nag import acknowledge
from pushpipe import topology as t


def grant_bucket(role: iam.Role, bucket: s3.IBucket, name: str, spec: t.Function) -> None:
    role.add_to_policy(
        iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
    )
    actions = ["s3:GetObject"] + (["s3:PutObject"] if name in spec.writes else [])
    prefixes = tuple(spec.prefixes.get(name, ("",)))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=actions, resources=[bucket.arn_for_objects(f"{p}*") for p in prefixes]
        )
    )
    logical = Stack.of(bucket).get_logical_id(bucket.node.default_child)
    for prefix in prefixes:
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{logical}.Arn>/{prefix}*]",
            f"{spec.name} reads (and with writes=, writes) objects of bucket {name!r} under "
            f"{prefix or 'any key'}: keys are chosen by tenants (audience files, one prefix "
            "per tenant); object-level ARNs of one bucket, no bucket-level write.",
        )
