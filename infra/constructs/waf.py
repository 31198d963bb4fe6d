"""Optional WAF for the CloudFront distribution: AWS managed rules plus a per-IP rate limit.

A CloudFront web ACL must live in us-east-1; the app puts this construct in its own stack
there and passes the ARN to the distribution (a cross-region reference when the app runs
elsewhere).

Prompts are not attacks. A chat body routinely carries what the managed rules look for in
bodies: pasted code (``<script>``), paths (``../../etc/passwd``), URLs and addresses
(``169.254.169.254``), a Log4Shell string someone asks about, and more than 8 KB of history.
So every managed rule that inspects the *body* (:data:`BODY_RULES`) is set to **count**
(it still labels the request and shows in the metrics), and a rule of ours blocks a request
carrying one of those labels unless its path is ``/api/*`` or ``/stream/*`` (a
**scope-down**: the JSON APIs take prompts, nothing else takes a body). Rules on headers,
URI paths, query strings and IP reputation block as before, and the app enforces its own
request limits (docs/limits.md). ``NoUserAgent_HEADER`` counts too: SDKs and scripts that
send no User-Agent are clients, not bots (the rate limit still applies to them).
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


CORE_RULE_SET = "AWSManagedRulesCommonRuleSet"
KNOWN_BAD_INPUTS = "AWSManagedRulesKnownBadInputsRuleSet"
# Managed rules that inspect the request body (count here; blocked outside the APIs by
# BLOCK_BODY_RULES_OUTSIDE_APIS), and NoUserAgent_HEADER (counted everywhere).
BODY_RULES: dict[str, tuple[str, ...]] = {
    CORE_RULE_SET: (
        "SizeRestrictions_BODY",
        "CrossSiteScripting_BODY",
        "GenericLFI_BODY",
        "GenericRFI_BODY",
        "EC2MetaDataSSRF_BODY",
    ),
    KNOWN_BAD_INPUTS: ("JavaDeserializationRCE_BODY", "Log4JRCE_BODY"),
}
COUNT_EVERYWHERE: dict[str, tuple[str, ...]] = {CORE_RULE_SET: ("NoUserAgent_HEADER",)}
_LABEL_NAMESPACES = {
    CORE_RULE_SET: "awswaf:managed:aws:core-rule-set:",
    KNOWN_BAD_INPUTS: "awswaf:managed:aws:known-bad-inputs:",
}
# Paths whose bodies are prompts (JSON APIs); the body rules block everywhere else.
PROMPT_PATHS = ("/api/", "/stream/")
BLOCK_BODY_RULES_OUTSIDE_APIS = "BlockBodyRulesOutsideApis"


def body_rule_labels() -> list[str]:
    """The labels the counted body rules put on a matching request (``..._BODY`` rules
    label as ``..._Body``)."""
    return [
        _LABEL_NAMESPACES[group] + rule.removesuffix("_BODY") + "_Body"
        for group, rules in BODY_RULES.items()
        for rule in rules
    ]


def _block_body_rules_outside_apis(priority: int) -> wafv2.CfnWebACL.RuleProperty:
    S = wafv2.CfnWebACL.StatementProperty
    labels = S(
        or_statement=wafv2.CfnWebACL.OrStatementProperty(
            statements=[
                S(
                    label_match_statement=wafv2.CfnWebACL.LabelMatchStatementProperty(
                        scope="LABEL", key=label
                    )
                )
                for label in body_rule_labels()
            ]
        )
    )
    prompt_paths = S(
        or_statement=wafv2.CfnWebACL.OrStatementProperty(
            statements=[
                S(
                    byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
                        field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
                        positional_constraint="STARTS_WITH",
                        search_string=path,
                        text_transformations=[
                            wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")
                        ],
                    )
                )
                for path in PROMPT_PATHS
            ]
        )
    )
    return wafv2.CfnWebACL.RuleProperty(
        name=BLOCK_BODY_RULES_OUTSIDE_APIS,
        priority=priority,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=S(
            and_statement=wafv2.CfnWebACL.AndStatementProperty(
                statements=[
                    labels,
                    S(not_statement=wafv2.CfnWebACL.NotStatementProperty(statement=prompt_paths)),
                ]
            )
        ),
        visibility_config=_visibility(BLOCK_BODY_RULES_OUTSIDE_APIS),
    )


def _counted(group: str) -> tuple[str, ...]:
    return BODY_RULES.get(group, ()) + COUNT_EVERYWHERE.get(group, ())


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
                _managed(CORE_RULE_SET, 2, overrides=_counted(CORE_RULE_SET)),
                _managed(KNOWN_BAD_INPUTS, 3, overrides=_counted(KNOWN_BAD_INPUTS)),
                _block_body_rules_outside_apis(4),
            ],
        )
        self.arn = self.web_acl.attr_arn
