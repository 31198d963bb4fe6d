"""Batch API records and their OpenAI wire shapes (``file``, ``batch``, output lines)."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
RUNNABLE: frozenset[str] = frozenset({"validating", "in_progress"})
CHAT_ENDPOINT = "/v1/chat/completions"
SUPPORTED_ENDPOINTS = (CHAT_ENDPOINT,)


def now_s() -> int:
    return int(time.time())


def time_ordered_hex() -> str:
    """32 hex chars that sort by creation time (ms), so ids double as list cursors."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


FILE_ID = re.compile(r"^file-[0-9a-f]{32}$")
BATCH_ID = re.compile(r"^batch_[0-9a-f]{32}$")


def new_file_id() -> str:
    return f"file-{time_ordered_hex()}"


def new_batch_id() -> str:
    return f"batch_{time_ordered_hex()}"


def derived_file_id(batch_id: str, kind: str) -> str:
    """The output/error file id of a batch: deterministic, so a re-run finalizer overwrites."""
    stamp = batch_id.removeprefix("batch_")[:12]
    digest = hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:20]
    return f"file-{stamp}{digest}"


def request_line_id(batch_id: str, line: int) -> str:
    digest = hashlib.sha256(f"{batch_id}:{line}".encode()).hexdigest()[:24]
    return f"batch_req_{digest}"


@dataclass
class FileRecord:
    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int
    s3_key: str
    # "uploaded": presigned upload not yet checked; "processed": validated (or a batch output).
    status: str = "processed"
    line_count: int | None = None

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "status_details": None,
        }


@dataclass
class BatchRecord:
    id: str
    owner: str
    status: str
    endpoint: str
    input_file_id: str
    input_key: str
    completion_window: str
    created_at: int
    deadline: int  # OpenAI's ``expires_at`` (the table's ``expires_at`` is its TTL)
    total: int = 0
    completed: int = 0
    failed: int = 0
    chunks_total: int = 0
    chunks_done: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    metadata: dict[str, str] | None = None
    timestamps: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    # The input's S3 ETag when validated: chunks read that exact version (a presigned POST
    # could otherwise overwrite it and shift the byte ranges).
    input_etag: str | None = None
    errors: list[dict[str, Any]] | None = None
    finalize_token: str | None = None
    lease_until: int | None = None

    def needs_finalize(self, now: int) -> bool:
        """Past its window, cancelling, or a finalizer died holding the lease."""
        if self.status in TERMINAL:
            return False
        stale_lease = self.finalize_token is not None and (self.lease_until or 0) < now
        # All work done but no finalizer took over (its message was lost): finish it.
        all_done = (
            self.status == "in_progress"
            and self.finalize_token is None
            and self.chunks_total > 0
            and self.chunks_done >= self.chunks_total
        )
        return now >= self.deadline or self.status == "cancelling" or stale_lease or all_done

    @property
    def executed(self) -> int:
        return self.completed + self.failed

    def to_openai(self) -> dict[str, Any]:
        ts = self.timestamps
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": ts.get("in_progress_at"),
            "expires_at": self.deadline,
            "finalizing_at": ts.get("finalizing_at"),
            "completed_at": ts.get("completed_at"),
            "failed_at": ts.get("failed_at"),
            "expired_at": ts.get("expired_at"),
            "cancelling_at": ts.get("cancelling_at"),
            "cancelled_at": ts.get("cancelled_at"),
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "metadata": self.metadata,
            "model": self.model,
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }


@dataclass
class ItemResult:
    """The outcome of one input line, written once (conditional on the line's key)."""

    line: int
    custom_id: str
    succeeded: bool
    status_code: int
    body: dict[str, Any]
    request_id: str
    input_tokens: int = 0
    output_tokens: int = 0


class ChunkMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="chunk"):
    """One SQS message: a contiguous run of lines of a batch's input file, by byte range."""

    batch_id: str
    chunk: int
    first_line: int
    last_line: int
    byte_start: int
    byte_end: int  # exclusive


class FinalizeMessage(msgspec.Struct, kw_only=True, tag_field="type", tag="finalize"):
    """Asks a worker to finalize a batch whose deadline passed (sent by the API or a sweep)."""

    batch_id: str


QueueMessage = ChunkMessage | FinalizeMessage


class InputLine(msgspec.Struct):
    """One JSONL request line. ``body`` stays raw: it is validated when the line runs."""

    custom_id: Any = None
    method: Any = None
    url: Any = None
    body: msgspec.Raw = msgspec.Raw()


def output_line(batch_id: str, item: ItemResult) -> dict[str, Any]:
    return {
        "id": request_line_id(batch_id, item.line),
        "custom_id": item.custom_id,
        "response": {
            "status_code": item.status_code,
            "request_id": item.request_id,
            "body": item.body,
        },
        "error": None,
    }


def unexecuted_line(batch_id: str, line: int, custom_id: str, reason: str) -> dict[str, Any]:
    messages = {
        "batch_expired": "This request could not be executed before the completion window expired.",
        "batch_cancelled": "This request was not executed because the batch was cancelled.",
    }
    return {
        "id": request_line_id(batch_id, line),
        "custom_id": custom_id,
        "response": None,
        "error": {"code": reason, "message": messages.get(reason, reason)},
    }


class CreateBatch(msgspec.Struct, kw_only=True):
    """``POST /v1/batches``'s body."""

    input_file_id: str
    endpoint: str
    completion_window: str = "24h"
    metadata: dict[str, str] | None = None
    output_expires_after: dict[str, Any] | None = None


class CreateUpload(msgspec.Struct, kw_only=True):
    """``POST /v1/files/uploads``' body (a presigned S3 upload)."""

    filename: str
    bytes: int
    purpose: str = "batch"
