"""People sign in: the stack's Cognito user pool (or another OIDC issuer) and API
Gateway's JWT authorizer on exactly the topology's ``signed_in`` routes."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from infra.cdk_app import build_app
from infra.stacks.config import ConfigError, DeployConfig
from pushpipe import topology as t
from pushpipe.shared.identity import ROLES

EXTERNAL = {
    "pushpipe:oidcIssuer": "https://login.example.com/realms/shop",
    "pushpipe:oidcClientId": "pushpipe-pages",
    "pushpipe:oidcAuthorizeUrl": "https://login.example.com/realms/shop/auth",
    "pushpipe:oidcTokenUrl": "https://login.example.com/realms/shop/token",
    "pushpipe:oidcGroupsClaim": "groups",
}


def _route_keys(synth) -> dict[str, dict]:
    return {
        r["Properties"]["RouteKey"]: r for r in synth.resources("AWS::ApiGatewayV2::Route").values()
    }


def _authorizer(synth) -> dict:
    (authorizer,) = synth.resources("AWS::ApiGatewayV2::Authorizer").values()
    return authorizer["Properties"]


def test_signed_in_routes_and_only_those_are_behind_the_jwt_authorizer(synth):
    routes = _route_keys(synth)
    for route in t.ROUTES:
        props = routes[f"{route.method} {route.path}"]["Properties"]
        if route.signed_in:
            assert props["AuthorizationType"] == "JWT", route.path
            assert "AuthorizerId" in props
        else:
            assert props.get("AuthorizationType", "NONE") == "NONE", route.path
    assert any(r.signed_in for r in t.ROUTES) and not all(r.signed_in for r in t.ROUTES)


def test_the_authorizer_trusts_the_user_pool_and_its_client_from_the_topology(synth):
    props = _authorizer(synth)
    assert props["AuthorizerType"] == "JWT"
    assert props["IdentitySource"] == [t.PEOPLE.identity_source]
    issuer = props["JwtConfiguration"]["Issuer"]
    assert "cognito-idp" in str(issuer)
    (pool_id,) = synth.resources("AWS::Cognito::UserPool")
    (client_id,) = synth.resources("AWS::Cognito::UserPoolClient")
    assert pool_id in str(issuer)
    assert props["JwtConfiguration"]["Audience"] == [{"Ref": client_id}]


def test_the_user_pool_is_invite_only_mfa_and_has_a_group_per_tenant_and_role(synth):
    (pool,) = synth.resources("AWS::Cognito::UserPool").values()
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert props["MfaConfiguration"] == "ON"
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    groups = {
        g["Properties"]["GroupName"]
        for g in synth.resources("AWS::Cognito::UserPoolGroup").values()
    }
    assert groups == {f"{tenant}:{role.value}" for tenant in ("acme", "globex") for role in ROLES}


def test_the_pages_client_is_public_with_the_code_flow_back_to_the_api(synth):
    (client,) = synth.resources("AWS::Cognito::UserPoolClient").values()
    props = client["Properties"]
    assert props.get("GenerateSecret", False) is False
    assert props["AllowedOAuthFlows"] == ["code"]
    assert set(props["AllowedOAuthScopes"]) >= {"openid", "email"}
    (callback,) = props["CallbackURLs"]
    assert t.PEOPLE.callback_path in str(callback)


def test_functions_that_use_the_issuer_find_it_in_their_environment(synth):
    users = {f.name for f in t.FUNCTIONS if t.PEOPLE.name in f.uses}
    assert users == {"ping_handler", "approval"}
    for fn in synth.resources("AWS::Lambda::Function").values():
        env = fn["Properties"].get("Environment", {}).get("Variables", {})
        name = str(fn["Properties"].get("FunctionName", ""))
        if any(name.endswith(u.replace("_", "-")) or u in name for u in users):
            for key in (t.ENV_OIDC_ISSUER, t.ENV_OIDC_CLIENT_ID, t.ENV_OIDC_TOKEN_URL):
                assert env.get(key), (name, key)
            assert env[t.ENV_OIDC_GROUPS_CLAIM] == "cognito:groups"


def test_another_oidc_issuer_replaces_the_user_pool(cdk_context):
    _, stack = build_app(cdk.App(context=cdk_context(**EXTERNAL)))
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::Cognito::UserPool", 0)
    authorizer = template.find_resources("AWS::ApiGatewayV2::Authorizer")
    (props,) = [a["Properties"] for a in authorizer.values()]
    assert props["JwtConfiguration"] == {
        "Issuer": EXTERNAL["pushpipe:oidcIssuer"],
        "Audience": ["pushpipe-pages"],
    }
    approval = [
        f["Properties"]["Environment"]["Variables"]
        for f in template.find_resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Environment", {}).get("Variables", {}).get(t.ENV_OIDC_ISSUER)
    ]
    assert approval and all(v[t.ENV_OIDC_GROUPS_CLAIM] == "groups" for v in approval)


@pytest.mark.parametrize(
    "drop, message",
    [
        ("pushpipe:oidcClientId", "oidcClientId"),
        ("pushpipe:oidcTokenUrl", "oidcTokenUrl"),
    ],
)
def test_an_incomplete_issuer_is_refused_with_the_missing_keys(cdk_context, drop, message):
    ctx = {k: v for k, v in cdk_context(**EXTERNAL).items() if k != drop}
    with pytest.raises(ConfigError) as err:
        DeployConfig.from_context(ctx.get)
    assert message in str(err.value)


def test_an_issuer_must_be_https(cdk_context):
    ctx = cdk_context(**{**EXTERNAL, "pushpipe:oidcIssuer": "http://login.example.com"})
    with pytest.raises(ConfigError) as err:
        DeployConfig.from_context(ctx.get)
    assert "oidcIssuer" in str(err.value)
