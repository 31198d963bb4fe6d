"""Resume by last event id, on the same node and on the other one, mid-stream and after done."""

from __future__ import annotations

import time

import openai
import pytest

from core.auth.dev import DevTokens
from devstack.upstream import ScriptedUpstream
from tests.integration.stream_service.conftest import MODEL, auth, create
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import read_sse


def _events_url(node: ProcessServer, created: dict[str, str]) -> str:
    return node.url + created["events_url"]


def _assert_complete(ids: list[int], text: str, upstream: ScriptedUpstream, tokens: int) -> None:
    assert ids == list(range(1, len(ids) + 1)), ids  # no gap, no duplicate
    assert text == upstream.expected_text(tokens)


@pytest.mark.parametrize("resume_on", ["same", "other"])
def test_resume_mid_stream(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
    resume_on: str,
) -> None:
    a, b = cluster
    app, _ = upstream
    created = create(a, auth(tokens), tokens_out=30)
    assert created.status_code == 201, created.text
    first = read_sse(_events_url(a, created.json()), stop_after_deltas=5)
    assert first.status == 200
    assert first.headers["cache-control"] == "no-cache"
    assert first.headers["x-accel-buffering"] == "no"
    assert first.events[0].event == "status"
    last_id = first.ids[-1]
    target = a if resume_on == "same" else b
    rest = read_sse(_events_url(target, created.json()), headers={"Last-Event-ID": str(last_id)})
    assert rest.closed_by_server
    assert rest.events[0].id == last_id + 1
    assert rest.last().event == "done"
    _assert_complete(first.ids + rest.ids, first.text + rest.text, app, 30)


@pytest.mark.parametrize("resume_on", ["same", "other"])
def test_resume_after_done(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
    resume_on: str,
) -> None:
    a, b = cluster
    app, _ = upstream
    created = create(a, auth(tokens), tokens_out=8).json()
    whole = read_sse(_events_url(a, created))
    assert whole.last().event == "done"
    done = whole.last().json()
    assert done["finish_reason"] == "stop"
    assert done["metrics"]["tokens"] == 8
    assert done["metrics"]["ttft_ms"] > 0
    time.sleep(0.4)  # the final flush and status land in the store
    target = a if resume_on == "same" else b
    # query-parameter form of the resume position
    rest = read_sse(_events_url(target, created) + "&last_event_id=3")
    assert [e.id for e in rest.events] == whole.ids[3:]
    _assert_complete(
        whole.ids[:3] + rest.ids,
        "".join(e.json()["text"] for e in whole.events[:3] if e.event == "delta") + rest.text,
        app,
        8,
    )
    status = target.url + f"/stream/v1/streams/{created['id']}"
    import httpx

    body = httpx.get(status, headers=auth(tokens)).json()
    assert {k: body[k] for k in ("id", "status", "last_event_id")} == {
        "id": created["id"],
        "status": "completed",
        "last_event_id": whole.ids[-1],
    }
    # a fresh events URL (new token) resumes too
    assert read_sse(target.url + body["events_url"] + "&last_event_id=3").ids == whole.ids[3:]


def test_openai_sdk_streams_and_resumes_by_stream_id(
    cluster: tuple[ProcessServer, ProcessServer],
    upstream: tuple[ScriptedUpstream, ThreadServer],
    tokens: DevTokens,
) -> None:
    a, b = cluster
    app, _ = upstream
    token = tokens.mint("alice")
    client = openai.OpenAI(base_url=f"{a.url}/stream/v1", api_key=token, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    stream_id = raw.headers["x-stream-id"]
    text = ""
    usage = None
    finish = None
    for chunk in raw.parse():
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert text == app.expected_text(12)
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 12
    # Resume the same stream on the other node, in the same chunk format.
    time.sleep(0.4)
    rest = read_sse(
        f"{b.url}/stream/v1/streams/{stream_id}/events?format=openai",
        headers={"authorization": f"Bearer {token}", "Last-Event-ID": "5"},
    )
    chunks = [e for e in rest.events if e.data != "[DONE]"]
    assert rest.events[-1].data == "[DONE]"
    assert chunks[0].id == 6
    resumed = "".join(c["delta"].get("content") or "" for e in chunks for c in e.json()["choices"])
    assert app.expected_text(12).endswith(resumed)
    assert resumed == "".join(f" w{i}" for i in range(4, 12))


def test_reconnecting_after_the_ending_adds_nothing(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    """EventSource reconnects by itself after a server closes; at the end that must not
    invent events (e.g. a false producer_lost) on any node."""
    a, b = cluster
    created = create(a, auth(tokens), tokens_out=4).json()
    whole = read_sse(a.url + created["events_url"])
    last = whole.ids[-1]
    time.sleep(0.5)
    for node in (a, b, b):
        again = read_sse(node.url + created["events_url"], headers={"Last-Event-ID": str(last)})
        assert again.status == 200
        assert again.events == []
        assert again.closed_by_server
    assert read_sse(b.url + created["events_url"]).ids == whole.ids
