"""Deltas back into one assistant message, as OpenAI's SDKs accumulate a stream.

Strings concatenate (``content``, ``refusal``, ``reasoning_content``, a tool call's
``function.arguments``, ``audio.transcript``...); objects merge key by key; lists of objects
merge by their ``index`` (``tool_calls``); ``index`` and ``type`` are replaced, never
concatenated; a tool call's ``id`` is kept from its first fragment, and a ``name`` repeated
verbatim by an upstream that sends it with every fragment is not doubled.
"""

from __future__ import annotations

from typing import Any

# keys that identify rather than accumulate
_REPLACED = frozenset({"index", "type"})
_KEPT = frozenset({"id", "expires_at"})


def merge_delta(acc: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Merge one delta object into ``acc`` (in place) and return it."""
    for key, value in delta.items():
        current = acc.get(key)
        if current is None:
            acc[key] = _copy(value)
        elif value is None:
            continue
        elif key in _REPLACED:
            acc[key] = value
        elif key in _KEPT:
            continue
        elif isinstance(current, str) and isinstance(value, str):
            if key == "name" and value == current:
                continue
            acc[key] = current + value
        elif isinstance(current, dict) and isinstance(value, dict):
            merge_delta(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            _merge_list(current, value)
        else:
            acc[key] = _copy(value)
    return acc


def _merge_list(acc: list[Any], items: list[Any]) -> None:
    if not all(isinstance(item, dict) and isinstance(item.get("index"), int) for item in items):
        acc.extend(_copy(item) for item in items)  # plain entries only ever append
        return
    for item in items:
        for entry in acc:
            if isinstance(entry, dict) and entry.get("index") == item["index"]:
                merge_delta(entry, item)
                break
        else:
            acc.append(_copy(item))


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class MessageAssembler:
    """Collects a stream's deltas; :meth:`message` is the assistant message they make."""

    __slots__ = ("_fields", "_logprobs", "_text")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._fields: dict[str, Any] = {}
        self._logprobs: dict[str, Any] | None = None

    def add_text(self, text: str) -> None:
        if text:
            self._text.append(text)

    def add(self, text: str, fields: dict[str, Any] | None = None, logprobs: Any = None) -> None:
        """One delta: its text, its other fields (as OpenAI's delta has them), its logprobs."""
        if text:
            self._text.append(text)
        if fields:
            merge_delta(self._fields, {k: v for k, v in fields.items() if k not in _OWNED})
        if isinstance(logprobs, dict):
            if self._logprobs is None:
                self._logprobs = {}
            merge_delta(self._logprobs, logprobs)

    @property
    def text(self) -> str:
        return "".join(self._text)

    def message(self) -> dict[str, Any]:
        """The assistant message: ``role``, ``content`` (None when the reply is only tool
        calls), ``refusal`` (None unless sent), then every other field the deltas carried."""
        text = self.text
        fields = _copy(self._fields)
        tool_calls = fields.get("tool_calls")
        if isinstance(tool_calls, list):
            for call in tool_calls:
                if isinstance(call, dict):
                    call.pop("index", None)  # a message's tool calls have no index
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not tool_calls else None,
            "refusal": fields.pop("refusal", None),
        }
        message.update(fields)
        return message

    def logprobs(self) -> dict[str, Any] | None:
        """The choice's merged ``logprobs`` (``content`` / ``refusal`` lists), or None."""
        return _copy(self._logprobs) if self._logprobs is not None else None


_OWNED = frozenset({"role", "content"})
