"""The DynamoDB tables both runtimes share, as data: the CDK app and local setup use these.

Both tables use a generic ``pk``/``sk`` string key and ``expires_at`` (epoch seconds) as
their TTL attribute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARTITION_KEY = "pk"
SORT_KEY = "sk"
TTL_ATTRIBUTE = "expires_at"


def table_names(settings: Settings) -> list[str]:
    return [settings.streams_table, settings.jobs_table]


def ensure_tables(client: DynamoDBClient, settings: Settings) -> None:
    """Create the tables if they don't exist (local endpoints only; AWS uses the CDK app)."""
    existing = set(client.list_tables()["TableNames"])
    for name in table_names(settings):
        if name in existing:
            continue
        try:
            client.create_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                    {"AttributeName": SORT_KEY, "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise
