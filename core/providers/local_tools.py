"""What a scripted model does with ``tools``, ``tool_choice``, ``tool`` results and
``response_format``: one plan, shared by the local model and the test upstream.

Works on the request as plain JSON data (``messages`` as dicts), the way the client sent it:

- the last user message is ``/tool NAME {JSON}`` (one or more such lines) and ``tools`` is
  set: call ``NAME`` (which must be among ``tools``) with those arguments;
- ``tool_choice`` is ``required`` or names a function: call it (or the first function)
  with arguments built from its ``parameters`` schema (:mod:`core.providers.local_json`);
- the conversation ends with ``tool`` messages answering an assistant's ``tool_calls``
  (matched by ``tool_call_id``): answer in text quoting each result;
- ``response_format`` ``json_object`` / ``json_schema``: answer with a JSON document.

Anything else is the model's own text. Bad input is a 400 naming the ``param``.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidRequest
from core.providers.local_json import document_for

_TOOL_LINE = re.compile(r"/tool[ \t]+([A-Za-z0-9_-]{1,64})[ \t]*")
# Pieces of a JSON text, streamed like tokens: a word, a whitespace run, or up to three
# punctuation characters. Alternatives that never overlap: linear on any input.
_PIECE_RE = re.compile(r"\s+|\w+|[^\w\s]{1,3}")
_decoder = json.JSONDecoder()


class ReplyKind(enum.Enum):
    TOOL_CALLS = "tool_calls"
    TOOL_RESULTS = "tool_results"
    JSON = "json"


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolResult:
    name: str
    content: str


@dataclass(frozen=True, slots=True)
class Plan:
    kind: ReplyKind
    calls: list[ToolCall] = field(default_factory=list)
    results: list[ToolResult] = field(default_factory=list)
    # JSON: the document's text, or None for ``json_object`` (the caller's own text, wrapped)
    document: str | None = None


def json_pieces(text: str) -> list[str]:
    """``text`` cut into the pieces a model would stream (they join back to ``text``)."""
    return _PIECE_RE.findall(text)


def content_text(content: Any) -> str:
    """A message's text: a string, or its ``text`` parts joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return ""


def media_marks(content: Any) -> list[str]:
    """``[image]``, ``[audio]``, ``[file]`` for each such part of a message's content."""
    if not isinstance(content, list):
        return []
    marks = {"image_url": "[image]", "input_audio": "[audio]", "file": "[file]"}
    return [
        marks[part["type"]]
        for part in content
        if isinstance(part, Mapping) and part.get("type") in marks
    ]


# The strings OpenAI defines for ``tool_choice`` (anything else is its 400 too).
_CHOICE_STRINGS = frozenset({"none", "auto", "required"})


def plan_reply(body: Mapping[str, Any]) -> Plan | None:
    """The scripted reply to ``body`` (a chat request as JSON data), or None for plain text."""
    messages = body.get("messages") or []
    tools = body.get("tools")
    choice = body.get("tool_choice")
    functions = _functions(tools)
    if isinstance(choice, str) and choice not in _CHOICE_STRINGS:
        raise InvalidRequest(
            f"Invalid value for 'tool_choice': {choice!r}; expected 'none', 'auto', "
            "'required' or an object naming a function.",
            param="tool_choice",
            code="invalid_value",
        )
    if choice is not None and choice != "none" and not functions:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
            "are specified.",
            param="tool_choice",
            code="invalid_value",
        )
    results = _trailing_results(messages)
    if results:
        return Plan(ReplyKind.TOOL_RESULTS, results=results)
    if functions and choice != "none":
        calls = _directive_calls(messages, functions, body)
        if calls is None:
            forced = _forced(choice, functions)
            if forced is not None:
                schema = functions[forced].get("parameters") or {"type": "object"}
                strict = functions[forced].get("strict") is True
                index = list(functions).index(forced)
                arguments = document_for(
                    schema, param=f"tools[{index}].function.parameters", strict=strict
                )
                calls = [(forced, json.dumps(arguments))]
        if calls:
            seed = _seed(messages)
            return Plan(
                ReplyKind.TOOL_CALLS,
                calls=[
                    ToolCall(_call_id(seed, i), name, args) for i, (name, args) in enumerate(calls)
                ],
            )
    return _json_plan(body.get("response_format"))


def tool_call_fragments(calls: Sequence[ToolCall]) -> Iterator[list[dict[str, Any]]]:
    """The ``tool_calls`` fragments of a streamed reply, as OpenAI sends them: per call, one
    with ``index``, ``id``, ``type``, ``function.name`` and empty ``arguments``, then
    ``arguments`` pieces alone."""
    for index, call in enumerate(calls):
        yield [
            {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
        ]
        for piece in json_pieces(call.arguments):
            yield [{"index": index, "function": {"arguments": piece}}]


def results_text(results: Sequence[ToolResult]) -> str:
    """The answer after tool results: each result's content, quoted whole."""
    return " ".join(f"The {r.name} tool returned: {r.content}" for r in results)


def json_object_text(text: str) -> str:
    """The ``json_object`` answer: the model's text as a JSON object."""
    return json.dumps({"reply": text})


def _functions(tools: Any) -> dict[str, dict[str, Any]]:
    """``name -> function`` of the request's ``tools`` (a 400 for a malformed entry)."""
    if tools is None:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools", code="invalid_type")
    functions: dict[str, dict[str, Any]] = {}
    for index, tool in enumerate(tools):
        if isinstance(tool, Mapping) and tool.get("type", "function") != "function":
            continue  # a custom or built-in tool: the scripted models never call those
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise InvalidRequest(
                f"'tools[{index}]' must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                param=f"tools[{index}].function",
                code="invalid_value",
            )
        functions.setdefault(function["name"], dict(function))
    return functions


def _forced(choice: Any, functions: Mapping[str, Any]) -> str | None:
    if choice == "required":
        return next(iter(functions))
    if isinstance(choice, Mapping) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools")
        if not isinstance(allowed, Mapping) or allowed.get("mode") != "required":
            return None
        names = [
            tool["function"].get("name")
            for tool in allowed.get("tools") or []
            if isinstance(tool, Mapping) and isinstance(tool.get("function"), Mapping)
        ]
        return next((name for name in names if name in functions), None)
    if isinstance(choice, Mapping):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else None
        if name not in functions:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': function {name!r} is not among 'tools' "
                f"({', '.join(functions)}).",
                param="tool_choice",
                code="invalid_value",
            )
        return str(name)
    return None


def _directive_calls(
    messages: Sequence[Any], functions: Mapping[str, Any], body: Mapping[str, Any]
) -> list[tuple[str, str]] | None:
    """``/tool NAME {JSON}`` lines of the last message (a user's): ``(name, arguments)``."""
    if not messages or not isinstance(messages[-1], Mapping):
        return None
    last = len(messages) - 1
    text = content_text(messages[-1].get("content")).strip()
    if messages[-1].get("role") != "user" or not text.startswith("/tool"):
        return None
    param = f"messages[{last}].content"
    calls: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOOL_LINE.match(text, position)
        if match is None:
            raise InvalidRequest(
                f"{param}: expected '/tool NAME {{JSON arguments}}' at character {position}.",
                param=param,
                code="invalid_value",
            )
        name = match.group(1)
        if name not in functions:
            raise InvalidRequest(
                f"'/tool {name}': no function {name!r} among 'tools' ({', '.join(functions)}).",
                param="tools",
                code="invalid_value",
            )
        try:
            arguments, end = _decoder.raw_decode(text, match.end())
        except (json.JSONDecodeError, RecursionError) as exc:
            raise InvalidRequest(
                f"'/tool {name}': the arguments are not valid JSON ({exc}).",
                param=param,
                code="invalid_value",
            ) from exc
        if not isinstance(arguments, dict):
            raise InvalidRequest(
                f"'/tool {name}': the arguments must be a JSON object.",
                param=param,
                code="invalid_value",
            )
        calls.append((name, json.dumps(arguments)))
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    if body.get("parallel_tool_calls") is False:
        calls = calls[:1]
    return calls


def _trailing_results(messages: Sequence[Any]) -> list[ToolResult]:
    """The ``tool`` messages that end the conversation, each matched to the assistant's call
    it answers by ``tool_call_id`` (a 400 naming the message when it answers nothing)."""
    start = len(messages)
    while start and isinstance(messages[start - 1], Mapping):
        if messages[start - 1].get("role") != "tool":
            break
        start -= 1
    if start == len(messages):
        return []
    names: dict[str, str] = {}
    for message in messages[:start]:
        if isinstance(message, Mapping) and message.get("role") == "assistant":
            for call in message.get("tool_calls") or []:
                function = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(function, Mapping) and isinstance(call.get("id"), str):
                    names[call["id"]] = str(function.get("name"))
    results = []
    for index in range(start, len(messages)):
        call_id = messages[index].get("tool_call_id")
        if call_id not in names:
            raise InvalidRequest(
                f"messages[{index}] (role 'tool') answers tool_call_id {call_id!r}, which no "
                "earlier assistant message's 'tool_calls' has.",
                param=f"messages[{index}].tool_call_id",
                code="invalid_value",
            )
        results.append(ToolResult(names[call_id], content_text(messages[index].get("content"))))
    return results


def _json_plan(response_format: Any) -> Plan | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return Plan(ReplyKind.JSON)
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, Mapping) or "schema" not in spec:
            raise InvalidRequest(
                "'response_format.json_schema' must be an object with a 'schema'.",
                param="response_format.json_schema",
                code="invalid_value",
            )
        document = document_for(
            spec["schema"],
            param="response_format.json_schema.schema",
            strict=spec.get("strict") is True,
        )
        return Plan(ReplyKind.JSON, document=json.dumps(document))
    raise InvalidRequest(
        f"Invalid value for 'response_format.type': {kind!r}; expected 'text', 'json_object' "
        "or 'json_schema'.",
        param="response_format.type",
        code="invalid_value",
    )


def _seed(messages: Sequence[Any]) -> bytes:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).digest()


def _call_id(seed: bytes, index: int) -> str:
    return "call_" + hashlib.sha256(seed + index.to_bytes(4, "big")).hexdigest()[:24]
