"""Streams nobody reads (SPEC section 11), on real nodes sharing one moto DynamoDB server and
an OpenAI-compatible upstream that records when the service hangs up on it:

- a stream whose client aborted yields its slot first: a create that finds its user at
  ``MAX_STREAMS_PER_USER`` cancels that stream (on another node too) and is admitted, under
  ``reject`` as under ``replace``; only when every active stream is read is it a 429;
- ``stream_options.resume_grace_s`` and ``X-Resume-Grace-S`` lower the grace per request
  (0: the upstream is cancelled as soon as the last reader leaves); out of range, a 400
  that names the parameter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import MODEL, StartNode, auth, create
from tests.integration.stream_service.engine_support import wait_for
from tests.support.dynamodb import dynamodb_client
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse

pytestmark = pytest.mark.slow

# A long grace: nothing here ends for lack of readers unless the request asks for it.
LONG_GRACE = {"RESUME_GRACE_S": "30", "MAX_STREAMS_PER_USER": "2"}


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[ScriptedUpstream, ThreadServer]]:
    app = ScriptedUpstream(ttft_s=0.02, interval_s=0.03, default_tokens=20)
    with ThreadServer(app) as server:
        yield app, server


@pytest.fixture(scope="module")
def node_env(node_env: dict[str, str]) -> dict[str, str]:
    return {**node_env, **LONG_GRACE}


@pytest.fixture(scope="module")
def grace_node(start_node: StartNode) -> ProcessServer:
    return start_node(NODE_ID="grace")


def _status(node: ProcessServer, stream_id: str, headers: dict[str, str]) -> str:
    response = httpx.get(f"{node.url}/stream/v1/streams/{stream_id}", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


class Reader:
    """Reads a stream's events in a thread until it ends (or until ``stop`` closes it)."""

    def __init__(self, node: ProcessServer, created: dict[str, str]) -> None:
        self.url = node.url + created["events_url"]
        self.last: str | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        result = read_sse(self.url, timeout=60)
        self.last = result.last().event if result.events else None


def _abandon(node: ProcessServer, created: dict[str, str]) -> None:
    """A client that read a few events, then went away."""
    assert read_sse(node.url + created["events_url"], stop_after_deltas=2).events


def _marked_unread(env: dict[str, str], stream_id: str) -> bool:
    """Whether the producer's node has told the store nobody reads the stream (what a create
    on any node consults when its user is at the limit)."""
    item = (
        dynamodb_client(env)
        .get_item(
            TableName=env["STREAMS_TABLE"], Key={"pk": {"S": f"S#{stream_id}"}, "sk": {"S": "meta"}}
        )
        .get("Item", {})
    )
    return int(item.get("unread_since", {}).get("N", "0")) > 0


@pytest.mark.parametrize("policy", ["reject", "replace"])
def test_an_unread_stream_yields_its_slot_first_on_any_node(
    start_node: StartNode, node_env: dict[str, str], tokens: DevTokens, policy: str
) -> None:
    a = start_node(NODE_ID=f"unread-a-{policy}", STREAM_LIMIT_POLICY=policy)
    b = start_node(NODE_ID=f"unread-b-{policy}", STREAM_LIMIT_POLICY=policy)
    headers = auth(tokens, f"stopper-{policy}")
    read = create(a, headers, tokens_out=3000).json()
    reader = Reader(a, read)
    time.sleep(0.3)
    abandoned = create(a, headers, tokens_out=3000).json()  # the younger one
    _abandon(a, abandoned)
    # a's watchdog notices its reader left within a poll or two (a loaded machine: longer);
    # until then the stream counts as read, and under replace the oldest would give way
    wait_for(lambda: _marked_unread(node_env, abandoned["id"]), 10, "marked unread")
    # at the limit (2): the abandoned stream gives way, on node a, to a create on node b
    deadline = time.monotonic() + 10
    while (third := create(b, headers, tokens_out=3000)).status_code == 429:
        assert time.monotonic() < deadline, third.text  # a poll of a's watchdog, at most
        time.sleep(0.2)
    assert third.status_code == 201, third.text
    wait_for(lambda: _status(b, abandoned["id"], headers) == "cancelled", 10, "yielded")
    assert _status(b, read["id"], headers) == "running"  # the read one, older, kept its slot
    third_reader = Reader(b, third.json())
    time.sleep(0.5)
    # every active stream is read now: the policy decides
    fourth = create(b, headers, tokens_out=3000)
    if policy == "reject":
        assert fourth.status_code == 429, fourth.text
        assert fourth.json()["error"]["code"] == "too_many_streams"
    else:
        assert fourth.status_code == 201, fourth.text
        wait_for(lambda: _status(b, read["id"], headers) == "cancelled", 10, "oldest replaced")
    for stream_id in (read["id"], third.json()["id"]):
        httpx.post(f"{a.url}/stream/v1/streams/{stream_id}/cancel", headers=headers, timeout=10)
    if fourth.status_code == 201:
        fourth_id = fourth.json()["id"]
        httpx.post(f"{b.url}/stream/v1/streams/{fourth_id}/cancel", headers=headers, timeout=10)
    for each in (reader, third_reader):
        each.thread.join(20)
        assert each.last == "done"


def test_a_request_lowers_its_grace_and_0_cancels_when_the_last_reader_leaves(
    grace_node: ProcessServer, upstream: tuple[ScriptedUpstream, ThreadServer], tokens: DevTokens
) -> None:
    app, _ = upstream
    node = grace_node
    headers = auth(tokens, "graceful")
    # chunks with stream_options.resume_grace_s = 0: the client leaves, the upstream stops
    before = app.stats.disconnects
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 3000,
        "stream": True,
        "stream_options": {"resume_grace_s": 0},
    }
    chunks = read_sse(
        node.url + "/stream/v1/chat/completions",
        headers=headers,
        method="POST",
        json_body=body,
        max_events=4,  # chunks (not named events): a few, then the client goes
    )
    assert chunks.status == 200, chunks.body
    stream_id = chunks.headers["x-stream-id"]
    started = time.monotonic()
    wait_for(lambda: _status(node, stream_id, headers) == "cancelled", 5, "grace 0")
    wait_for(lambda: app.stats.disconnects > before, 5, "the upstream to be cancelled")
    assert time.monotonic() - started < 5  # not RESUME_GRACE_S (30 s)

    # the header, on POST /streams: half a second after its reader left
    created = httpx.post(
        f"{node.url}/stream/v1/streams",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3000},
        headers={**headers, "X-Resume-Grace-S": "0.5"},
        timeout=10,
    ).json()
    _abandon(node, created)
    wait_for(lambda: _status(node, created["id"], headers) == "cancelled", 6, "grace 0.5")

    # a stream that asked for grace 0 is not cancelled before its first reader comes
    waiting = create(node, headers, tokens_out=40, stream_options={"resume_grace_s": 0}).json()
    time.sleep(1.0)
    whole = read_sse(node.url + waiting["events_url"], timeout=30)
    assert whole.last().event == "done"
    assert whole.last().json()["finish_reason"] != "cancelled"


@pytest.mark.parametrize(
    ("extra", "grace_header", "param"),
    [
        ({"stream_options": {"resume_grace_s": 31}}, None, "stream_options.resume_grace_s"),
        ({"stream_options": {"resume_grace_s": -1}}, None, "stream_options.resume_grace_s"),
        ({}, "31", "X-Resume-Grace-S"),
        ({}, "soon", "X-Resume-Grace-S"),
        ({}, "nan", "X-Resume-Grace-S"),
    ],
)
def test_a_grace_out_of_range_is_a_400_naming_its_param(
    grace_node: ProcessServer,
    tokens: DevTokens,
    extra: dict[str, object],
    grace_header: str | None,
    param: str,
) -> None:
    node = grace_node
    headers = auth(tokens, "out-of-range")
    if grace_header is not None:
        headers = {**headers, "X-Resume-Grace-S": grace_header}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    for path in ("/stream/v1/streams", "/stream/v1/chat/completions"):
        response = httpx.post(
            node.url + path, json={**body, "stream": True}, headers=headers, timeout=10
        )
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["param"] == param, error
        assert "resume_grace_s" in error["message"] or "Resume-Grace" in error["message"]
