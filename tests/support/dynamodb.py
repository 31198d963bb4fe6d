"""A boto3 DynamoDB client for the moto server the nodes under test share (its endpoint and
credentials from the node environment), so a test can look at what a node stored."""

from __future__ import annotations

from typing import Any

import boto3


def dynamodb_client(env: dict[str, str]) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=env["DYNAMODB_ENDPOINT_URL"],
        region_name=env.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY", "local"),
    )
