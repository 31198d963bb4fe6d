"""Prometheus metrics of one stream-service process (served at ``/stream/metrics``).

TTFT is split into stages, each measured from the moment the request was accepted:
``upstream_sent`` (the upstream request went out), ``upstream_first_token`` (the model's
first token arrived) and ``first_byte`` (the first token was written to a client).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_STORE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class StreamMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ttft = Histogram(
            "rtai_stream_ttft_seconds",
            "Time to first token: request accepted to the model's first token on this node.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        stage = Histogram(
            "rtai_stream_ttft_stage_seconds",
            "Time from request accepted to each TTFT stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_upstream_sent = stage.labels("upstream_sent")
        self.stage_first_token = stage.labels("upstream_first_token")
        self.stage_first_byte = stage.labels("first_byte")
        self.inter_token = LoopHistogram(
            "rtai_stream_inter_token_seconds", "Gap between upstream tokens.", _GAP_BUCKETS
        )
        r.register(self.inter_token)
        self.active_streams = Gauge(
            "rtai_stream_active_streams", "Producers running on this node.", registry=r
        )
        self.connections = Gauge(
            "rtai_stream_connections", "Open SSE connections on this node.", registry=r
        )
        self.open_readers = Gauge(
            "rtai_stream_open_readers",
            "Open readers on this node (SSE connections and WebSocket subscriptions).",
            registry=r,
        )
        self.started = Counter(
            "rtai_stream_streams_started", "Streams started on this node.", registry=r
        )
        self.finished = Counter(
            "rtai_stream_streams_finished", "Streams finished on this node.", ["status"], registry=r
        )
        resumes = Counter(
            "rtai_stream_resumes", "Reconnects with a last event id.", ["source"], registry=r
        )
        self.resume_memory = resumes.labels("memory")
        self.resume_store = resumes.labels("store")
        replayed = Counter(
            "rtai_stream_replayed_events",
            "Events replayed to resuming clients.",
            ["source"],
            registry=r,
        )
        self.replayed_memory = replayed.labels("memory")
        self.replayed_store = replayed.labels("store")
        self.upstream_cancels = Counter(
            "rtai_stream_upstream_cancels",
            "Upstream calls cancelled, by reason.",
            ["reason"],
            registry=r,
        )
        self.limit_rejections = Counter(
            "rtai_stream_limit_rejections", "Streams refused by the per-user limit.", registry=r
        )
        self._store_writes = Counter(
            "rtai_stream_store_writes", "Store write requests.", ["op"], registry=r
        )
        self._store_seconds = Histogram(
            "rtai_stream_store_write_seconds",
            "Store write latency.",
            ["op"],
            buckets=_STORE_BUCKETS,
            registry=r,
        )
        self._store_children: dict[str, tuple[Any, Any]] = {}
        self.tokens = Counter(
            "rtai_stream_tokens", "Upstream tokens produced on this node.", registry=r
        )

    def store_write(self, op: str, seconds: float) -> None:
        children = self._store_children.get(op)
        if children is None:  # label lookups are not free: once per operation name
            children = self._store_children[op] = (
                self._store_writes.labels(op),
                self._store_seconds.labels(op),
            )
        children[0].inc()
        children[1].observe(seconds)


class LoopHistogram(Collector):
    """A histogram observed from the event loop thread only, on the per-token path.

    ``prometheus_client.Histogram`` takes a lock per bucket update; at tens of thousands of
    tokens a second that is a visible share of the node's CPU. Observations here are a
    bisect and two additions; the registry reads the counts at scrape time.
    """

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation)
        cumulative, buckets = 0, []
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), float(cumulative)))
        family.add_metric([], buckets, self.total)
        yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
