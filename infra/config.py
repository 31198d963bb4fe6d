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
* the REST path's timeouts nest: the whole completion's budget (upstream calls and their
  retries) inside the Lambda's timeout inside API Gateway's 30 s integration timeout;
* the target group's deregistration delay equals the service's drain time and ECS waits
  longer than that before SIGKILL, so a scale-in or deploy never cuts a running stream.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.settings import Settings

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
    drain_s: int = Field(default=30, ge=0, le=FARGATE_MAX_STOP_TIMEOUT_S - STOP_TIMEOUT_MARGIN_S)
    # --- the path in front of it ---
    # The longest silence the ALB allows on a connection: well above the keepalive interval
    # (a slow reasoning model's first token, a quiet WebSocket room). The service's HTTP
    # keep-alive is set above it (service_http_keepalive_s).
    alb_idle_timeout_s: int = Field(default=120, ge=1, le=4000)
    origin_read_timeout_s: int = Field(default=60, ge=1, le=120)
    origin_keepalive_s: int = Field(default=5, ge=1, le=300)
    stickiness_s: int = Field(default=3600, ge=1, le=604800)
    # --- capacity ---
    cpu: Literal[256, 512, 1024, 2048, 4096] = 512
    memory_mib: int = Field(default=1024, ge=512, le=30720)
    min_tasks: int = Field(default=1, ge=1)
    max_tasks: int = Field(default=4, ge=1)
    cpu_target_percent: int = Field(default=60, ge=10, le=90)
    connections_per_task: int = Field(default=200, ge=1)
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

    @model_validator(mode="after")
    def _check(self) -> StreamConfig:
        _require_margin("stream.alb_idle_timeout_s", self.alb_idle_timeout_s, self.keepalive_s)
        _require_margin(
            "stream.origin_read_timeout_s", self.origin_read_timeout_s, self.keepalive_s
        )
        if self.origin_keepalive_s >= self.alb_idle_timeout_s:
            raise ValueError(
                "stream.origin_keepalive_s must be below stream.alb_idle_timeout_s: CloudFront"
                " would reuse connections the ALB already closed (sporadic 502s)"
            )
        if self.min_tasks > self.max_tasks:
            raise ValueError("stream.min_tasks must be <= stream.max_tasks")
        if self.resume_grace_s < self.keepalive_s:
            raise ValueError(
                "stream.resume_grace_s should cover at least one keepalive interval, or a"
                " client reconnecting after a missed ping finds its generation cancelled"
            )
        return self


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
    alarm_email: str = ""
    ttft_p95_alarm_ms: int = Field(default=3000, ge=1)
    target_latency_p95_alarm_s: float = Field(default=2.0, gt=0)


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
