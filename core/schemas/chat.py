"""Chat Completions request and response shapes, as OpenAI's API defines them.

Limits (body size, message count, message length, max_tokens) are checked by
:func:`validate_chat_request` so both runtimes reject the same input the same way.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Literal

import msgspec

from core import json_input
from core.errors import InvalidRequest
from core.settings import Settings

Role = Literal["system", "developer", "user", "assistant", "tool"]


class ContentPart(msgspec.Struct, omit_defaults=True):
    """One part of a message's content. Parts reach the upstream as the client sent them
    (every key, see :meth:`ChatCompletionRequest.to_openai_kwargs`); these are the keys
    the service reads."""

    type: str
    text: str | None = None
    image_url: dict[str, Any] | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None
    refusal: str | None = None


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None

    def text(self) -> str:
        """The message's text, with multi-part content joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False
    resume_grace_s: float | None = None


# Fields the service owns: never forwarded to the upstream as the client sent them.
SERVICE_FIELDS = frozenset({"stream", "stream_options"})


class ChatCompletionRequest(msgspec.Struct, omit_defaults=True, kw_only=True, dict=True):
    """The fields this service reads. Every other field the client sent is kept too: a
    request parsed from a body remembers that body (see :meth:`to_openai_kwargs`)."""

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
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @property
    def output_token_limit(self) -> int | None:
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )

    def prompt_text(self) -> str:
        return "\n".join(m.text() for m in self.messages)

    @property
    def raw(self) -> dict[str, Any] | None:
        """The decoded body this request was parsed from (None when built in code)."""
        raw: dict[str, Any] | None = self.__dict__.get("_raw")
        return raw

    def with_raw(self, raw: dict[str, Any]) -> ChatCompletionRequest:
        """Remember the body as the client sent it (kept beside the fields: ``dict=True``)."""
        self.__dict__["_raw"] = raw
        return self

    def to_openai_kwargs(self) -> dict[str, Any]:
        """The body for the upstream, without ``stream`` / ``stream_options`` (the service
        owns those): exactly as the client sent it (every field, messages and content parts
        as they were), or for a request built in code its set fields."""
        raw = self.raw
        if raw is not None:
            return {k: v for k, v in raw.items() if k not in SERVICE_FIELDS}
        built = msgspec.to_builtins(self)
        return {k: v for k, v in built.items() if v is not None and k not in SERVICE_FIELDS}


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
        raw = json_input.decode(body)
    except msgspec.DecodeError as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from exc
    return parse_chat_object(raw, settings)


def parse_chat_object(raw: Any, settings: Settings) -> ChatCompletionRequest:
    """Validate an already decoded request (a batch line's ``body``, a WebSocket frame)."""
    if not isinstance(raw, dict):
        raise InvalidRequest(
            "The request body must be a JSON object (a chat completion request).",
            code="invalid_value",
        )
    try:
        request: ChatCompletionRequest = json_input.convert(raw, ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(
            f"Invalid request: {exc}", code="invalid_value", param=_param_of(exc)
        ) from exc
    request.with_raw(raw)
    validate_chat_request(request, settings)
    return request


_AT = re.compile(r" - at `\$\.?(.*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")


def _param_of(exc: msgspec.ValidationError) -> str | None:
    """The request field a msgspec validation error is about, as OpenAI names params
    (``messages[0].role``)."""
    text = str(exc)
    at = _AT.search(text)
    path = at.group(1) if at else ""
    missing = _MISSING.search(text)
    if missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    return path or None


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
        if isinstance(message.content, list) and len(message.content) > settings.max_content_parts:
            raise InvalidRequest(
                f"messages[{index}].content has {len(message.content)} parts; the limit is "
                f"{settings.max_content_parts}.",
                param=f"messages[{index}].content",
                code="too_many_content_parts",
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
    _validate_tools(request, settings)


def _validate_tools(request: ChatCompletionRequest, settings: Settings) -> None:
    tools = request.tools
    if tools is None:
        if request.tool_choice is not None and request.tool_choice != "none":
            raise InvalidRequest(
                "'tool_choice' is only allowed when 'tools' are specified.",
                param="tool_choice",
                code="invalid_value",
            )
        return
    if len(tools) > settings.max_tools:
        raise InvalidRequest(
            f"'tools' has {len(tools)} items; the limit is {settings.max_tools}.",
            param="tools",
            code="too_many_tools",
        )
    for index, tool in enumerate(tools):
        size = len(_json.encode(tool))
        if size > settings.max_tool_schema_bytes:
            raise InvalidRequest(
                f"tools[{index}] is {size} bytes of JSON; the limit is "
                f"{settings.max_tool_schema_bytes} bytes.",
                param=f"tools[{index}]",
                code="tool_schema_too_large",
            )
        kind = tool.get("type")
        if not isinstance(kind, str):
            raise InvalidRequest(
                f"tools[{index}].type must be a string (e.g. 'function').",
                param=f"tools[{index}].type",
                code="invalid_value",
            )
        if kind == "function":
            function = tool.get("function")
            name = function.get("name") if isinstance(function, dict) else None
            if not isinstance(name, str) or not name:
                raise InvalidRequest(
                    f"tools[{index}].function.name must be a non-empty string.",
                    param=f"tools[{index}].function.name",
                    code="invalid_value",
                )
    _validate_named_choice(request.tool_choice, tools)


def _validate_named_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    """A ``tool_choice`` naming a function must name one of ``tools`` (OpenAI's own 400)."""
    if not isinstance(choice, dict) or choice.get("type") != "function":
        return
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    names = [
        tool["function"]["name"]
        for tool in tools
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    ]
    if name not in names:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': function {name!r} is not among 'tools' "
            f"({', '.join(names)}).",
            param="tool_choice",
            code="invalid_value",
        )


_json = msgspec.json.Encoder()


class Usage(msgspec.Struct, omit_defaults=True):
    """Token counts as the upstream reports them (its ``*_details`` objects too)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(
    *,
    completion_id: str,
    model: str,
    message: dict[str, Any],
    finish_reason: str,
    usage: Usage,
    logprobs: Any = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object whose one choice is ``message`` (all its fields)."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": logprobs,
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
    fields: dict[str, Any] | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    """A ``chat.completion.chunk`` object; ``fields`` are the delta's other keys
    (``tool_calls``, ``refusal``...) as the upstream sent them."""
    delta: dict[str, Any] = {}
    if role is not None:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    if fields:
        delta.update(fields)
    choices = (
        [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]
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
