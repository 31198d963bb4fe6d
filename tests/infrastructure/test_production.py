"""Issue 20, on the synthesized templates: timeouts that hold at the edge, a WAF that lets
prompts through, an ALB only CloudFront reaches, secrets read where they can rotate,
scaling on what the service runs, the bus and every alarm routed somewhere."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match
from pydantic import ValidationError

from infra.config import (
    API_GATEWAY_TIMEOUT_S,
    API_ORIGIN_READ_TIMEOUT_S,
    WORKER_HANDBACK_MARGIN_S,
    ApiConfig,
    StreamConfig,
)
from infra.constructs.waf import BODY_RULES, PROMPT_PATHS, body_rule_labels
from tests.infrastructure.conftest import ALARM_TOPIC_ARN, Synth
from tests.infrastructure.helpers import env_vars, one, resources

SERVICE = "rtai-dev-service"


def _container(raw: dict[str, Any]) -> dict[str, Any]:
    (container,) = one(raw, "AWS::ECS::TaskDefinition")["ContainerDefinitions"]
    return dict(container)


def _origins(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    config = one(raw, "AWS::CloudFront::Distribution")["DistributionConfig"]
    by_id = {o["Id"]: o for o in config["Origins"]}
    return {b["PathPattern"]: by_id[b["TargetOriginId"]] for b in config["CacheBehaviors"]}


def _function_env(raw: dict[str, Any], handler: str) -> dict[str, str]:
    (fn,) = [
        f for f in resources(raw, "AWS::Lambda::Function").values() if f.get("Handler") == handler
    ]
    return dict(fn["Environment"]["Variables"])


# --- (2) every timeout inside the one around it, passed to who enforces it ----------------
def test_stream_false_budget_is_below_cloudfronts_read_timeout_and_reaches_the_container(
    synth: Synth,
) -> None:
    raw = synth.raw(SERVICE)
    stream_origin = _origins(raw)["/stream/*"]
    read_timeout = stream_origin["VpcOriginConfig"]["OriginReadTimeout"]
    budget = int(env_vars(_container(raw))["UPSTREAM_COMPLETE_S"])
    assert read_timeout == 60
    assert budget == 50 and budget <= read_timeout - 10  # answers before CloudFront's 504
    alb = one(raw, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    idle = {a["Key"]: a["Value"] for a in alb["LoadBalancerAttributes"]}
    assert int(idle["idle_timeout.timeout_seconds"]) >= read_timeout


@pytest.mark.parametrize("budget", [51, 60, 120])
def test_a_stream_false_budget_cloudfront_would_cut_fails_the_synth(budget: int) -> None:
    with pytest.raises(ValidationError, match="upstream_complete_s"):
        StreamConfig(upstream_complete_s=budget, origin_read_timeout_s=60)
    assert StreamConfig(upstream_complete_s=100, origin_read_timeout_s=110).upstream_complete_s


def test_rest_path_nests_inside_cloudfronts_api_origin(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    api_origin = _origins(raw)["/api/*"]["CustomOriginConfig"]
    assert api_origin["OriginReadTimeout"] == API_ORIGIN_READ_TIMEOUT_S == 60
    env = _function_env(raw, "functions.api.handler.handler")
    assert float(env["COMPLETION_TIMEOUT_S"]) < synth.dev.config.api.timeout_s
    assert synth.dev.config.api.timeout_s < API_GATEWAY_TIMEOUT_S < API_ORIGIN_READ_TIMEOUT_S


def test_the_batch_worker_gets_its_call_timeout_inside_its_own(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    (worker,) = [
        f
        for f in resources(raw, "AWS::Lambda::Function").values()
        if f.get("Handler") == "functions.batch_worker.handler.handler"
    ]
    env = worker["Environment"]["Variables"]
    call, margin = int(env["OPENAI_TIMEOUT_S"]), int(env["BATCH_HANDBACK_MARGIN_S"])
    assert (call, margin, env["OPENAI_MAX_RETRIES"]) == (60, WORKER_HANDBACK_MARGIN_S, "0")
    assert call + margin <= worker["Timeout"] == 300
    with pytest.raises(ValidationError, match="worker_call_timeout_s"):
        ApiConfig(worker_call_timeout_s=290, worker_timeout_s=300)


@pytest.mark.parametrize(
    ("field", "value"),
    [("origin_keepalive_s", 61), ("origin_keepalive_s", 120), ("origin_read_timeout_s", 121)],
)
def test_cloudfront_limits_fail_at_synth_not_at_deploy(field: str, value: int) -> None:
    """Keep-alive: at most 60 s on a custom origin (the /api/* origin shares the value);
    read timeout: at most 120 s on a VPC origin (docs/deploy.md cites both)."""
    with pytest.raises(ValidationError, match=field):
        StreamConfig(**{field: value, "alb_idle_timeout_s": 300})


# --- (1) deploys: the delay covers a stream, the knob is validated ------------------------
def test_a_deregistration_delay_shorter_than_the_longest_stream_fails_the_synth() -> None:
    assert StreamConfig().deregistration_delay_s == 300
    with pytest.raises(ValidationError, match="deregistration_delay_s"):
        StreamConfig(deregistration_delay_s=30)  # the old default: = DRAIN_S
    with pytest.raises(ValidationError, match="longest_stream_s"):
        StreamConfig(longest_stream_s=280)  # 280 + 30 + 5 > 300
    assert StreamConfig(longest_stream_s=600, deregistration_delay_s=700).longest_stream_s == 600


# --- (3) WAF: prompts pass on the APIs, attacks elsewhere still blocked -------------------
def _acl(synth: Synth) -> dict[str, Any]:
    return one(synth.raw("rtai-prod-waf"), "AWS::WAFv2::WebACL")


def _overrides(rule: dict[str, Any]) -> dict[str, str]:
    statement = rule["Statement"]["ManagedRuleGroupStatement"]
    return {
        o["Name"]: next(iter(o["ActionToUse"])) for o in statement.get("RuleActionOverrides", [])
    }


def test_waf_counts_body_rules_so_prompts_with_code_paths_and_urls_pass(synth: Synth) -> None:
    rules = {r["Name"]: r for r in _acl(synth)["Rules"]}
    core = _overrides(rules["AWSManagedRulesCommonRuleSet"])
    # <script>, ../../etc/passwd, 169.254.169.254, http://... in a prompt, > 8 KB histories
    for name in (
        "CrossSiteScripting_BODY",
        "GenericLFI_BODY",
        "EC2MetaDataSSRF_BODY",
        "GenericRFI_BODY",
        "SizeRestrictions_BODY",
    ):
        assert core[name] == "Count", name
    assert core["NoUserAgent_HEADER"] == "Count"  # SDK clients and scripts without a UA
    bad_inputs = _overrides(rules["AWSManagedRulesKnownBadInputsRuleSet"])
    assert bad_inputs == {"JavaDeserializationRCE_BODY": "Count", "Log4JRCE_BODY": "Count"}
    # nothing else is relaxed: header, URI and query rules and IP reputation still block
    assert set(core) == set(BODY_RULES["AWSManagedRulesCommonRuleSet"]) | {"NoUserAgent_HEADER"}
    assert not _overrides(rules["AWSManagedRulesAmazonIpReputationList"])
    for rule in ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"):
        assert rules[rule]["OverrideAction"] == {"None": {}}


def test_waf_still_blocks_body_attacks_outside_the_prompt_apis(synth: Synth) -> None:
    rules = {r["Name"]: r for r in _acl(synth)["Rules"]}
    block = rules["BlockBodyRulesOutsideApis"]
    assert block["Action"] == {"Block": {}}
    groups = [rules[n]["Priority"] for n in rules if n.startswith("AWSManagedRules")]
    assert block["Priority"] > max(groups)  # evaluated after the groups have labelled
    labels_stmt, not_stmt = block["Statement"]["AndStatement"]["Statements"]
    labels = {s["LabelMatchStatement"]["Key"] for s in labels_stmt["OrStatement"]["Statements"]}
    assert labels == set(body_rule_labels())
    assert "awswaf:managed:aws:core-rule-set:CrossSiteScripting_Body" in labels
    assert "awswaf:managed:aws:known-bad-inputs:Log4JRCE_Body" in labels
    paths = not_stmt["NotStatement"]["Statement"]["OrStatement"]["Statements"]
    assert (
        {
            (
                p["ByteMatchStatement"]["SearchString"],
                p["ByteMatchStatement"]["PositionalConstraint"],
            )
            for p in paths
        }
        == {(path, "STARTS_WITH") for path in PROMPT_PATHS}
        == {
            ("/api/", "STARTS_WITH"),
            ("/stream/", "STARTS_WITH"),
        }
    )
    assert all(p["ByteMatchStatement"]["FieldToMatch"] == {"UriPath": {}} for p in paths)


# --- (8) only CloudFront reaches the ALB --------------------------------------------------
def test_alb_admits_only_the_vpc_origins_security_group(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    (alb_group_id,) = [
        logical
        for logical in resources(raw, "AWS::EC2::SecurityGroup")
        if "AlbSecurityGroup" in logical
    ]
    alb_group = resources(raw, "AWS::EC2::SecurityGroup")[alb_group_id]
    assert "SecurityGroupIngress" not in alb_group  # no 0.0.0.0/0, no VPC CIDR
    into_alb = [
        i
        for i in resources(raw, "AWS::EC2::SecurityGroupIngress").values()
        if i["GroupId"] == {"Fn::GetAtt": [alb_group_id, "GroupId"]}
    ]
    (rule,) = into_alb
    assert (rule["FromPort"], rule["ToPort"], rule["IpProtocol"]) == (80, 80, "tcp")
    assert "CidrIp" not in rule
    source = rule["SourceSecurityGroupId"]["Fn::GetAtt"]
    assert source[1] == "SecurityGroups.0.GroupId"
    (lookup,) = [props for logical, props in raw["Resources"].items() if logical == source[0]]
    create = str(lookup["Properties"])
    assert "describeSecurityGroups" in create
    assert "CloudFront-VPCOrigins-Service-SG" in create
    vpc_origin = one(raw, "AWS::CloudFront::VpcOrigin")
    assert vpc_origin["VpcOriginEndpointConfig"]["OriginProtocolPolicy"] == "http-only"
    # the lookup runs once the VPC origin (and so its security group) exists
    (vpc_origin_id,) = resources(raw, "AWS::CloudFront::VpcOrigin")
    assert vpc_origin_id in lookup.get("DependsOn", [])


# --- (6) the URL-token key is read where it can rotate ------------------------------------
def test_url_token_key_is_read_by_arn_by_both_runtimes(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    container = _container(raw)
    assert "URL_TOKEN_SECRET" not in {s["Name"] for s in container.get("Secrets", [])}
    assert "UrlTokenSecret" in str(env_vars(container)["URL_TOKEN_SECRET_ARN"])
    api_env = _function_env(raw, "functions.api.handler.handler")
    assert "UrlTokenSecret" in str(api_env["URL_TOKEN_SECRET_ARN"])
    assert "URL_TOKEN_SECRET" not in api_env


# --- (9) the bus in CloudWatch, an alarm, and alarms that go somewhere --------------------
def test_bus_state_has_an_alarm_on_the_metric_the_tasks_emit(synth: Synth) -> None:
    raw = synth.raw(SERVICE)
    (alarm,) = [
        a
        for logical, a in resources(raw, "AWS::CloudWatch::Alarm").items()
        if "BusDisconnected" in logical
    ]
    (query,) = alarm["Metrics"]
    stat = query["MetricStat"]
    metric = stat["Metric"]
    assert (metric["Namespace"], metric["MetricName"]) == ("RealtimeAiStack", "BusConnected")
    assert metric["Dimensions"] == [{"Name": "service", "Value": "rtai-dev-stream"}]
    assert stat["Stat"] == "Minimum"
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
    assert alarm["TreatMissingData"] == "breaching"
    env = env_vars(_container(raw))
    assert env["EMF_INTERVAL_S"] == "60" and env["BUS_URL"]


def test_prod_without_an_alarm_destination_refuses_to_synth(synth: Synth) -> None:
    assert synth.prod.config.observability.require_alarm_destination
    errors = Annotations.from_stack(synth.prod.service).find_error(
        "*", Match.string_like_regexp("alarms go to an SNS topic nobody is subscribed to")
    )
    assert errors
    # dev: a warning, not an error
    dev = Annotations.from_stack(synth.dev.service)
    assert not dev.find_error("*", Match.any_value())
    assert dev.find_warning("*", Match.string_like_regexp("nobody is subscribed"))


def test_every_alarm_notifies_the_configured_topic(synth: Synth) -> None:
    raw = synth.raw("rtai-euprod-service")
    assert not Annotations.from_stack(synth.eu.service).find_error("*", Match.any_value())
    alarms = resources(raw, "AWS::CloudWatch::Alarm").values()
    assert alarms
    for alarm in alarms:
        assert ALARM_TOPIC_ARN in alarm["AlarmActions"]
        assert ALARM_TOPIC_ARN in alarm["OKActions"]
