"""Deltas back into the assistant message, as OpenAI's SDKs accumulate a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from core.providers.assemble import MessageAssembler
from core.providers.base import Finish, ModelProvider, RichDelta, TokenDelta, UpstreamEvent
from core.schemas.chat import ChatCompletionRequest, ChatMessage, Usage


def _fragments() -> list[tuple[str, dict[str, Any], Any]]:
    return [
        ("", {"reasoning_content": "think"}, None),
        ("", {"reasoning_content": "ing"}, None),
        (
            "",
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ("", {"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}, None),
        (
            "",
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "now", "arguments": "{}"},
                    }
                ]
            },
            None,
        ),
        ("", {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}, None),
    ]


def test_tool_calls_merge_by_index_with_arguments_concatenated() -> None:
    assembler = MessageAssembler()
    for text, fields, logprobs in _fragments():
        assembler.add(text, fields, logprobs)
    assert assembler.message() == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "reasoning_content": "thinking",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }


def test_repeated_ids_and_names_are_kept_not_doubled() -> None:
    assembler = MessageAssembler()
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}
    assembler.add("", {"tool_calls": [call]})
    again = {
        "index": 0,
        "id": "c1",
        "type": "function",
        "function": {"name": "f", "arguments": "}"},
    }
    assembler.add("", {"tool_calls": [again]})
    (merged,) = assembler.message()["tool_calls"]
    assert merged == {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def test_text_refusal_and_logprobs() -> None:
    assembler = MessageAssembler()
    assembler.add_text("Hel")
    assembler.add("lo", {}, {"content": [{"token": "lo", "logprob": -0.1, "top_logprobs": []}]})
    assembler.add("", {"refusal": "I can"}, {"refusal": [{"token": "I", "logprob": 0.0}]})
    assembler.add("", {"refusal": "not."}, None)
    message = assembler.message()
    assert message == {"role": "assistant", "content": "Hello", "refusal": "I cannot."}
    assert assembler.logprobs() == {
        "content": [{"token": "lo", "logprob": -0.1, "top_logprobs": []}],
        "refusal": [{"token": "I", "logprob": 0.0}],
    }


def test_a_text_only_reply_has_empty_string_content_not_none() -> None:
    assert MessageAssembler().message() == {"role": "assistant", "content": "", "refusal": None}


class _Scripted(ModelProvider):
    name = "scripted"

    async def list_models(self) -> list[str]:
        return ["m"]

    async def stream(
        self, request: ChatCompletionRequest, on_text: Callable[[str], None] | None = None
    ) -> AsyncIterator[UpstreamEvent]:
        yield TokenDelta("Let me check. ")
        for text, fields, logprobs in _fragments():
            yield RichDelta(text, fields, logprobs)
        yield Finish("tool_calls", Usage(3, 9, 12))


def test_the_default_complete_is_the_assembled_message_with_the_upstream_finish() -> None:
    request = ChatCompletionRequest(model="m", messages=[ChatMessage(role="user", content="x")])
    completion = asyncio.run(_Scripted().complete(request))
    body = completion.body("m")
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check. "
    assert [c["function"]["arguments"] for c in choice["message"]["tool_calls"]] == [
        '{"city": "Oslo"}',
        "{}",
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    assert completion.text == "Let me check. "
