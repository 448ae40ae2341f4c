"""Adding a function, a queue or a route is one change in pushpipe/topology.py.

These tests add entries to the topology (monkeypatched) and check that the stack grows
accordingly with no change in infra/, and that a mistake in the topology stops the
synth with a message naming it.
"""

from __future__ import annotations

import dataclasses

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from infra.stacks.config import DeployConfig
from infra.stacks.pushpipe_stack import PushpipeStack
from pushpipe import topology as t

EXPORTS = t.Queue("exports", env="EXPORTS_QUEUE", visibility_timeout_s=120)
EXPORTER = t.Function(
    name="exporter",
    handler="functions.exporter.handler.handler",
    env=None,
    timeout_s=60,
    memory_mb=256,
    uses=("audience", "runs", "exports"),
    writes=("audience",),
    triggers=(
        t.SqsTrigger("exports", batch_size=10),
        t.ScheduleTrigger("nightly-export", rate_minutes=1440, payload={"action": "export"}),
    ),
    reserved_concurrency=2,
)
EXPORT_ROUTE = t.Route("POST", "/v1/exports", "exporter", "an operator's signed request")
MAILER = t.Function(
    name="mailer",
    handler="functions.mailer.handler.handler",
    env=None,
    timeout_s=30,
    memory_mb=256,
    uses=("mail",),
    settings={t.ENV_APPROVER_EMAILS: "local@example.com"},
)


def _stack(cdk_context) -> Template:
    app = cdk.App(context=cdk_context())
    config = DeployConfig.from_context(app.node.try_get_context)
    code = cdk.aws_lambda.Code.from_inline("def handler(event, context):\n    return None\n")
    stack = PushpipeStack(app, "Pushpipe", config=config, code=code)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def grown(cdk_context) -> Template:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(t, "QUEUES", (*t.QUEUES, EXPORTS))
        mp.setattr(t, "FUNCTIONS", (*t.FUNCTIONS, EXPORTER, MAILER))
        mp.setattr(t, "ROUTES", (*t.ROUTES, EXPORT_ROUTE))
        return _stack(cdk_context)


def test_a_new_function_gets_its_lambda_role_grants_triggers_route_and_alarms(grown):
    grown.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "Pushpipe-exporter",
            "Handler": EXPORTER.handler,
            "ReservedConcurrentExecutions": 2,
            "Environment": {
                "Variables": Match.object_like(
                    {"EXPORTS_QUEUE": Match.any_value(), t.ENV_RUNS_TABLE: Match.any_value()}
                )
            },
        },
    )
    grown.has_resource_properties(
        "AWS::Lambda::EventSourceMapping", {"BatchSize": 10, "FunctionName": Match.any_value()}
    )
    grown.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": "rate(1 day)", "Targets": Match.any_value()},
    )
    grown.has_resource_properties("AWS::ApiGatewayV2::Route", {"RouteKey": "POST /v1/exports"})
    grown.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "Errors",
            "Dimensions": [{"Name": "FunctionName", "Value": Match.any_value()}],
        },
    )
    # writes= adds PutObject on the bucket's objects, next to GetObject
    policies = grown.find_resources("AWS::IAM::Policy")
    (exporter_policy,) = [v for k, v in policies.items() if k.startswith("ExporterFnRole")]
    actions = [
        a
        for s in exporter_policy["Properties"]["PolicyDocument"]["Statement"]
        for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]
    assert {"s3:GetObject", "s3:PutObject", "sqs:SendMessage", "dynamodb:Query"} <= set(actions)
    assert "lambda:InvokeFunction" not in actions  # it does not invoke itself


def test_a_function_using_mail_sends_from_the_ses_identity_to_the_deployed_approvers(grown):
    grown.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "FunctionName": "Pushpipe-mailer",
            "Environment": {
                "Variables": Match.object_like(
                    {
                        t.ENV_MAIL_FROM: "pushpipe@example.com",
                        t.ENV_MAIL_CONFIGURATION_SET: {"Ref": Match.string_like_regexp("Mail")},
                        t.ENV_APPROVER_EMAILS: "alice@example.com,bob@example.com",
                    }
                )
            },
        },
    )
    policies = grown.find_resources("AWS::IAM::Policy")
    (policy,) = [v for k, v in policies.items() if k.startswith("MailerFnRole")]
    (send,) = [
        s
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
        if "ses:SendEmail" in s["Action"]
    ]
    assert send["Condition"] == {"StringEquals": {"ses:FromAddress": "pushpipe@example.com"}}
    assert len(send["Resource"]) == 2  # the identity and the configuration set, nothing else


def test_a_new_queue_gets_a_dead_letter_queue_and_its_alarm(grown):
    queues = grown.find_resources("AWS::SQS::Queue")
    exports = [v for k, v in queues.items() if k.startswith("StorageExportsQueue")]
    assert len(exports) == 1
    assert exports[0]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 3
    assert [k for k in queues if k.startswith("StorageExportsDlq")]


def test_a_function_using_an_undeclared_resource_stops_the_synth(cdk_context, monkeypatch):
    broken = dataclasses.replace(EXPORTER, uses=("audience", "nonexistent"), triggers=(), writes=())
    monkeypatch.setattr(t, "FUNCTIONS", (*t.FUNCTIONS, broken))
    with pytest.raises(Exception, match="uses 'nonexistent', which the topology does not declare"):
        _stack(cdk_context)


def test_an_unknown_trigger_type_stops_the_synth(cdk_context, monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class CarrierPigeon:
        loft: str

    broken = dataclasses.replace(EXPORTER, uses=(), writes=(), triggers=(CarrierPigeon("roof"),))
    monkeypatch.setattr(t, "FUNCTIONS", (*t.FUNCTIONS, broken))
    with pytest.raises(Exception, match="no CDK mapping for trigger type CarrierPigeon"):
        _stack(cdk_context)


def test_a_queue_that_would_redeliver_during_processing_stops_the_synth(cdk_context, monkeypatch):
    short = dataclasses.replace(EXPORTS, visibility_timeout_s=30)
    monkeypatch.setattr(t, "QUEUES", (*t.QUEUES, short))
    monkeypatch.setattr(t, "FUNCTIONS", (*t.FUNCTIONS, dataclasses.replace(EXPORTER, writes=())))
    with pytest.raises(
        Exception, match="visibility timeout 30s is shorter than exporter's timeout 60s"
    ):
        _stack(cdk_context)
