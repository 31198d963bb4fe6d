"""What a room's sizes mean on the wire: a long reply becomes parts that give it back
exactly (and one message to the model again); a ``joined`` frame stays within its byte
bound whatever the messages hold (control characters cost 6 bytes escaped)."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_service.rooms.conversation import as_chat_messages
from stream_service.rooms.frames import joined_frame
from stream_service.rooms.reply_parts import TRUNCATED, reply_parts
from stream_service.store.rooms_base import RoomMessage

TEXT = st.text(st.characters(codec="utf-8"), max_size=400)


@settings(max_examples=300, deadline=None)
@given(TEXT, st.integers(16, 64))
def test_a_long_reply_is_split_into_parts_that_give_it_back(text: str, part_bytes: int) -> None:
    parts = reply_parts(text, part_bytes, 10_000)
    assert "".join(parts) == text
    assert all(len(p.encode()) <= part_bytes for p in parts)
    assert all(parts) or parts == [""]


@settings(max_examples=200, deadline=None)
@given(TEXT, st.integers(16, 64), st.integers(64, 200))
def test_a_reply_over_the_reply_bound_keeps_its_beginning_and_says_so(
    text: str, part_bytes: int, reply_bytes: int
) -> None:
    whole = "".join(reply_parts(text, part_bytes, reply_bytes))
    if len(text.encode()) <= reply_bytes:
        assert whole == text
    else:
        assert whole.endswith(TRUNCATED) and text.startswith(whole[: -len(TRUNCATED)])
        assert len(whole.encode()) <= reply_bytes


def test_cuts_fall_after_whitespace_when_there_is_some() -> None:
    parts = reply_parts("one two three four five six seven", 16, 1000)
    assert parts == ["one two three ", "four five six ", "seven"]


def message(seq: int, role: str, content: str, stream_id: str | None = None,
            part: int = 1, parts: int = 1) -> RoomMessage:  # fmt: skip
    user = "assistant" if role == "assistant" else "alice"
    return RoomMessage(f"m{seq:010d}", seq, user, role, content, 0, stream_id, part, parts)  # type: ignore[arg-type]


def test_a_reply_in_parts_is_one_assistant_message_to_the_model() -> None:
    text = "The first token matters more than the last one. " * 3
    parts = reply_parts(text, 40, 10_000)
    stored = [message(1, "user", "hi")]
    stored += [message(2 + i, "assistant", p, "s1", i + 1, len(parts)) for i, p in enumerate(parts)]
    stored += [message(9, "assistant", "another reply", "s2"), message(10, "user", "ok")]
    chat = as_chat_messages(stored)
    assert [(m.role, m.text()) for m in chat] == [
        ("user", "alice: hi"), ("assistant", text), ("assistant", "another reply"),
        ("user", "alice: ok"),
    ]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=30), st.integers(4096, 20_000))
def test_joined_stays_within_its_bound_and_holds_the_newest_messages(
    contents: list[str], max_bytes: int
) -> None:
    messages = [message(i + 1, "user", c) for i, c in enumerate(contents)]
    frame, kept = joined_frame("rm_x", ["alice"], messages, [("s1", 3)], max_bytes)
    assert len(frame) <= max_bytes
    decoded = msgspec.json.decode(frame)
    assert [m["content"] for m in decoded["messages"]] == contents[len(contents) - kept :]
    assert decoded.get("truncated", False) == (kept < len(contents))
    assert decoded["streams"] == [{"stream_id": "s1", "last_seq": 3}]
    assert decoded["members"] == ["alice"] and decoded["room"] == "rm_x"


def test_control_characters_count_as_what_they_cost_on_the_wire() -> None:
    poison = "\x01" * 1000  # 1,000 bytes stored, 6,000 bytes escaped
    messages = [message(i + 1, "user", poison) for i in range(10)]
    frame, kept = joined_frame("rm_x", ["alice"], messages, [], 20_000)
    assert len(frame) <= 20_000 and kept == 3
    assert msgspec.json.decode(frame)["truncated"] is True
