"""The storage interface the batch service, worker and finalizer are written against.

Every write that could be repeated by a retried worker is conditional, so repeating it is
harmless: a line's result is written once (and counted once), a chunk is marked done once,
and only the holder of the finalize lease may end a batch.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

from functions.batch.schemas import BatchRecord, FileRecord, ItemResult


class FileInUse(Exception):
    """The file is the input of a batch that has not ended."""


class BatchStore(abc.ABC):
    # --- files ----------------------------------------------------------------------
    @abc.abstractmethod
    def put_file(self, record: FileRecord, body: bytes | None = None) -> None:
        """Store a file's metadata (and its body, when given)."""

    @abc.abstractmethod
    def get_file(self, file_id: str) -> FileRecord | None: ...

    @abc.abstractmethod
    def update_file(self, record: FileRecord) -> None: ...

    @abc.abstractmethod
    def delete_file(self, record: FileRecord) -> None:
        """Delete the file; :class:`FileInUse` while a batch that reads it has not ended."""

    @abc.abstractmethod
    def release_file(self, file_id: str) -> None:
        """A batch that read ``file_id`` has ended (the file may be deleted again)."""

    @abc.abstractmethod
    def list_files(
        self, owner: str, after: str | None, limit: int, purpose: str | None = None
    ) -> tuple[list[FileRecord], bool]:
        """A page of the owner's files, newest first, filtered by ``purpose`` before paging."""

    @abc.abstractmethod
    def object_info(self, key: str) -> tuple[int, str] | None:
        """A body's size and ETag, or None if it was never uploaded."""

    @abc.abstractmethod
    def read_body(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def stream_body(self, key: str, etag: str | None = None) -> Iterator[bytes]:
        """The body in pieces; with ``etag``, fails if the object has changed since."""

    @abc.abstractmethod
    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Bytes ``[start, end)`` of a body (of that exact version, with ``etag``)."""

    @abc.abstractmethod
    def write_body(self, key: str, fileobj: Any) -> None: ...

    @abc.abstractmethod
    def delete_object(self, key: str) -> None:
        """Remove one stored body (no error if it is already gone)."""

    @abc.abstractmethod
    def presign_upload(self, key: str, max_bytes: int, expires_in: int) -> dict[str, Any]: ...

    @abc.abstractmethod
    def presign_download(self, key: str, filename: str, expires_in: int) -> str: ...

    # --- batches --------------------------------------------------------------------
    @abc.abstractmethod
    def create_batch(self, record: BatchRecord) -> None: ...

    @abc.abstractmethod
    def get_batch(self, batch_id: str) -> BatchRecord | None: ...

    @abc.abstractmethod
    def list_batches(
        self, owner: str, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]: ...

    @abc.abstractmethod
    def set_status(
        self,
        batch_id: str,
        status: str,
        *,
        expect: tuple[str, ...],
        at: int,
        errors: list[dict[str, Any]] | None = None,
    ) -> BatchRecord | None:
        """Move to ``status`` if the batch is in one of ``expect`` (else None)."""

    @abc.abstractmethod
    def active_batch_ids(self) -> list[str]:
        """Batches not yet finalized (for the expiry sweep)."""

    # --- lines and chunks -----------------------------------------------------------
    @abc.abstractmethod
    def done_lines(self, batch_id: str, first: int, last: int) -> set[int]: ...

    @abc.abstractmethod
    def record_result(self, batch_id: str, item: ItemResult) -> bool:
        """Write a line's result (conditional on its line) and count it. False if it was
        already written. Live counters stop moving once finalizing starts; the finalizer
        recounts from the stored results, so the final counts are exact either way."""

    @abc.abstractmethod
    def mark_chunk_done(self, batch_id: str, chunk: int) -> int:
        """Mark a chunk done (once) and return how many chunks are done."""

    @abc.abstractmethod
    def iter_items(self, batch_id: str) -> Iterator[ItemResult]:
        """All written results, in line order."""

    # --- finalizing -----------------------------------------------------------------
    @abc.abstractmethod
    def begin_finalize(
        self, batch: BatchRecord, token: str, now: int, lease_s: int
    ) -> BatchRecord | None:
        """Take the finalize lease (freezing the counts); None if someone else holds it."""

    @abc.abstractmethod
    def complete_finalize(
        self,
        batch: BatchRecord,
        token: str,
        status: str,
        now: int,
        files: Sequence[FileRecord] = (),
    ) -> BatchRecord | None:
        """End the batch with ``batch``'s counts and file ids, and create ``files`` (its
        output and error files), in one step and only if the lease is still ours."""
