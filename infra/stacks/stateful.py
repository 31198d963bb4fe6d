"""The stateful stack: data, secrets and the user pool - everything that must outlive a
redeploy of the services (retained on ``cdk destroy`` unless ``data.retain`` is false)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import AppConfig
from infra.constructs.auth import Auth
from infra.constructs.data import DataStore
from infra.constructs.runtime_env import ResourceNames, StatefulRefs
from infra.constructs.secrets import AppSecrets


class StatefulStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        names = ResourceNames.of(config)
        self.data = DataStore(self, "Data", config=config.data, names=names)
        self.secrets = AppSecrets(self, "Secrets", name=config.name, retain=config.data.retain)
        self.auth = Auth(
            self, "Auth", name=config.name, config=config.auth, retain=config.data.retain
        )
        self.refs = StatefulRefs(
            names=names,
            openai_api_key=self.secrets.openai_api_key,
            url_token_secret=self.secrets.url_token_secret,
            jwt_issuer=self.auth.issuer,
            jwt_jwks_url=self.auth.jwks_url,
            jwt_audience=self.auth.audience,
        )
        CfnOutput(self, "UserPoolId", value=self.auth.user_pool.user_pool_id)
        CfnOutput(self, "UserPoolClientId", value=self.auth.audience)
        CfnOutput(self, "OpenAiSecretArn", value=self.secrets.openai_api_key.secret_arn)
