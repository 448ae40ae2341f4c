"""SES identity and configuration set for approval mail."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ses as ses
from constructs import Construct

from infra.stacks.config import DeployConfig


class Mail(Construct):
    """The sending identity (an address, or a whole domain) and its configuration set."""

    def __init__(self, scope: Construct, cid_: str, *, config: DeployConfig) -> None:
        super().__init__(scope, cid_)
        self.config = config
        identity = (
            ses.Identity.domain(config.ses_identity)
            if config.ses_is_domain
            else ses.Identity.email(config.ses_identity)
        )
        self.configuration_set = ses.ConfigurationSet(
            self,
            "ConfigurationSet",
            reputation_metrics=True,
            sending_enabled=True,
            tls_policy=ses.ConfigurationSetTlsPolicy.REQUIRE,
            suppression_reasons=ses.SuppressionReasons.BOUNCES_AND_COMPLAINTS,
        )
        self.identity = ses.EmailIdentity(
            self,
            "Identity",
            identity=identity,
            configuration_set=self.configuration_set,
        )

    @property
    def identity_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="ses", resource="identity", resource_name=self.identity.email_identity_name
        )

    @property
    def configuration_set_arn(self) -> str:
        return Stack.of(self).format_arn(
            service="ses",
            resource="configuration-set",
            resource_name=self.configuration_set.configuration_set_name,
        )

    def grant_send(self, grantee: iam.IGrantable) -> None:
        """ses:SendEmail / SendRawEmail from this identity, through this configuration set.

        In the SES sandbox every recipient must be a verified identity too; the SES
        v2 API authorises the sender identity and the configuration set.
        """
        grantee.grant_principal.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["ses:SendEmail", "ses:SendRawEmail"],
                resources=[self.identity_arn, self.configuration_set_arn],
                conditions={"StringEquals": {"ses:FromAddress": self.config.mail_from}},
            )
        )
