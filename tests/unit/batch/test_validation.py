"""JSONL validation: line numbers, byte ranges, chunking, limits."""

from __future__ import annotations

import json

import pytest

from core.errors import InvalidRequest, PayloadTooLarge
from core.settings import Settings
from functions.batch.validation import iter_lines, validate_jsonl


def line(custom_id: str, model: str = "local-model") -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    obj = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    return json.dumps(obj).encode() + b"\n"


def test_iter_lines_tracks_numbers_and_offsets_across_chunks() -> None:
    data = b"ab\r\ncd\n\nlast"
    pieces = [data[i : i + 3] for i in range(0, len(data), 3)]
    got = list(iter_lines(pieces))
    assert [(r.number, r.data) for r in got] == [(1, b"ab"), (2, b"cd"), (3, b""), (4, b"last")]
    for r in got:
        assert data[r.start : r.end].rstrip(b"\r\n") == r.data
    assert got[-1].end == len(data)


def test_chunks_cover_the_requests_by_byte_range() -> None:
    settings = Settings(batch_chunk_lines=2)
    data = line("a") + b"\n" + line("b") + line("c") + line("d", model="gpt-4o")
    plan = validate_jsonl(iter_lines([data]), settings)
    assert plan.lines == 4 and plan.bytes == len(data)
    assert plan.models == {"local-model", "gpt-4o"} and plan.model is None
    assert [(c.first_line, c.last_line) for c in plan.chunks] == [(1, 3), (4, 5)]
    for chunk in plan.chunks:
        rows = [r for r in iter_lines([data[chunk.byte_start : chunk.byte_end]]) if r.data.strip()]
        assert len(rows) == 2


def test_line_limits_and_size() -> None:
    with pytest.raises(InvalidRequest, match="more than 2 requests"):
        validate_jsonl(iter_lines([line("a") + line("b") + line("c")]), Settings(max_batch_lines=2))
    with pytest.raises(PayloadTooLarge, match="line 2"):
        validate_jsonl(
            iter_lines([line("a") + line("b")]), Settings(max_file_bytes=len(line("a")) + 10)
        )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no requests"),
        (
            line("a")
            + b'{"custom_id": 5, "method": "POST", "url": "/v1/chat/completions", "body": {}}',
            "Line 2: 'custom_id' must be a non-empty string",
        ),
        (line("x" * 600), "Line 1: 'custom_id' is longer"),
        (
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}',
            "Line 1: 'body' is missing",
        ),
    ],
)
def test_errors_name_the_line(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        validate_jsonl(iter_lines([data]), Settings())


def test_endpoint_must_match_the_batch() -> None:
    with pytest.raises(InvalidRequest, match="Line 1: 'url' must be '/v1/responses'"):
        validate_jsonl(iter_lines([line("a")]), Settings(), endpoint="/v1/responses")
