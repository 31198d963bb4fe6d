"""Assembles a batch's output and error files, exactly once.

Only the holder of the finalize lease (a conditional update on the batch, see
:meth:`BatchStore.begin_finalize`) assembles; taking it freezes the live counters. The
files are a deterministic function of the stored results (ids derived from the batch id,
lines in input order), so a finalizer that dies and is replaced after its lease expires
writes the very same files. The last step, ending the batch, is conditional on the lease
token, so it happens once.
"""

from __future__ import annotations

import json
import logging
import tempfile
import uuid
from typing import IO, Any

from botocore.exceptions import ClientError

from core.aws.errors import error_code
from core.settings import Settings
from functions.batch.schemas import (
    TERMINAL,
    BatchRecord,
    FileRecord,
    derived_file_id,
    now_s,
    output_line,
    unexecuted_line,
)
from functions.batch.store.base import BatchStore
from functions.batch.store.dynamodb import file_key
from functions.batch.validation import iter_lines, parse_line

log = logging.getLogger("rtai.batch.finalizer")
_SPOOL_BYTES = 16 * 1024 * 1024


def _jsonl(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class Finalizer:
    def __init__(self, settings: Settings, store: BatchStore) -> None:
        self.settings = settings
        self.store = store

    def ready(self, batch: BatchRecord, chunks_done: int = 0, now: int | None = None) -> bool:
        """Finalize when every chunk is done, on cancel, or once the deadline has passed."""
        if batch.status in TERMINAL:
            return False
        now = now_s() if now is None else now
        done = max(batch.chunks_done, chunks_done) >= batch.chunks_total
        return done or batch.status == "cancelling" or now >= batch.deadline

    def finalize(self, batch_id: str, chunks_done: int = 0) -> BatchRecord | None:
        """Finalize if ready and nobody else is; returns the ended batch, else None."""
        for _ in range(3):  # the status may move under us (a cancel racing the last chunk)
            batch = self.store.get_batch(batch_id)
            if batch is None or not self.ready(batch, chunks_done):
                return None
            token = uuid.uuid4().hex
            now = now_s()
            held = self.store.begin_finalize(
                batch, token, now, self.settings.batch_finalize_lease_s
            )
            if held is not None:
                return self._assemble(held, token)
            fresh = self.store.get_batch(batch_id)
            if fresh is None or fresh.finalize_token is not None or fresh.status in TERMINAL:
                return None  # another finalizer holds the lease, or it is already done
        return None

    def _assemble(self, batch: BatchRecord, token: str) -> BatchRecord | None:
        cancelled = batch.status == "cancelling"
        out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        err: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115
        try:
            completed = failed = input_tokens = output_tokens = 0
            executed: set[int] = set()
            for item in self.store.iter_items(batch.id):
                executed.add(item.line)
                (out if item.succeeded else err).write(_jsonl(output_line(batch.id, item)))
                completed += item.succeeded
                failed += not item.succeeded
                input_tokens += item.input_tokens
                output_tokens += item.output_tokens
            reason = "batch_cancelled" if cancelled else "batch_expired"
            input_lost = False
            if len(executed) < batch.total:
                try:
                    body = self.store.stream_body(batch.input_key, batch.input_etag)
                    for raw in iter_lines(body):
                        if raw.number in executed or not raw.data.strip():
                            continue
                        custom_id = str(parse_line(raw).custom_id)
                        err.write(_jsonl(unexecuted_line(batch.id, raw.number, custom_id, reason)))
                except ClientError as exc:
                    if not _input_gone(exc):
                        raise
                    input_lost = True  # deleted or replaced mid-run: end the batch anyway
            if cancelled:
                status = "cancelled"
            elif input_lost:
                status = "failed"
                batch.errors = [
                    {
                        "code": "input_file_unavailable",
                        "message": "The input file was deleted or changed while the batch ran; "
                        "results of the lines that ran are in the output and error files.",
                        "param": "input_file_id",
                        "line": None,
                    }
                ]
            elif len(executed) < batch.total:
                status = "expired"
            else:
                status = "completed"
            batch.completed, batch.failed = completed, failed
            batch.input_tokens, batch.output_tokens = input_tokens, output_tokens
            output = self._write(batch, token, "output", out)
            errors = self._write(batch, token, "error", err)
        finally:
            out.close()
            err.close()
        batch.output_file_id = output.id if output else None
        batch.error_file_id = errors.id if errors else None
        files = [f for f in (output, errors) if f is not None]
        ended = self.store.complete_finalize(batch, token, status, now_s(), files)
        if ended is None:
            # Another finalizer took the lease over and ended the batch: its files stand,
            # this attempt's objects (under keys of its own) are nobody's.
            for record in files:
                self.store.delete_object(record.s3_key)
            log.warning("finalize lease of %s was lost; another finalizer ended it", batch.id)
        else:
            log.info(
                "batch %s %s: %d completed, %d failed of %d",
                batch.id,
                status,
                completed,
                failed,
                batch.total,
            )
        return ended

    def _write(
        self, batch: BatchRecord, token: str, kind: str, data: IO[bytes]
    ) -> FileRecord | None:
        """Upload one output/error file under a key of this finalize attempt's own; its
        record is created with the batch's end (``complete_finalize``), lease permitting."""
        size = data.tell()
        if size == 0:
            return None
        data.seek(0)
        file_id = derived_file_id(batch.id, kind)
        key = f"{file_key(file_id)}/{token}"
        self.store.write_body(key, data)
        now = now_s()
        return FileRecord(
            id=file_id,
            owner=batch.owner,
            filename=f"{batch.id}_{kind}.jsonl",
            purpose="batch_output",
            bytes=size,
            created_at=now,
            expires_at=now + self.settings.batch_retention_s,
            s3_key=key,
        )


def _input_gone(exc: ClientError) -> bool:
    return error_code(exc) in ("NoSuchKey", "404", "PreconditionFailed", "412")
