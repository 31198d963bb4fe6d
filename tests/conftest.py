"""Shared fixtures: an embedded moto server over HTTP, settings, dev tokens."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from core.auth.dev import DevTokens
from core.aws import clients
from core.aws.tables import ensure_tables
from core.settings import Settings
from devstack.local_aws import LocalAws

# No test may reach real AWS: point everything at moto unless a fixture says otherwise.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="session")
def local_aws() -> Iterator[LocalAws]:
    """moto's server over HTTP on 127.0.0.1 (DynamoDB, S3, SQS), shared by the session."""
    aws = LocalAws.start()
    yield aws
    aws.stop()


@pytest.fixture(scope="session")
def aws_env(local_aws: LocalAws) -> dict[str, str]:
    return local_aws.environ()


@pytest.fixture
def settings(aws_env: dict[str, str]) -> Settings:
    """Fast local-model settings against the embedded AWS, with tables created."""
    s = Settings(
        dynamodb_endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        s3_endpoint_url=aws_env["S3_ENDPOINT_URL"],
        sqs_endpoint_url=aws_env["SQS_ENDPOINT_URL"],
        local_ttft_ms=20,
        local_token_delay_ms=2,
    )
    ensure_tables(clients.dynamodb(s), s)
    return s


@pytest.fixture
def dev_tokens(settings: Settings) -> DevTokens:
    return DevTokens(settings.auth_dev_secret.get_secret_value(), settings.dev_token_ttl_s)


@pytest.fixture
def token(dev_tokens: DevTokens) -> str:
    return dev_tokens.mint("alice")
