"""A room conversation as the chat messages of the assistant's reply."""

from __future__ import annotations

from stream_service.rooms.conversation import as_chat_messages, author_name
from stream_service.store.rooms_base import RoomMessage


def msg(seq: int, user: str, role: str, content: str) -> RoomMessage:
    return RoomMessage(f"m{seq:010d}", seq, user, role, content, 0)  # type: ignore[arg-type]


def test_each_user_message_says_who_wrote_it() -> None:
    chat = as_chat_messages(
        [
            msg(1, "alice", "user", "what is 2+2?"),
            msg(2, "assistant", "assistant", "4"),
            msg(3, "bob@example.com", "user", "and 3+3?"),
        ],
        system="You are in a group chat.",
    )
    assert [(m.role, m.content, m.name) for m in chat] == [
        ("system", "You are in a group chat.", None),
        ("user", "alice: what is 2+2?", "alice"),
        ("assistant", "4", None),
        ("user", "bob@example.com: and 3+3?", "bob_example_com"),
    ]


def test_names_fit_openais_pattern() -> None:
    assert author_name("x" * 100) == "x" * 64
    assert author_name("ü!") is None
    assert author_name("a-b_c1") == "a-b_c1"
