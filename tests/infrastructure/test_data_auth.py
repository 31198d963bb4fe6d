"""Stateful stack: DynamoDB tables, files bucket, secrets, Cognito."""

from __future__ import annotations

from aws_cdk.assertions import Match

from core.aws.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import resources


def test_tables_have_the_runtime_key_schema_ttl_pitr_and_encryption(synth: Synth) -> None:
    template = synth.template("rtai-dev-stateful")
    template.resource_count_is("AWS::DynamoDB::Table", 2)
    for name in ("rtai-dev-streams", "rtai-dev-jobs"):
        template.has_resource_properties(
            "AWS::DynamoDB::Table",
            {
                "TableName": name,
                "BillingMode": "PAY_PER_REQUEST",
                "KeySchema": [
                    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": [
                    {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                    {"AttributeName": SORT_KEY, "AttributeType": "S"},
                ],
                "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                "SSESpecification": {"SSEEnabled": True},
                "GlobalSecondaryIndexes": Match.absent(),
            },
        )


def test_retention_follows_the_environment(synth: Synth) -> None:
    dev = synth.raw("rtai-dev-stateful")["Resources"]
    prod = synth.raw("rtai-prod-stateful")["Resources"]
    for resources_, policy in ((dev, "Delete"), (prod, "Retain")):
        tables = [r for r in resources_.values() if r["Type"] == "AWS::DynamoDB::Table"]
        assert tables
        assert {t["DeletionPolicy"] for t in tables} == {policy}
    prod_tables = [r for r in prod.values() if r["Type"] == "AWS::DynamoDB::Table"]
    assert all(t["Properties"]["DeletionProtectionEnabled"] for t in prod_tables)


def test_files_bucket_is_private_encrypted_and_expires_files(synth: Synth) -> None:
    template = synth.template("rtai-dev-stateful")
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": {
                "Fn::Join": ["", ["rtai-dev-files-", {"Ref": "AWS::AccountId"}, "-us-east-1"]]
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "ExpirationInDays": 30,
                                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                                "Status": "Enabled",
                            }
                        )
                    ]
                )
            },
            "LoggingConfiguration": Match.object_like({"LogFilePrefix": "files-bucket/"}),
        },
    )


def test_secrets_exist_and_the_openai_key_is_not_in_the_template(synth: Synth) -> None:
    secrets = resources(synth.raw("rtai-dev-stateful"), "AWS::SecretsManager::Secret")
    names = {props["Name"] for props in secrets.values()}
    assert names == {"rtai-dev/openai-api-key", "rtai-dev/url-token-secret"}
    for props in secrets.values():
        assert "SecretString" not in props  # generated, or set after deploy


def test_cognito_user_pool_and_public_client(synth: Synth) -> None:
    template = synth.template("rtai-dev-stateful")
    template.has_resource_properties(
        "AWS::Cognito::UserPool",
        {
            "AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True},
            "Policies": {"PasswordPolicy": Match.object_like({"MinimumLength": 12})},
        },
    )
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": False,
            "ExplicitAuthFlows": Match.array_with(["ALLOW_USER_SRP_AUTH"]),
        },
    )
