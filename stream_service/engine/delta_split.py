"""A delta too large for one event, cut into several whose merge is the same delta.

A stored batch of events must fit a DynamoDB item (400 KB), so no event's payload exceeds
:data:`~.events.MAX_DELTA_BYTES`. Text is cut like any string; a long tool call
``arguments`` string, ``reasoning_content`` or ``audio.data`` likewise. The pieces merge
back (as OpenAI's SDKs and :class:`core.providers.assemble.MessageAssembler` accumulate
deltas) into exactly the original: strings concatenate, objects merge key by key, entries
of ``tool_calls`` merge by ``index`` (every piece of an entry keeps its ``index``; its
``id``, ``type`` and ``function.name`` come with the first piece only), plain lists (the
``logprobs`` entries) append.
"""

from __future__ import annotations

from typing import Any

import msgspec

_json = msgspec.json.Encoder()


def _size(value: Any) -> int:
    return len(_json.encode(value))


def split_delta(delta: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    """``delta`` (``{"text"?, ...fields, "logprobs"?}``) as pieces of at most ``budget``
    bytes of JSON each (a piece can only be larger when one scalar alone is)."""
    return _split_dict(delta, budget)


def _split_dict(value: dict[str, Any], budget: int) -> list[dict[str, Any]]:
    if _size(value) <= budget:
        return [value]
    ident = {"index": value["index"]} if "index" in value else {}
    pieces: list[dict[str, Any]] = []
    current: dict[str, Any] = dict(ident)
    for key, item in value.items():
        if key in ident:
            continue
        if _size({**current, key: item}) <= budget:
            current[key] = item
            continue
        overhead = len(key) + 8
        room = budget - _size(current) - overhead
        if room < budget // 2 and len(current) > len(ident):
            pieces.append(current)  # little room left: start the big one afresh
            current = dict(ident)
            room = budget - _size(current) - overhead
        parts = _split_value(item, max(room, 64))
        current[key] = parts[0]
        for part in parts[1:]:
            pieces.append(current)
            current = {**ident, key: part}
    pieces.append(current)
    return pieces


def _split_value(value: Any, budget: int) -> list[Any]:
    if isinstance(value, str):
        return _split_str(value, budget)
    if isinstance(value, dict):
        return list(_split_dict(value, budget))
    if isinstance(value, list):
        if value and all(isinstance(e, dict) and "index" in e for e in value):
            # entries merged by index: each entry on its own, cut as it needs
            return [[piece] for entry in value for piece in _split_dict(entry, budget)]
        return _split_list(value, budget)
    return [value]  # a number, a bool: cannot be cut


def _split_str(text: str, budget: int) -> list[str]:
    out: list[str] = []
    start = 0
    while start < len(text):
        count = max(1, budget - 2)
        while True:
            piece = text[start : start + count]
            size = _size(piece)
            if size <= budget or count == 1:
                break
            count = max(1, count * budget // size - 1)
        out.append(piece)
        start += len(piece)
    return out or [""]


def _split_list(items: list[Any], budget: int) -> list[Any]:
    out: list[list[Any]] = []
    current: list[Any] = []
    used = 2
    for item in items:
        size = _size(item) + 1
        if current and used + size > budget:
            out.append(current)
            current, used = [], 2
        current.append(item)
        used += size
    out.append(current)
    return out
