"""The VPC: no NAT gateway by default, NAT as an option.

Subnets per AZ:
* ``public`` - internet gateway. With ``nat_gateways == 0`` the stream tasks run here with a
  public IP so they can reach the model provider without a NAT gateway (about $33/month per
  gateway plus data processing, idle or not). Inbound is still closed: the tasks' security
  group only admits the ALB. The trade-off: each running task pays for a public IPv4
  address ($0.005/h) and egress has no fixed source IP (an upstream that allow-lists IPs
  needs the NAT option).
* ``alb`` - isolated, for the internal ALB that CloudFront reaches through a VPC origin, and
  the room bus (ElastiCache Serverless), which the tasks reach inside the VPC.
* ``app`` - private with egress through NAT, only when ``nat_gateways >= 1``; tasks move here.

DynamoDB and S3 gateway endpoints (free) keep AWS traffic on the AWS network either way.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import NetworkConfig
from infra.constructs.retention import retention as log_retention


class Network(Construct):
    # The isolated subnets (no route to or from the internet).
    ISOLATED_GROUP = "alb"

    def __init__(
        self, scope: Construct, construct_id: str, *, config: NetworkConfig, retention: int
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        subnets = [
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            ec2.SubnetConfiguration(
                name="alb", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
            ),
        ]
        if config.nat_gateways:
            subnets.append(
                ec2.SubnetConfiguration(
                    name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                )
            )
        flow_log_group = logs.LogGroup(
            self,
            "FlowLogs",
            retention=log_retention(retention),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(config.cidr),
            max_azs=None if config.availability_zones else config.max_azs,
            availability_zones=config.availability_zones or None,
            nat_gateways=config.nat_gateways,
            subnet_configuration=subnets,
            restrict_default_security_group=True,
            gateway_endpoints={
                "DynamoDb": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
            },
            flow_logs={
                "Rejected": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_log_group),
                    traffic_type=ec2.FlowLogTrafficType.REJECT,
                )
            },
        )

    @property
    def uses_nat(self) -> bool:
        return self.config.nat_gateways > 0

    @property
    def task_subnets(self) -> ec2.SubnetSelection:
        if self.uses_nat:
            return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)

    @property
    def alb_subnets(self) -> ec2.SubnetSelection:
        return ec2.SubnetSelection(subnet_group_name=self.ISOLATED_GROUP)
