"""Data: the two DynamoDB tables and the S3 bucket for batch files.

Key schema comes from ``core.aws.tables`` (string ``pk``/``sk``, TTL ``expires_at``), the same
definition local setup uses, so the runtimes and the cloud cannot drift apart. Tables are
on-demand (nothing to pay when idle but storage), with point-in-time recovery and encryption
at rest under the AWS managed KMS key.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from constructs import Construct

from core.aws.tables import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
from infra.config import DataConfig
from infra.constructs.access_logs import AccessLogsBucket
from infra.constructs.runtime_env import ResourceNames


class DataStore(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DataConfig, names: ResourceNames
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain else RemovalPolicy.DESTROY
        # Stream events and resume state; rows expire through TTL.
        self.streams_table = self._table(
            "StreamsTable", names.streams_table, removal, config.retain
        )
        # Batch jobs, files metadata and Powertools idempotency records.
        self.jobs_table = self._table("JobsTable", names.jobs_table, removal, config.retain)

        self.access_logs_bucket = AccessLogsBucket(
            self, "AccessLogs", expire_days=config.access_logs_expire_days, retain=config.retain
        ).bucket
        # Batch input/output/error files (OpenAI Files API semantics: files expire).
        self.files_bucket = s3.Bucket(
            self,
            "FilesBucket",
            bucket_name=names.files_bucket,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=False,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal,
            auto_delete_objects=not config.retain,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="files-bucket/",
            # Browsers upload large batch files with a presigned POST (docs/batch.md). CORS
            # grants nothing by itself: the presigned policy's signature does.
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.POST],
                    allowed_origins=["*"],
                    allowed_headers=["*"],
                    max_age=3000,
                )
            ],
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-files",
                    expiration=Duration.days(config.files_expire_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )

    def _table(
        self, construct_id: str, name: str, removal: RemovalPolicy, protect: bool
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            table_name=name,
            partition_key=dynamodb.Attribute(
                name=PARTITION_KEY, type=dynamodb.AttributeType.STRING
            ),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            time_to_live_attribute=TTL_ATTRIBUTE,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=protect,
            removal_policy=removal,
        )
