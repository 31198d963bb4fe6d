"""Secrets Manager: the model provider's API key and the key that signs stream URLs.

Both runtimes read the same secrets. The model key: Lambda by ARN at its first model call,
ECS injects it when a task starts. The URL-token key: both by ARN when first needed and
again on rotation (AWSCURRENT signs, AWSPREVIOUS still verifies; core/auth/keys.py).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.nag import acknowledge

PLACEHOLDER_KEY = "set-me: aws secretsmanager put-secret-value"


class AppSecrets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, name: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY
        # The value is set after deploy (docs/deploy.md); CloudFormation never sees it.
        self.openai_api_key = secretsmanager.Secret(
            self,
            "OpenAiApiKey",
            secret_name=f"{name}/openai-api-key",
            description="OpenAI (or compatible) API key for the model provider",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                # A recognisable non-key so a forgotten step fails loudly at the provider.
                secret_string_template=f'{{"note": "{PLACEHOLDER_KEY}"}}',
                generate_string_key="unused",
            ),
            removal_policy=removal,
        )
        # Signs the short-lived URL tokens of EventSource/WebSocket URLs (both runtimes).
        self.url_token_secret = secretsmanager.Secret(
            self,
            "UrlTokenSecret",
            secret_name=f"{name}/url-token-secret",
            description="HMAC key for short-lived stream URL tokens",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=64, exclude_punctuation=True
            ),
            removal_policy=removal,
        )
        acknowledge(
            self.openai_api_key,
            "AwsSolutions-SMG4",
            "Third-party API key: it is rotated at the provider, then stored"
            " with put-secret-value; Secrets Manager cannot rotate it itself.",
        )
        acknowledge(
            self.url_token_secret,
            "AwsSolutions-SMG4",
            "Signs URL tokens that live minutes; automatic rotation would need"
            " a rotation Lambda for no real gain. Rotate with put-secret-value:"
            " every process re-reads it and still verifies the previous value, no"
            " restart (docs/deploy.md, 'Secrets and rotation').",
        )
