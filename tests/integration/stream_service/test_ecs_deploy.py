"""A rolling deploy the way ECS sequences it, against two real nodes behind a real nginx.

ECS stops a task behind an ALB in this order: the task's desired status becomes STOPPED
and its target is deregistered (the load balancer sends it nothing new and keeps its open
connections for the deregistration delay, then closes them), then SIGTERM, then SIGKILL
``stopTimeout`` later. Here: the ECS task metadata endpoint is a small server the test
controls, the load balancer is nginx (a graceful reload routes new requests to node B only;
``worker_shutdown_timeout`` closes what is still open on the old worker when the delay ends,
as the ALB does), and the test sends SIGTERM when the delay is over.

What a client must see (docs/deploy.md, "Deploys and running streams"): a stream that ends
within the delay ends on its node with no reconnect at all; a longer one is handed over
before the load balancer's cut (a ``retry:`` hint and a clean end, never a cut), resumes
through the load balancer on the other node, and has every event exactly once.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import StartNode, auth, create
from tests.support.nginx import Balancer
from tests.support.servers import ThreadServer
from tests.support.sse import SseResult, read_sse

DELAY_S = 12  # the target group's deregistration delay
DRAIN_S = 6
MARGIN_S = 1
HANDOFF_AFTER_S = DELAY_S - DRAIN_S - MARGIN_S  # the node's drain starts 5 s after the stop
STOP_TIMEOUT_S = DRAIN_S + 5  # what infra sets as ECS stopTimeout


class TaskMetadata:
    """``${ECS_CONTAINER_METADATA_URI_V4}/task`` of one task (only what the node reads)."""

    def __init__(self) -> None:
        self.desired_status = "RUNNING"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        found = scope["path"] == "/v4/task"
        body = json.dumps({"DesiredStatus": self.desired_status, "KnownStatus": "RUNNING"})
        await send(
            {
                "type": "http.response.start",
                "status": 200 if found else 404,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode() if found else b""})


@pytest.fixture
def metadata() -> Iterator[tuple[TaskMetadata, ThreadServer]]:
    app = TaskMetadata()
    with ThreadServer(app) as server:
        yield app, server


def _read_in_thread(url: str, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(read_sse(url, **kwargs))
        except Exception as exc:  # a cut connection: the test says so
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.timeout(300)  # three processes start on a shared machine
def test_rolling_deploy_hands_streams_over_before_the_load_balancers_cut(
    start_node: StartNode,
    upstream: tuple[ScriptedUpstream, ThreadServer],
    metadata: tuple[TaskMetadata, ThreadServer],
    tokens: DevTokens,
) -> None:
    app, _ = upstream
    task, meta_server = metadata
    old = start_node(
        NODE_ID="old-task",
        ECS_CONTAINER_METADATA_URI_V4=f"{meta_server.url}/v4",
        DEREGISTRATION_DELAY_S=str(DELAY_S),
        DRAIN_S=str(DRAIN_S),
        HANDOFF_MARGIN_S=str(MARGIN_S),
    )
    new = start_node(NODE_ID="new-task")  # the task of the new deployment
    headers = auth(tokens)
    with Balancer([old.port], deregistration_delay_s=DELAY_S) as lb:
        short = create(old, headers, tokens_out=20).json()  # ~1 s: ends within the delay
        long = create(old, headers, tokens_out=150).json()  # ~7.5 s: outlives the hand-over
        long_reader, long_out = _read_in_thread(lb.url + long["events_url"], timeout=40)
        short_reader, short_out = _read_in_thread(lb.url + short["events_url"], timeout=40)
        time.sleep(0.3)

        # --- ECS: desired status STOPPED, target deregistered ------------------------
        stopped_at = time.monotonic()
        task.desired_status = "STOPPED"
        lb.route_to([new.port])

        short_reader.join(20)
        short_result: SseResult = short_out[0]
        assert short_result.last().event == "done"  # finished in place: no reconnect
        assert len(short_result.retry) == 1  # only the hint every stream starts with
        assert short_result.text == app.expected_text(20)

        long_reader.join(30)
        first = long_out[0]
        handed_over_after = time.monotonic() - stopped_at
        assert isinstance(first, SseResult), f"the load balancer cut the stream: {first!r}"
        assert first.closed_by_server
        assert first.last().event == "delta"  # handed over mid-stream...
        assert len(first.retry) == 2  # ...with a reconnect hint, before the cut
        assert HANDOFF_AFTER_S - 1 <= handed_over_after < DELAY_S, handed_over_after

        # --- the client reconnects through the load balancer: node B resumes it ------
        assert read_health(lb.url) == "new-task"
        rest = read_sse(
            lb.url + long["events_url"],
            headers={"Last-Event-ID": str(first.ids[-1])},
            timeout=30,
        )
        assert rest.last().event == "done"
        assert rest.last().json()["finish_reason"] == "stop"
        assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1))  # no gap, no repeat
        assert first.text + rest.text == app.expected_text(150)

        # --- the delay is over: SIGTERM; the node is gone well within stopTimeout --------
        time.sleep(max(0.0, DELAY_S - (time.monotonic() - stopped_at)))
        if old.proc is not None and old.proc.poll() is None:
            old.signal(signal.SIGTERM)
        code = old.wait(STOP_TIMEOUT_S)
        assert code in (0, -signal.SIGTERM)


def read_health(url: str) -> str:
    import httpx

    body = httpx.get(f"{url}/stream/healthz", timeout=5).json()
    return str(body["node"])
