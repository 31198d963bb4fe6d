"""The local stand-in's conversation: items as OpenAI renders them, and what was heard.

Items are messages (``user`` / ``assistant`` / ``system``), ``function_call`` and
``function_call_output``. A user audio item's transcript may still be on its way (the
turn's transcription runs in a worker): :attr:`Item.transcription` is then the pending
result, which a reply awaits before it reads the conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from core.schemas.chat import ChatMessage
from stream_service.realtime.protocol import ProtocolError, new_id

Role = Literal["user", "assistant", "system"]
ItemType = Literal["message", "function_call", "function_call_output"]
INAUDIBLE = "(inaudible)"


@dataclass(slots=True)
class Span:
    """A phrase of reply speech: its text and where its audio lies in the item."""

    start_ms: int
    end_ms: int
    text: str


@dataclass(slots=True)
class Item:
    id: str
    role: Role | None
    content: list[dict[str, Any]]
    status: Literal["completed", "incomplete", "in_progress"] = "completed"
    type: ItemType = "message"
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None
    audio_ms: int = 0  # assistant audio sent (what truncate may cut back to)
    spans: list[Span] = field(default_factory=list)
    has_audio: bool = False
    transcription: asyncio.Future[str] | None = None  # a user turn's transcript to come

    def render(self) -> dict[str, Any]:
        base: dict[str, Any] = {"id": self.id, "object": "realtime.item", "type": self.type}
        if self.type == "function_call":
            return {
                **base,
                "status": self.status,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": self.arguments or "",
            }
        if self.type == "function_call_output":
            return {**base, "status": self.status, "call_id": self.call_id, "output": self.output}
        return {
            **base,
            "status": self.status,
            "role": self.role,
            "content": [dict(part) for part in self.content],
        }

    def text(self) -> str:
        if self.type == "function_call":
            return f"(called {self.name} with {self.arguments or '{}'})"
        if self.type == "function_call_output":
            return str(self.output or "")
        parts = []
        for part in self.content:
            value = part.get("text") or part.get("transcript")
            if value:
                parts.append(str(value))
            elif part.get("type") == "input_audio":
                parts.append(INAUDIBLE)
            elif part.get("type") == "input_image":
                parts.append("[image]")
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

    async def transcribed(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for this item's transcript, if one is on its way (one
        that fails, or is too slow, is done without: the reply never hangs on it)."""
        pending = self.transcription
        if pending is None or pending.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(pending), max(0.0, timeout_s))
        except Exception:
            pass
        except asyncio.CancelledError:
            if not pending.cancelled():  # this task was cancelled, not the transcription
                raise


_CONTENT_TYPES: dict[str, tuple[str, ...]] = {
    "user": ("input_text", "input_audio", "input_image"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio", "text"),
}


def item_from_client(raw: dict[str, Any], event_id: str | None) -> Item:
    """A ``conversation.item.create`` item (or one of ``response.create``'s ``input``)."""

    def bad(param: str, message: str) -> ProtocolError:
        return ProtocolError(message, "invalid_value", param=f"item.{param}", event_id=event_id)

    item_id = raw.get("id")
    if item_id is not None and (not isinstance(item_id, str) or not 1 <= len(item_id) <= 64):
        raise bad("id", "id must be a string of 1-64 characters.")
    item_id = item_id or new_id("item")
    kind = raw.get("type", "message")
    if kind in ("function_call", "function_call_output"):
        call_id = raw.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            raise bad("call_id", f"A {kind} item needs a call_id (a string).")
        if kind == "function_call":
            name, arguments = raw.get("name"), raw.get("arguments", "")
            if not isinstance(name, str) or not name:
                raise bad("name", "A function_call item needs a name (a string).")
            if not isinstance(arguments, str):
                raise bad("arguments", "arguments must be a string (JSON).")
            return Item(
                id=item_id,
                role=None,
                content=[],
                type="function_call",
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        output = raw.get("output")
        if not isinstance(output, str):
            raise bad("output", "output must be a string.")
        return Item(
            id=item_id,
            role=None,
            content=[],
            type="function_call_output",
            call_id=call_id,
            output=output,
        )
    if kind != "message":
        raise bad(
            "type",
            "The local stand-in accepts items of type 'message', 'function_call' and "
            "'function_call_output'.",
        )
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
        if part["type"] == "input_image":
            if not isinstance(part.get("image_url"), str):
                raise bad(f"content[{i}].image_url", "image_url must be a string (a data URL).")
            parts.append({"type": "input_image", "detail": part.get("detail", "auto")})
            continue  # the image itself is not kept: the stand-in cannot see
        text = part.get("text", part.get("transcript"))
        if part["type"] != "input_audio" and not isinstance(text, str):
            raise bad(f"content[{i}].text", "text must be a string.")
        parts.append({k: v for k, v in part.items() if k != "audio"})
    return Item(id=item_id, role=role, content=parts)


class Conversation:
    def __init__(self) -> None:
        self.items: dict[str, Item] = {}  # in conversation order

    @property
    def last_id(self) -> str | None:
        return next(reversed(self.items), None) if self.items else None

    def add(
        self, item: Item, event_id: str | None = None, previous_item_id: str | None = None
    ) -> str | None:
        """Insert ``item`` after ``previous_item_id`` (``root``: first; None: at the end);
        returns the id of the item before it."""
        if item.id in self.items:
            raise ProtocolError(
                f"An item with id '{item.id}' already exists.",
                "invalid_value",
                param="item.id",
                event_id=event_id,
            )
        if previous_item_id is None:
            previous = self.last_id
            self.items[item.id] = item
            return previous
        if previous_item_id != "root" and previous_item_id not in self.items:
            raise ProtocolError(
                f"Item with id '{previous_item_id}' not found (previous_item_id).",
                "invalid_value",
                param="previous_item_id",
                event_id=event_id,
            )
        order = list(self.items.items())
        at = 0 if previous_item_id == "root" else list(self.items).index(previous_item_id) + 1
        order.insert(at, (item.id, item))
        self.items = dict(order)
        return None if previous_item_id == "root" else previous_item_id

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

    def messages(self, instructions: str, items: Iterable[Item] | None = None) -> list[ChatMessage]:
        """The conversation (or ``items``) as chat messages for the local chat model."""
        return chat_messages(instructions, self.items.values() if items is None else items)


def chat_messages(instructions: str, items: Iterable[Item]) -> list[ChatMessage]:
    messages = [ChatMessage(role="system", content=instructions)] if instructions else []
    for item in items:
        text = item.text().strip()
        if not text:
            continue
        role: Role = item.role or ("assistant" if item.type == "function_call" else "user")
        messages.append(ChatMessage(role=role, content=text))
    if not messages or messages[-1].role != "user":
        messages.append(ChatMessage(role="user", content="(the user is listening)"))
    return messages
