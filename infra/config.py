"""The CDK app's configuration: ``cdk.json`` context, validated once, with per-environment
overrides.

``cdk.json`` holds ``context.rtai = {"defaults": {...}, "environments": {"dev": {...}}}``.
The environment is picked with ``-c env=NAME`` (default ``dev``); its block is deep-merged
over ``defaults`` and the result validated here. Every streaming lesson that bit someone in
production is a validation rule below, so a bad combination fails at ``cdk synth`` instead
of as a 502 or a cut-off stream at 2am:

* every idle timeout on the path (CloudFront origin read timeout, ALB idle timeout) must be
  larger than the keepalive interval *with margin*, or idle streams are cut;
* CloudFront's origin keep-alive must be shorter than the ALB idle timeout, and the
  service's own HTTP keep-alive (``HTTP_KEEPALIVE_S``, passed by the infra) longer than the
  ALB idle timeout (else one side reuses a connection the other is closing: sporadic 502s);
* every timeout sits inside the one around it, and the process that enforces it gets it
  as an environment variable: on ``/stream/*`` a non-streaming call's budget
  (``UPSTREAM_COMPLETE_S``) below CloudFront's origin read timeout with margin, below the
  ALB idle timeout; on ``/api/*`` the whole completion's budget (upstream calls and their
  retries) inside the Lambda's timeout inside API Gateway's 30 s integration timeout inside
  CloudFront's read timeout; in the batch worker one upstream call (``OPENAI_TIMEOUT_S``)
  plus its hand-back margin inside the worker's timeout;
* CloudFront's own bounds are checked here, not at deploy time: keep-alive at most 60 s
  (custom origins; VPC origins allow 120), read timeout at most 120 s (VPC origins);
* a deploy or scale-in never cuts a stream: the target group's deregistration delay
  (``stream.deregistration_delay_s``, 300 s by default) covers the longest stream a deploy
  lets finish in place (``stream.longest_stream_s``) and a ``stream: false`` call, the app
  hands its remaining clients over before the delay runs out (``DEREGISTRATION_DELAY_S``),
  and ECS's ``stopTimeout`` (at most 120 s on Fargate) covers the app's drain
  (docs/deploy.md has the timeline).
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.settings import Settings
from functions.batch.budget import HANDBACK_MARGIN_S

CONTEXT_KEY = "rtai"
ENV_CONTEXT_KEY = "env"
DEFAULT_ENV = "dev"

# An idle timeout must exceed the keepalive interval by at least this factor and this many
# seconds: one lost/late ping (GC pause, slow model chunk, congested hop) must not kill a stream.
KEEPALIVE_MARGIN_FACTOR = 2.0
KEEPALIVE_MARGIN_S = 10.0
# The stream service's HTTP keep-alive (uvicorn's timeout_keep_alive, from HTTP_KEEPALIVE_S)
# is the ALB idle timeout plus this. The ALB reuses idle connections to targets; if the
# target closed one first, a request can land on a dying connection (sporadic 502s), so the
# target must hold idle connections longer than the ALB does.
SERVICE_KEEPALIVE_MARGIN_S = 10
# API Gateway HTTP API integrations time out after 30 s, whatever the function's timeout.
API_GATEWAY_TIMEOUT_S = 30
# Between the end of the completion budget and the Lambda's timeout: the error response,
# and a cold start's init that shares the invocation's clock (SnapStart restores included).
COMPLETION_MARGIN_S = 4
# Fargate's stopTimeout ceiling (seconds between SIGTERM and SIGKILL).
FARGATE_MAX_STOP_TIMEOUT_S = 120
STOP_TIMEOUT_MARGIN_S = 5
# The ALB's deregistration delay range (target group attribute).
MAX_DEREGISTRATION_DELAY_S = 3600
# The node hands its clients over (drain) this long plus DRAIN_S before the delay ends.
HANDOFF_MARGIN_S = 5
# CloudFront: origin keep-alive at most 60 s on a custom origin (the API origin; VPC
# origins allow 120) and read timeout at most 120 s on a VPC origin, without a quota raise.
CLOUDFRONT_MAX_KEEPALIVE_S = 60
CLOUDFRONT_MAX_VPC_READ_TIMEOUT_S = 120
# The /api/* origin's read timeout: above API Gateway's 30 s, so API Gateway's answer (or
# the function's own 504) reaches the client, not CloudFront's; 60 s is a custom origin's
# maximum without a quota raise.
API_ORIGIN_READ_TIMEOUT_S = 60
# A non-streaming call on the stream service ends this long before CloudFront's read
# timeout would cut it (the error response, the ALB hop).
UPSTREAM_COMPLETE_MARGIN_S = 10
# The batch worker starts an upstream call only with this much time left after it (the
# result's write, handing the rest back to SQS): BATCH_HANDBACK_MARGIN_S.
WORKER_HANDBACK_MARGIN_S = int(HANDBACK_MARGIN_S)

_Strict = ConfigDict(extra="forbid", frozen=True)


def _require_margin(name: str, timeout_s: float, keepalive_s: float) -> None:
    needed = max(keepalive_s * KEEPALIVE_MARGIN_FACTOR, keepalive_s + KEEPALIVE_MARGIN_S)
    if timeout_s < needed:
        raise ValueError(
            f"{name}={timeout_s:g} must exceed the keepalive interval ({keepalive_s:g}s) with"
            f" margin (>= {needed:g}s): an idle stream between pings would be cut"
        )


class _Model(BaseModel):
    model_config = _Strict


class NetworkConfig(_Model):
    cidr: str = "10.40.0.0/16"
    max_azs: int = Field(default=2, ge=2, le=3)
    # Explicit AZ names (e.g. when a default AZ doesn't support CloudFront VPC origins).
    # Empty: the stack uses Fn::GetAZs at deploy time (no lookup at synth).
    availability_zones: list[str] = Field(default_factory=list)
    # 0 (default): tasks run in public subnets with a public IP (egress via the internet
    # gateway, inbound only from the ALB's security group) - no NAT charge when idle.
    # >= 1: tasks run in private subnets behind that many NAT gateways.
    nat_gateways: int = Field(default=0, ge=0, le=3)

    @model_validator(mode="after")
    def _check(self) -> NetworkConfig:
        if not re.fullmatch(r"\d+\.\d+\.\d+\.\d+/(1[6-9]|2[0-2])", self.cidr):
            raise ValueError("network.cidr must be an IPv4 CIDR between /16 and /22")
        if self.availability_zones and len(self.availability_zones) < 2:
            raise ValueError("network.availability_zones needs at least two AZs (ALB)")
        return self


def _app_default(name: str) -> Any:
    """The runtime's own default for a setting the infra passes on (one source of truth)."""
    return Settings.model_fields[name].default


class StreamConfig(_Model):
    # --- the app (core.settings' defaults; passed as env vars) ---
    keepalive_s: float = Field(default=_app_default("keepalive_s"), gt=0)
    resume_grace_s: float = Field(default=_app_default("resume_grace_s"), ge=0)
    max_streams_per_user: int = Field(default=_app_default("max_streams_per_user"), gt=0)
    stream_limit_policy: Literal["reject", "replace"] = _app_default("stream_limit_policy")
    # SIGTERM or hand-over: clients are told to reconnect elsewhere and running producers
    # get this long to finish (ECS's stopTimeout is DRAIN_S + 5, Fargate allows 120).
    drain_s: int = Field(default=30, ge=1, le=FARGATE_MAX_STOP_TIMEOUT_S - STOP_TIMEOUT_MARGIN_S)
    # A non-streaming call (`stream: false` on /stream/v1/chat/completions) is given up after
    # this (UPSTREAM_COMPLETE_S). 0: origin_read_timeout_s - UPSTREAM_COMPLETE_MARGIN_S.
    upstream_complete_s: int = Field(default=0, ge=0)
    # --- deploys and scale-in -------------------------------------------------------
    # How long the ALB keeps a deregistered task's connections (ECS sends SIGTERM after
    # it, or as soon as the task has none left). The app hands its clients over
    # DRAIN_S + 5 s before it ends, so its streams never meet the ALB's cut.
    deregistration_delay_s: int = Field(default=300, ge=0, le=MAX_DEREGISTRATION_DELAY_S)
    # The longest generation a deploy lets finish where it runs, with no reconnect at all;
    # longer ones reconnect (resume from the store, no gap) and still have the drain to end.
    longest_stream_s: int = Field(default=240, ge=1)
    # --- the path in front of it ---
    # The longest silence the ALB allows on a connection: well above the keepalive interval
    # (a slow reasoning model's first token, a quiet WebSocket room). The service's HTTP
    # keep-alive is set above it (service_http_keepalive_s).
    alb_idle_timeout_s: int = Field(default=120, ge=1, le=4000)
    origin_read_timeout_s: int = Field(default=60, ge=1, le=CLOUDFRONT_MAX_VPC_READ_TIMEOUT_S)
    origin_keepalive_s: int = Field(default=5, ge=1, le=CLOUDFRONT_MAX_KEEPALIVE_S)
    stickiness_s: int = Field(default=3600, ge=1, le=604800)
    # --- capacity ---
    cpu: Literal[256, 512, 1024, 2048, 4096] = 512
    memory_mib: int = Field(default=1024, ge=512, le=30720)
    min_tasks: int = Field(default=1, ge=1)
    max_tasks: int = Field(default=4, ge=1)
    cpu_target_percent: int = Field(default=60, ge=10, le=90)
    # Target tracking on the service's own count of running streams per task (the
    # ActiveStreams metric it emits in CloudWatch embedded metric format).
    streams_per_task: int = Field(default=200, ge=1)
    # Stream-service processes per task (WORKERS): one per vCPU (Python runs one thread of
    # bytecode at a time); None = the task's vCPUs (cpu / 1024, at least 1).
    workers: int | None = Field(default=None, ge=1, le=16)

    @property
    def workers_per_task(self) -> int:
        return self.workers if self.workers is not None else max(1, self.cpu // 1024)

    container_insights: bool = False
    alb_deletion_protection: bool = False

    @property
    def service_http_keepalive_s(self) -> int:
        """The stream service's HTTP keep-alive (``HTTP_KEEPALIVE_S``): above the ALB's idle
        timeout, so the ALB, not the target, closes idle connections."""
        return self.alb_idle_timeout_s + SERVICE_KEEPALIVE_MARGIN_S

    @property
    def stop_timeout_s(self) -> int:
        """ECS waits this long after SIGTERM before SIGKILL: drain time plus a margin."""
        return min(self.drain_s + STOP_TIMEOUT_MARGIN_S, FARGATE_MAX_STOP_TIMEOUT_S)

    @property
    def upstream_complete_budget_s(self) -> int:
        """``UPSTREAM_COMPLETE_S``: a ``stream: false`` call's budget on the stream service."""
        return self.upstream_complete_s or self.origin_read_timeout_s - UPSTREAM_COMPLETE_MARGIN_S

    @property
    def handoff_lead_s(self) -> int:
        """How long before the deregistration delay ends the node starts its drain."""
        return self.drain_s + HANDOFF_MARGIN_S

    @model_validator(mode="after")
    def _check(self) -> StreamConfig:
        self._check_timeouts()
        self._check_deploys()
        if self.min_tasks > self.max_tasks:
            raise ValueError("stream.min_tasks must be <= stream.max_tasks")
        if self.resume_grace_s < self.keepalive_s:
            raise ValueError(
                "stream.resume_grace_s should cover at least one keepalive interval, or a"
                " client reconnecting after a missed ping finds its generation cancelled"
            )
        return self

    def _check_timeouts(self) -> None:
        _require_margin("stream.alb_idle_timeout_s", self.alb_idle_timeout_s, self.keepalive_s)
        _require_margin(
            "stream.origin_read_timeout_s", self.origin_read_timeout_s, self.keepalive_s
        )
        if self.origin_keepalive_s >= self.alb_idle_timeout_s:
            raise ValueError(
                "stream.origin_keepalive_s must be below stream.alb_idle_timeout_s: CloudFront"
                " would reuse connections the ALB already closed (sporadic 502s)"
            )
        if self.alb_idle_timeout_s < self.origin_read_timeout_s:
            raise ValueError(
                "stream.alb_idle_timeout_s must be at least stream.origin_read_timeout_s: the"
                " ALB would cut a silent response CloudFront still waits for"
            )
        budget = self.upstream_complete_budget_s
        ceiling = self.origin_read_timeout_s - UPSTREAM_COMPLETE_MARGIN_S
        if budget < 1 or budget > ceiling:
            raise ValueError(
                f"stream.upstream_complete_s ({budget} s) must end at least"
                f" {UPSTREAM_COMPLETE_MARGIN_S} s before CloudFront's origin read timeout"
                f" (stream.origin_read_timeout_s={self.origin_read_timeout_s}): a `stream:"
                " false` call sends nothing until it is done, so CloudFront would answer 504"
                " first and the SDK would retry it (the model generates twice)"
            )

    def _check_deploys(self) -> None:
        delay = self.deregistration_delay_s
        needs = {
            "stream.longest_stream_s + stream.drain_s + 5": (
                self.longest_stream_s + self.handoff_lead_s
            ),
            "stream.upstream_complete_s + stream.drain_s + 5": (
                self.upstream_complete_budget_s + self.handoff_lead_s
            ),
        }
        for what, needed in needs.items():
            if delay < needed:
                raise ValueError(
                    f"stream.deregistration_delay_s ({delay} s) must be at least {what}"
                    f" ({needed} s): on a deploy or scale-in the ALB cuts what is still open"
                    " when the delay ends, so a generation that long would be cut mid-way"
                    " (docs/deploy.md, 'Deploys and running streams')"
                )


class ApiConfig(_Model):
    memory_mib: int = Field(default=1024, ge=128, le=10240)
    # Below API Gateway's 30 s integration timeout, so the function (not API Gateway's bare
    # {"message"} 503) answers every request.
    timeout_s: int = Field(default=29, ge=1, le=API_GATEWAY_TIMEOUT_S - 1)
    # A non-streaming completion's whole budget (upstream calls and their retries): beyond
    # it, 504 naming the streaming endpoint. 0: timeout_s - COMPLETION_MARGIN_S.
    completion_timeout_s: int = Field(default=0, ge=0, le=API_GATEWAY_TIMEOUT_S)
    # Upstream retries inside that budget (each try gets the whole remaining budget).
    upstream_max_retries: int = Field(default=1, ge=0, le=5)
    # Lambda SnapStart for the API function (Python 3.12+, arm64 and x86_64): restores an
    # initialised snapshot instead of importing the app on every cold start.
    snap_start: bool = True
    throttle_rate: int = Field(default=100, ge=1)
    throttle_burst: int = Field(default=200, ge=1)
    worker_memory_mib: int = Field(default=1024, ge=128, le=10240)
    worker_timeout_s: int = Field(default=300, ge=10, le=900)
    worker_batch_size: int = Field(default=5, ge=1, le=10)
    # One upstream call of the batch worker (its OPENAI_TIMEOUT_S; the worker retries, the
    # SDK does not). A call starts only if it can end WORKER_HANDBACK_MARGIN_S before the
    # invocation does; what cannot is handed back to the queue (batchItemFailures).
    worker_call_timeout_s: int = Field(default=60, ge=1)
    worker_max_concurrency: int = Field(default=5, ge=2, le=1000)
    worker_max_receive_count: int = Field(default=5, ge=1, le=1000)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def completion_budget_s(self) -> int:
        return self.completion_timeout_s or self.timeout_s - COMPLETION_MARGIN_S

    @model_validator(mode="after")
    def _check(self) -> ApiConfig:
        if self.completion_budget_s < 1 or (
            self.completion_budget_s > self.timeout_s - COMPLETION_MARGIN_S
        ):
            raise ValueError(
                f"api.completion_timeout_s must leave {COMPLETION_MARGIN_S} s of the function's"
                f" timeout (api.timeout_s={self.timeout_s}) for the error response: else the"
                " Lambda times out first and API Gateway answers a bare 5xx that the SDK"
                " retries (the upstream generates again)"
            )
        if self.worker_call_timeout_s + WORKER_HANDBACK_MARGIN_S > self.worker_timeout_s:
            raise ValueError(
                f"api.worker_call_timeout_s ({self.worker_call_timeout_s} s) plus"
                f" {WORKER_HANDBACK_MARGIN_S} s to hand unfinished work back must fit in"
                f" api.worker_timeout_s ({self.worker_timeout_s} s): else one slow call"
                " outlives the invocation and its whole batch comes back after the queue's"
                " visibility timeout"
            )
        return self

    @property
    def queue_visibility_timeout_s(self) -> int:
        """AWS's advice for SQS event sources: 6x the function timeout (retries + batching)."""
        return min(self.worker_timeout_s * 6, 43200)


class BusConfig(_Model):
    """ElastiCache Serverless (Valkey) carrying room traffic between stream nodes (BUS_URL)."""

    enabled: bool = True
    engine_major_version: Literal["7", "8"] = "8"
    # Usage ceilings: they cap the bill of a runaway client, not the idle cost.
    max_data_gb: int = Field(default=1, ge=1, le=5000)
    max_ecpu_per_second: int = Field(default=5000, ge=1000, le=15_000_000)


class LlmConfig(_Model):
    provider: Literal["openai", "local"] = "openai"
    # Any OpenAI-compatible server; empty means OpenAI itself.
    base_url: str = ""


class AuthConfig(_Model):
    self_sign_up: bool = False
    # USER_PASSWORD_AUTH lets the CLI (aws cognito-idp initiate-auth) mint tokens for tests.
    allow_password_auth: bool = True
    access_token_minutes: int = Field(default=60, ge=5, le=1440)


class EdgeConfig(_Model):
    price_class: Literal["PriceClass_100", "PriceClass_200", "PriceClass_All"] = "PriceClass_100"
    waf_enabled: bool = False
    # Requests per 5 minutes per client IP before the rate-based rule blocks it.
    waf_rate_limit: int = Field(default=2000, ge=10, le=2_000_000_000)


class DataConfig(_Model):
    # True: tables, buckets, user pool and secrets survive `cdk destroy` (RETAIN).
    retain: bool = True
    files_expire_days: int = Field(default=30, ge=1)
    access_logs_expire_days: int = Field(default=90, ge=1)


class ObservabilityConfig(_Model):
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 180, 365] = 30
    # Where alarms go: an e-mail subscribed to the alarm topic, and/or an existing SNS topic
    # (a pager, AWS Chatbot) that every alarm also notifies.
    alarm_email: str = Field(default="", pattern=r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$")
    alarm_topic_arn: str = Field(
        default="", pattern=r"^(arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:\S+)?$"
    )
    # True (prod): `cdk synth` / `cdk deploy` stop with an error while neither is set, so no
    # alarm goes to a topic nobody reads.
    require_alarm_destination: bool = False
    ttft_p95_alarm_ms: int = Field(default=3000, ge=1)
    target_latency_p95_alarm_s: float = Field(default=2.0, gt=0)

    @property
    def has_alarm_destination(self) -> bool:
        return bool(self.alarm_email or self.alarm_topic_arn)


class AppConfig(_Model):
    env_name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,15}$")
    prefix: str = Field(default="rtai", pattern=r"^[a-z][a-z0-9-]{1,11}$")
    region: str = Field(default="us-east-1", pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    # Empty: the stacks are account-agnostic and deploy to the CLI credentials' account.
    account: str = Field(default="", pattern=r"^(\d{12})?$")
    tags: dict[str, str] = Field(default_factory=dict)
    network: NetworkConfig = NetworkConfig()
    stream: StreamConfig = StreamConfig()
    api: ApiConfig = ApiConfig()
    bus: BusConfig = BusConfig()
    llm: LlmConfig = LlmConfig()
    auth: AuthConfig = AuthConfig()
    edge: EdgeConfig = EdgeConfig()
    data: DataConfig = DataConfig()
    observability: ObservabilityConfig = ObservabilityConfig()

    @property
    def name(self) -> str:
        """Stack and resource name prefix, e.g. ``rtai-dev``."""
        return f"{self.prefix}-{self.env_name}"

    @model_validator(mode="after")
    def _check(self) -> AppConfig:
        if self.account and not self.network.availability_zones:
            # An account-pinned stack would look AZs up at synth (needs credentials).
            raise ValueError("with an explicit account, set network.availability_zones too")
        return self


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, recursively for nested dicts (lists are replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(context: dict[str, Any], env_name: str = DEFAULT_ENV) -> AppConfig:
    """Validated config of ``env_name`` from the ``rtai`` context block."""
    defaults = context.get("defaults", {})
    environments = context.get("environments", {})
    if env_name not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise ValueError(f"unknown environment {env_name!r} (cdk.json has: {known})")
    merged = deep_merge(defaults, environments[env_name] or {})
    return AppConfig.model_validate({**merged, "env_name": env_name})
