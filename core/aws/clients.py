"""boto3 clients built once per process, using boto3's own adaptive retries."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

RETRY_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 5},
    connect_timeout=2,
    read_timeout=10,
    max_pool_connections=64,
)


def _kwargs(settings: Settings, endpoint: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"region_name": settings.aws_region, "config": RETRY_CONFIG}
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return kwargs


@lru_cache(maxsize=8)
def dynamodb(settings: Settings) -> DynamoDBClient:
    return boto3.client("dynamodb", **_kwargs(settings, settings.dynamodb_endpoint_url))


@lru_cache(maxsize=8)
def s3(settings: Settings) -> S3Client:
    return boto3.client("s3", **_kwargs(settings, settings.s3_endpoint_url))


@lru_cache(maxsize=8)
def sqs(settings: Settings) -> SQSClient:
    return boto3.client("sqs", **_kwargs(settings, settings.sqs_endpoint_url))
