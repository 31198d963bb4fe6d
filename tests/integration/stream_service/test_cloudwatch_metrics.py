"""The node's own metrics reach CloudWatch as embedded-metric-format lines on stdout (what
the task's awslogs driver ships): ActiveStreams counts its running streams (the autoscaling
target), BusConnected follows a real redis-server going down and coming back (the alarm).
A real stream-service process; its stdout is read from its log file."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.support.redis import RedisServer, redis_server_fixture
from tests.support.servers import ProcessServer
from tests.support.sse import read_sse

NAMESPACE = "RealtimeAiStack"
SERVICE = "rtai-test-stream"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    yield from redis_server_fixture()


def emf_lines(node: ProcessServer) -> list[dict[str, Any]]:
    lines = []
    for line in node.log_path.read_text(errors="replace").splitlines():
        if line.startswith('{"_aws"'):
            lines.append(json.loads(line))
    return lines


def wait_for_value(node: ProcessServer, metric: str, wanted: float, after: int = 0) -> int:
    """Index of the first EMF line past ``after`` whose ``metric`` is ``wanted``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for index, line in enumerate(emf_lines(node)[after:], start=after):
            if line.get(metric) == [wanted]:
                return index
        time.sleep(0.2)
    raise AssertionError(f"no {metric}={wanted} after line {after}: {emf_lines(node)[-3:]}")


@pytest.mark.timeout(240)
def test_active_streams_and_bus_state_are_emitted_as_emf(
    start_node: StartNode, redis_server: RedisServer, tokens: DevTokens
) -> None:
    node = start_node(
        NODE_ID="emf-node",
        EMF_INTERVAL_S="0.5",
        POWERTOOLS_METRICS_NAMESPACE=NAMESPACE,
        POWERTOOLS_SERVICE_NAME=SERVICE,
        BUS_URL=redis_server.url,
    )
    first = wait_for_value(node, "BusConnected", 1.0)  # once the bus has connected
    line = emf_lines(node)[first]
    (directive,) = line["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == NAMESPACE
    assert directive["Dimensions"] == [["service"]] and line["service"] == SERVICE
    assert {m["Name"] for m in directive["Metrics"]} == {"ActiveStreams", "BusConnected"}
    assert line["ActiveStreams"] == [0.0]

    # two running streams on this node -> ActiveStreams 2, then 0 when they end
    headers = auth(tokens, "emf-user")
    streams = [create(node, headers, tokens_out=120).json() for _ in range(2)]
    busy = wait_for_value(node, "ActiveStreams", 2.0, after=first)
    for created in streams:
        assert read_sse(node.url + created["events_url"], timeout=60).last().event == "done"
    idle = wait_for_value(node, "ActiveStreams", 0.0, after=busy)

    # the bus goes down: BusConnected 0; back up: 1
    redis_server.stop()
    down = wait_for_value(node, "BusConnected", 0.0, after=idle)
    redis_server.start()
    wait_for_value(node, "BusConnected", 1.0, after=down)
