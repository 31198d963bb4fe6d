"""The UI message stream format: chunks that depend on earlier events, rendered the same
by every reader (cached frames or not), tool calls and reasoning as the AI SDK expects."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream_service.engine.events import Event
from stream_service.transports.ui import UiMessageChunks

STREAM = "0" * 32


def events(*items: tuple[str, Any]) -> list[Event]:
    return [
        Event.make(seq, kind, as_encoded(payload)) for seq, (kind, payload) in enumerate(items, 1)
    ]


def as_encoded(payload: Any) -> Any:
    """A delta's fields in the engine's order: anything beside text first, ``text`` last
    (only a text-only payload starts with ``{"text":``)."""
    if isinstance(payload, dict) and "text" in payload and len(payload) > 1:
        return {**{k: v for k, v in payload.items() if k != "text"}, "text": payload["text"]}
    return payload


def chunks(frames: bytes) -> list[dict[str, Any]]:
    out = []
    for line in frames.decode().split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[6:]))
    return out


def render(stream: list[Event]) -> bytes:
    fmt = UiMessageChunks(STREAM, "m1")
    return b"".join(fmt.frame(e) for e in stream)


def fresh(stream: list[Event]) -> list[Event]:
    return [Event.from_stored(e.stored()) for e in stream]


DONE = ("done", {"finish_reason": "stop", "usage": None, "metrics": {}})
TOOL_STREAM = [
    ("status", {"state": "thinking"}),
    ("delta", {"text": "Checking."}),
    (
        "delta",
        {
            "text": "",
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        },
    ),
    ("delta", {"text": "", "tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    ("delta", {"text": "", "tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    (
        "delta",
        {
            "text": "",
            "tool_calls": [
                {"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}
            ],
        },
    ),
    ("done", {"finish_reason": "tool_calls", "usage": None, "metrics": {}}),
]


def test_a_text_reply() -> None:
    stream = events(("status", {}), ("delta", {"text": "Hel"}), ("delta", {"text": "lo"}), DONE)
    out = render(stream)
    assert chunks(out) == [
        {"type": "start", "messageId": "m1", "messageMetadata": {"streamId": STREAM}},
        {"type": "start-step"},
        {"type": "text-start", "id": "t2"},
        {"type": "text-delta", "id": "t2", "delta": "Hel"},
        {"type": "text-delta", "id": "t2", "delta": "lo"},
        {"type": "text-end", "id": "t2"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop"},
    ]
    assert out.endswith(b"data: [DONE]\n\n")


def test_every_reader_renders_the_same_frames_cached_or_not() -> None:
    stream = events(*TOOL_STREAM)
    first = render(stream)  # fills the frame cache
    assert all(e.f3 is not None for e in stream)
    # a second reader of the same events (cached frames) and one of stored copies (none)
    assert render(stream) == first == render(fresh(stream))


def test_a_second_reader_on_cached_frames_keeps_its_own_state() -> None:
    stream = events(*TOOL_STREAM)
    a, b = UiMessageChunks(STREAM, "m1"), UiMessageChunks(STREAM, "m1")
    out_a, out_b = b"", b""
    for event in stream:  # interleaved, as two readers of one live stream are
        out_a += a.frame(event)
        out_b += b.frame(event)
    assert out_a == out_b == render(fresh(stream))


def test_tool_calls_become_tool_input_chunks() -> None:
    got = chunks(render(events(*TOOL_STREAM)))
    assert [c["type"] for c in got] == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-delta",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-input-available",
        "finish-step",
        "finish",
    ]
    assert got[5] == {"type": "tool-input-start", "toolCallId": "call_a", "toolName": "get_weather"}
    available = [c for c in got if c["type"] == "tool-input-available"]
    assert available == [
        {
            "type": "tool-input-available",
            "toolCallId": "call_a",
            "toolName": "get_weather",
            "input": {"city": "Paris"},
        },
        {
            "type": "tool-input-available",
            "toolCallId": "call_b",
            "toolName": "get_time",
            "input": {},
        },
    ]
    assert got[-1] == {"type": "finish", "finishReason": "tool-calls"}


def test_arguments_that_are_not_json_are_a_tool_input_error() -> None:
    got = chunks(
        render(
            events(
                (
                    "delta",
                    {
                        "text": "",
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{bad"}}
                        ],
                    },
                ),
                DONE,
            )
        )
    )
    error = next(c for c in got if c["type"] == "tool-input-error")
    assert error["toolCallId"] == "c" and error["input"] == "{bad" and error["errorText"]


def test_reasoning_then_text() -> None:
    got = chunks(
        render(
            events(
                ("delta", {"text": "", "reasoning_content": "Think"}),
                ("delta", {"text": "", "reasoning_content": "ing."}),
                ("delta", {"text": "Answer"}),
                DONE,
            )
        )
    )
    assert [c["type"] for c in got][2:-2] == [
        "reasoning-start",
        "reasoning-delta",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
    ]
    assert got[2] == {"type": "reasoning-start", "id": "r1"}


def test_a_stopped_reply_ends_with_abort_then_finish() -> None:
    stream = events(
        ("status", {}),
        ("delta", {"text": "partial"}),
        ("done", {"finish_reason": "cancelled", "usage": None, "metrics": {}}),
    )
    got = chunks(render(stream))
    assert [c["type"] for c in got][-4:] == ["text-end", "finish-step", "abort", "finish"]
    assert got[-1]["finishReason"] == "stop"


def test_an_error_first_still_starts_the_message() -> None:
    """A dead producer that stored nothing: the reader's first event is the error."""
    stream = events(
        ("error", {"code": "producer_lost", "message": "It stopped.", "retryable": True})
    )
    out = render(stream)
    got = chunks(out)
    assert [c["type"] for c in got] == ["start", "start-step", "error"]
    assert got[-1]["errorText"] == "It stopped. (producer_lost)"
    assert out.endswith(b"data: [DONE]\n\n")


def test_a_frame_asked_again_is_the_same_and_out_of_order_is_refused() -> None:
    stream = events(("status", {}), ("delta", {"text": "a"}), ("delta", {"text": "b"}))
    fmt = UiMessageChunks(STREAM, "m1")
    fmt.frame(stream[0])
    second = fmt.frame(stream[1])
    assert fmt.frame(stream[1]) == second  # a direct write that did not go out, retried
    with pytest.raises(ValueError):
        UiMessageChunks(STREAM, "m1").frame(stream[1])  # a UI stream is read from its start


def test_text_that_needs_escaping_arrives_exactly() -> None:
    tricky = ['say "hi"', "\\n", "line\nbreak", "caf\u00e9 \U0001f600", "</script>", ""]
    stream = events(("status", {}), *[("delta", {"text": t}) for t in ["start", *tricky]], DONE)
    got = chunks(render(stream))
    deltas = [c["delta"] for c in got if c["type"] == "text-delta"]
    assert deltas == ["start", *tricky[:-1]]  # an empty delta adds no chunk
    assert "".join(deltas) == "start" + "".join(tricky)
