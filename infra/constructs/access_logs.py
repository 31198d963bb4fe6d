"""An S3 bucket for access logs (S3 server access logs, ALB and CloudFront logs)."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct


class AccessLogsBucket(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        expire_days: int,
        retain: bool,
        cloudfront_compatible: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            # CloudFront standard logs are delivered with ACLs; everything else is owner-enforced.
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED
            if cloudfront_compatible
            else s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
            auto_delete_objects=not retain,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-logs", expiration=Duration.days(expire_days)),
                s3.LifecycleRule(
                    id="abort-multipart", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )
