"""Optional WAF for the CloudFront distribution: AWS managed rules plus a per-IP rate limit.

A CloudFront web ACL must live in us-east-1; the app puts this construct in its own stack
there and passes the ARN to the distribution (a cross-region reference when the app runs
elsewhere).

The common rule set's ``SizeRestrictions_BODY`` rule blocks bodies over 8 KB - a long chat
history or a batch file upload - so it only counts here; the app enforces its own request
limits (docs/limits.md).
"""

from __future__ import annotations

import json

from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.config import EdgeConfig


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def _managed(
    name: str, priority: int, overrides: tuple[str, ...] = ()
) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=priority,
        override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                vendor_name="AWS",
                name=name,
                rule_action_overrides=[
                    wafv2.CfnWebACL.RuleActionOverrideProperty(
                        name=rule, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                    )
                    for rule in overrides
                ]
                or None,
            )
        ),
        visibility_config=_visibility(name),
    )


RATE_LIMITED_BODY_KEY = "rate_limited"
# WAF re-evaluates the per-IP rate over a sliding 5-minute window.
RATE_LIMIT_RETRY_AFTER_S = 60
RATE_LIMITED_BODY = json.dumps(
    {
        "error": {
            "message": "Too many requests from this address; retry after the Retry-After"
            " header's seconds.",
            "type": "rate_limit_error",
            "code": "rate_limit_exceeded",
            "param": None,
        }
    }
)


class EdgeWaf(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, name: str, config: EdgeConfig):
        super().__init__(scope, construct_id)
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=f"{name}-edge",
            scope="CLOUDFRONT",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(f"{name}-edge"),
            custom_response_bodies={
                RATE_LIMITED_BODY_KEY: wafv2.CfnWebACL.CustomResponseBodyProperty(
                    content_type="APPLICATION_JSON", content=RATE_LIMITED_BODY
                )
            },
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    # The contract's 429: OpenAI's error shape and a Retry-After (the
                    # rate is counted over 5 minutes), not WAF's bare 403.
                    action=wafv2.CfnWebACL.RuleActionProperty(
                        block=wafv2.CfnWebACL.BlockActionProperty(
                            custom_response=wafv2.CfnWebACL.CustomResponseProperty(
                                response_code=429,
                                custom_response_body_key=RATE_LIMITED_BODY_KEY,
                                response_headers=[
                                    wafv2.CfnWebACL.CustomHTTPHeaderProperty(
                                        name="Retry-After", value=str(RATE_LIMIT_RETRY_AFTER_S)
                                    )
                                ],
                            )
                        )
                    ),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=config.waf_rate_limit,
                            aggregate_key_type="IP",
                            evaluation_window_sec=300,
                        )
                    ),
                    visibility_config=_visibility("RateLimitPerIp"),
                ),
                _managed("AWSManagedRulesAmazonIpReputationList", 1),
                _managed("AWSManagedRulesCommonRuleSet", 2, overrides=("SizeRestrictions_BODY",)),
                _managed("AWSManagedRulesKnownBadInputsRuleSet", 3),
            ],
        )
        self.arn = self.web_acl.attr_arn
