"""The cross-node room bus: ElastiCache Serverless for Valkey (``BUS_URL``).

Room traffic (presence, typing, messages, live replies) reaches every stream node through
it. Serverless caches are cluster mode only: the service talks to it with
``BUS_MODE=cluster`` (sharded pub/sub, docs/streaming.md); :attr:`RoomBus.environment` is
what the stream container needs. TLS only (serverless caches always encrypt in transit:
``rediss://``), in the VPC's isolated subnets (no internet route, so no NAT), and
reachable only from the stream service's tasks: the cache's security group admits the
task security group on the cache's ports and nothing else. Usage limits cap what a
runaway client can cost; idle, it bills the minimum metered data (100 MB for Valkey;
docs/deploy.md).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from constructs import Construct

from infra.config import BusConfig
from infra.constructs.network import Network

# Serverless caches listen on 6379 (primary endpoint) and 6380 (reader endpoint).
BUS_PORTS = (6379, 6380)


class RoomBus(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        name: str,
        config: BusConfig,
        network: Network,
        clients: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=network.vpc,
            description="Room bus (Valkey): only the stream service tasks",
            allow_all_outbound=False,
        )
        for port in BUS_PORTS:
            self.security_group.add_ingress_rule(
                clients, ec2.Port.tcp(port), "Stream service tasks (room bus, TLS)"
            )
        subnets = network.vpc.select_subnets(subnet_group_name=network.ISOLATED_GROUP)
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine="valkey",
            major_engine_version=config.engine_major_version,
            serverless_cache_name=f"{name}-bus",
            description="Room bus between stream nodes (presence, typing, messages, replies)",
            security_group_ids=[self.security_group.security_group_id],
            subnet_ids=subnets.subnet_ids,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    unit="GB", maximum=config.max_data_gb
                ),
                ecpu_per_second=elasticache.CfnServerlessCache.ECPUPerSecondProperty(
                    maximum=config.max_ecpu_per_second
                ),
            ),
            # The bus carries live traffic only; rooms' conversations are in DynamoDB.
            snapshot_retention_limit=0,
        )

    @property
    def url(self) -> str:
        """``rediss://<endpoint>:<port>`` (TLS) for ``BUS_URL``."""
        return f"rediss://{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}"

    @property
    def environment(self) -> dict[str, str]:
        """The stream container's bus variables: the TLS endpoint, and cluster mode (a
        serverless cache is a cluster: SPUBLISH / SSUBSCRIBE per slot)."""
        return {"BUS_URL": self.url, "BUS_MODE": "cluster"}
