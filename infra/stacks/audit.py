"""Glue database and tables over the Firehose archive, Athena workgroup and named queries.

The tables and queries are declared once in ``pushpipe.pings.audit`` (the local
cloud runs the same SQL with DuckDB). Partitions are projected from the hour path
Firehose writes (``<prefix>yyyy/MM/dd/HH/``), so new hours are queryable at once.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.stacks.config import DeployConfig
from infra.stacks.nag import acknowledge
from infra.stacks.names import cid
from infra.stacks.storage import secure_bucket
from pushpipe.pings import audit as schema

RESULTS_EXPIRE_DAYS = 30
BYTES_SCANNED_CUTOFF = 100 * 1024**3  # 100 GB per query: a runaway query costs at most ~$0.50
PROJECTION_START = "2024/01/01/00"


def glue_database_name(stack_name: str) -> str:
    return f"{stack_name.lower().replace('-', '_')}_audit"


class Audit(Construct):
    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        config: DeployConfig,
        archive: s3.IBucket,
        access_logs: s3.IBucket,
    ) -> None:
        super().__init__(scope, cid_)
        account = Stack.of(self).account
        self.database_name = glue_database_name(config.stack_name)
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description="pushpipe audit trail: every send and every ping (Firehose archive)",
            ),
        )
        self.tables = [self._build_table(spec, archive, account) for spec in schema.TABLES]
        self.results = secure_bucket(
            self,
            "QueryResults",
            access_logs=access_logs,
            log_prefix="athena-results/",
            expire_days=RESULTS_EXPIRE_DAYS,
        )
        self.workgroup_name = f"{config.stack_name}-audit"
        self.workgroup = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.workgroup_name,
            description="pushpipe audit queries",
            recursive_delete_option=True,
            state="ENABLED",
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                bytes_scanned_cutoff_per_query=BYTES_SCANNED_CUTOFF,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.results.bucket_name}/results/",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        for query in schema.NAMED_QUERIES:
            named = athena.CfnNamedQuery(
                self,
                cid(query.name, "Query"),
                name=query.name,
                description=query.description,
                database=self.database_name,
                query_string=query.sql,
                work_group=self.workgroup.ref,
            )
            named.node.add_dependency(self.database)

    def grant_queries(self, role: iam.IRole, function: str) -> None:
        """Let ``role`` run queries in the workgroup (a function that ``uses`` the audit
        catalogue; reading the archive objects is its own grant, the archive bucket)."""
        for statement in self.query_statements():
            role.add_to_principal_policy(statement)
        results = Stack.of(self).get_logical_id(self.results.node.default_child)
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{results}.Arn>/*]",
            f"{function} runs Athena queries: Athena writes each query's result under a key "
            "of its own choosing in the audit workgroup's results bucket; object ARNs of "
            "that one bucket.",
        )

    def query_statements(self) -> list[iam.PolicyStatement]:
        """What running a query in the workgroup needs: the Athena calls on this
        workgroup, the Glue catalogue entries of its database, and the results bucket."""
        stack = Stack.of(self)
        workgroup = stack.format_arn(
            service="athena", resource="workgroup", resource_name=self.workgroup_name
        )
        glue_arns = [
            stack.format_arn(service="glue", resource="catalog"),
            stack.format_arn(service="glue", resource="database", resource_name=self.database_name),
            *(
                stack.format_arn(
                    service="glue",
                    resource="table",
                    resource_name=f"{self.database_name}/{spec.name}",
                )
                for spec in schema.TABLES
            ),
        ]
        return [
            iam.PolicyStatement(
                actions=[
                    "athena:StartQueryExecution",
                    "athena:GetQueryExecution",
                    "athena:GetQueryResults",
                    "athena:StopQueryExecution",
                ],
                resources=[workgroup],
            ),
            iam.PolicyStatement(
                actions=["glue:GetDatabase", "glue:GetTable", "glue:GetPartitions"],
                resources=glue_arns,
            ),
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket"],
                resources=[self.results.bucket_arn],
            ),
            iam.PolicyStatement(
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
                resources=[self.results.arn_for_objects("*")],
            ),
        ]

    def _build_table(
        self, spec: schema.AuditTable, archive: s3.IBucket, account: str
    ) -> glue.CfnTable:
        location = f"s3://{archive.bucket_name}/{spec.prefix.rstrip('/')}/"
        table = glue.CfnTable(
            self,
            cid(spec.name, "Table"),
            catalog_id=account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=spec.name,
                description=spec.description,
                table_type="EXTERNAL_TABLE",
                parameters={
                    "classification": "json",
                    "compressionType": "gzip",
                    "projection.enabled": "true",
                    f"projection.{schema.PARTITION}.type": "date",
                    f"projection.{schema.PARTITION}.format": schema.PARTITION_FORMAT,
                    f"projection.{schema.PARTITION}.range": f"{PROJECTION_START},NOW",
                    f"projection.{schema.PARTITION}.interval": "1",
                    f"projection.{schema.PARTITION}.interval.unit": "HOURS",
                    "storage.location.template": f"{location}${{{schema.PARTITION}}}/",
                },
                partition_keys=[glue.CfnTable.ColumnProperty(name=schema.PARTITION, type="string")],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    compressed=True,
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"ignore.malformed.json": "true"},
                    ),
                    columns=[
                        glue.CfnTable.ColumnProperty(name=name, type=type_)
                        for name, type_ in spec.columns
                    ],
                ),
            ),
        )
        table.node.add_dependency(self.database)
        return table
