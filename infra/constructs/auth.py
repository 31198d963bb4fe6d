"""Auth: a Cognito user pool and a public app client (SPA/CLI, no client secret).

The HTTP API's JWT authorizer and both runtimes (``AUTH_MODE=jwt``) verify the pool's tokens:
issuer ``https://cognito-idp.<region>.amazonaws.com/<pool id>``, audience = the client id
(Cognito access tokens carry it as ``client_id``, ID tokens as ``aud``; both are accepted).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.config import AuthConfig
from infra.nag import acknowledge


class Auth(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, name: str, config: AuthConfig, retain: bool
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name=f"{name}-users",
            self_sign_up_enabled=config.self_sign_up,
            sign_in_aliases=cognito.SignInAliases(email=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=True,
                require_symbols=True,
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=retain,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        self.client = self.user_pool.add_client(
            "WebClient",
            user_pool_client_name=f"{name}-web",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True, user_password=config.allow_password_auth),
            access_token_validity=Duration.minutes(config.access_token_minutes),
            id_token_validity=Duration.minutes(config.access_token_minutes),
            refresh_token_validity=Duration.days(30),
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )
        region = Stack.of(self).region
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool.user_pool_id}"
        self.jwks_url = f"{self.issuer}/.well-known/jwks.json"
        self.audience = self.client.user_pool_client_id

        acknowledge(
            self.user_pool,
            "AwsSolutions-COG2",
            "MFA is optional (TOTP) so API/CLI users of a template can sign in;"
            " teams that need it set Mfa.REQUIRED.",
        )
        acknowledge(
            self.user_pool,
            "AwsSolutions-COG8",
            "The Plus feature plan is billed per monthly active user; Essentials keeps an"
            " idle deployment free. Switch feature_plan to PLUS for threat protection.",
        )
