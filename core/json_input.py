"""JSON from clients, decoded with a clear 400 for every way it can be wrong.

msgspec decodes nested arrays and objects recursively: a small body of thousands of
nested ``[`` (5 KB) raises ``RecursionError``, which is not a ``DecodeError`` and used to
surface as a 500. :class:`JsonTooDeep` is both an :class:`~core.errors.InvalidRequest`
(a 400 ``invalid_json`` wherever API errors are answered) and a ``msgspec.DecodeError``
(so every ``except msgspec.DecodeError`` already in place catches it too).
Bytes that are not UTF-8 (``UnicodeDecodeError``, not a ``DecodeError`` either) are a
:class:`JsonNotUtf8`, of the same two kinds.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.errors import InvalidRequest


class JsonTooDeep(InvalidRequest, msgspec.DecodeError):
    code = "invalid_json"

    def __init__(self) -> None:
        super().__init__(
            "We could not parse the JSON body of your request: "
            "it nests arrays or objects too deeply.",
            code="invalid_json",
        )


class JsonNotUtf8(InvalidRequest, msgspec.DecodeError):
    code = "invalid_json"

    def __init__(self) -> None:
        super().__init__(
            "We could not parse the JSON body of your request: it is not valid UTF-8.",
            code="invalid_json",
        )


def decode(
    data: bytes | str, type: Any = Any, decoder: msgspec.json.Decoder[Any] | None = None
) -> Any:
    """``msgspec.json.decode`` (or ``decoder.decode``), raising :class:`JsonTooDeep` for a
    document nested beyond the interpreter's recursion limit and :class:`JsonNotUtf8` for
    bytes that are not UTF-8."""
    try:
        if decoder is not None:
            return decoder.decode(data)
        return msgspec.json.decode(data, type=type)
    except RecursionError:
        raise JsonTooDeep() from None
    except UnicodeDecodeError:
        raise JsonNotUtf8() from None


def convert(obj: Any, type: Any) -> Any:
    """``msgspec.convert`` with the same guard (a decoded document may be deep)."""
    try:
        return msgspec.convert(obj, type)
    except RecursionError:
        raise JsonTooDeep() from None
