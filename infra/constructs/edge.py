"""Web/edge: one CloudFront domain for the page, the REST API and the stream service.

| path        | origin                                  | caching | forwarded                     |
|-------------|-----------------------------------------|---------|-------------------------------|
| default     | S3 (web/) through origin access control | on      | -                             |
| ``/api/*``  | API Gateway HTTP API                    | off     | all headers but Host, all     |
|             |                                         |         | query strings                 |
| ``/stream/*``| internal ALB through a VPC origin      | off     | same, plus the ALB's sticky   |
|             |                                         |         | cookie; WebSocket upgrades    |

Streaming lessons encoded here:
* caching disabled and *no compression* on ``/stream/*``: a compressing or caching proxy
  buffers ``text/event-stream`` and tokens arrive in bursts;
* the origin read timeout (the longest silence CloudFront accepts between two bytes from the
  origin) exceeds the keepalive interval with margin, and the origin keep-alive is shorter
  than the ALB idle timeout (validated in ``infra.config``);
* ``Authorization`` and ``Last-Event-ID`` reach the origins: the policy forwards every viewer
  header except ``Host`` (API Gateway rejects a foreign Host). CloudFront refuses
  ``Authorization`` in an allow-list origin request policy, which is why this is a deny-list;
  WebSocket handshakes (``Upgrade``, ``Sec-WebSocket-*``) pass the same way.
* ``/api/*`` waits up to 60 s (a custom origin's maximum without a quota raise), above API
  Gateway's 30 s: API Gateway's (or the function's own) answer reaches the client, never a
  CloudFront 504 that an SDK would retry.

Only CloudFront reaches the ALB: CloudFront creates a security group of its own for the VPC
origin's ENIs in this VPC (``CloudFront-VPCOrigins-Service-SG``); once the VPC origin
exists, a deploy-time lookup reads that group's id and the ALB admits it, and nothing else,
on port 80. A lookup that finds no such group fails the deploy (never an open ALB).
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import API_ORIGIN_READ_TIMEOUT_S, AppConfig
from infra.constructs.retention import retention as log_retention
from infra.nag import acknowledge, nag_resource

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
# The ALB's stickiness cookies (duration-based stickiness); CloudFront must forward them.
STICKY_COOKIES = ("AWSALB", "AWSALBCORS")
# The security group CloudFront creates in the VPC for a VPC origin's ENIs.
VPC_ORIGIN_SECURITY_GROUP = "CloudFront-VPCOrigins-Service-SG"
_PRICE_CLASSES = {
    "PriceClass_100": cloudfront.PriceClass.PRICE_CLASS_100,
    "PriceClass_200": cloudfront.PriceClass.PRICE_CLASS_200,
    "PriceClass_All": cloudfront.PriceClass.PRICE_CLASS_ALL,
}


class WebEdge(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        api_domain: str,
        alb: elbv2.IApplicationLoadBalancer,
        alb_security_group: ec2.ISecurityGroup,
        vpc: ec2.IVpc,
        logs_bucket: s3.IBucket,
        web_acl_arn: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stream = config.stream

        self.web_bucket = s3.Bucket(
            self,
            "WebBucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Build output only: `cdk deploy` puts it back, so it is never retained.
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
            server_access_logs_bucket=logs_bucket,
            server_access_logs_prefix="web-bucket/",
        )

        self.origin_request_policy = cloudfront.OriginRequestPolicy(
            self,
            "ForwardAllButHost",
            origin_request_policy_name=f"{config.name}-forward-all-but-host",
            comment="API + stream: every viewer header but Host (incl. Authorization,"
            " Last-Event-ID, WebSocket handshake), all query strings, ALB sticky cookies",
            header_behavior=cloudfront.OriginRequestHeaderBehavior.deny_list("Host"),
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.all(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.allow_list(*STICKY_COOKIES),
        )

        api_origin = origins.HttpOrigin(
            api_domain,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            read_timeout=Duration.seconds(API_ORIGIN_READ_TIMEOUT_S),
            keepalive_timeout=Duration.seconds(stream.origin_keepalive_s),
        )
        self.vpc_origin = cloudfront.VpcOrigin(
            self,
            "StreamVpcOrigin",
            endpoint=cloudfront.VpcOriginEndpoint.application_load_balancer(alb),
            http_port=80,
            # CloudFront -> VPC origin traffic stays on the AWS network inside this VPC.
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            vpc_origin_name=f"{config.name}-stream",
        )
        stream_origin = origins.VpcOrigin.with_vpc_origin(
            self.vpc_origin,
            domain_name=alb.load_balancer_dns_name,
            read_timeout=Duration.seconds(stream.origin_read_timeout_s),
            keepalive_timeout=Duration.seconds(stream.origin_keepalive_s),
        )
        self._admit_vpc_origin_only(
            alb_security_group, vpc, log_retention(config.observability.log_retention_days)
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.name}: web, /api, /stream",
            default_root_object="index.html",
            price_class=_PRICE_CLASSES[config.edge.price_class],
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            enable_logging=True,
            log_bucket=logs_bucket,
            log_file_prefix="cloudfront/",
            web_acl_id=web_acl_arn,
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.web_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                compress=True,
            ),
            additional_behaviors={
                "/api/*": self._dynamic(api_origin),
                "/stream/*": self._dynamic(stream_origin),
            },
        )

        self.deployment = s3deploy.BucketDeployment(
            self,
            "WebContent",
            sources=[s3deploy.Source.asset(str(WEB_DIR))],
            destination_bucket=self.web_bucket,
            distribution=self.distribution,
            distribution_paths=["/*"],
            memory_limit=256,
            log_group=logs.LogGroup(
                self,
                "WebContentLogs",
                retention=log_retention(config.observability.log_retention_days),
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )

        region = Stack.of(self).region
        partition = "aws-cn" if region.startswith("cn-") else "aws"
        acknowledge(
            self.deployment.handler_role,
            "AwsSolutions-IAM5",
            "aws-cdk-lib's BucketDeployment copies web/ from the CDK staging bucket into the"
            " web bucket (object wildcards on exactly those two buckets) and invalidates the"
            " distribution (cloudfront:CreateInvalidation has no resource-level scoping here).",
            [
                "Action::s3:GetBucket*",
                "Action::s3:GetObject*",
                "Action::s3:List*",
                "Action::s3:Abort*",
                "Action::s3:DeleteObject*",
                "Resource::*",
                f"Resource::arn:{partition}:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-{region}/*",
                f"Resource::{nag_resource(self, self.web_bucket.arn_for_objects('*'))}",
            ],
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR1",
            "A template for any audience: geo restriction is a per-deployment business"
            " decision (Distribution.geo_restriction).",
        )
        acknowledge(
            self.distribution,
            "AwsSolutions-CFR4",
            "The default *.cloudfront.net certificate pins the viewer policy to TLSv1; attach"
            " a custom domain with an ACM certificate and set minimum_protocol_version to"
            " TLS_V1_2_2021 (docs/deploy.md).",
        )
        if web_acl_arn is None:
            acknowledge(
                self.distribution,
                "AwsSolutions-CFR2",
                "WAF is optional (edge.waf_enabled, on in prod) because a web ACL costs $5+ a"
                " month idle; every API route but health is behind the Cognito JWT and API"
                " Gateway throttles per stage.",
            )

    def _admit_vpc_origin_only(
        self,
        alb_security_group: ec2.ISecurityGroup,
        vpc: ec2.IVpc,
        retention: logs.RetentionDays,
    ) -> None:
        """The ALB's only ingress rule: port 80 from the VPC origin's security group."""
        lookup = cr.AwsCustomResource(
            self,
            "VpcOriginSecurityGroup",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeSecurityGroups",
                parameters={
                    "Filters": [
                        {"Name": "group-name", "Values": [VPC_ORIGIN_SECURITY_GROUP]},
                        {"Name": "vpc-id", "Values": [vpc.vpc_id]},
                    ]
                },
                # Re-read when the VPC origin is replaced (a new one, a new group).
                physical_resource_id=cr.PhysicalResourceId.of(self.vpc_origin.vpc_origin_id),
                output_paths=["SecurityGroups.0.GroupId"],
            ),
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
            log_group=logs.LogGroup(
                self,
                "VpcOriginLookupLogs",
                retention=retention,
                removal_policy=RemovalPolicy.DESTROY,
            ),
        )
        lookup.node.add_dependency(self.vpc_origin)
        self.alb_ingress = ec2.CfnSecurityGroupIngress(
            self,
            "AlbFromVpcOrigin",
            group_id=alb_security_group.security_group_id,
            ip_protocol="tcp",
            from_port=80,
            to_port=80,
            source_security_group_id=lookup.get_response_field("SecurityGroups.0.GroupId"),
            description="CloudFront VPC origin only (its own security group)",
        )
        acknowledge(
            lookup,
            "AwsSolutions-IAM5",
            "ec2:DescribeSecurityGroups supports no resource-level permissions; the lookup"
            " reads the VPC origin's security group id at deploy time.",
            ["Resource::*"],
        )

    def _dynamic(self, origin: cloudfront.IOrigin) -> cloudfront.BehaviorOptions:
        """A pass-through behaviour: every method, nothing cached, nothing compressed."""
        return cloudfront.BehaviorOptions(
            origin=origin,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            origin_request_policy=self.origin_request_policy,
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            compress=False,
        )
