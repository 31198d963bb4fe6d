"""The validated config: cdk.json environments, overrides and the streaming invariants."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infra.app import cdk_json_context
from infra.config import (
    COMPLETION_MARGIN_S,
    KEEPALIVE_MARGIN_FACTOR,
    ApiConfig,
    AppConfig,
    StreamConfig,
    deep_merge,
    load_config,
)


def rtai_context() -> dict[str, Any]:
    context: dict[str, Any] = cdk_json_context()["rtai"]
    return context


def test_every_environment_in_cdk_json_is_valid() -> None:
    context = rtai_context()
    for env_name in context["environments"]:
        config = load_config(context, env_name)
        assert config.env_name == env_name
        assert config.name == f"rtai-{env_name}"


def test_per_environment_override_merges_over_defaults() -> None:
    dev = load_config(rtai_context(), "dev")
    prod = load_config(rtai_context(), "prod")
    # dev: defaults except what it overrides
    assert dev.network.nat_gateways == 0
    assert dev.data.retain is False
    assert dev.observability.log_retention_days == 7
    assert dev.stream.keepalive_s == 15  # untouched default from "defaults"
    # prod: overridden nested keys, siblings kept
    assert prod.network.nat_gateways == 1
    assert prod.network.cidr == dev.network.cidr
    assert prod.stream.min_tasks == 2
    assert prod.stream.container_insights is True
    assert prod.stream.drain_s == dev.stream.drain_s
    assert prod.edge.waf_enabled is True
    assert prod.data.retain is True


def test_deep_merge_replaces_leaves_and_keeps_siblings() -> None:
    base = {"a": {"b": 1, "c": 2}, "l": [1, 2]}
    merged = deep_merge(base, {"a": {"c": 3}, "l": [9]})
    assert merged == {"a": {"b": 1, "c": 3}, "l": [9]}
    assert base == {"a": {"b": 1, "c": 2}, "l": [1, 2]}


def test_unknown_environment_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        load_config(rtai_context(), "nope")


def test_unknown_key_is_rejected() -> None:
    context = deep_merge(rtai_context(), {"environments": {"dev": {"stream": {"idle": 5}}}})
    with pytest.raises(ValidationError, match="idle"):
        load_config(context, "dev")


@pytest.mark.parametrize("idle", [15, 10, 20, 29])
def test_alb_idle_timeout_not_above_keepalive_with_margin_is_rejected(idle: int) -> None:
    with pytest.raises(ValidationError, match="alb_idle_timeout_s"):
        StreamConfig(keepalive_s=15, alb_idle_timeout_s=idle)


def test_alb_idle_timeout_with_margin_is_accepted() -> None:
    config = StreamConfig(
        keepalive_s=15,
        alb_idle_timeout_s=int(15 * KEEPALIVE_MARGIN_FACTOR),
        origin_read_timeout_s=30,
    )
    assert config.alb_idle_timeout_s == 30
    # small keepalives still need an absolute margin, not just the factor
    with pytest.raises(ValidationError, match="alb_idle_timeout_s"):
        StreamConfig(keepalive_s=2, alb_idle_timeout_s=5, origin_read_timeout_s=60)


def test_idle_timeouts_form_a_chain_by_default() -> None:
    """CloudFront's origin keep-alive < ALB idle timeout (>= 120 s, above the keepalive
    with margin) < the service's own HTTP keep-alive."""
    config = StreamConfig()
    assert config.alb_idle_timeout_s >= 120
    assert config.alb_idle_timeout_s >= 2 * config.keepalive_s
    assert config.origin_keepalive_s < config.alb_idle_timeout_s
    assert config.service_http_keepalive_s > config.alb_idle_timeout_s
    for idle in (30, 120, 600):
        config = StreamConfig(alb_idle_timeout_s=idle, origin_read_timeout_s=min(idle, 60))
        assert config.service_http_keepalive_s > idle


def test_the_services_default_keepalive_is_above_the_default_alb_idle_timeout() -> None:
    """Run without the infra's HTTP_KEEPALIVE_S, the service still outlasts the ALB."""
    from stream_service.config import StreamSettings

    assert StreamSettings().http_keepalive_s > StreamConfig().alb_idle_timeout_s


def test_completion_budget_nests_inside_the_lambda_and_api_gateway() -> None:
    api = ApiConfig()
    assert api.timeout_s < 30
    assert api.completion_budget_s <= api.timeout_s - COMPLETION_MARGIN_S
    assert ApiConfig(timeout_s=20).completion_budget_s == 20 - COMPLETION_MARGIN_S
    with pytest.raises(ValidationError, match="completion_timeout_s"):
        ApiConfig(timeout_s=29, completion_timeout_s=28)
    with pytest.raises(ValidationError, match="timeout_s"):
        ApiConfig(timeout_s=30)


def test_origin_read_timeout_not_above_keepalive_is_rejected() -> None:
    with pytest.raises(ValidationError, match="origin_read_timeout_s"):
        StreamConfig(keepalive_s=15, origin_read_timeout_s=15)


def test_origin_keepalive_must_be_below_alb_idle_timeout() -> None:
    with pytest.raises(ValidationError, match="origin_keepalive_s"):
        StreamConfig(alb_idle_timeout_s=60, origin_keepalive_s=60)


def test_drain_fits_fargate_stop_timeout() -> None:
    assert StreamConfig(drain_s=30).stop_timeout_s == 35
    assert StreamConfig(drain_s=115, deregistration_delay_s=400).stop_timeout_s == 120
    with pytest.raises(ValidationError, match="drain_s"):
        StreamConfig(drain_s=116, deregistration_delay_s=400)


def test_config_validation_via_cdk_json_context() -> None:
    """An override that breaks the keepalive invariant fails at load (i.e. at cdk synth)."""
    context = deep_merge(
        rtai_context(), {"environments": {"dev": {"stream": {"alb_idle_timeout_s": 15}}}}
    )
    with pytest.raises(ValidationError, match="keepalive"):
        load_config(context, "dev")


def test_explicit_account_requires_explicit_azs() -> None:
    with pytest.raises(ValidationError, match="availability_zones"):
        AppConfig(env_name="dev", account="123456789012")
    config = AppConfig(
        env_name="dev",
        account="123456789012",
        network={"availability_zones": ["us-east-1a", "us-east-1b"]},
    )
    assert config.account == "123456789012"


def test_queue_visibility_is_six_times_the_worker_timeout() -> None:
    config = load_config(rtai_context(), "dev")
    assert config.api.queue_visibility_timeout_s == 6 * config.api.worker_timeout_s


@pytest.mark.parametrize(("cpu", "workers"), [(256, 1), (512, 1), (1024, 1), (2048, 2), (4096, 4)])
def test_one_stream_service_process_per_vcpu_by_default(cpu: int, workers: int) -> None:
    assert StreamConfig(cpu=cpu).workers_per_task == workers
    assert StreamConfig(cpu=cpu, workers=3).workers_per_task == 3
