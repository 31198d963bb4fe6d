"""The service stack: network, REST API + batch worker, stream service, CloudFront, and
observability. Stateless: ``cdk destroy`` removes it entirely (access logs are retained when
``data.retain`` is true)."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import AppConfig
from infra.constructs.access_logs import AccessLogsBucket
from infra.constructs.api import Api
from infra.constructs.bus import RoomBus
from infra.constructs.edge import WebEdge
from infra.constructs.network import Network
from infra.constructs.observability import Observability
from infra.constructs.runtime_env import SharedResources, StatefulRefs
from infra.constructs.stream_service import StreamService


class ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        refs: StatefulRefs,
        lambda_code: lambda_.Code,
        stream_image: ecs.ContainerImage,
        web_acl_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = config.observability.log_retention_days
        shared = SharedResources.import_into(self, refs)
        self.logs_bucket = AccessLogsBucket(
            self,
            "AccessLogs",
            expire_days=config.data.access_logs_expire_days,
            retain=config.data.retain,
            cloudfront_compatible=True,
        ).bucket
        self.network = Network(self, "Network", config=config.network, retention=retention)
        self.api = Api(self, "Api", config=config, shared=shared, code=lambda_code)
        self.stream = StreamService(
            self,
            "StreamService",
            config=config,
            network=self.network,
            shared=shared,
            image=stream_image,
            logs_bucket=self.logs_bucket,
        )
        self.bus: RoomBus | None = None
        if config.bus.enabled:
            self.bus = RoomBus(
                self,
                "RoomBus",
                name=config.name,
                config=config.bus,
                network=self.network,
                clients=self.stream.task_security_group,
            )
            for variable, value in self.bus.environment.items():  # BUS_URL, BUS_MODE
                self.stream.container.add_environment(variable, value)
        self.edge = WebEdge(
            self,
            "WebEdge",
            config=config,
            api_domain=self.api.api_domain,
            alb=self.stream.alb,
            alb_security_group=self.stream.alb_security_group,
            vpc=self.network.vpc,
            logs_bucket=self.logs_bucket,
            web_acl_arn=web_acl_arn,
        )
        self.observability = Observability(
            self,
            "Observability",
            config=config,
            api=self.api,
            stream=self.stream,
            tables=[shared.streams_table, shared.jobs_table],
            bus_enabled=self.bus is not None,
        )
        CfnOutput(self, "Url", value=f"https://{self.edge.distribution.distribution_domain_name}")
        CfnOutput(self, "DashboardName", value=self.observability.dashboard.dashboard_name)
        CfnOutput(self, "StreamClusterName", value=self.stream.cluster.cluster_name)
        CfnOutput(self, "StreamServiceName", value=self.stream.service.service_name)
        CfnOutput(self, "StreamLogGroup", value=self.stream.log_group.log_group_name)
