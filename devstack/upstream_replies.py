"""What the scripted upstream answers, as OpenAI would: its request checks and its deltas.

:func:`check_request` refuses, in OpenAI's error shape, what OpenAI refuses and a lossy proxy
would produce: an assistant message with neither ``content`` nor ``tool_calls``, a ``tool``
message without ``tool_call_id`` or answering no call, an assistant's ``tool_calls`` left
unanswered, ``tool_choice`` without ``tools``, ``top_logprobs`` without ``logprobs``.

:func:`reply_deltas` is the reply as OpenAI's ``choices[0].delta`` objects, built lazily
(the plain text path builds one small dict per token, at send time): tool calls only when
the request carried ``tools`` (the plan of :mod:`core.providers.local_tools`, shared with the
local model: ``/tool NAME {JSON}``, ``tool_choice``, tool results, ``response_format``), a
``refusal`` for ``/refuse TEXT``, ``reasoning_content`` before the answer for ``/reason
TEXT``, and the ``" w<N>"`` tokens otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidRequest
from core.providers.local_tools import (
    ReplyKind,
    content_text,
    json_object_text,
    json_pieces,
    plan_reply,
    results_text,
    tool_call_fragments,
)

MAX_TOP_LOGPROBS = 20


@dataclass(frozen=True, slots=True)
class Reply:
    deltas: Iterator[dict[str, Any]]
    finish_reason: str


def check_request(request: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidRequest` (OpenAI's 400) for what OpenAI itself refuses."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    unanswered: dict[str, int] = {}
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidRequest(
                f"Invalid type for 'messages[{index}]': expected an object.",
                param=f"messages[{index}]",
                code="invalid_type",
            )
        role = message.get("role")
        if role != "tool" and unanswered:
            _unanswered(unanswered)
        if role == "assistant":
            calls = message.get("tool_calls")
            if message.get("content") is None and not calls:
                raise InvalidRequest(
                    "Invalid value for 'content': expected a string, got null.",
                    param=f"messages.[{index}].content",
                    code=None,
                )
            for call in calls or []:
                if isinstance(call, Mapping) and isinstance(call.get("id"), str):
                    unanswered[call["id"]] = index
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str):
                raise InvalidRequest(
                    f"Missing required parameter: 'messages[{index}].tool_call_id'.",
                    param=f"messages[{index}].tool_call_id",
                    code="missing_required_parameter",
                )
            if call_id not in unanswered:
                raise InvalidRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                    code=None,
                )
            del unanswered[call_id]
    if unanswered:
        _unanswered(unanswered)
    if request.get("tool_choice") not in (None, "none") and not request.get("tools"):
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
            code=None,
        )
    top = request.get("top_logprobs")
    if top is not None:
        if not request.get("logprobs"):
            raise InvalidRequest(
                "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
                "'top_logprobs' is used.",
                param="top_logprobs",
                code="invalid_value",
            )
        if not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise InvalidRequest(
                f"Invalid 'top_logprobs': expected an integer from 0 to {MAX_TOP_LOGPROBS}.",
                param="top_logprobs",
                code="integer_out_of_range",
            )


def _unanswered(unanswered: Mapping[str, int]) -> None:
    index = min(unanswered.values())
    raise InvalidRequest(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(unanswered),
        param=f"messages.[{index}].role",
        code=None,
    )


def reply_deltas(
    request: Mapping[str, Any], tokens: int, token: Callable[[int], str], text: str
) -> Reply:
    """The reply to ``request``: ``tokens`` words made by ``token(i)`` unless the request
    asks for more (``text`` is those words joined, for the replies that quote them)."""
    plan = plan_reply(request)
    if plan is not None and plan.kind is ReplyKind.TOOL_CALLS:
        return Reply(({"tool_calls": f} for f in tool_call_fragments(plan.calls)), "tool_calls")
    if plan is not None and plan.kind is ReplyKind.TOOL_RESULTS:
        return Reply(_pieces("content", results_text(plan.results)), "stop")
    if plan is not None:  # JSON
        document = plan.document if plan.document is not None else json_object_text(text)
        return Reply(_pieces("content", document), "stop")
    prompt = _last_user_text(request)
    if prompt.startswith("/refuse"):
        return Reply(_pieces("refusal", prompt[len("/refuse") :].strip() or "I can't."), "stop")
    if prompt.startswith("/reason"):
        thought = prompt[len("/reason") :].strip() or "Thinking."
        reasoning = _pieces("reasoning_content", thought)
        return Reply(itertools.chain(reasoning, _words(tokens, token)), "stop")
    return Reply(_words(tokens, token), "stop")


def logprobs_of(delta: Mapping[str, Any], top: int) -> dict[str, Any] | None:
    """A chunk's ``logprobs``, as OpenAI sends it with ``logprobs: true``: one entry per
    token of the delta's ``content`` (or ``refusal``), ``top`` alternatives each."""
    for key in ("content", "refusal"):
        piece = delta.get(key)
        if isinstance(piece, str):
            entry = _logprob(piece, -0.25)
            entry["top_logprobs"] = [
                _logprob(piece if rank == 0 else f"{piece}~{rank}", -0.25 * (rank + 1))
                for rank in range(top)
            ]
            other = "refusal" if key == "content" else "content"
            return {key: [entry], other: None}
    return None


def _logprob(token: str, value: float) -> dict[str, Any]:
    return {"token": token, "logprob": value, "bytes": list(token.encode())}


def _words(tokens: int, token: Callable[[int], str]) -> Iterator[dict[str, Any]]:
    for index in range(tokens):
        yield {"content": token(index)}


def _pieces(key: str, text: str) -> Iterator[dict[str, Any]]:
    for piece in json_pieces(text):
        yield {key: piece}


def _last_user_text(request: Mapping[str, Any]) -> str:
    messages = request.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, Mapping) or last.get("role") != "user":
        return ""
    return content_text(last.get("content")).strip()
