"""The local stand-in's conversation: items as OpenAI renders them, and what was heard."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from core.schemas.chat import ChatMessage
from stream_service.realtime.protocol import ProtocolError, new_id

Role = Literal["user", "assistant", "system"]


@dataclass(slots=True)
class Span:
    """A phrase of reply speech: its text and where its audio lies in the item."""

    start_ms: int
    end_ms: int
    text: str


@dataclass(slots=True)
class Item:
    id: str
    role: Role
    content: list[dict[str, Any]]
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    audio_ms: int = 0  # assistant audio sent (what truncate may cut back to)
    spans: list[Span] = field(default_factory=list)
    has_audio: bool = False

    def render(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "realtime.item",
            "type": "message",
            "status": self.status,
            "role": self.role,
            "content": [dict(part) for part in self.content],
        }

    def text(self) -> str:
        parts = []
        for part in self.content:
            value = part.get("text") or part.get("transcript")
            if value:
                parts.append(str(value))
            elif part.get("type") == "input_audio":
                parts.append("(inaudible)")
        return " ".join(parts)

    def heard_transcript(self, audio_end_ms: int) -> str:
        """The reply's words whose audio lies before ``audio_end_ms`` (a phrase cut in the
        middle keeps the share of its words that was played)."""
        words: list[str] = []
        for span in self.spans:
            if span.end_ms <= audio_end_ms:
                words.extend(span.text.split())
            elif span.start_ms < audio_end_ms:
                phrase = span.text.split()
                share = (audio_end_ms - span.start_ms) / max(1, span.end_ms - span.start_ms)
                words.extend(phrase[: int(len(phrase) * share)])
        return " ".join(words)


_CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "user": ("input_text", "input_audio"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio", "text"),
}


def item_from_client(raw: dict[str, Any], event_id: str | None) -> Item:
    """A ``conversation.item.create`` item (messages only: the stand-in has no tools)."""

    def bad(param: str, message: str) -> ProtocolError:
        return ProtocolError(message, "invalid_value", param=f"item.{param}", event_id=event_id)

    if raw.get("type") != "message":
        raise bad("type", "The local stand-in accepts items of type 'message' only.")
    role = raw.get("role")
    if role not in _CONTENT_TYPES:
        raise bad("role", "role must be 'user', 'assistant' or 'system'.")
    content = raw.get("content")
    if not isinstance(content, list) or not content:
        raise bad("content", "content must be a non-empty list.")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in _CONTENT_TYPES[role]:
            allowed = ", ".join(_CONTENT_TYPES[role])
            raise bad(f"content[{i}].type", f"A {role} message's content types are: {allowed}.")
        text = part.get("text", part.get("transcript"))
        if part["type"] != "input_audio" and not isinstance(text, str):
            raise bad(f"content[{i}].text", "text must be a string.")
        parts.append({k: v for k, v in part.items() if k != "audio"})
    item_id = raw.get("id")
    if item_id is not None and (not isinstance(item_id, str) or not 1 <= len(item_id) <= 64):
        raise bad("id", "id must be a string of 1-64 characters.")
    return Item(id=item_id or new_id("item"), role=role, content=parts)


class Conversation:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}  # in conversation order

    @property
    def last_id(self) -> str | None:
        return next(reversed(self.items), None) if self.items else None

    def add(self, item: Item, event_id: str | None = None) -> str | None:
        """Append ``item``; returns the id of the item before it."""
        if item.id in self.items:
            raise ProtocolError(
                f"An item with id '{item.id}' already exists.",
                "invalid_value",
                param="item.id",
                event_id=event_id,
            )
        previous = self.last_id
        self.items[item.id] = item
        return previous

    def get(self, item_id: str, event_id: str | None) -> Item:
        item = self.items.get(item_id)
        if item is None:
            raise ProtocolError(
                f"Item with item_id '{item_id}' not found.",
                "invalid_value",
                param="item_id",
                event_id=event_id,
            )
        return item

    def messages(self, instructions: str) -> list[ChatMessage]:
        """The conversation as chat messages for the local chat model."""
        messages = [ChatMessage(role="system", content=instructions)] if instructions else []
        for item in self.items.values():
            text = item.text().strip()
            if text:
                messages.append(ChatMessage(role=item.role, content=text))
        if not messages or messages[-1].role != "user":
            messages.append(ChatMessage(role="user", content="(the user is listening)"))
        return messages
