"""UI messages -> chat messages: the cases the SDK's OpenAI provider maps or refuses."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from core.errors import InvalidRequest
from stream_service.domain.ui_chat.service import response_message_id
from stream_service.transports.ui import to_chat_messages

WAV = "data:audio/wav;base64," + base64.b64encode(b"RIFF").decode()


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"id": "u", "role": "user", "parts": list(parts)}


def test_audio_data_urls_become_input_audio() -> None:
    out = to_chat_messages(
        [
            user(
                {"type": "text", "text": "hi"},
                {"type": "file", "mediaType": "audio/wav", "url": WAV},
            )
        ]
    )
    assert out[0]["content"][1] == {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(b"RIFF").decode(), "format": "wav"},
    }


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"type": "file", "mediaType": "audio/wav", "url": "https://x/a.wav"}, "data URLs"),
        (
            {"type": "file", "mediaType": "audio/ogg", "url": "data:audio/ogg;base64,AA=="},
            "audio/ogg",
        ),
        ({"type": "file", "mediaType": "application/pdf", "url": "https://x/a.pdf"}, "data URLs"),
        ({"type": "file", "mediaType": "text/plain", "url": "data:text/plain,hi"}, "text/plain"),
        ({"type": "file", "url": "data:,x"}, "mediaType"),
    ],
)
def test_what_openai_does_not_take_is_a_400_naming_the_part(
    part: dict[str, Any], words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat_messages([user({"type": "text", "text": "a"}, part)])
    assert caught.value.param == "messages[0].parts[1]" and words in caught.value.message


def test_a_percent_encoded_image_is_sent_as_base64() -> None:
    out = to_chat_messages(
        [
            user(
                {
                    "type": "file",
                    "mediaType": "image/svg+xml",
                    "url": "data:image/svg+xml,%3Csvg%2F%3E",
                }
            )
        ]
    )
    expected = "data:image/svg+xml;base64," + base64.b64encode(b"<svg/>").decode()
    assert out[0]["content"] == [{"type": "image_url", "image_url": {"url": expected}}]


def test_tool_parts_still_streaming_are_not_sent_and_denials_have_their_reason() -> None:
    out = to_chat_messages(
        [
            user({"type": "text", "text": "go"}),
            {
                "id": "a",
                "role": "assistant",
                "parts": [
                    {"type": "tool-f", "toolCallId": "c1", "state": "input-streaming"},
                    {
                        "type": "tool-f",
                        "toolCallId": "c2",
                        "state": "output-denied",
                        "input": {},
                        "approval": {"id": "p", "reason": "no"},
                    },
                    {
                        "type": "dynamic-tool",
                        "toolName": "g",
                        "toolCallId": "c3",
                        "state": "output-available",
                        "input": {"a": 1},
                        "output": "ok",
                    },
                ],
            },
        ]
    )
    assert out[1]["tool_calls"] == [
        {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "c3", "type": "function", "function": {"name": "g", "arguments": '{"a":1}'}},
    ]
    assert out[1]["content"] is None
    assert out[2:] == [
        {"role": "tool", "tool_call_id": "c2", "content": "no"},
        {"role": "tool", "tool_call_id": "c3", "content": "ok"},
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ("x", "messages"),
        ([], "messages"),
        (["x"], "messages[0]"),
        ([{"role": "user"}], "messages[0].parts"),
        ([{"role": "user", "parts": [{"text": "no type"}]}], "messages[0].parts[0]"),
        ([{"role": "tool", "parts": []}], "messages[0].role"),
    ],
)
def test_malformed_ui_messages_are_400s_naming_the_param(messages: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat_messages(messages)
    assert caught.value.param == param


def test_a_continuation_keeps_the_assistant_message_id() -> None:
    assert response_message_id([user(), {"id": "a-7", "role": "assistant", "parts": []}]) == "a-7"
    fresh = response_message_id([user()])
    assert fresh.startswith("msg_") and fresh != response_message_id([user()])
    with pytest.raises(InvalidRequest):
        response_message_id([user(), {"id": "x" * 257, "role": "assistant", "parts": []}])
