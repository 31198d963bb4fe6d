"""What the stand-in answers (SPEC 7, "The stand-in hears you", "Function calling")."""

from __future__ import annotations

import json
from typing import Any

from stream_service.realtime.local.answer import answer, sample
from stream_service.realtime.local.conversation import Item

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 2},
                "days": {"type": "integer", "minimum": 1},
                "unit": {"enum": ["c", "f"]},
                "alerts": {"type": "boolean"},
            },
            "required": ["city", "days", "unit"],
        },
    },
    {"type": "function", "name": "bookTable", "parameters": {"type": "object"}},
]


def said(text: str) -> Item:
    return Item(id="u", role="user", content=[{"type": "input_audio", "transcript": text}])


def test_a_turn_is_answered_by_repeating_what_was_heard() -> None:
    plan = answer([said("what time is it")], "", [], "auto")
    assert plan.prefix == "I heard: what time is it." and plan.ask_model and plan.call is None
    assert plan.messages[-1].text() == "what time is it"


def test_tool_directives_and_named_tools_become_calls() -> None:
    plan = answer([said('/tool get_weather {"city": "Oslo"}')], "", TOOLS, "auto")
    assert plan.call is not None and plan.call.name == "get_weather"
    assert json.loads(plan.call.arguments) == {"city": "Oslo"}
    plan = answer([said("could you book table please")], "", TOOLS, "auto")
    assert plan.call is not None and plan.call.name == "bookTable"
    assert answer([said("/tool nope {}")], "", TOOLS, "auto").error is not None
    assert answer([said("/tool get_weather [1]")], "", TOOLS, "auto").error is not None
    # tool_choice none: no calls, the words are heard
    plan = answer([said("get weather")], "", TOOLS, "none")
    assert plan.call is None and plan.prefix.startswith("I heard:")


def test_tool_choice_forces_a_call_with_arguments_that_fit_the_schema() -> None:
    plan = answer([said("hello")], "", TOOLS, "required")
    assert plan.call is not None and plan.call.name == "get_weather"
    args: dict[str, Any] = json.loads(plan.call.arguments)
    assert args == {"city": "xx", "days": 1, "unit": "c"}
    plan = answer([said("hello")], "", TOOLS, {"type": "function", "name": "bookTable"})
    assert plan.call is not None and plan.call.name == "bookTable"
    assert sample({"type": "array", "items": {"type": "number"}, "minItems": 2}) == [0, 0]


def test_a_function_output_is_what_the_reply_says() -> None:
    call = Item(id="c", role=None, content=[], type="function_call", call_id="call_1", name="f")
    output = Item(
        id="o", role=None, content=[], type="function_call_output", call_id="call_1", output="42"
    )
    plan = answer([said("go"), call, output], "", TOOLS, "auto")
    assert plan.prefix == "The function f returned: 42" and not plan.ask_model
