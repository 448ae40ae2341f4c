"""Secrets Manager secrets, given their first value at deploy time by a custom resource.

CloudFormation creates each secret with a throw-away placeholder; the seeder
(``infra/runtime/secret_seeder.py``, same bundle as the functions) replaces it with a
real key of the secret's kind. No key material is in the repository or the template.
"""

from __future__ import annotations

from aws_cdk import CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.runtime.secret_seeder import PLACEHOLDER_KEY
from infra.stacks.nag import acknowledge
from infra.stacks.names import cid, function_name
from pushpipe import topology as t

SEEDER_HANDLER = "infra.runtime.secret_seeder.handler"


class Secrets(Construct):
    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        code: lambda_.Code,
        runtime: lambda_.Runtime,
        architecture: lambda_.Architecture,
        log_retention: logs.RetentionDays,
        tenants: tuple[str, ...],
        runtime_reason: str,
    ) -> None:
        super().__init__(scope, cid_)
        self.tenants = tenants
        self.secrets: dict[str, secretsmanager.Secret] = {}
        self.seeds: list[CustomResource] = []
        # the browsers' applicationServerKey, read back from the seeded secret
        self.vapid_public_keys: dict[str, str] = {}
        stack = Stack.of(self)
        name = function_name(stack.stack_name, "secret-seeder")
        log_group = logs.LogGroup(
            self,
            "SeederLogs",
            log_group_name=f"/aws/lambda/{name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "SeederRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Secret seeder: writes the first value of each pushpipe secret",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        self.seeder = lambda_.Function(
            self,
            "Seeder",
            function_name=name,
            code=code,
            handler=SEEDER_HANDLER,
            runtime=runtime,
            architecture=architecture,
            memory_size=256,
            timeout=Duration.seconds(60),
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            description="Deploy time only: seeds secrets with fresh keys",
        )
        acknowledge(self.seeder, "AwsSolutions-L1", runtime_reason)
        for spec in t.SECRETS:
            self._build_secret(spec, role)

    def _build_secret(self, spec: t.Secret, seeder_role: iam.Role) -> None:
        secret = secretsmanager.Secret(
            self,
            cid(spec.name, "Secret"),
            description=f"pushpipe {spec.kind} secret {spec.name!r}; seeded at deploy time",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=f'{{"{PLACEHOLDER_KEY}": false}}',
                generate_string_key="placeholder",
                exclude_punctuation=True,
            ),
            removal_policy=RemovalPolicy.RETAIN,
        )
        seeder_role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                resources=[secret.secret_arn],
            )
        )
        properties: dict = {"SecretId": secret.secret_arn, "Kind": spec.kind}
        if spec.env == t.ENV_TENANT_SECRET:  # the tenant directory: keys per tenant
            properties["Tenants"] = list(self.tenants)
        seed = CustomResource(
            self,
            cid(spec.name, "Seed"),
            service_token=self.seeder.function_arn,
            resource_type="Custom::PushpipeSecretSeed",
            properties=properties,
        )
        self.seeds.append(seed)
        if spec.kind == "vapid":
            self.vapid_public_keys[spec.name] = seed.get_att_string("PublicKey")
        acknowledge(
            secret,
            "AwsSolutions-SMG4",
            {
                "vapid": "The VAPID key pair cannot rotate automatically: every browser "
                "subscription is bound to its public key, so rotation is a planned "
                "migration (README: Key rotation).",
                "hmac": "Signing keys rotate by adding a new key id next to the active one "
                "(tokens in flight stay valid); an operator does it, see README: Key rotation.",
                "json": "Operator-managed configuration secret; rotating it has no meaning "
                "without the external system it belongs to.",
            }[spec.kind],
        )
        self.secrets[spec.name] = secret
