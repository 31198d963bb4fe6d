"""SPEC 9 on a real cluster (two ``python -m stream_service`` nodes, moto's DynamoDB
server, the OpenAI-like scripted upstream of ``devstack.upstream`` started by the test): a
tool call whose ``arguments`` are cut several times mid-way and resumed on the other node
each time reassembles exactly as an uninterrupted read does (native SSE, ``?format=openai``
and WebSocket ``after_seq``); a long ``arguments`` string is stored within item limits."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
from websockets.asyncio.client import connect

from core.auth.dev import DevTokens
from core.providers.assemble import MessageAssembler
from tests.integration.stream_service.conftest import MODEL, auth
from tests.support.dynamodb import dynamodb_client
from tests.support.nodes import Nodes
from tests.support.servers import ProcessServer
from tests.support.sse import SseEvent, read_sse

NOTE = {"path": "notes/ä.md", "body": "line " * 20, "tags": ["a", "b"]}
NOTIFY = {"who": "me"}
# the upstream (OpenAI's behaviour, scripted) calls both functions, streaming each call's
# arguments in many fragments, as OpenAI does
PROMPT = f"/tool save_note {json.dumps(NOTE)}\n/tool notify {json.dumps(NOTIFY)}"
TOOLS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("save_note", "notify")
]


def _body(**extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
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


def _check(message: dict[str, Any]) -> None:
    """The reply is the two calls, their arguments whole."""
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["save_note", "notify"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [NOTE, NOTIFY]
    assert len({c["id"] for c in calls}) == 2


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
    assert done["metrics"]["tokens"] == done["usage"]["completion_tokens"] > 8
    whole = read_sse(b.url + url, headers=headers)  # uninterrupted, after the end
    assert _native_deltas(whole.events) == cut
    assert _assembled(cut) == _assembled(_native_deltas(whole.events))
    _check(_assembled(cut))


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
    _check(_assembled(cut))

    # the same request read whole by the official SDK, which accumulates the tool calls
    client = openai.OpenAI(
        base_url=f"{b.url}/stream/v1", api_key=headers["authorization"][7:], max_retries=0
    )
    with client.chat.completions.stream(**_body()) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    calls = [(c.function.name, c.function.arguments) for c in message.tool_calls or []]
    mine = _assembled(cut)
    assert calls == [
        (c["function"]["name"], c["function"]["arguments"]) for c in mine["tool_calls"]
    ]
    assert mine["content"] == (message.content or None)


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
    _check(_assembled(deltas))
    # the same stream over native SSE: the same deltas
    whole = read_sse(f"{b.url}/stream/v1/streams/{stream_id}/events", headers=headers)
    assert _native_deltas(whole.events) == deltas


def test_a_long_arguments_string_is_stored_in_items_within_dynamodb_limits(
    nodes: Nodes, tokens: DevTokens, node_env: dict[str, str]
) -> None:
    """One upstream fragment of 450 KB of arguments (a DynamoDB item holds 400 KB): stored
    split across events and items, read back whole from the other node."""
    roomy = {"MAX_MESSAGE_CHARS": "600000"}  # the prompt carries the arguments
    a, b = nodes.pair("node-c", "node-d", **roomy)
    headers = auth(tokens, "tool-long")
    big = {"body": "x" * 450_000}  # one word: the upstream sends it as one fragment
    body = {
        **_body(),
        "messages": [{"role": "user", "content": f"/tool save_note {json.dumps(big)}"}],
    }
    created = httpx.post(f"{a.url}/stream/v1/streams", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    url = created.json()["events_url"]
    first = read_sse(a.url + url, headers=headers, timeout=60)
    assert first.last().event == "done", first.events[-1:]
    whole = read_sse(b.url + url, headers=headers, timeout=60)  # the other node: the store
    assert [e.id for e in whole.events] == [e.id for e in first.events]
    message = _assembled(_native_deltas(whole.events))
    (call,) = message["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == big
    assert len(whole.events) > 12  # split across events

    client = dynamodb_client(node_env)
    items = client.query(
        TableName=node_env["STREAMS_TABLE"],
        KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
        ExpressionAttributeValues={":pk": {"S": f"S#{created.json()['id']}"}, ":e": {"S": "e#"}},
    )["Items"]
    assert len(items) >= 2
    assert max(len(item["data"]["B"]) for item in items) < 400_000
