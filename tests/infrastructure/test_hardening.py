"""Hardening asserted on the synthesized templates: least privilege, the timeout and idle
chains, SnapStart, the room bus, and the WebSocket handshake through CloudFront."""

from __future__ import annotations

import json
from typing import Any

from infra.config import COMPLETION_MARGIN_S, KEEPALIVE_MARGIN_FACTOR, KEEPALIVE_MARGIN_S
from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import attributes, env_vars, one, resources

SERVICE = "rtai-dev-service"
API_HANDLER = "functions.api.handler.handler"
WORKER_HANDLER = "functions.batch_worker.handler.handler"


def _policy_text(raw: dict[str, Any], role_logical_id: str) -> str:
    """Every inline policy statement attached to one role, as JSON text."""
    docs = [
        props["PolicyDocument"]
        for props in resources(raw, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in props["Roles"]
    ]
    return json.dumps(docs)


def _function_role(raw: dict[str, Any], handler: str) -> str:
    (fn,) = [
        p for p in resources(raw, "AWS::Lambda::Function").values() if p.get("Handler") == handler
    ]
    role: str = fn["Role"]["Fn::GetAtt"][0]
    return role


def _function(raw: dict[str, Any], handler: str) -> dict[str, Any]:
    (fn,) = [
        p for p in resources(raw, "AWS::Lambda::Function").values() if p.get("Handler") == handler
    ]
    return fn


def _container(raw: dict[str, Any]) -> dict[str, Any]:
    task = one(raw, "AWS::ECS::TaskDefinition")
    (container,) = task["ContainerDefinitions"]
    return container


# --- least privilege ----------------------------------------------------------------------
def test_api_function_gets_only_what_the_rest_api_uses(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    policy = _policy_text(raw, _function_role(raw, API_HANDLER))
    assert "table/rtai-dev-jobs" in policy
    assert "table/rtai-dev-streams" not in policy
    assert "rtai-dev-files-" in policy
    assert "SecretsOpenAiApiKey" in policy
    assert "SecretsUrlTokenSecret" in policy  # signs realtime client secrets
    assert "sqs:SendMessage" in policy
    assert "sqs:ReceiveMessage" not in policy


def test_worker_gets_no_streams_table_and_no_url_token_key(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    policy = _policy_text(raw, _function_role(raw, WORKER_HANDLER))
    assert "table/rtai-dev-jobs" in policy
    assert "table/rtai-dev-streams" not in policy
    assert "SecretsOpenAiApiKey" in policy
    assert "SecretsUrlTokenSecret" not in policy
    assert "sqs:ReceiveMessage" in policy  # its event source
    assert "URL_TOKEN_SECRET_ARN" not in _function(raw, WORKER_HANDLER)["Environment"]["Variables"]


def test_stream_task_gets_the_streams_table_only(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    task = one(raw, "AWS::ECS::TaskDefinition")
    task_policy = _policy_text(raw, task["TaskRoleArn"]["Fn::GetAtt"][0])
    assert "table/rtai-dev-streams" in task_policy
    assert "table/rtai-dev-jobs" not in task_policy
    for other in ("s3:", "sqs:", "rtai-dev-files-", "SecretsOpenAiApiKey"):
        assert other not in task_policy, other
    # The URL-token key is the one secret the app reads itself (by ARN, re-read on
    # rotation); the model key reaches the container through ECS (the execution role).
    assert "SecretsUrlTokenSecret" in task_policy
    execution_policy = _policy_text(raw, task["ExecutionRoleArn"]["Fn::GetAtt"][0])
    assert "SecretsOpenAiApiKey" in execution_policy
    assert "SecretsUrlTokenSecret" not in execution_policy
    assert "dynamodb:" not in execution_policy


# --- the contract's error shape: no authorizer answering first ----------------------------
def test_no_api_gateway_authorizer_the_app_verifies_tokens(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    assert not resources(raw, "AWS::ApiGatewayV2::Authorizer")
    env = _function(raw, API_HANDLER)["Environment"]["Variables"]
    assert env["AUTH_MODE"] == "jwt"
    for key in ("JWT_JWKS_URL", "JWT_ISSUER", "JWT_AUDIENCE"):
        assert env[key], key


# --- timeouts chain on the REST path ------------------------------------------------------
def test_completion_budget_inside_lambda_inside_api_gateway(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    api = _function(raw, API_HANDLER)
    env = api["Environment"]["Variables"]
    budget = float(env["COMPLETION_TIMEOUT_S"])
    assert api["Timeout"] < 30  # API Gateway's integration timeout
    assert budget + COMPLETION_MARGIN_S <= api["Timeout"]
    assert float(env["OPENAI_TIMEOUT_S"]) <= budget
    assert int(env["OPENAI_MAX_RETRIES"]) <= 1


def test_snapstart_on_the_api_function_through_a_live_alias(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    assert _function(raw, API_HANDLER)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert "SnapStart" not in _function(raw, WORKER_HANDLER)
    alias = one(raw, "AWS::Lambda::Alias")
    assert alias["Name"] == "live"
    integration = one(raw, "AWS::ApiGatewayV2::Integration")
    (alias_id,) = resources(raw, "AWS::Lambda::Alias")
    assert integration["IntegrationUri"] == {"Ref": alias_id}


# --- the room bus -------------------------------------------------------------------------
def test_room_bus_is_valkey_tls_reachable_only_from_the_tasks(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    cache = one(raw, "AWS::ElastiCache::ServerlessCache")
    assert cache["Engine"] == "valkey"
    assert all("albSubnet" in s["Ref"] for s in cache["SubnetIds"])  # isolated: no NAT
    (bus_group_id,) = [k for k in resources(raw, "AWS::EC2::SecurityGroup") if "RoomBus" in k]
    assert cache["SecurityGroupIds"] == [{"Fn::GetAtt": [bus_group_id, "GroupId"]}]
    bus_group = resources(raw, "AWS::EC2::SecurityGroup")[bus_group_id]
    assert "SecurityGroupIngress" not in bus_group
    ingress = [
        i
        for i in resources(raw, "AWS::EC2::SecurityGroupIngress").values()
        if i["GroupId"] == {"Fn::GetAtt": [bus_group_id, "GroupId"]}
    ]
    assert sorted(i["FromPort"] for i in ingress) == [6379, 6380]
    for rule in ingress:
        assert "TaskSecurityGroup" in rule["SourceSecurityGroupId"]["Fn::GetAtt"][0]
    assert not resources(raw, "AWS::EC2::NatGateway")


def test_stream_task_gets_a_tls_bus_url_in_cluster_mode(synth: Synth) -> None:
    env = env_vars(_container(synth.raw(SERVICE)))
    # ElastiCache Serverless is cluster mode only: sharded pub/sub (docs/streaming.md)
    assert env["BUS_MODE"] == "cluster"
    bus_url = env["BUS_URL"]
    parts = bus_url["Fn::Join"][1]
    assert parts[0] == "rediss://"
    text = json.dumps(parts)
    assert "Endpoint.Address" in text and "Endpoint.Port" in text


# --- CloudFront carries the WebSocket handshake on /stream/* ------------------------------
def test_stream_behaviour_forwards_the_websocket_handshake(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    config = one(raw, "AWS::CloudFront::Distribution")["DistributionConfig"]
    (stream,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/stream/*"]
    assert "GET" in stream["AllowedMethods"]
    assert stream["Compress"] is False
    assert stream["CachePolicyId"] == "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"  # CachingDisabled
    (policy_id,) = resources(raw, "AWS::CloudFront::OriginRequestPolicy")
    assert stream["OriginRequestPolicyId"] == {"Ref": policy_id}
    policy = resources(raw, "AWS::CloudFront::OriginRequestPolicy")[policy_id]
    headers = policy["OriginRequestPolicyConfig"]["HeadersConfig"]
    # Every viewer header but Host: Upgrade, Connection, Sec-WebSocket-Key/-Version/
    # -Protocol/-Extensions, Authorization and Origin all reach the ALB.
    assert headers == {"HeaderBehavior": "allExcept", "Headers": ["Host"]}
    assert policy["OriginRequestPolicyConfig"]["QueryStringsConfig"] == {
        "QueryStringBehavior": "all"
    }
    (origin,) = [o for o in config["Origins"] if o["Id"] == stream["TargetOriginId"]]
    assert "VpcOriginConfig" in origin


# --- idle timeouts in a chain -------------------------------------------------------------
def test_idle_timeouts_form_a_chain(synth: Synth) -> None:
    """keepalive (with margin) < ALB idle timeout (>= 120 s) < the service's HTTP keep-alive;
    CloudFront's origin keep-alive < ALB idle timeout; origin read timeout > keepalive."""
    raw = synth.raw(SERVICE)
    env = env_vars(_container(raw))
    keepalive = float(env["KEEPALIVE_S"])
    alb = one(raw, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    idle = int(attributes(alb, "LoadBalancerAttributes")["idle_timeout.timeout_seconds"])
    assert idle >= 120
    assert idle >= max(keepalive * KEEPALIVE_MARGIN_FACTOR, keepalive + KEEPALIVE_MARGIN_S)
    assert float(env["HTTP_KEEPALIVE_S"]) > idle
    config = one(raw, "AWS::CloudFront::Distribution")["DistributionConfig"]
    (vpc_origin,) = [o for o in config["Origins"] if "VpcOriginConfig" in o]
    origin = vpc_origin["VpcOriginConfig"]
    assert origin["OriginKeepaliveTimeout"] < idle
    assert origin["OriginReadTimeout"] >= keepalive + KEEPALIVE_MARGIN_S


# --- metrics off the public path ----------------------------------------------------------
def test_metrics_port_is_not_behind_the_alb(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    container = _container(raw)
    assert env_vars(container)["METRICS_PORT"] == "9090"
    ports = [m["ContainerPort"] for m in container["PortMappings"]]
    assert ports == [8080, 9090]
    service = one(raw, "AWS::ECS::Service")
    assert [lb["ContainerPort"] for lb in service["LoadBalancers"]] == [8080]
    target_group = one(raw, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert target_group["Port"] == 8080
    behaviours = one(raw, "AWS::CloudFront::Distribution")["DistributionConfig"]
    assert {b["PathPattern"] for b in behaviours["CacheBehaviors"]} == {"/api/*", "/stream/*"}


def test_waf_rate_limit_answers_the_contracts_429(synth: Synth) -> None:
    acl = one(synth.raw("rtai-prod-waf"), "AWS::WAFv2::WebACL")
    (rule,) = [r for r in acl["Rules"] if r["Name"] == "RateLimitPerIp"]
    response = rule["Action"]["Block"]["CustomResponse"]
    assert response["ResponseCode"] == 429
    assert response["ResponseHeaders"] == [{"Name": "Retry-After", "Value": "60"}]
    body = acl["CustomResponseBodies"][response["CustomResponseBodyKey"]]
    assert body["ContentType"] == "APPLICATION_JSON"
    error = json.loads(body["Content"])["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
