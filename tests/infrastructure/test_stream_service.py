"""Stream service: Fargate arm64 behind an internal ALB; timeouts, drain, stickiness, scaling."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import attributes, env_vars, one, resources

SERVICE = "rtai-dev-service"


def _container(synth: Synth, stack: str = SERVICE) -> dict[str, Any]:
    task = one(synth.raw(stack), "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    return dict(container)


def test_alb_idle_timeout_exceeds_keepalive_with_margin(synth: Synth) -> None:
    config = synth.dev.config.stream
    alb = one(synth.raw(SERVICE), "AWS::ElasticLoadBalancingV2::LoadBalancer")
    idle = int(attributes(alb, "LoadBalancerAttributes")["idle_timeout.timeout_seconds"])
    assert idle == config.alb_idle_timeout_s
    assert idle >= 2 * config.keepalive_s and idle - config.keepalive_s >= 10
    # and the container is told the same keepalive the timeouts were checked against
    assert env_vars(_container(synth))["KEEPALIVE_S"] == "15"


def test_alb_is_internal_and_only_reachable_inside_the_vpc(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    alb = one(raw, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Scheme"] == "internal"
    assert (
        attributes(alb, "LoadBalancerAttributes")["routing.http.drop_invalid_header_fields.enabled"]
        == "true"
    )
    # its subnets are the isolated "alb" subnets (no route to an internet gateway)
    subnet_ids = {s["Ref"] for s in alb["Subnets"]}
    assert all("albSubnet" in s for s in subnet_ids)
    routes = resources(raw, "AWS::EC2::Route")
    assert not any(any(s in logical for s in subnet_ids) for logical in routes)
    listener = one(raw, "AWS::ElasticLoadBalancingV2::Listener")
    assert listener["Port"] == 80


def test_deregistration_delay_lets_streams_finish_and_stop_timeout_covers_the_drain(
    synth: Synth,
) -> None:
    """ECS deregisters, the ALB keeps the task's connections for the delay, then SIGTERM:
    the delay (300 s) covers the longest stream a deploy lets finish in place plus the
    app's hand-over, the app is told the delay, and stopTimeout covers its drain."""
    config = synth.dev.config.stream
    group = one(synth.raw(SERVICE), "AWS::ElasticLoadBalancingV2::TargetGroup")
    attrs = attributes(group, "TargetGroupAttributes")
    delay = int(attrs["deregistration_delay.timeout_seconds"])
    assert delay == config.deregistration_delay_s == 300
    assert delay >= config.longest_stream_s + config.drain_s + 5
    container = _container(synth)
    env = env_vars(container)
    assert env["DRAIN_S"] == str(config.drain_s) == "30"
    assert env["DEREGISTRATION_DELAY_S"] == "300"
    assert config.drain_s < container["StopTimeout"] <= 120


def test_health_checks_on_stream_healthz(synth: Synth) -> None:
    group = one(synth.raw(SERVICE), "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["HealthCheckPath"] == "/stream/healthz"
    assert group["Port"] == 8080 and group["TargetType"] == "ip"
    health = _container(synth)["HealthCheck"]
    assert "/stream/healthz" in " ".join(health["Command"])


def test_sticky_sessions_and_least_outstanding_requests(synth: Synth) -> None:
    group = one(synth.raw(SERVICE), "AWS::ElasticLoadBalancingV2::TargetGroup")
    attrs = attributes(group, "TargetGroupAttributes")
    assert attrs["stickiness.enabled"] == "true"
    assert attrs["stickiness.type"] == "lb_cookie"
    assert attrs["load_balancing.algorithm.type"] == "least_outstanding_requests"


def test_task_is_arm64_with_secrets_injected_and_nonblocking_logs(synth: Synth) -> None:
    task = one(synth.raw(SERVICE), "AWS::ECS::TaskDefinition")
    assert task["RuntimePlatform"] == {"CpuArchitecture": "ARM64", "OperatingSystemFamily": "LINUX"}
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    container = _container(synth)
    # The URL-token key is read by ARN (and re-read on rotation), not frozen at task start.
    assert {s["Name"] for s in container["Secrets"]} == {"OPENAI_API_KEY"}
    env = env_vars(container)
    assert "OPENAI_API_KEY" not in env and "URL_TOKEN_SECRET" not in env
    assert "UrlTokenSecret" in str(env["URL_TOKEN_SECRET_ARN"])
    for key in ("STREAMS_TABLE", "JOBS_TABLE", "AUTH_MODE", "JWT_JWKS_URL", "RESUME_GRACE_S"):
        assert key in env
    assert container["PortMappings"][0]["ContainerPort"] == 8080
    assert container["LogConfiguration"]["Options"]["mode"] == "non-blocking"
    assert container["LinuxParameters"]["InitProcessEnabled"] is True


def test_tasks_accept_traffic_only_from_the_alb(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    ingress = resources(raw, "AWS::EC2::SecurityGroupIngress")
    to_tasks = [i for i in ingress.values() if i.get("FromPort") == 8080]
    assert len(to_tasks) == 1
    assert "AlbSecurityGroup" in to_tasks[0]["SourceSecurityGroupId"]["Fn::GetAtt"][0]
    task_groups = [
        props
        for logical, props in resources(raw, "AWS::EC2::SecurityGroup").items()
        if "TaskSecurityGroup" in logical
    ]
    # Besides the ALB: only the metrics port, only from inside the VPC (never the ALB's
    # target, never routed by CloudFront).
    (group,) = task_groups
    assert group["SecurityGroupIngress"] == [
        {
            "CidrIp": "10.40.0.0/16",
            "Description": "Prometheus metrics, from inside the VPC only",
            "FromPort": 9090,
            "IpProtocol": "tcp",
            "ToPort": 9090,
        }
    ]


def test_autoscaling_tracks_the_services_own_streams_per_task_and_cpu(synth: Synth) -> None:
    """Target tracking on ActiveStreams (what each task emits via EMF, the service's own
    running streams), averaged over tasks: streams_per_task means streams, not ALB
    connections (ActiveConnectionCount counts client->ALB and ALB->target both)."""
    raw = synth.raw(SERVICE)
    target = one(raw, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    policies = resources(raw, "AWS::ApplicationAutoScaling::ScalingPolicy").values()
    tracking = [
        p["TargetTrackingScalingPolicyConfiguration"]
        for p in policies
        if p["PolicyType"] == "TargetTrackingScaling"
    ]
    assert len(tracking) == 2 and len(list(policies)) == 2
    predefined = [t["PredefinedMetricSpecification"] for t in tracking if "Predefined" in str(t)]
    assert predefined == [{"PredefinedMetricType": "ECSServiceAverageCPUUtilization"}]
    (streams,) = [t for t in tracking if "CustomizedMetricSpecification" in t]
    metric = streams["CustomizedMetricSpecification"]
    assert (metric["Namespace"], metric["MetricName"]) == ("RealtimeAiStack", "ActiveStreams")
    assert metric["Statistic"] == "Average"
    assert metric["Dimensions"] == [{"Name": "service", "Value": "rtai-dev-stream"}]
    assert streams["TargetValue"] == synth.dev.config.stream.streams_per_task == 200
    # the container emits under that very namespace and service name
    env = env_vars(_container(synth))
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "RealtimeAiStack"
    assert env["POWERTOOLS_SERVICE_NAME"] == "rtai-dev-stream"
    assert "ActiveConnectionCount" not in str(raw)


def test_no_nat_by_default_tasks_in_public_subnets(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    assert not resources(raw, "AWS::EC2::NatGateway")
    service = one(raw, "AWS::ECS::Service")
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "ENABLED"
    assert all("publicSubnet" in s["Ref"] for s in network["Subnets"])
    # free gateway endpoints keep DynamoDB/S3 traffic off the internet path
    endpoints = resources(raw, "AWS::EC2::VPCEndpoint").values()
    assert {e["VpcEndpointType"] for e in endpoints} == {"Gateway"}
    assert len(list(endpoints)) == 2


def test_nat_when_configured_tasks_in_private_subnets(synth: Synth) -> None:
    raw = synth.raw("rtai-prod-service")
    assert len(resources(raw, "AWS::EC2::NatGateway")) == 1
    service = one(raw, "AWS::ECS::Service")
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert all("appSubnet" in s["Ref"] for s in network["Subnets"])
    target = one(raw, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 10)
    cluster = one(raw, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]


def test_the_container_runs_one_process_per_vcpu(synth: Synth) -> None:
    """WORKERS = the task's vCPUs (dev: 0.5 vCPU -> 1), and the scaling target is per
    process, since each worker writes its own ActiveStreams."""
    stream = synth.dev.config.stream
    assert env_vars(_container(synth))["WORKERS"] == str(stream.workers_per_task) == "1"
