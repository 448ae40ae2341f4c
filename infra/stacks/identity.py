"""Where people sign in: a Cognito user pool by default, or any OIDC issuer.

``topology.PEOPLE`` declares the issuer; this construct makes it real. Without the
``pushpipe:oidcIssuer`` deploy parameter the stack creates a user pool with one group per
tenant and role (``<tenant>:<role>``, the groups claim ``pushpipe/shared/identity.py``
reads), a public app client for the pages' authorization code flow with PKCE (its
callback is the HTTP API's ``PEOPLE.callback_path``) and the CLI, and a hosted sign-in
domain. With the parameter, the issuer, its client id, its sign-in and token endpoints and
its groups claim come from the deploy parameters and nothing is created.

Either way API Gateway's JWT authorizer (``authorizer``) checks every ``signed_in``
route's token (signature from the issuer's JWKS, issuer, audience or client id, expiry)
before a function runs, and the functions that ``use`` the issuer find the same values in
their environment (``env_values``).
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.stacks.config import DeployConfig
from pushpipe import topology as t
from pushpipe.shared.identity import ROLES


class People(Construct):
    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        config: DeployConfig,
        api_url: str,
        spec: t.Issuer = t.PEOPLE,
    ) -> None:
        super().__init__(scope, cid_)
        self.spec = spec
        self.user_pool: cognito.UserPool | None = None
        self.client: cognito.UserPoolClient | None = None
        self.groups: list[cognito.CfnUserPoolGroup] = []
        self.callback_url = api_url.rstrip("/") + spec.callback_path
        if config.oidc_issuer:
            self.issuer = config.oidc_issuer
            self.client_id = str(config.oidc_client_id)
            self.authorize_url = str(config.oidc_authorize_url)
            self.token_url = str(config.oidc_token_url)
            self.groups_claim = config.oidc_groups_claim
        else:
            self._build_user_pool(config)
        self.authorizer = authorizers.HttpJwtAuthorizer(
            spec.authorizer,
            self.issuer,
            jwt_audience=[self.client_id],
            identity_source=[spec.identity_source],
            authorizer_name=f"{config.stack_name}-{spec.authorizer}",
        )

    def env_values(self) -> dict[str, str]:
        return self.spec.env_values(
            self.issuer, self.client_id, self.authorize_url, self.token_url, self.groups_claim
        )

    def _build_user_pool(self, config: DeployConfig) -> None:
        pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{config.stack_name}-people",
            self_sign_up_enabled=False,  # an administrator invites people into tenants
            sign_in_aliases=cognito.SignInAliases(email=True),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.REQUIRED,  # approvers release campaigns to millions
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.PLUS,
            standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
            removal_policy=RemovalPolicy.RETAIN,  # people and their MFA survive a redeploy
        )
        self.client = pool.add_client(
            "Client",
            user_pool_client_name=f"{config.stack_name}-pages-and-cli",
            generate_secret=False,  # a browser page and a CLI cannot keep a secret: PKCE
            auth_flows=cognito.AuthFlow(user_srp=True, user_password=True),
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.PROFILE,
                ],
                callback_urls=[self.callback_url],
                logout_urls=[self.callback_url],
            ),
            prevent_user_existence_errors=True,
            id_token_validity=Duration.seconds(self.spec.token_lifetime_s),
            access_token_validity=Duration.seconds(self.spec.token_lifetime_s),
            refresh_token_validity=Duration.days(1),
            enable_token_revocation=True,
        )
        prefix = config.cognito_domain_prefix or f"{config.stack_name.lower()}-{Aws.ACCOUNT_ID}"
        domain = pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix)
        )
        for tenant in config.tenants:
            for role in ROLES:
                self.groups.append(
                    cognito.CfnUserPoolGroup(
                        self,
                        f"Group-{tenant}-{role.value}",
                        user_pool_id=pool.user_pool_id,
                        group_name=f"{tenant}:{role.value}",
                        description=f"{role.value} of tenant {tenant}",
                    )
                )
        self.user_pool = pool
        # as API Gateway's own Cognito authorizer spells it (the token's ``iss``)
        region = Stack.of(self).region
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool.user_pool_id}"
        self.client_id = self.client.user_pool_client_id
        self.authorize_url = domain.base_url() + "/oauth2/authorize"
        self.token_url = domain.base_url() + "/oauth2/token"
        self.groups_claim = self.spec.groups_claim
