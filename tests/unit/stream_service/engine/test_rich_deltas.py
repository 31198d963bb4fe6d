"""Structured deltas through the engine's parts: the producer appends what the upstream
sent (a long delta cut into events within MAX_DELTA_BYTES), the store writer keeps
batches within a DynamoDB item, the OpenAI chunk format renders the fields verbatim."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.assemble import MessageAssembler, merge_delta
from core.providers.base import Finish, ModelProvider, RichDelta, TokenDelta, UpstreamEvent
from core.schemas.chat import ChatCompletionRequest, Usage
from stream_service.engine.delta_split import split_delta
from stream_service.engine.events import MAX_DELTA_BYTES, Event, delta_parts
from stream_service.engine.live import LiveStream
from stream_service.engine.producer import Producer
from stream_service.engine.store_writer import BATCH_MAX_BYTES, StoreWriter
from stream_service.metrics import StreamMetrics
from stream_service.transports.sse.formats import NATIVE, OpenAIChunks
from tests.unit.stream_service.engine.support import chat, live_stream, recording_store, until
from tests.unit.stream_service.engine.test_producer import LIMITS

LONG_ARGS = json.dumps({"text": "ü" * 150_000, "n": list(range(2000))})


class _Scripted(ModelProvider):
    name = "scripted"

    def __init__(self, events: list[UpstreamEvent]) -> None:
        self.events = events

    async def list_models(self) -> list[str]:
        return ["local-model"]

    async def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        for event in self.events:
            yield event


async def _produce(events: list[UpstreamEvent]) -> LiveStream:
    ended: list[LiveStream] = []

    async def on_end(stream: LiveStream) -> None:
        ended.append(stream)

    producer = Producer(
        _Scripted(events),
        StreamMetrics(),
        LIMITS,
        flush_at=10_000,
        flush_soon=lambda _s: None,
        on_end=on_end,
    )
    stream = live_stream()
    producer.start(stream, chat("x"))
    await until(lambda: bool(ended))
    return stream


def _reassemble(events: list[Event]) -> MessageAssembler:
    assembler = MessageAssembler()
    for event in events:
        if event.kind == "delta":
            text, fields, logprobs = delta_parts(event.data)
            assembler.add(text, fields, logprobs)
    return assembler


CALL = {
    "index": 0,
    "id": "call_1",
    "type": "function",
    "function": {"name": "save", "arguments": ""},
}


async def test_a_long_arguments_string_is_split_across_events_and_reassembles_exactly() -> None:
    stream = await _produce(
        [
            TokenDelta("Saving."),
            RichDelta("", {"tool_calls": [CALL]}),
            RichDelta("", {"tool_calls": [{"index": 0, "function": {"arguments": LONG_ARGS}}]}),
            TokenDelta("x" * 100_000),  # a long text token is cut too
            Finish("tool_calls", Usage(5, 321, 326)),
        ]
    )
    deltas = [e for e in stream.events if e.kind == "delta"]
    assert len(deltas) > 12
    assert all(len(e.data) <= MAX_DELTA_BYTES for e in deltas)
    message = _reassemble(stream.events).message()
    assert message["content"] == "Saving." + "x" * 100_000
    assert message["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "save", "arguments": LONG_ARGS}}
    ]
    done = json.loads(stream.events[-1].data)
    assert done["finish_reason"] == "tool_calls"
    assert done["metrics"]["tokens"] == 321  # as the upstream's usage says
    assert stream.timings.tokens == 321


async def test_text_deltas_stay_text_only_payloads() -> None:
    stream = await _produce([TokenDelta(" a"), TokenDelta(" b"), Finish("stop", Usage(1, 2, 3))])
    assert [e.data for e in stream.events if e.kind == "delta"] == [
        b'{"text":" a"}',
        b'{"text":" b"}',
    ]


async def test_store_batches_stay_within_an_item() -> None:
    stream = await _produce(
        [
            RichDelta(
                "",
                {"tool_calls": [{**CALL, "function": {"name": "f", "arguments": "a" * 2_000_000}}]},
            ),
            Finish("tool_calls", Usage(1, 1, 2)),
        ]
    )
    store, _ = recording_store(max_batch=64)
    sizes: list[int] = []
    real_append = store.append

    async def append(stream_id: str, events: list[Any]) -> bool:
        sizes.append(len(msgspec.msgpack.encode(events)))
        return await real_append(stream_id, events)

    store.append = append  # type: ignore[method-assign]
    writer = StoreWriter(
        store,
        node="n",
        lease_ttl_s=5,
        interval_ms=100,
        workers=1,
        streams=lambda: [stream],
        on_lease_lost=lambda s: None,
    )
    writer.track(stream)
    await writer.flush(stream)
    assert len(sizes) > 5 and max(sizes) <= BATCH_MAX_BYTES + 64 * 100 < 400_000
    stored = (await store.read(stream.id, 0)).events
    rebuilt = _reassemble([Event.from_stored(e) for e in stored]).message()
    assert rebuilt["tool_calls"][0]["function"]["arguments"] == "a" * 2_000_000


def test_openai_chunks_carry_the_fields_verbatim_and_logprobs_on_the_choice() -> None:
    stream = live_stream()
    fmt = OpenAIChunks(stream.info)
    logprobs = {
        "content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}]
    }
    fields = {"tool_calls": [CALL], "reasoning_content": "r"}
    rich = Event.rich_delta(3, "Hi", fields, logprobs)
    frame = fmt.render(rich).decode()
    assert frame.startswith("id: 3\ndata: ")
    chunk = json.loads(frame.split("data: ", 1)[1])
    (choice,) = chunk["choices"]
    assert choice["delta"] == {"content": "Hi", **fields}
    assert choice["logprobs"] == logprobs
    bare = json.loads(
        fmt.render(Event.rich_delta(4, "", {"refusal": "No."}, None)).decode().split("data: ", 1)[1]
    )
    assert bare["choices"][0]["delta"] == {"refusal": "No."}
    native = NATIVE.render(rich).decode()
    assert json.loads(native.split("data: ", 1)[1]) == {
        "text": "Hi",
        **fields,
        "logprobs": logprobs,
    }
    assert json.loads(fmt.render(Event.delta(5, "t")).decode().split("data: ", 1)[1])["choices"][0][
        "delta"
    ] == {"content": "t"}


_leaf = st.one_of(st.text(max_size=300), st.integers(), st.booleans())
_call = st.fixed_dictionaries(
    {
        "index": st.integers(0, 3),
        "function": st.fixed_dictionaries({"arguments": st.text(max_size=3000)}),
    },
    optional={"id": st.text(min_size=1, max_size=20), "type": st.just("function")},
)
_delta = st.fixed_dictionaries(
    {},
    optional={
        "text": st.text(max_size=3000),
        "reasoning_content": st.text(max_size=3000),
        "tool_calls": st.lists(_call, max_size=3, unique_by=lambda c: c["index"]),
        "audio": st.fixed_dictionaries(
            {"id": st.text(max_size=10), "data": st.text(max_size=3000)}
        ),
        "logprobs": st.fixed_dictionaries(
            {
                "content": st.lists(
                    st.fixed_dictionaries(
                        {"token": st.text(max_size=30), "logprob": st.floats(-5, 0)}
                    ),
                    max_size=60,
                )
            }
        ),
        "x": _leaf,
    },
)


@settings(max_examples=200, deadline=None)
@given(_delta, st.integers(200, 2000))
def test_split_pieces_fit_and_merge_back_into_the_delta(delta: dict[str, Any], budget: int) -> None:
    pieces = split_delta(delta, budget)
    for piece in pieces:
        assert len(msgspec.json.encode(piece)) <= budget
    merged: dict[str, Any] = {}
    for piece in pieces:
        merge_delta(merged, piece)
    expected: dict[str, Any] = {}
    merge_delta(expected, delta)
    assert merged == expected
