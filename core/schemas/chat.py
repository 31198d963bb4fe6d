"""Chat Completions request and response shapes, as OpenAI's API defines them.

Limits (body size, message count, message length, max_tokens) are checked by
:func:`validate_chat_request` so both runtimes reject the same input the same way.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import msgspec

from core.errors import InvalidRequest
from core.settings import Settings

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ContentPart(msgspec.Struct, omit_defaults=True):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text, with multi-part content joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True, kw_only=True):
    """The fields this service understands; unknown fields are accepted and ignored."""

    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    n: int | None = None

    @property
    def output_token_limit(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)

    def to_openai_kwargs(self) -> dict[str, Any]:
        """Arguments for ``openai.chat.completions.create`` (without ``stream``)."""
        raw = msgspec.to_builtins(self)
        raw.pop("stream", None)
        raw.pop("stream_options", None)
        return {k: v for k, v in raw.items() if v is not None}


_decoder = msgspec.json.Decoder(ChatCompletionRequest)


def parse_chat_request(body: bytes, settings: Settings) -> ChatCompletionRequest:
    """Decode and validate a request body; every failure is a 4xx :class:`ApiError`."""
    if len(body) > settings.max_request_bytes:
        from core.errors import PayloadTooLarge

        raise PayloadTooLarge(
            f"Request body is {len(body)} bytes; the limit is {settings.max_request_bytes} bytes."
        )
    if not body.strip():
        raise InvalidRequest("Request body is empty; expected a JSON chat completion request.")
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", code="invalid_value") from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    validate_chat_request(request, settings)
    return request


def validate_chat_request(request: ChatCompletionRequest, settings: Settings) -> None:
    if not request.model:
        raise InvalidRequest("'model' must be a non-empty string.", param="model")
    if not request.messages:
        raise InvalidRequest(
            "'messages' must contain at least one message.", param="messages", code="invalid_value"
        )
    if len(request.messages) > settings.max_messages:
        raise InvalidRequest(
            f"'messages' has {len(request.messages)} items; the limit is {settings.max_messages}.",
            param="messages",
            code="too_many_messages",
        )
    for index, message in enumerate(request.messages):
        if len(message.text()) > settings.max_message_chars:
            raise InvalidRequest(
                f"messages[{index}] is longer than {settings.max_message_chars} characters.",
                param=f"messages[{index}].content",
                code="message_too_long",
            )
    limit = request.output_token_limit
    if limit is not None and not 1 <= limit <= settings.max_output_tokens:
        raise InvalidRequest(
            f"'max_tokens' must be between 1 and {settings.max_output_tokens}; got {limit}.",
            param="max_tokens",
            code="invalid_value",
        )
    if request.n not in (None, 1):
        raise InvalidRequest("Only n=1 is supported.", param="n", code="invalid_value")
    if request.temperature is not None and not 0 <= request.temperature <= 2:
        raise InvalidRequest("'temperature' must be between 0 and 2.", param="temperature")


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(
    *, completion_id: str, model: str, text: str, finish_reason: str, usage: Usage
) -> dict[str, Any]:
    """A ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": msgspec.to_builtins(usage),
        "system_fingerprint": None,
    }


def chunk_body(
    *,
    completion_id: str,
    model: str,
    created: int,
    content: str | None = None,
    role: str | None = None,
    finish_reason: str | None = None,
    usage: Usage | None = None,
    with_choice: bool = True,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    choices = (
        [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
        if with_choice
        else []
    )
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = msgspec.to_builtins(usage)
    return body
