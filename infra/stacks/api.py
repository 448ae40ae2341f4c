"""The HTTP API (API Gateway v2): pings, orders, reports and approval links.

Routes come from ``topology.ROUTES``. The API is built before the functions (they
learn its URL from their environment, ``Function.api_paths``) and the routes after
them.
"""

from __future__ import annotations

import jsii
from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.config import DeployConfig
from infra.stacks.nag import acknowledge
from infra.stacks.names import cid
from pushpipe import topology as t

ACCESS_LOG_FORMAT = apigw.AccessLogFormat.custom(
    '{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",'
    '"requestTime":"$context.requestTime","method":"$context.httpMethod",'
    '"route":"$context.routeKey","status":"$context.status",'
    '"latencyMs":"$context.responseLatency","integrationStatus":"$context.integrationStatus",'
    '"error":"$context.error.message","integrationError":"$context.integrationErrorMessage"}'
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """``IAccessLogSettings`` is an interface: jsii needs a Python object implementing it."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return ACCESS_LOG_FORMAT


class HttpApi(Construct):
    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        config: DeployConfig,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, cid_)
        self.api = apigwv2.HttpApi(
            self,
            "Api",
            api_name=f"{config.stack_name}-api",
            description="pushpipe: delivery/click pings, orders, reports, approval links",
            create_default_stage=False,
            # No API-level CORS: the OPTIONS routes in the topology reach the function,
            # which answers preflights itself (the same code answers them locally).
        )
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=RemovalPolicy.DESTROY
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit
            ),
            access_log_settings=_AccessLogSettings(self.access_logs),
        )
        self.routes: list[apigwv2.HttpRoute] = []

    @property
    def url(self) -> str:
        """Base URL without a trailing slash: ``https://<id>.execute-api.<region>.amazonaws.com``."""
        return self.api.api_endpoint

    def add_routes(self, functions: dict, authorizer: apigwv2.IHttpRouteAuthorizer) -> None:
        """One route per ``topology.ROUTES`` entry, integrated with the function (or alias);
        ``signed_in`` routes behind the JWT ``authorizer`` of the people's issuer."""
        integrations_by_fn: dict[str, integrations.HttpLambdaIntegration] = {}
        for route in t.ROUTES:
            if route.function not in functions:
                raise KeyError(
                    f"route {route.method} {route.path} is served by {route.function!r}, "
                    "which the topology does not declare"
                )
            if route.function not in integrations_by_fn:
                integrations_by_fn[route.function] = integrations.HttpLambdaIntegration(
                    cid(route.function, "Integration"),
                    functions[route.function].target,
                    payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0,
                )
            method = apigwv2.HttpMethod[route.method.upper()]
            route_id = cid(f"{route.method.lower()}-{route.path}", "Route")
            created = apigwv2.HttpRoute(
                self,
                route_id.replace("{", "").replace("}", ""),
                http_api=self.api,
                route_key=apigwv2.HttpRouteKey.with_(route.path, method),
                integration=integrations_by_fn[route.function],
                authorizer=authorizer if route.signed_in else None,
            )
            if not route.auth:
                raise ValueError(
                    f"route {route.method} {route.path} does not say how it authenticates"
                )
            self.routes.append(created)
            if route.signed_in:
                continue  # API Gateway checks the token: nothing to acknowledge
            acknowledge(
                created,
                "AwsSolutions-APIG4",
                f"{route.method} {route.path}: callers hold no AWS identity; {route.auth}.",
            )
        self._throttle_routes()

    def _throttle_routes(self) -> None:
        """Per-route throttles from the topology (the stage's limits apply to the rest)."""
        settings = {
            f"{r.method.upper()} {r.path}": {
                "ThrottlingRateLimit": r.rate_limit,
                "ThrottlingBurstLimit": r.burst_limit or r.rate_limit,
            }
            for r in t.ROUTES
            if r.rate_limit
        }
        stage = self.stage.node.default_child
        stage.add_property_override("RouteSettings", settings)
        for route in self.routes:  # the settings name route keys: create the routes first
            stage.add_dependency(route.node.default_child)
