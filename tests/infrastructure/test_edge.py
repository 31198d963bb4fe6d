"""CloudFront: behaviours, forwarded headers, caching off, timeouts, VPC origin, WAF."""

from __future__ import annotations

from typing import Any

from tests.infrastructure.conftest import Synth
from tests.infrastructure.helpers import one, resources

SERVICE = "rtai-dev-service"
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"
ALL_METHODS = {"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"}


def _distribution(synth: Synth, stack: str = SERVICE) -> dict[str, Any]:
    config: dict[str, Any] = one(synth.raw(stack), "AWS::CloudFront::Distribution")[
        "DistributionConfig"
    ]
    return config


def _behaviors(synth: Synth) -> dict[str, dict[str, Any]]:
    return {b["PathPattern"]: b for b in _distribution(synth)["CacheBehaviors"]}


def _origin(synth: Synth, origin_id: str) -> dict[str, Any]:
    (origin,) = [o for o in _distribution(synth)["Origins"] if o["Id"] == origin_id]
    return dict(origin)


def test_behaviours_route_api_and_stream_with_caching_disabled(synth: Synth) -> None:
    behaviors = _behaviors(synth)
    assert set(behaviors) == {"/api/*", "/stream/*"}
    for behavior in behaviors.values():
        assert behavior["CachePolicyId"] == CACHING_DISABLED
        assert set(behavior["AllowedMethods"]) == ALL_METHODS
        assert behavior["Compress"] is False  # compression buffers text/event-stream
        assert behavior["ViewerProtocolPolicy"] == "https-only"
    api = _origin(synth, behaviors["/api/*"]["TargetOriginId"])
    assert ".execute-api.us-east-1.amazonaws.com" in str(api["DomainName"])
    assert "OriginPath" not in api  # the full /api/... path reaches the app
    stream = _origin(synth, behaviors["/stream/*"]["TargetOriginId"])
    assert "VpcOriginConfig" in stream


def test_default_behaviour_serves_web_from_s3_with_oac(synth: Synth) -> None:
    distribution = _distribution(synth)
    default = distribution["DefaultCacheBehavior"]
    assert default["CachePolicyId"] == CACHING_OPTIMIZED
    origin = _origin(synth, default["TargetOriginId"])
    assert "OriginAccessControlId" in origin
    assert distribution["DefaultRootObject"] == "index.html"
    one(synth.raw(SERVICE), "AWS::CloudFront::OriginAccessControl")
    deployment = resources(synth.raw(SERVICE), "Custom::CDKBucketDeployment")
    assert len(deployment) == 1


def test_forwarded_headers_query_strings_and_sticky_cookie(synth: Synth) -> None:
    policy = one(synth.raw(SERVICE), "AWS::CloudFront::OriginRequestPolicy")[
        "OriginRequestPolicyConfig"
    ]
    headers = policy["HeadersConfig"]
    # every viewer header except Host: Authorization, Last-Event-ID and the WebSocket
    # handshake (Upgrade, Sec-WebSocket-*) all reach the origins.
    assert headers["HeaderBehavior"] == "allExcept"
    assert headers["Headers"] == ["Host"]
    for needed in ("Authorization", "Last-Event-ID", "Sec-WebSocket-Key", "Upgrade"):
        assert needed.lower() not in {h.lower() for h in headers["Headers"]}
    assert policy["QueryStringsConfig"] == {"QueryStringBehavior": "all"}
    assert policy["CookiesConfig"]["CookieBehavior"] == "whitelist"
    assert "AWSALB" in policy["CookiesConfig"]["Cookies"]
    for behavior in _behaviors(synth).values():
        assert "Ref" in behavior["OriginRequestPolicyId"]


def test_origin_read_timeout_exceeds_keepalive(synth: Synth) -> None:
    config = synth.dev.config.stream
    behaviors = _behaviors(synth)
    api = _origin(synth, behaviors["/api/*"]["TargetOriginId"])["CustomOriginConfig"]
    stream = _origin(synth, behaviors["/stream/*"]["TargetOriginId"])["VpcOriginConfig"]
    for origin in (api, stream):
        assert origin["OriginReadTimeout"] == config.origin_read_timeout_s
        assert origin["OriginReadTimeout"] >= config.keepalive_s + 10
        assert origin["OriginKeepaliveTimeout"] < config.alb_idle_timeout_s
    assert api["OriginProtocolPolicy"] == "https-only"


def test_vpc_origin_points_at_the_internal_alb(synth: Synth) -> None:
    vpc_origin = one(synth.raw(SERVICE), "AWS::CloudFront::VpcOrigin")
    endpoint = vpc_origin["VpcOriginEndpointConfig"]
    assert "StreamServiceAlb" in endpoint["Arn"]["Ref"]
    assert endpoint["HTTPPort"] == 80


def test_waf_is_optional_and_in_us_east_1(synth: Synth) -> None:
    assert "WebACLId" not in _distribution(synth)  # dev: off
    assert "rtai-dev-waf" not in synth.templates
    prod = _distribution(synth, "rtai-prod-service")
    assert "WebACLId" in prod
    assert synth.prod.waf is not None and synth.prod.waf.region == "us-east-1"
    acl = one(synth.raw("rtai-prod-waf"), "AWS::WAFv2::WebACL")
    assert acl["Scope"] == "CLOUDFRONT"
    rules = {rule["Name"]: rule for rule in acl["Rules"]}
    assert rules["RateLimitPerIp"]["Statement"]["RateBasedStatement"]["Limit"] == 2000
    assert "AWSManagedRulesCommonRuleSet" in rules
    assert "AWSManagedRulesKnownBadInputsRuleSet" in rules
    # chat histories exceed 8 KB: the body-size rule only counts (with the other body
    # rules: tests/infrastructure/test_waf.py)
    overrides = rules["AWSManagedRulesCommonRuleSet"]["Statement"]["ManagedRuleGroupStatement"][
        "RuleActionOverrides"
    ]
    assert {"ActionToUse": {"Count": {}}, "Name": "SizeRestrictions_BODY"} in overrides


def test_waf_crosses_regions_when_the_app_is_elsewhere(synth: Synth) -> None:
    assert synth.eu.service.region == "eu-west-1"
    assert synth.eu.waf is not None and synth.eu.waf.region == "us-east-1"
    web_acl_id = _distribution(synth, "rtai-euprod-service")["WebACLId"]
    assert "Fn::GetAtt" in web_acl_id  # read from the cross-region reference reader
