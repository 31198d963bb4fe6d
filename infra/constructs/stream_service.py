"""Stream service: the SSE/WebSocket container on ECS Fargate (arm64) behind an internal ALB.

Streaming lessons encoded here (each one a config value validated in ``infra.config``):

* ALB idle timeout > keepalive interval with margin: an SSE stream between two ``: ping``
  comments (or a quiet WebSocket) is otherwise cut at the ALB's default 60 s.
* Deploys and scale-in never cut a stream: the target group's deregistration delay
  (``stream.deregistration_delay_s``, 300 s) lets running streams finish where they run; the
  app sees its task asked to stop (ECS task metadata) and hands its remaining clients over
  (``retry:`` hint, WebSocket 1012) ``DRAIN_S`` + 5 s before the delay ends, so none meets
  the ALB's cut; ECS ``stopTimeout`` (``DRAIN_S`` + 5, at most 120 s on Fargate) covers the
  drain after SIGTERM. docs/deploy.md has the timeline.
* Health checks on ``/stream/healthz`` (ALB and container), non-blocking ``awslogs`` (a slow
  log pipe must never stall token delivery), ``init`` as PID 1 (signals reach Python).
* Sticky sessions (ALB cookie ``AWSALB``, forwarded by CloudFront): a resume usually lands on
  the producer's node (cheaper, lower latency); any node can still serve it (DynamoDB).
* Least-outstanding-requests routing: long streams count as outstanding, so new streams go
  to the least busy node instead of round-robin piling onto one.
* Autoscaling by target tracking on the service's own running streams per task (the
  ``ActiveStreams`` metric each task writes in CloudWatch embedded metric format; ALB
  ``ActiveConnectionCount`` counts both client->ALB and ALB->target connections, and
  request count is meaningless for long streams) and on CPU.

Only CloudFront reaches the ALB: it is *internal* (private IPs in isolated subnets, no route
from the internet), CloudFront connects through a VPC origin (ENIs inside this VPC), and the
ALB's security group admits only the VPC origin's security group (``infra.constructs.edge``
adds that rule once CloudFront has created the group). CloudFront supports WebSocket and
long responses through VPC origins.
"""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy, Size
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import HANDOFF_MARGIN_S, AppConfig
from infra.constructs.network import Network
from infra.constructs.retention import retention as log_retention
from infra.constructs.runtime_env import SharedResources, runtime_environment
from infra.nag import acknowledge

CONTAINER_PORT = 8080
# Prometheus metrics (METRICS_PORT): reached from inside the VPC only, never by the ALB.
METRICS_PORT = 9090
HEALTH_PATH = "/stream/healthz"
# The service's own metrics in CloudWatch (EMF lines on stdout, extracted by CloudWatch Logs).
METRICS_NAMESPACE = "RealtimeAiStack"
ACTIVE_STREAMS_METRIC = "ActiveStreams"
BUS_CONNECTED_METRIC = "BusConnected"
SERVICE_DIMENSION = "service"
# One EMF line per task per minute: the metrics' resolution (target tracking reads 1-minute
# periods).
EMF_INTERVAL_S = 60
_HEALTH_CMD = (
    "import urllib.request,sys;"
    f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}',"
    " timeout=3).status == 200 else 1)"
)


class StreamService(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        network: Network,
        shared: SharedResources,
        image: ecs.ContainerImage,
        logs_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        cfg = config.stream
        vpc = network.vpc

        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED
            if cfg.container_insights
            else ecs.ContainerInsights.DISABLED,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cfg.cpu,
            memory_limit_mib=cfg.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.ARM64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention(config.observability.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.container = self.task_definition.add_container(
            "stream",
            image=image,
            essential=True,
            # The first mapping is the ALB's target; the metrics port is never registered.
            port_mappings=[
                ecs.PortMapping(container_port=CONTAINER_PORT, name="http"),
                ecs.PortMapping(container_port=METRICS_PORT, name="metrics"),
            ],
            environment={
                **runtime_environment(config, shared),
                "DRAIN_S": str(cfg.drain_s),
                # The app hands its clients over DRAIN_S + 5 s before this runs out.
                "DEREGISTRATION_DELAY_S": str(cfg.deregistration_delay_s),
                "HANDOFF_MARGIN_S": str(HANDOFF_MARGIN_S),
                # Below CloudFront's origin read timeout with margin (checked at synth).
                "UPSTREAM_COMPLETE_S": str(cfg.upstream_complete_budget_s),
                "AWS_REGION": Aws.REGION,
                # uvicorn's keep-alive above the ALB idle timeout (the ALB closes first).
                "HTTP_KEEPALIVE_S": str(cfg.service_http_keepalive_s),
                "METRICS_PORT": str(METRICS_PORT),
                # One process per vCPU behind the port; worker i serves metrics on
                # METRICS_PORT + i (stream_service/workers.py).
                "WORKERS": str(cfg.workers_per_task),
                # ActiveStreams / BusConnected in CloudWatch embedded metric format.
                "EMF_INTERVAL_S": str(EMF_INTERVAL_S),
                "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
                "POWERTOOLS_SERVICE_NAME": self.metrics_service(config),
                # Read by ARN and re-read on rotation (AWSCURRENT signs, AWSPREVIOUS still
                # verifies), instead of a value frozen into the task when it started.
                "URL_TOKEN_SECRET_ARN": shared.url_token_secret.secret_arn,
            },
            secrets={
                "OPENAI_API_KEY": ecs.Secret.from_secrets_manager(shared.openai_api_key),
            },
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="stream",
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
            health_check=ecs.HealthCheck(
                command=["CMD", "python", "-c", _HEALTH_CMD],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(20),
            ),
            stop_timeout=Duration.seconds(cfg.stop_timeout_s),
            linux_parameters=ecs.LinuxParameters(self, "Linux", init_process_enabled=True),
        )
        # One socket per SSE/WebSocket client plus one per upstream call.
        self.container.add_ulimits(
            ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65536, hard_limit=65536)
        )
        # Least privilege: the streams table only (batch jobs and files are the Lambdas').
        # Secrets are injected by ECS with the execution role, not read by the app.
        shared.streams_table.grant_read_write_data(self.task_definition.task_role)
        shared.url_token_secret.grant_read(self.task_definition.task_role)

        self.task_security_group = ec2.SecurityGroup(
            self,
            "TaskSecurityGroup",
            vpc=vpc,
            description="Stream tasks: inbound only from the ALB; outbound to the model provider",
            allow_all_outbound=True,
        )
        # Scrapers inside the VPC (Prometheus, an ADOT collector) read the metrics port; it is
        # not a target of the ALB, and CloudFront has no route to it.
        self.task_security_group.add_ingress_rule(
            ec2.Peer.ipv4(network.config.cidr),
            ec2.Port.tcp(METRICS_PORT),
            "Prometheus metrics, from inside the VPC only",
        )
        # desired_count is left to autoscaling (min_tasks): a deploy never resets a scaled-out
        # service back to its initial size.
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            min_healthy_percent=100,
            max_healthy_percent=200,
            assign_public_ip=not network.uses_nat,
            vpc_subnets=network.task_subnets,
            security_groups=[self.task_security_group],
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.seconds(60),
            propagate_tags=ecs.PropagatedTagSource.SERVICE,
        )

        self.alb_security_group = ec2.SecurityGroup(
            self,
            "AlbSecurityGroup",
            vpc=vpc,
            description="Internal ALB of the stream service (CloudFront VPC origin)",
            allow_all_outbound=False,
        )
        # No ingress rule here: the only one is added by the edge, from the security group
        # CloudFront creates for the VPC origin (nothing else in the VPC reaches the ALB).
        self.alb = elbv2.ApplicationLoadBalancer(
            self,
            "Alb",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=network.alb_subnets,
            security_group=self.alb_security_group,
            idle_timeout=Duration.seconds(cfg.alb_idle_timeout_s),
            drop_invalid_header_fields=True,
            deletion_protection=cfg.alb_deletion_protection,
        )
        self.alb.log_access_logs(logs_bucket, prefix="alb")
        self.listener = self.alb.add_listener(
            "Http", port=80, protocol=elbv2.ApplicationProtocol.HTTP, open=False
        )
        self.target_group = self.listener.add_targets(
            "Stream",
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[
                self.service.load_balancer_target(
                    container_name="stream", container_port=CONTAINER_PORT
                )
            ],
            deregistration_delay=Duration.seconds(cfg.deregistration_delay_s),
            stickiness_cookie_duration=Duration.seconds(cfg.stickiness_s),
            load_balancing_algorithm_type=elbv2.TargetGroupLoadBalancingAlgorithmType.LEAST_OUTSTANDING_REQUESTS,
            health_check=elbv2.HealthCheck(
                path=HEALTH_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(10),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
        )

        self._autoscaling(config)
        self._suppressions(cfg.container_insights)

    def _autoscaling(self, config: AppConfig) -> None:
        cfg = config.stream
        scaling = self.service.auto_scale_task_count(
            min_capacity=cfg.min_tasks, max_capacity=cfg.max_tasks
        )
        scaling.scale_on_cpu_utilization(
            "Cpu",
            target_utilization_percent=cfg.cpu_target_percent,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )
        # The service's own running streams per task, averaged over its tasks: what
        # stream.streams_per_task means (ALB ActiveConnectionCount would count each stream
        # twice, client->ALB and ALB->target, and every idle keep-alive connection).
        self.active_streams = self.own_metric(
            config, ACTIVE_STREAMS_METRIC, "Average", "running streams per task"
        )
        scaling.scale_to_track_custom_metric(
            "ActiveStreams",
            metric=self.active_streams,
            # each worker process writes its own ActiveStreams: the average is per process
            target_value=cfg.streams_per_task / cfg.workers_per_task,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

    @classmethod
    def own_metric(
        cls, config: AppConfig, name: str, statistic: str, label: str
    ) -> cloudwatch.Metric:
        """One of the metrics the tasks emit themselves (EMF), per minute."""
        return cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=name,
            dimensions_map={SERVICE_DIMENSION: cls.metrics_service(config)},
            statistic=statistic,
            period=Duration.minutes(1),
            label=label,
        )

    @staticmethod
    def metrics_service(config: AppConfig) -> str:
        """The ``service`` dimension of the stream tasks' own metrics."""
        return f"{config.name}-stream"

    def _suppressions(self, container_insights: bool) -> None:
        acknowledge(
            self.task_definition,
            "AwsSolutions-ECS2",
            "Plain environment variables are non-secret settings (table names, timeouts);"
            " secrets come from Secrets Manager through the secrets field.",
        )
        acknowledge(
            self.task_definition,
            "AwsSolutions-IAM5",
            "The execution role's ecr:GetAuthorizationToken supports no resource-level"
            " permissions (image pulls themselves are scoped to the asset repository).",
            ["Resource::*"],
        )
        if not container_insights:
            acknowledge(
                self.cluster,
                "AwsSolutions-ECS4",
                "Container Insights bills custom metrics per task around the clock; off by"
                " default to keep idle cost low (stream.container_insights=true turns it on;"
                " the prod environment does). Service and ALB metrics feed the alarms.",
            )
