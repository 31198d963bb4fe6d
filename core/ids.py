"""Id formats, checked at the edge before any store call.

A malformed id (wrong shape, 3,000 characters, control bytes) can never name anything, so
it is answered exactly like an id that does not exist: OpenAI's 404, from the same code
path, without touching DynamoDB (whose key-size errors would otherwise surface as a 500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import NotFound

# Ids are echoed in error messages; a long one is shortened there.
_SHOWN_CHARS = 64


@dataclass(frozen=True, slots=True)
class IdFormat:
    """One kind of id: what it is called in messages and the exact shape it has."""

    noun: str
    pattern: re.Pattern[str]
    param: str
    code: str | None = None  # the 404's error code (NotFound's default when None)

    def is_valid(self, value: object) -> bool:
        return isinstance(value, str) and self.pattern.fullmatch(value) is not None

    def require(self, value: str) -> str:
        """``value`` if it has this shape, else the same 404 an unknown id gets."""
        if not self.is_valid(value):
            raise self.not_found(value)
        return value

    def not_found(self, value: str) -> NotFound:
        """The one 404 for "malformed", "unknown" and "someone else's" (ids never leak)."""
        return NotFound(f"No such {self.noun}: {shown(value)}", param=self.param, code=self.code)


def shown(value: str) -> str:
    """``value`` as it may appear in a message (printable, at most 64 characters)."""
    text = value if value.isprintable() else value.encode("unicode_escape").decode("ascii")
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}..."


# The stream service: uuid4().hex (stream_service.engine).
STREAM_ID = IdFormat("stream", re.compile(r"[0-9a-f]{32}"), "stream_id", "stream_not_found")
# The batch API: a time-ordered 32-hex body (functions.batch.schemas).
FILE_ID = IdFormat("File object", re.compile(r"file-[0-9a-f]{32}"), "file_id")
BATCH_ID = IdFormat("Batch object", re.compile(r"batch_[0-9a-f]{32}"), "batch_id")
# Model ids are names, not keys; bounded so a 3,000-character one is not echoed or looked up.
MODEL_ID = IdFormat("model", re.compile(r"[A-Za-z0-9._:/@+-]{1,256}"), "model")

# Path parameters checked by :func:`core.http.ids.require_valid_path_ids`, by name.
PATH_IDS: dict[str, IdFormat] = {
    "stream_id": STREAM_ID,
    "file_id": FILE_ID,
    "batch_id": BATCH_ID,
}
