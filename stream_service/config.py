"""Stream-service knobs beyond SPEC section 2 (those live in :mod:`core.settings`)."""

from __future__ import annotations

import os
import socket
import uuid
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    node_id: str = Field(default_factory=_default_node_id)
    # `dynamodb` (the cluster's shared store) or `memory` (one node, nothing survives it:
    # for trying the service alone and for benchmarks).
    stream_store: Literal["dynamodb", "memory"] = "dynamodb"
    # Store batching: at most one event-batch write per stream per interval (or sooner at N).
    flush_interval_ms: int = Field(default=300, ge=100, le=5000)
    flush_max_events: int = Field(default=64, ge=1, le=512)
    # Concurrent store writers (each one write in flight at a time).
    flush_concurrency: int = Field(default=16, ge=1, le=256)
    # Producer lease: a producer whose lease lapses is declared lost by any node.
    lease_ttl_s: float = Field(default=6.0, gt=0)
    # How often a producer polls the store for cross-node facts (cancel, remote readers).
    poll_interval_ms: int = Field(default=250, ge=20, le=5000)
    # How often a reader on a non-producer node looks for new events in the store.
    tail_interval_ms: int = Field(default=150, ge=20, le=5000)
    # Per-user stream slots are held by nodes: a node heartbeats every third of this, and the
    # slots of a node silent this long are freed by the next create that needs them.
    slot_ttl_s: float = Field(default=30.0, gt=0)
    # An upstream silent this long between two tokens is given up: error `upstream_timeout`,
    # retryable. Checked by the watchdog's poll, not per socket read.
    upstream_idle_s: float = Field(default=60.0, gt=0)
    # ...and before its first token (reasoning models think for minutes); keepalives flow.
    upstream_first_token_s: float = Field(default=600.0, gt=0)
    # A non-streaming call (`stream: false` on the stream service) is given up after this.
    upstream_complete_s: float = Field(default=120.0, gt=0)
    # Open readers (SSE connections, WebSocket subscriptions) per node: of one stream, of
    # one user. Beyond: 429 `too_many_readers`.
    max_readers_per_stream: int = Field(default=32, ge=1)
    max_readers_per_user: int = Field(default=64, ge=1)
    # A resume reads the store in pages of about this many events, sent as they come.
    resume_page_events: int = Field(default=512, ge=16, le=10_000)
    # Events kept in memory per stream; older ones are served from the store.
    memory_window: int = Field(default=4096, ge=16)
    # How long a finished stream stays in memory for fast resumes.
    retain_s: float = Field(default=60.0, ge=0)
    # ...holding only its newest events in memory; a resume from further back reads the store.
    retain_events: int = Field(default=32, ge=1)
    # Stored events live this long (DynamoDB TTL).
    stream_ttl_s: int = Field(default=24 * 3600, gt=0)
    # The drain (SIGTERM, or the hand-over before the load balancer's deregistration delay
    # ends): clients are told to reconnect, running producers get this long to finish.
    # ECS's stopTimeout is DRAIN_S + 5 s (infra).
    drain_s: float = Field(default=30.0, gt=0)
    # Behind an ALB on ECS: how long the ALB keeps this task's connections once ECS asks
    # the task to stop (the target group's deregistration delay). The node starts its drain
    # DRAIN_S + HANDOFF_MARGIN_S before that ends (stream_service/aws/task_stop.py).
    # 0: no hand-over before SIGTERM.
    deregistration_delay_s: float = Field(default=0.0, ge=0)
    handoff_margin_s: float = Field(default=5.0, ge=0)
    # Set by ECS in every container (task metadata endpoint v4); None outside ECS.
    ecs_container_metadata_uri_v4: str | None = None
    # CloudWatch: the node's own metrics (ActiveStreams, BusConnected) as an EMF line on
    # stdout this often (stream_service/aws/cloudwatch.py); 0: none (the infra sets 60).
    emf_interval_s: float = Field(default=0.0, ge=0)
    # SSE `retry:` hint, in ms, sent at connect and when a draining node asks clients to reconnect.
    retry_ms: int = Field(default=1000, ge=0)
    # uvicorn's HTTP keep-alive: above the load balancer's idle timeout (the ALB's 120 s by
    # default; infra passes its own value + margin), so the ALB closes idle connections first.
    http_keepalive_s: float = Field(default=130.0, gt=0)
    # Prometheus metrics on a port of their own (only the VPC reaches it in AWS); 0: none,
    # and /stream/metrics answers loopback peers only.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    # Processes serving the port (stream_service/workers.py): one per vCPU to use them all.
    # 1 here; the CDK app sets the task's vCPU count. Above 1 needs the shared store.
    workers: int = Field(default=1, ge=1, le=64)
    # Benchmarks only (bench/stream_bench.py --workers): lets WORKERS > 1 run on the memory
    # store, each worker with its own, so a stream is readable only on the worker that runs
    # it (created and read on one connection). Never in a deployment: resume breaks.
    workers_unshared_store: bool = False
    # A reader on another node waits this long for a just-created stream's record (written
    # right after the create answers); an unknown or foreign id gets its 404 after it.
    record_wait_s: float = Field(default=2.0, ge=0, le=30)
    # Largest accepted Last-Event-ID / seq (guards int parsing, not a stream length limit).
    max_seq: int = Field(default=10_000_000, gt=0)

    @model_validator(mode="after")
    def _check(self) -> StreamSettings:
        if self.lease_ttl_s * 1000 <= 2 * self.poll_interval_ms:
            raise ValueError("LEASE_TTL_S must be well above POLL_INTERVAL_MS")
        if self.workers > 1 and self.stream_store == "memory" and not self.workers_unshared_store:
            raise ValueError(
                "WORKERS > 1 needs STREAM_STORE=dynamodb: the memory store lives in one process"
            )
        return self

    @property
    def heartbeat_s(self) -> float:
        return self.lease_ttl_s / 3


@lru_cache(maxsize=1)
def get_stream_settings() -> StreamSettings:
    return StreamSettings()
