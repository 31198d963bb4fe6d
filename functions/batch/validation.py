"""Up-front JSONL checks. A file-level problem is a 400 naming the 1-based line.

File-level (the whole file is rejected): not UTF-8, not a JSON object, a missing or
duplicate ``custom_id``, a ``method`` other than ``POST``, a ``url`` other than the batch's
endpoint, a ``body`` that is not an object, too many lines or bytes, no requests at all.
Line-level (that line alone fails, in the error file): anything about the body's content,
such as an unknown model, invalid messages, or a body above the request size limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from core import json_input
from core.errors import InvalidRequest, PayloadTooLarge
from core.settings import Settings
from functions.batch.schemas import SUPPORTED_ENDPOINTS, InputLine

MAX_CUSTOM_ID_CHARS = 512
_line_decoder = msgspec.json.Decoder(InputLine)


class _BodyProbe(msgspec.Struct):
    model: Any = None


_body_decoder = msgspec.json.Decoder(_BodyProbe)


@dataclass(frozen=True, slots=True)
class RawLine:
    number: int  # 1-based physical line number
    start: int  # byte offset of the line's first byte
    end: int  # byte offset just past the line (and its newline)
    data: bytes  # without the newline (and a trailing \r)


def iter_lines(
    chunks: Iterable[bytes], base_offset: int = 0, first_line: int = 1
) -> Iterator[RawLine]:
    """Split a byte stream on ``\\n`` only (JSON strings can't hold raw newlines).

    Scans each buffer with an index and keeps only the unfinished tail, so splitting is
    linear in the input whatever its shape (a file of blank lines included).
    """
    pending = b""
    offset = base_offset
    number = first_line
    for chunk in chunks:
        buffer = pending + chunk if pending else chunk
        pos = 0
        while (cut := buffer.find(b"\n", pos)) >= 0:
            yield RawLine(
                number, offset, offset + cut - pos + 1, buffer[pos:cut].removesuffix(b"\r")
            )
            offset += cut - pos + 1
            number += 1
            pos = cut + 1
        pending = buffer[pos:]
    if pending:
        yield RawLine(number, offset, offset + len(pending), pending.removesuffix(b"\r"))


@dataclass(frozen=True, slots=True)
class ChunkRange:
    index: int
    first_line: int
    last_line: int
    byte_start: int
    byte_end: int


@dataclass
class FilePlan:
    """What validation learned: the request count, the chunks to queue, the model(s)."""

    lines: int = 0
    bytes: int = 0
    models: set[str] = field(default_factory=set)
    chunks: list[ChunkRange] = field(default_factory=list)

    @property
    def model(self) -> str | None:
        return next(iter(self.models)) if len(self.models) == 1 else None


def _fail(number: int, message: str, code: str, param: str | None = None) -> InvalidRequest:
    return InvalidRequest(f"Line {number}: {message}", code=code, param=param or "file")


def parse_line(line: RawLine) -> InputLine:
    """Decode one request line, or raise a 400 naming it."""
    try:
        text = line.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(line.number, "is not valid UTF-8.", "invalid_encoding") from exc
    try:
        return json_input.decode(text, decoder=_line_decoder)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise _fail(
            line.number,
            f"must be a JSON object with custom_id, method, url, body ({exc}).",
            "invalid_request_line",
        ) from exc
    except msgspec.DecodeError as exc:
        raise _fail(line.number, f"is not valid JSON ({exc}).", "invalid_json_line") from exc


def validate_jsonl(
    lines: Iterable[RawLine], settings: Settings, endpoint: str | None = None
) -> FilePlan:
    """Check every line; raise :class:`InvalidRequest` for the first bad one."""
    plan = FilePlan()
    seen: dict[str, int] = {}
    run: list[RawLine] = []

    def close_run() -> None:
        if run:
            plan.chunks.append(
                ChunkRange(
                    len(plan.chunks), run[0].number, run[-1].number, run[0].start, run[-1].end
                )
            )
            run.clear()

    for line in lines:
        plan.bytes = line.end
        if plan.bytes > settings.max_file_bytes:
            raise PayloadTooLarge(
                f"The file is larger than the limit of {settings.max_file_bytes} bytes "
                f"(reached at line {line.number}).",
                code="file_too_large",
                param="file",
            )
        if not line.data.strip():
            continue
        request = parse_line(line)
        check_request_line(request, line.number, endpoint)
        custom_id: str = request.custom_id
        if custom_id in seen:
            raise _fail(
                line.number,
                f"custom_id '{custom_id}' is already used on line {seen[custom_id]}; "
                "custom_id must be unique within a batch.",
                "duplicate_custom_id",
            )
        seen[custom_id] = line.number
        try:
            probe = json_input.decode(request.body, decoder=_body_decoder)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise _fail(line.number, "'body' must be a JSON object.", "invalid_body") from exc
        if isinstance(probe.model, str):
            plan.models.add(probe.model)
        plan.lines += 1
        if plan.lines > settings.max_batch_lines:
            raise InvalidRequest(
                f"The file has more than {settings.max_batch_lines} requests (line "
                f"{line.number}); split it into several batches.",
                code="too_many_requests",
                param="file",
            )
        run.append(line)
        if len(run) >= settings.batch_chunk_lines:
            close_run()
    close_run()
    if plan.lines == 0:
        raise InvalidRequest(
            "The file contains no requests; expected JSONL lines of "
            '{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}.',
            code="empty_file",
            param="file",
        )
    return plan


def check_request_line(request: InputLine, number: int, endpoint: str | None) -> None:
    if not isinstance(request.custom_id, str) or not request.custom_id:
        raise _fail(number, "'custom_id' must be a non-empty string.", "missing_custom_id")
    if len(request.custom_id) > MAX_CUSTOM_ID_CHARS:
        raise _fail(
            number,
            f"'custom_id' is longer than {MAX_CUSTOM_ID_CHARS} characters.",
            "invalid_custom_id",
        )
    if request.method != "POST":
        raise _fail(number, f"'method' must be 'POST'; got {request.method!r}.", "invalid_method")
    allowed = (endpoint,) if endpoint else SUPPORTED_ENDPOINTS
    if request.url not in allowed:
        raise _fail(
            number,
            f"'url' must be {' or '.join(repr(u) for u in allowed)}; got {request.url!r}.",
            "invalid_url",
        )
    if not len(request.body):
        raise _fail(number, "'body' is missing.", "invalid_body")
