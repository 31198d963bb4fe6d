"""What the local stand-in answers a turn with (SPEC section 7, "The stand-in hears you"
and "Function calling"), decided once the turn's transcript is known.

- After a user message: ``I heard: <what was said>.``, then the local chat model's words.
- With function tools (session or response ``tools``, ``tool_choice`` not ``none``): a
  user message ``/tool NAME {JSON}`` calls ``NAME`` with those arguments (the chat local
  model's convention, SPEC section 9); a turn whose words name a tool (``get weather`` for
  ``get_weather``) calls it; ``tool_choice`` ``required`` or naming a function calls that
  (or the first) function. Arguments not given are made to satisfy the tool's schema.
- After a ``function_call_output`` item: a reply that contains the output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from core.schemas.chat import ChatMessage
from stream_service.realtime.local.conversation import Item, chat_messages

_TOOL = re.compile(r"/tool\s+([A-Za-z0-9_.-]+)\s*(.*)\Z", re.DOTALL)
_WORD = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    arguments: str  # JSON


@dataclass(frozen=True, slots=True)
class Answer:
    """A reply's plan: a function call, or words (``prefix`` then, if ``ask_model``, the
    chat model's reply to ``messages``), or a failure (``error``)."""

    messages: list[ChatMessage]
    prefix: str = ""
    ask_model: bool = True
    call: FunctionCall | None = None
    error: str | None = None


def answer(
    items: list[Item], instructions: str, tools: list[dict[str, Any]], tool_choice: Any
) -> Answer:
    messages = chat_messages(instructions, items)
    functions = {
        t["name"]: t
        for t in tools
        if isinstance(t, dict) and t.get("type", "function") == "function" and t.get("name")
    }
    if tool_choice == "none":
        functions = {}
    last = items[-1] if items else None
    if last is not None and last.type == "function_call_output":
        name = next(
            (i.name for i in items if i.type == "function_call" and i.call_id == last.call_id),
            None,
        )
        what = f"The function {name}" if name else "The function"
        return Answer(messages, prefix=f"{what} returned: {last.output}", ask_model=False)
    if last is None or last.type != "message" or last.role != "user":
        return Answer(messages, call=_forced(functions, tool_choice, ""))
    said = last.text().strip()
    directive = _TOOL.match(said)
    if directive is not None and functions:
        name, raw = directive.group(1), directive.group(2).strip() or "{}"
        if name not in functions:
            return Answer(
                messages, error=f"No function '{name}' among this response's tools (/tool)."
            )
        try:
            args = json.loads(raw)
        except ValueError:
            return Answer(messages, error=f"/tool {name}: the arguments are not valid JSON.")
        if not isinstance(args, dict):
            return Answer(messages, error=f"/tool {name}: the arguments must be a JSON object.")
        return Answer(messages, call=FunctionCall(name, json.dumps(args)))
    call = _forced(functions, tool_choice, said) or _named(functions, said)
    if call is not None:
        return Answer(messages, call=call)
    if said.startswith("/"):
        return Answer(messages)  # a directive for the chat model (/echo, /tokens)
    return Answer(messages, prefix=f"I heard: {said.rstrip('.!? ')}.")


def _forced(functions: dict[str, dict[str, Any]], choice: Any, said: str) -> FunctionCall | None:
    if not functions:
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        tool = functions.get(str(choice.get("name")))
        return _call(tool) if tool is not None else None
    if choice == "required":
        named = _named(functions, said)
        return named or _call(next(iter(functions.values())))
    return None


def _named(functions: dict[str, dict[str, Any]], said: str) -> FunctionCall | None:
    """The tool whose name the words say (``get_weather``: "get weather" or "getweather")."""
    words = _WORD.findall(said.lower())
    spoken = " ".join(words)
    for name, tool in functions.items():
        parts = _WORD.findall(_CAMEL.sub(" ", name).lower())
        if parts and (f" {' '.join(parts)} " in f" {spoken} " or "".join(parts) in words):
            return _call(tool)
    return None


def _call(tool: dict[str, Any]) -> FunctionCall:
    return FunctionCall(str(tool["name"]), json.dumps(sample(tool.get("parameters") or {})))


def sample(schema: Any) -> Any:
    """A value that satisfies a (simple) JSON schema: its required properties filled."""
    if not isinstance(schema, dict):
        return {}
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return sample(schema[key][0])
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: sample(props.get(name)) for name in schema.get("required") or []}
    if kind == "array":
        return [sample(schema.get("items"))] * int(schema.get("minItems") or 0)
    if kind == "string":
        return "x" * int(schema.get("minLength") or 0)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum")) or 0
        return int(low) + (1 if "exclusiveMinimum" in schema else 0) if kind == "integer" else low
    if kind == "boolean":
        return False
    return None
