"""The environment variables both runtimes read (names from ``core.settings``)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import AppConfig
from infra.nag import acknowledge, nag_resource


@dataclass(frozen=True)
class ResourceNames:
    """Physical names of the stateful resources, known at synth in every stack.

    The service stack imports tables and bucket by these names instead of through
    CloudFormation exports: no export lock-in between the stacks, and IAM policies that
    name exact resources.
    """

    streams_table: str
    jobs_table: str
    files_bucket: str

    @classmethod
    def of(cls, config: AppConfig) -> ResourceNames:
        return cls(
            streams_table=f"{config.name}-streams",
            jobs_table=f"{config.name}-jobs",
            # Bucket names are global: account and region make it unique.
            files_bucket=f"{config.name}-files-{Aws.ACCOUNT_ID}-{config.region}",
        )


@dataclass(frozen=True)
class StatefulRefs:
    """What the stateful stack hands the service stack (secrets and auth by reference)."""

    names: ResourceNames
    openai_api_key: secretsmanager.ISecret
    url_token_secret: secretsmanager.ISecret
    jwt_issuer: str
    jwt_jwks_url: str
    jwt_audience: str


@dataclass(frozen=True)
class SharedResources:
    """The stateful resources as seen from the service stack."""

    streams_table: dynamodb.ITable
    jobs_table: dynamodb.ITable
    files_bucket: s3.IBucket
    openai_api_key: secretsmanager.ISecret
    url_token_secret: secretsmanager.ISecret
    jwt_issuer: str
    jwt_jwks_url: str
    jwt_audience: str

    @classmethod
    def import_into(cls, scope: Construct, refs: StatefulRefs) -> SharedResources:
        names = refs.names
        return cls(
            streams_table=dynamodb.Table.from_table_name(
                scope, "StreamsTable", names.streams_table
            ),
            jobs_table=dynamodb.Table.from_table_name(scope, "JobsTable", names.jobs_table),
            files_bucket=s3.Bucket.from_bucket_name(scope, "FilesBucket", names.files_bucket),
            openai_api_key=refs.openai_api_key,
            url_token_secret=refs.url_token_secret,
            jwt_issuer=refs.jwt_issuer,
            jwt_jwks_url=refs.jwt_jwks_url,
            jwt_audience=refs.jwt_audience,
        )


FILES_OBJECT_ACTIONS = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]


def grant_files(bucket: s3.IBucket, grantee: iam.IGrantable, scope: Construct) -> None:
    """Read/write objects of the files bucket with named actions (no ``s3:*Object*``)."""
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=FILES_OBJECT_ACTIONS, resources=[bucket.arn_for_objects("*")])
    )
    grantee.grant_principal.add_to_principal_policy(
        iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
    )
    acknowledge(
        scope,
        "AwsSolutions-IAM5",
        "Objects of the files bucket are per-user keys created at run time; the grant is"
        " limited to this one bucket and to named object actions.",
        [f"Resource::{nag_resource(scope, bucket.arn_for_objects('*'))}"],
    )


def runtime_environment(config: AppConfig, shared: SharedResources) -> dict[str, str]:
    """Settings common to the Lambda functions and the stream service (no secrets here)."""
    stream = config.stream
    env = {
        "STREAMS_TABLE": shared.streams_table.table_name,
        "JOBS_TABLE": shared.jobs_table.table_name,
        "FILES_BUCKET": shared.files_bucket.bucket_name,
        "AUTH_MODE": "jwt",
        "JWT_JWKS_URL": shared.jwt_jwks_url,
        "JWT_ISSUER": shared.jwt_issuer,
        "JWT_AUDIENCE": shared.jwt_audience,
        "LLM_PROVIDER": config.llm.provider,
        "KEEPALIVE_S": f"{stream.keepalive_s:g}",
        "RESUME_GRACE_S": f"{stream.resume_grace_s:g}",
        "MAX_STREAMS_PER_USER": str(stream.max_streams_per_user),
        "STREAM_LIMIT_POLICY": stream.stream_limit_policy,
    }
    if config.llm.base_url:
        env["OPENAI_BASE_URL"] = config.llm.base_url
    return env
