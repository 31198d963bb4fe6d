from __future__ import annotations

import pytest

from stream_service.realtime.local.conversation import Conversation, Item, Span, item_from_client
from stream_service.realtime.protocol import ProtocolError


def reply_item() -> Item:
    item = Item(id="item_1", role="assistant", content=[], has_audio=True, audio_ms=3000)
    item.spans = [Span(0, 1000, "One two three."), Span(1000, 3000, " Four five six seven.")]
    return item


@pytest.mark.parametrize(
    ("cut_ms", "heard"),
    [
        (0, ""),
        (999, "One two"),
        (1000, "One two three."),
        (2000, "One two three. Four five"),
        (3000, "One two three. Four five six seven."),
    ],
)
def test_only_the_words_heard_stay(cut_ms: int, heard: str) -> None:
    assert reply_item().heard_transcript(cut_ms) == heard


def test_client_items_are_checked() -> None:
    item = item_from_client(
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        None,
    )
    assert item.role == "user" and item.text() == "hi"
    with pytest.raises(ProtocolError) as caught:
        item_from_client({"type": "mcp_call"}, "evt_1")
    assert (caught.value.param, caught.value.event_id) == ("item.type", "evt_1")
    with pytest.raises(ProtocolError) as caught:
        item_from_client({"type": "function_call", "name": "f"}, "evt_2")
    assert caught.value.param == "item.call_id"
    with pytest.raises(ProtocolError) as caught:
        item_from_client(
            {"type": "message", "role": "user", "content": [{"type": "output_text", "text": "x"}]},
            None,
        )
    assert caught.value.param == "item.content[0].type"


def test_the_prompt_is_the_conversation_as_chat_messages() -> None:
    conversation = Conversation()
    conversation.add(
        Item(
            id="a", role="user", content=[{"type": "input_audio", "transcript": "what time is it"}]
        )
    )
    conversation.add(
        Item(id="b", role="assistant", content=[{"type": "output_audio", "transcript": "Noon."}])
    )
    conversation.add(
        Item(id="c", role="user", content=[{"type": "input_audio", "transcript": None}])
    )
    messages = conversation.messages("Be brief.")
    assert [(m.role, m.text()) for m in messages] == [
        ("system", "Be brief."),
        ("user", "what time is it"),
        ("assistant", "Noon."),
        ("user", "(inaudible)"),
    ]
    with pytest.raises(ProtocolError):
        conversation.add(Item(id="a", role="user", content=[]))


def test_previous_item_id_places_the_item_and_an_unknown_one_is_refused() -> None:
    conversation = Conversation()
    for name in ("a", "b"):
        conversation.add(Item(id=name, role="user", content=[]))
    assert conversation.add(Item(id="first", role="user", content=[]), None, "root") is None
    assert conversation.add(Item(id="mid", role="user", content=[]), None, "a") == "a"
    assert list(conversation.items) == ["first", "a", "mid", "b"]
    with pytest.raises(ProtocolError) as caught:
        conversation.add(Item(id="lost", role="user", content=[]), "evt_p", "item_nope")
    assert (caught.value.param, caught.value.event_id) == ("previous_item_id", "evt_p")
    assert "lost" not in conversation.items
