"""Helpers for the engine's real-parts tests: Prometheus counters of a node, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import ProcessServer


def metric(node: ProcessServer, name: str, **labels: str) -> float:
    """The value of one sample of a node's /stream/metrics (0 when absent)."""
    text = httpx.get(f"{node.url}/stream/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def store_writes(node: ProcessServer, op: str) -> float:
    return metric(node, "rtai_stream_store_writes_total", op=op)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
