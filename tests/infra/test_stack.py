"""What the synthesized template must guarantee (aws_cdk.assertions over one synth)."""

from __future__ import annotations

import json

import pytest
from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match, Template

from infra.stacks.functions import TABLE_ACTIONS
from infra.stacks.monitoring import PINGS_REJECTED, SENDS_FAILED
from infra.stacks.names import cid, function_name
from pushpipe import topology as t
from pushpipe.pings import audit as schema

STACK = "Pushpipe"


@pytest.fixture(scope="module")
def template(synth) -> Template:
    return Template.from_json(synth.template)


def _functions(synth) -> dict[str, dict]:
    """topology name -> AWS::Lambda::Function properties."""
    by_name = {
        p["Properties"]["FunctionName"]: p["Properties"]
        for p in synth.resources("AWS::Lambda::Function").values()
        if "FunctionName" in p["Properties"]
    }
    return {fn.name: by_name[function_name(STACK, fn.name)] for fn in t.FUNCTIONS}


def _logical_id(synth, type_: str, **match) -> str:
    found = [
        k
        for k, v in synth.resources(type_).items()
        if all(v["Properties"].get(key) == value for key, value in match.items())
    ]
    assert len(found) == 1, f"expected one {type_} with {match}, found {found}"
    return found[0]


def _refs(value) -> set[str]:
    """Logical ids a CloudFormation value points at (Ref / Fn::GetAtt, any depth)."""
    out: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value:
            out.add(value["Ref"])
        if "Fn::GetAtt" in value:
            out.add(value["Fn::GetAtt"][0])
        for v in value.values():
            out |= _refs(v)
    elif isinstance(value, list):
        for v in value:
            out |= _refs(v)
    return out


def _statements(synth):
    for lid, policy in synth.resources("AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            yield lid, statement


def _as_list(value):
    return value if isinstance(value, list) else [value]


# --- functions -----------------------------------------------------------------------
def test_every_topology_function_is_deployed_arm64_python312_traced_json_logged(synth):
    functions = _functions(synth)
    log_groups = synth.resources("AWS::Logs::LogGroup")
    for spec in t.FUNCTIONS:
        props = functions[spec.name]
        assert props["Handler"] == spec.handler
        assert props["Runtime"] in ("python3.12", "python3.13", "python3.14")
        assert props["Architectures"] == ["arm64"]
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["LoggingConfig"]["LogFormat"] == "JSON"
        assert props["MemorySize"] == spec.memory_mb
        assert props["Timeout"] == spec.timeout_s
        assert props.get("ReservedConcurrentExecutions") == spec.reserved_concurrency
        # an explicit log group with a retention, not the implicit one that never expires
        (log_group,) = _refs(props["LoggingConfig"]["LogGroup"])
        assert log_groups[log_group]["Properties"]["RetentionInDays"] == 30
        assert log_groups[log_group]["Properties"]["LogGroupName"] == (
            f"/aws/lambda/{function_name(STACK, spec.name)}"
        )


def test_functions_find_every_resource_they_use_in_their_environment(synth):
    functions = _functions(synth)
    for spec in t.FUNCTIONS:
        env = functions[spec.name]["Environment"]["Variables"]
        for name in spec.uses:
            variable = t.resource_env(name)
            if name in {m.name for m in t.MAILERS}:
                mailer = t.by_name(t.MAILERS, name)
                assert env[mailer.env] == "pushpipe@example.com"  # from sesIdentity=example.com
                assert _refs(env[mailer.configuration_set_env])
            elif variable:
                assert variable in env, f"{spec.name} lacks {variable} for {name!r}"
                assert _refs(env[variable]), f"{spec.name}: {variable} must point at the resource"
            if name in {c.name for c in t.CATALOGS}:
                catalog = t.by_name(t.CATALOGS, name)
                assert _refs(env[catalog.database_env]), f"{spec.name}: the Glue database"
        for key in spec.settings:
            assert key in env
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Pushpipe"


def test_deploy_parameters_replace_topology_defaults(synth):
    env = _functions(synth)["send_batch"]["Environment"]["Variables"]
    assert env[t.ENV_VAPID_SUBJECT] == "mailto:ops@example.com"


def test_every_function_that_pushes_or_takes_subscriptions_knows_the_deploys_push_hosts(synth):
    functions = _functions(synth)
    for name in ("send_batch", "ping_handler", "approval"):
        env = functions[name]["Environment"]["Variables"]
        assert env[t.ENV_PUSH_HOSTS] == "push.example.com", name
        assert t.ENV_PUSH_ORIGINS_ALLOWED not in env  # only the local cloud sets it


def test_send_batch_ping_url_is_the_http_api_pings_route(synth):
    env = _functions(synth)["send_batch"]["Environment"]["Variables"]
    api = _logical_id(synth, "AWS::ApiGatewayV2::Api", Name=f"{STACK}-api")
    assert env[t.ENV_PING_URL] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [api, "ApiEndpoint"]}, "/v1/pings"]]
    }
    assert any(r.path == "/v1/pings" and r.method == "POST" for r in t.ROUTES)


# --- send_batch recursion ------------------------------------------------------------
def test_send_batch_may_invoke_itself_and_lambda_does_not_cut_the_recursion(synth):
    name = function_name(STACK, t.SEND_BATCH.name)
    props = _functions(synth)[t.SEND_BATCH.name]
    assert props["RecursiveLoop"] == "Allow"
    assert props["Environment"]["Variables"][t.SEND_BATCH.env] == name
    invoke = [
        s
        for _, s in _statements(synth)
        if "lambda:InvokeFunction" in _as_list(s["Action"])
        and json.dumps(s["Resource"]).endswith(f':function:{name}"]]}}')
    ]
    assert len(invoke) == 1, "send_batch needs lambda:InvokeFunction on its own ARN"
    # Functions that do not recurse keep Lambda's loop protection.
    for spec in t.FUNCTIONS:
        if not spec.invokes_self:
            assert _functions(synth)[spec.name].get("RecursiveLoop", "Terminate") == "Terminate"


def test_async_invocations_retry_then_land_in_an_on_failure_queue(template, synth):
    fn = _logical_id(synth, "AWS::Lambda::Function", FunctionName=f"{STACK}-send-batch")
    configs = synth.resources("AWS::Lambda::EventInvokeConfig")
    (config,) = [
        c["Properties"] for c in configs.values() if c["Properties"]["FunctionName"] == {"Ref": fn}
    ]
    assert config["MaximumRetryAttempts"] == t.SEND_BATCH.async_retries
    assert config["MaximumEventAgeInSeconds"] == t.SEND_BATCH.async_max_event_age_s
    (queue,) = _refs(config["DestinationConfig"]["OnFailure"]["Destination"])
    assert synth.template["Resources"][queue]["Type"] == "AWS::SQS::Queue"


# --- least privilege -----------------------------------------------------------------
def test_no_wildcard_actions_in_any_policy(synth):
    for lid, statement in _statements(synth):
        for action in _as_list(statement["Action"]):
            assert "*" not in action, f"{lid} allows wildcard action {action}"


def test_data_resources_are_never_granted_on_resource_star(synth):
    data_types = {
        "AWS::DynamoDB::GlobalTable",
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::Kinesis::Stream",
        "AWS::KinesisFirehose::DeliveryStream",
        "AWS::SecretsManager::Secret",
    }
    services = ("dynamodb:", "s3:Get", "s3:Put", "sqs:", "kinesis:", "firehose:", "secretsmanager:")
    resources = synth.template["Resources"]
    for lid, statement in _statements(synth):
        targets = _as_list(statement["Resource"])
        actions = _as_list(statement["Action"])
        if any(a.startswith(services) for a in actions) and lid.startswith(
            ("SendBatch", "PingHandler", "Aggregate")
        ):
            assert "*" not in targets, f"{lid}: {actions} on Resource '*'"
            for target in targets:
                refs = _refs(target)
                assert refs, f"{lid}: {actions} on an ARN that names no stack resource: {target}"
                assert all(resources[r]["Type"] in data_types for r in refs)


def test_tables_grant_no_scan(synth):
    for _, statement in _statements(synth):
        assert "dynamodb:Scan" not in _as_list(statement["Action"])
    assert "dynamodb:Scan" not in TABLE_ACTIONS


def test_each_function_only_reaches_the_tables_it_uses(synth):
    tables = synth.resources("AWS::DynamoDB::GlobalTable")
    table_name = {
        lid: tb.name
        for tb in t.TABLES
        for lid in tables
        if lid.startswith(f"Storage{cid(tb.name)}Table")
    }
    assert len(table_name) == len(t.TABLES)
    for spec in t.FUNCTIONS:
        policy = f"{cid(spec.name)}FnRoleDefaultPolicy"
        reached = {
            table_name[r]
            for lid, s in _statements(synth)
            if lid.startswith(policy)
            for r in _refs(s["Resource"])
            if r in tables
        }
        assert reached == {n for n in spec.uses if n in table_name.values()}, spec.name


def _object_patterns(resource) -> set[tuple[str, str]]:
    """(bucket logical id, key pattern) of object ARNs ``Fn::Join [<bucket>.Arn, "/x*"]``."""
    out = set()
    for r in _as_list(resource):
        if isinstance(r, dict) and "Fn::Join" in r:
            parts = r["Fn::Join"][1]
            refs = [p["Fn::GetAtt"][0] for p in parts if isinstance(p, dict) and "Fn::GetAtt" in p]
            tail = "".join(p for p in parts if isinstance(p, str))
            if refs and tail.startswith("/"):
                out.add((refs[0], tail[1:]))
    return out


def test_functions_reach_the_audience_bucket_only_under_their_prefixes(synth):
    """send_batch reads only audiences/ (not drafts awaiting approval, not reports); the
    approval function drafts/ and audiences/; nobody reaches the whole audience bucket."""
    [audience] = [
        lid for lid in synth.resources("AWS::S3::Bucket") if lid.startswith("StorageAudience")
    ]
    expected = {
        "send_batch": {"audiences/*"},
        "approval": {"audiences/*", "drafts/*"},
        "scheduler": {"audiences/*", "scheduled-runs/*", "stale-subscriptions/*"},
    }
    for name, patterns in expected.items():
        policy = f"{cid(name)}FnRoleDefaultPolicy"
        reached = {
            pattern
            for lid, s in _statements(synth)
            if lid.startswith(policy) and "s3:GetObject" in _as_list(s["Action"])
            for bucket, pattern in _object_patterns(s["Resource"])
            if bucket == audience
        }
        assert reached == patterns, (name, reached)


# --- encryption, public access, retention ---------------------------------------------
def test_buckets_are_private_encrypted_ssl_only_logged_and_expiring(template, synth):
    buckets = synth.resources("AWS::S3::Bucket")
    assert len(buckets) == len(t.BUCKETS) + 2  # + access logs + Athena results
    for lid, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        assert props["LifecycleConfiguration"]["Rules"], f"{lid} has no lifecycle"
    template.resource_count_is("AWS::S3::BucketPolicy", len(buckets))
    for policy in synth.resources("AWS::S3::BucketPolicy").values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        )
    logged = [b for b in buckets.values() if "LoggingConfiguration" in b["Properties"]]
    assert len(logged) == len(buckets) - 1  # all but the access-log bucket itself


def test_audience_and_archive_buckets_are_versioned_and_expire_old_versions(synth):
    buckets = synth.resources("AWS::S3::Bucket")
    for name in ("Audience", "Archive"):
        [props] = [
            b["Properties"] for lid, b in buckets.items() if lid.startswith(f"Storage{name}")
        ]
        assert props["VersioningConfiguration"]["Status"] == "Enabled", name
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert rules["expire-noncurrent"]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 30


def test_audience_bucket_expires_files_after_topology_days(synth):
    rules = [
        r
        for b in synth.resources("AWS::S3::Bucket").values()
        for r in b["Properties"]["LifecycleConfiguration"]["Rules"]
        if r.get("ExpirationInDays") == t.AUDIENCE_BUCKET.expire_days
    ]
    assert rules


def test_tables_are_on_demand_with_pitr_ttl_and_sse(synth):
    tables = synth.resources("AWS::DynamoDB::GlobalTable")
    assert len(tables) == len(t.TABLES)
    by_keys = {}
    for table in tables.values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["SSESpecification"]["SSEEnabled"] is True
        (replica,) = props["Replicas"]
        assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        ttl = props.get("TimeToLiveSpecification", {})
        gsis = tuple(sorted(g["IndexName"] for g in props.get("GlobalSecondaryIndexes", [])))
        by_keys.setdefault(gsis, []).append(ttl.get("AttributeName"))
    for spec in t.TABLES:
        assert spec.ttl_attribute in by_keys[tuple(sorted(i.name for i in spec.indexes))]


def test_queues_streams_topics_and_firehoses_encrypt(synth):
    for lid, queue in synth.resources("AWS::SQS::Queue").items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, lid
    for stream in synth.resources("AWS::Kinesis::Stream").values():
        assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
        assert stream["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    for topic in synth.resources("AWS::SNS::Topic").values():
        assert "KmsMasterKeyId" in topic["Properties"]
    for delivery in synth.resources("AWS::KinesisFirehose::DeliveryStream").values():
        props = delivery["Properties"]
        if props["DeliveryStreamType"] == "DirectPut":
            assert props["DeliveryStreamEncryptionConfigurationInput"]["KeyType"] == "AWS_OWNED_CMK"
    for workgroup in synth.resources("AWS::Athena::WorkGroup").values():
        config = workgroup["Properties"]["WorkGroupConfiguration"]
        assert config["EnforceWorkGroupConfiguration"] is True
        assert (
            config["ResultConfiguration"]["EncryptionConfiguration"]["EncryptionOption"] == "SSE_S3"
        )


def test_secrets_hold_no_value_in_the_template_and_are_seeded_at_deploy(synth):
    secrets = synth.resources("AWS::SecretsManager::Secret")
    assert len(secrets) == len(t.SECRETS)
    for secret in secrets.values():
        assert "SecretString" not in secret["Properties"]
        assert secret["Properties"]["GenerateSecretString"]["SecretStringTemplate"] == (
            '{"seeded": false}'
        )
    seeds = synth.resources("Custom::PushpipeSecretSeed")
    assert sorted(s["Properties"]["Kind"] for s in seeds.values()) == sorted(
        s.kind for s in t.SECRETS
    )
    tenants = [
        s["Properties"].get("Tenants") for s in seeds.values() if "Tenants" in s["Properties"]
    ]
    assert tenants == [["acme", "globex"]]


# --- event wiring, DLQs ----------------------------------------------------------------
def test_audience_drop_is_notified_to_a_queue_with_a_dead_letter_queue(synth):
    (notification,) = synth.resources("Custom::S3BucketNotifications").values()
    (config,) = notification["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Events"] == ["s3:ObjectCreated:*"]
    assert config["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": t.AUDIENCE_PREFIX}
    ]
    (queue,) = _refs(config["QueueArn"])
    redrive = synth.template["Resources"][queue]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == t.AUDIENCE_QUEUE.max_receive_count
    (dlq,) = _refs(redrive["deadLetterTargetArn"])
    assert synth.template["Resources"][dlq]["Type"] == "AWS::SQS::Queue"


def test_event_source_mappings_report_partial_failures_and_keep_failed_records(synth):
    mappings = list(synth.resources("AWS::Lambda::EventSourceMapping").values())
    triggers = [
        tr for fn in t.FUNCTIONS for tr in fn.triggers if not isinstance(tr, t.ScheduleTrigger)
    ]
    assert len(mappings) == len(triggers)
    for mapping in mappings:
        props = mapping["Properties"]
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        if "StartingPosition" in props:  # a stream: bounded retries, failures kept
            assert props["BisectBatchOnFunctionError"] is True
            assert props["MaximumRetryAttempts"] >= 1
            (queue,) = _refs(props["DestinationConfig"]["OnFailure"]["Destination"])
            assert synth.template["Resources"][queue]["Type"] == "AWS::SQS::Queue"


def test_schedules_invoke_with_retries_and_a_dead_letter_queue(synth):
    rules = synth.resources("AWS::Events::Rule")
    schedules = [
        tr for fn in t.FUNCTIONS for tr in fn.triggers if isinstance(tr, t.ScheduleTrigger)
    ]
    assert len(rules) == len(schedules)
    by_expression = {r["Properties"]["ScheduleExpression"]: r["Properties"] for r in rules.values()}
    for schedule in schedules:
        expression = events.Schedule.rate(Duration.minutes(schedule.rate_minutes))
        rule = by_expression[expression.expression_string]
        (target,) = rule["Targets"]
        assert json.loads(target["Input"]) == schedule.payload
        assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
        assert "DeadLetterConfig" in target


def test_every_dead_letter_queue_has_an_alarm(synth):
    queues = synth.resources("AWS::SQS::Queue")
    redrive_targets = {
        r for q in queues.values() for r in _refs(q["Properties"].get("RedrivePolicy", {}))
    }
    invoke_targets = {
        r
        for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()
        for r in _refs(c["Properties"]["DestinationConfig"])
    }
    mapping_targets = {
        r
        for m in synth.resources("AWS::Lambda::EventSourceMapping").values()
        for r in _refs(m["Properties"].get("DestinationConfig", {}))
    }
    dead = redrive_targets | invoke_targets | mapping_targets
    assert dead
    alarmed = {
        d["Value"]["Fn::GetAtt"][0]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
        for d in a["Properties"]["Dimensions"]
    }
    assert dead <= alarmed, f"DLQs without an alarm: {dead - alarmed}"


# --- HTTP API --------------------------------------------------------------------------
def test_http_api_default_stage_is_throttled_and_logged(template):
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {
            "StageName": "$default",
            "AutoDeploy": True,
            "DefaultRouteSettings": {"ThrottlingRateLimit": 2000, "ThrottlingBurstLimit": 5000},
            "AccessLogSettings": {"DestinationArn": Match.any_value(), "Format": Match.any_value()},
        },
    )


def test_routes_have_their_own_throttles_and_say_how_they_authenticate(synth):
    [stage] = synth.resources("AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["RouteSettings"]
    for route in t.ROUTES:
        assert route.auth, f"{route.method} {route.path}"
        key = f"{route.method} {route.path}"
        if route.rate_limit:
            assert settings[key]["ThrottlingRateLimit"] == route.rate_limit
    assert "POST /v1/subscriptions" in settings and "POST /v1/requests" in settings
    [subscribe] = [r for r in t.ROUTES if (r.method, r.path) == ("POST", "/v1/subscriptions")]
    assert "site key" in subscribe.auth  # the reason of its APIG4 acknowledgement


def test_every_topology_route_exists_and_reaches_its_function(synth):
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in synth.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {f"{r.method} {r.path}" for r in t.ROUTES}
    integrations = synth.resources("AWS::ApiGatewayV2::Integration")
    for route in t.ROUTES:
        target = routes[f"{route.method} {route.path}"]["Target"]
        (integration,) = _refs(target)
        uri = integrations[integration]["Properties"]["IntegrationUri"]
        (points_at,) = _refs(uri)
        resource = synth.template["Resources"][points_at]
        spec = t.by_name(t.FUNCTIONS, route.function)
        if spec.canary:
            assert resource["Type"] == "AWS::Lambda::Alias"
        else:
            assert resource["Properties"]["FunctionName"] == function_name(STACK, spec.name)


# --- canary ----------------------------------------------------------------------------
def test_functions_behind_public_routes_have_reserved_concurrency(synth):
    public = {route.function for route in t.ROUTES}
    functions = synth.resources("AWS::Lambda::Function")
    for name in public:
        [fn] = [f for lid, f in functions.items() if lid.startswith(f"{cid(name)}Fn")]
        assert fn["Properties"].get("ReservedConcurrentExecutions"), name


def test_the_canary_gate_needs_a_minimum_of_genuine_errors(synth):
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    [canary] = [a["Properties"] for lid, a in alarms.items() if "CanaryErrors" in lid]
    [expression] = [m["Expression"] for m in canary["Metrics"] if "Expression" in m]
    assert "FILL(e, 0) >= 3" in expression and canary["Threshold"] == 5
    [security] = [a["Properties"] for lid, a in alarms.items() if "SecurityRefusals" in lid]
    assert security["AlarmActions"], "the security alarm notifies"


def test_canary_functions_deploy_10_percent_for_5_minutes_and_roll_back_on_alarm(synth):
    canaries = [fn for fn in t.FUNCTIONS if fn.canary]
    assert [fn.name for fn in canaries] == ["ping_handler"]
    groups = synth.resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == len(canaries)
    for group in groups.values():
        props = group["Properties"]
        assert props["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
        assert props["AlarmConfiguration"]["Enabled"] is True
        # only the alias's own genuine errors (with a minimum volume) roll a canary back:
        # forged pings and hostile bodies raise the security alarm, which gates nothing
        [gate] = props["AlarmConfiguration"]["Alarms"]
        assert "CanaryErrors" in str(gate), gate
        assert set(props["AutoRollbackConfiguration"]["Events"]) >= {
            "DEPLOYMENT_FAILURE",
            "DEPLOYMENT_STOP_ON_ALARM",
        }
    for alias in synth.resources("AWS::Lambda::Alias").values():
        assert "CodeDeployLambdaAliasUpdate" in str(alias.get("UpdatePolicy", {}))


# --- archive, audit --------------------------------------------------------------------
def test_firehoses_write_gzip_hourly_partitions_into_the_archive_bucket(synth):
    deliveries = synth.resources("AWS::KinesisFirehose::DeliveryStream")
    assert len(deliveries) == len(t.DELIVERY_STREAMS)
    prefixes = set()
    for delivery in deliveries.values():
        s3 = delivery["Properties"]["ExtendedS3DestinationConfiguration"]
        assert s3["CompressionFormat"] == "GZIP"
        assert s3["Prefix"].endswith("/!{timestamp:yyyy/MM/dd/HH}/")
        assert "!{firehose:error-output-type}" in s3["ErrorOutputPrefix"]
        prefixes.add(s3["Prefix"].split("!")[0])
    assert prefixes == {d.prefix for d in t.DELIVERY_STREAMS}
    sourced = [
        d
        for d in deliveries.values()
        if d["Properties"]["DeliveryStreamType"] == "KinesisStreamAsSource"
    ]
    assert len(sourced) == sum(1 for d in t.DELIVERY_STREAMS if d.source_stream)


def test_glue_tables_project_hour_partitions_and_athena_has_the_named_queries(synth):
    tables = {
        t_["Properties"]["TableInput"]["Name"]: t_["Properties"]["TableInput"]
        for t_ in synth.resources("AWS::Glue::Table").values()
    }
    assert set(tables) == {tb.name for tb in schema.TABLES}
    for spec in schema.TABLES:
        table = tables[spec.name]
        params = table["Parameters"]
        assert params["projection.enabled"] == "true"
        assert params["projection.dt.format"] == "yyyy/MM/dd/HH"
        assert params["storage.location.template"]["Fn::Join"][1][-1] == f"/{spec.prefix}${{dt}}/"
        assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == [
            n for n, _ in spec.columns
        ]
        assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    queries = synth.resources("AWS::Athena::NamedQuery")
    assert sorted(q["Properties"]["Name"] for q in queries.values()) == sorted(
        q.name for q in schema.NAMED_QUERIES
    )


def test_only_functions_that_use_the_audit_catalogue_may_query_it_in_its_workgroup(synth):
    workgroup = _logical_id(synth, "AWS::Athena::WorkGroup")
    name = synth.resources("AWS::Athena::WorkGroup")[workgroup]["Properties"]["Name"]
    for spec in t.FUNCTIONS:
        policy = f"{cid(spec.name)}FnRoleDefaultPolicy"
        athena = [
            s
            for lid, s in _statements(synth)
            if lid.startswith(policy)
            and any(a.startswith("athena:") for a in _as_list(s["Action"]))
        ]
        if t.AUDIT_CATALOG.name not in spec.uses:
            assert not athena, spec.name
            continue
        (statement,) = athena
        assert "athena:StartQueryExecution" in statement["Action"]
        # the one workgroup (its name inside the ARN), which enforces the result location,
        # its encryption and the per-query scan limit
        (arn,) = _as_list(statement["Resource"])
        assert f"workgroup/{name}" in json.dumps(arn)
        glue = [
            s
            for lid, s in _statements(synth)
            if lid.startswith(policy) and "glue:GetTable" in _as_list(s["Action"])
        ]
        assert glue and all("*" not in json.dumps(s["Resource"]) for s in glue)
        assert "archive" in spec.uses  # Athena reads the archive with the caller's rights


# --- alarms, dashboard, outputs ----------------------------------------------------------
def test_alarms_cover_function_errors_throttles_and_domain_rates(synth):
    alarms = list(synth.resources("AWS::CloudWatch::Alarm").values())
    by_metric: dict[str, int] = {}
    for alarm in alarms:
        by_metric[alarm["Properties"].get("MetricName", "math")] = (
            by_metric.get(alarm["Properties"].get("MetricName", "math"), 0) + 1
        )
        assert alarm["Properties"]["AlarmActions"], "every alarm notifies the topic"
    assert by_metric["Errors"] >= len(t.FUNCTIONS)
    assert by_metric["Throttles"] == len(t.FUNCTIONS)
    text = json.dumps([a["Properties"].get("Metrics") for a in alarms])
    for name in (*SENDS_FAILED, *PINGS_REJECTED):
        assert f'"MetricName": "{name}"' in text
        assert '"Namespace": "Pushpipe"' in text


def test_outputs_name_the_bucket_and_the_api(synth):
    outputs = synth.template["Outputs"]
    assert {"AudienceBucketName", "ApiUrl", "ArchiveBucketName", "AthenaWorkGroup"} <= set(outputs)
    assert "audiences/" in outputs["AudienceBucketName"]["Description"]
    (seed,) = _refs(outputs["VapidPublicKey"]["Value"])
    assert synth.template["Resources"][seed]["Properties"]["Kind"] == "vapid"
