"""SPEC 9 on a real cluster (two ``python -m stream_service`` nodes, moto's DynamoDB server,
an OpenAI-compatible upstream started by the test): a tool call whose ``arguments`` are
cut several times mid-way and resumed on the other node each time reassembles exactly as
an uninterrupted read does: native SSE, ``?format=openai`` and WebSocket ``after_seq``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from websockets.asyncio.client import connect

from core.auth.dev import DevTokens
from core.providers.assemble import MessageAssembler
from tests.integration.stream_service.conftest import MODEL, auth
from tests.support.delta_upstream import DeltaUpstream, tool_call_deltas
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.sse import SseEvent, read_sse

ARGS = json.dumps({"path": "notes/ä.md", "body": "line " * 120, "tags": ["a", "b"]})
DELTAS: list[dict[str, Any]] = [
    {"reasoning_content": "Save it"},
    {"content": "Saving your note."},
    *tool_call_deltas("save_note", ARGS, fragments=24),
    *tool_call_deltas("notify", '{"who": "me"}', fragments=3, call_id="call_2", index=1),
]
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("save_note", "notify")
]


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[DeltaUpstream, ThreadServer]]:
    app = DeltaUpstream(DELTAS, interval_s=0.06)
    with ThreadServer(app) as server:
        yield app, server


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "save a note"}],
        "tools": TOOLS,
        "parallel_tool_calls": True,
        **extra,
    }


def _assembled(deltas: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = MessageAssembler()
    for delta in deltas:
        text = delta.get("text") or delta.get("content") or ""
        fields = {k: v for k, v in delta.items() if k not in ("text", "content", "logprobs")}
        assembler.add(text, fields, delta.get("logprobs"))
    return assembler.message()


EXPECTED = _assembled(DELTAS)


def _native_deltas(events: list[SseEvent]) -> list[dict[str, Any]]:
    return [e.json() for e in events if e.event == "delta"]


def _cut_reads(
    first: ProcessServer, other: ProcessServer, url: str, headers: dict[str, str]
) -> list[SseEvent]:
    """Read ``url`` in pieces of a few deltas, each resumed on the other node."""
    events: list[SseEvent] = []
    nodes = [first, other]
    turn = 0
    while not events or events[-1].event not in ("done", "error"):
        extra = {"Last-Event-ID": str(events[-1].id)} if events else {}
        part = read_sse(
            nodes[turn % 2].url + url, headers={**headers, **extra}, stop_after_deltas=4
        )
        assert part.status == 200, part.body
        events.extend(part.events)
        turn += 1
    assert turn >= 6  # cut several times, mid-arguments
    return events


def test_native_sse_cut_mid_arguments_and_resumed_on_the_other_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "tool-native")
    created = httpx.post(f"{a.url}/stream/v1/streams", json=_body(), headers=headers, timeout=10)
    assert created.status_code == 201, created.text
    url = created.json()["events_url"]
    events = _cut_reads(a, b, url, headers)
    assert [e.id for e in events] == list(range(1, len(events) + 1))  # no gap, no duplicate
    cut = _native_deltas(events)
    # some cuts fell inside the first call's arguments
    assert sum(1 for d in cut if d.get("tool_calls") and d["tool_calls"][0]["index"] == 0) > 8
    done = events[-1].json()
    assert done["finish_reason"] == "tool_calls"
    assert done["usage"]["completion_tokens"] == 77 and done["metrics"]["tokens"] == 77
    whole = read_sse(b.url + url, headers=headers)  # uninterrupted, after the end
    assert _native_deltas(whole.events) == cut
    assert _assembled(cut) == EXPECTED
    assert EXPECTED["tool_calls"][0]["function"]["arguments"] == ARGS


def _chunk_deltas(events: list[SseEvent]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        if event.data == "[DONE]":
            continue
        for choice in json.loads(event.data)["choices"]:
            out.append(choice["delta"])
    return out


def test_openai_chunks_cut_and_resumed_on_the_other_node_equal_the_sdk_read(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "tool-chunks")
    first = read_sse(
        f"{a.url}/stream/v1/chat/completions",
        method="POST",
        json_body=_body(stream=True),
        headers=headers,
        max_events=5,  # chunks have no event name: counted as events
    )
    assert first.status == 200, first.body
    stream_id = first.headers["x-stream-id"]
    url = f"/stream/v1/streams/{stream_id}/events?format=openai"
    events = list(first.events)
    turn = 1
    # the done event is one id rendered as the finish chunk then [DONE]: a cut between
    # them resumes to nothing more
    while events[-1].data != "[DONE]":
        resume_after = max(e.id for e in events if e.id is not None)
        part = read_sse(
            (b if turn % 2 else a).url + url,
            headers={**headers, "Last-Event-ID": str(resume_after)},
            max_events=4,
        )
        assert part.status == 200, part.body
        events.extend(part.events)
        turn += 1
        if not part.events:
            break
    assert turn >= 6
    ids = [e.id for e in events if e.id is not None]
    assert ids == sorted(set(ids))
    cut = _chunk_deltas(events)
    reasons = [
        c["finish_reason"]
        for e in events
        if e.data != "[DONE]"
        for c in json.loads(e.data)["choices"]
    ]
    assert reasons[-1] == "tool_calls"
    assert _assembled(cut) == EXPECTED

    # the same request read whole by the official SDK, which accumulates the tool calls
    client = openai.OpenAI(
        base_url=f"{b.url}/stream/v1", api_key=headers["authorization"][7:], max_retries=0
    )
    with client.chat.completions.stream(**_body()) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert message.content == EXPECTED["content"]
    calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
    assert calls == [
        (c["id"], c["function"]["name"], c["function"]["arguments"]) for c in EXPECTED["tool_calls"]
    ]


async def test_websocket_cut_and_resumed_by_seq_on_the_other_node(
    cluster: tuple[ProcessServer, ProcessServer], tokens: DevTokens
) -> None:
    a, b = cluster
    headers = auth(tokens, "tool-ws")
    frames: list[dict[str, Any]] = []
    stream_id = ""
    turn = 0
    while not frames or frames[-1]["type"] not in ("done", "error"):
        node = (a, b)[turn % 2]
        url = node.url.replace("http://", "ws://") + "/stream/v1/ws"
        async with connect(url, additional_headers=headers, open_timeout=10) as ws:
            if not stream_id:
                await ws.send(json.dumps({"type": "chat.send", "ref": "r", **_body()}))
            else:
                await ws.send(
                    json.dumps(
                        {"type": "resume", "stream_id": stream_id, "after_seq": frames[-1]["seq"]}
                    )
                )
            deltas = 0
            while deltas < 4:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if frame["type"] == "stream.created":
                    stream_id = frame["stream_id"]
                    continue
                assert frame.get("stream_id") == stream_id, frame
                frames.append(frame)
                deltas += frame["type"] == "delta"
                if frame["type"] in ("done", "error"):
                    break
        turn += 1
    assert turn >= 6
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert frames[-1]["finish_reason"] == "tool_calls"
    deltas = [
        {k: v for k, v in f.items() if k not in ("type", "stream_id", "seq")}
        for f in frames
        if f["type"] == "delta"
    ]
    assert _assembled(deltas) == EXPECTED
    # the same stream over native SSE: the same deltas
    whole = read_sse(f"{b.url}/stream/v1/streams/{stream_id}/events", headers=headers)
    assert _native_deltas(whole.events) == deltas
