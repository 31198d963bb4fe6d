"""The local model refuses a ``tool_choice`` string OpenAI does not define, as OpenAI does
(a 400 naming ``tool_choice``), instead of answering as if it were ``auto``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import InvalidRequest
from core.providers.local import script
from core.schemas.chat import parse_chat_request
from core.settings import Settings

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


def _script(choice: Any) -> Any:
    body = {
        "model": "local-model",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [WEATHER],
        "tool_choice": choice,
    }
    return script(parse_chat_request(json.dumps(body).encode(), Settings()), 64)


@pytest.mark.parametrize("choice", ["sometimes", "Required", "function", ""])
def test_an_undefined_tool_choice_string_is_a_400_naming_it(choice: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        _script(choice)
    assert info.value.param == "tool_choice"
    assert repr(choice) in info.value.message


@pytest.mark.parametrize("choice", ["none", "auto", "required"])
def test_the_defined_strings_are_answered(choice: str) -> None:
    reply = _script(choice)
    assert (reply.finish_reason == "tool_calls") == (choice == "required")
