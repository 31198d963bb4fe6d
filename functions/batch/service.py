"""The Batch API's business logic, called by the thin REST controllers (synchronously: run
it in a thread from async code; every call is a few DynamoDB/S3/SQS requests)."""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from botocore.exceptions import ClientError

from core.aws import clients
from core.aws.errors import transaction_condition_failed
from core.errors import ApiError, Conflict, InvalidRequest, NotFound, PayloadTooLarge
from core.ids import shown
from core.settings import Settings
from functions.batch.queue import BatchQueue
from functions.batch.schemas import (
    BATCH_ID,
    FILE_ID,
    SUPPORTED_ENDPOINTS,
    TERMINAL,
    BatchRecord,
    ChunkMessage,
    CreateBatch,
    CreateUpload,
    FileRecord,
    FinalizeMessage,
    new_batch_id,
    new_file_id,
    now_s,
)
from functions.batch.store.base import BatchStore, FileInUse
from functions.batch.store.dynamodb import DynamoBatchStore, file_key
from functions.batch.validation import iter_lines, validate_jsonl

# Outside Lambda (make dev, tests) there is no context to bound an in-progress record by.
warnings.filterwarnings(
    "ignore", message="Couldn't determine the remaining time left", category=UserWarning
)

IDEMPOTENCY_TTL_S = 24 * 3600
PRESIGN_TTL_S = 3600
MAX_WINDOW_S = 7 * 24 * 3600
_WINDOW_RE = re.compile(r"^(\d{1,7})([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Content:
    """A file's body inline, or (above the inline limit) a presigned URL to redirect to."""

    data: bytes | None
    redirect: str | None
    filename: str


def window_seconds(window: str, settings: Settings) -> int:
    match = _WINDOW_RE.match(window)
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not settings.batch_min_window_s <= seconds <= MAX_WINDOW_S:
        raise InvalidRequest(
            f"'completion_window' must be like '24h' (between {settings.batch_min_window_s}s "
            f"and 7 days); got {window!r}.",
            param="completion_window",
            code="invalid_value",
        )
    return seconds


def safe_filename(name: str | None) -> str:
    """A display name safe to echo in headers: basename, no quotes or control chars."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._ ()+-]", "_", base).strip()[:255]
    return cleaned or "batch.jsonl"


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in metadata.items()):
        raise InvalidRequest(
            "'metadata' takes at most 16 pairs, keys up to 64 and values up to 512 characters.",
            param="metadata",
            code="invalid_value",
        )


log = logging.getLogger("rtai.batch")


def _is_id(pattern: re.Pattern[str], value: str) -> bool:
    """Ids are checked before any lookup: a malformed one is simply not found."""
    return pattern.fullmatch(value) is not None


def _cursor(pattern: re.Pattern[str], after: str | None) -> str | None:
    if after is not None and not _is_id(pattern, after):
        raise InvalidRequest("'after' must be an id from a previous page.", param="after")
    return after


def _limit(limit: int | None) -> int:
    if limit is None:
        return 20
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be between 1 and 100.", param="limit")
    return limit


class BatchService:
    def __init__(
        self,
        settings: Settings,
        store: BatchStore | None = None,
        queue: BatchQueue | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or DynamoBatchStore(settings)
        self.queue = queue or BatchQueue(settings)

    # --- files ----------------------------------------------------------------------
    def _check_purpose(self, purpose: str) -> None:
        if purpose != "batch":
            raise InvalidRequest(
                f"Only purpose 'batch' is supported; got {purpose!r}.",
                param="purpose",
                code="invalid_value",
            )

    def _new_file(self, owner: str, filename: str, size: int, status: str) -> FileRecord:
        file_id = new_file_id()
        now = now_s()
        return FileRecord(
            id=file_id,
            owner=owner,
            filename=safe_filename(filename),
            purpose="batch",
            bytes=size,
            created_at=now,
            expires_at=now + self.settings.batch_retention_s,
            s3_key=file_key(file_id),
            status=status,
        )

    def upload_file(self, owner: str, filename: str, purpose: str, data: bytes) -> FileRecord:
        """A direct (multipart) upload: validated now, so a bad line is a 400 naming it."""
        self._check_purpose(purpose)
        if len(data) > self.settings.max_upload_bytes:
            raise PayloadTooLarge(
                f"The file is {len(data)} bytes; direct uploads are limited to "
                f"{self.settings.max_upload_bytes} bytes. Use POST /api/v1/files/uploads for a "
                f"presigned S3 upload (up to {self.settings.max_file_bytes} bytes).",
                param="file",
                code="file_too_large",
            )
        plan = validate_jsonl(iter_lines([data]), self.settings)
        record = self._new_file(owner, filename, len(data), "processed")
        record.line_count = plan.lines
        self.store.put_file(record, data)
        return record

    def create_upload(self, owner: str, request: CreateUpload) -> dict[str, Any]:
        """A presigned S3 POST for files above the direct-upload limit."""
        self._check_purpose(request.purpose)
        if not 0 < request.bytes <= self.settings.max_file_bytes:
            raise PayloadTooLarge(
                f"'bytes' must be between 1 and {self.settings.max_file_bytes}.",
                param="bytes",
                code="file_too_large",
            )
        record = self._new_file(owner, request.filename, request.bytes, "uploaded")
        self.store.put_file(record)
        upload = self.store.presign_upload(
            record.s3_key, self.settings.max_file_bytes, PRESIGN_TTL_S
        )
        return {
            "file": record.to_openai(),
            "upload": {"method": "POST", **upload, "expires_in": PRESIGN_TTL_S},
        }

    def get_file(self, owner: str, file_id: str) -> FileRecord:
        record = self.store.get_file(file_id) if _is_id(FILE_ID, file_id) else None
        if record is None or record.owner != owner or record.expires_at <= now_s():
            raise NotFound(f"No such File object: {shown(file_id)}", param="file_id")
        return record

    def list_files(
        self, owner: str, after: str | None, limit: int | None, purpose: str | None
    ) -> dict[str, Any]:
        records, more = self.store.list_files(
            owner, _cursor(FILE_ID, after), _limit(limit), purpose
        )
        return _page([r.to_openai() for r in records], more)

    def delete_file(self, owner: str, file_id: str) -> dict[str, Any]:
        try:
            self.store.delete_file(self.get_file(owner, file_id))
        except FileInUse as exc:
            raise Conflict(
                f"File {file_id} is the input of a batch that has not ended; cancel the batch"
                " or wait for it to end, then delete the file.",
                param="file_id",
                code="file_in_use",
            ) from exc
        return {"id": file_id, "object": "file", "deleted": True}

    def file_content(self, owner: str, file_id: str) -> Content:
        record = self.get_file(owner, file_id)
        info = self.store.object_info(record.s3_key)
        if info is None:
            raise NotFound(f"File {file_id} has no content (was it uploaded?).", param="file_id")
        if info[0] > self.settings.batch_inline_content_bytes:
            url = self.store.presign_download(record.s3_key, record.filename, PRESIGN_TTL_S)
            return Content(None, url, record.filename)
        return Content(self.store.read_body(record.s3_key), None, record.filename)

    # --- batches --------------------------------------------------------------------
    def create_batch(
        self,
        owner: str,
        request: CreateBatch,
        idempotency_key: str | None = None,
        lambda_context: Any = None,
    ) -> BatchRecord:
        if not idempotency_key:
            return self._create(owner, request)
        if len(idempotency_key) > 255:
            raise InvalidRequest("'Idempotency-Key' is longer than 255 characters.")
        config = IdempotencyConfig(
            event_key_jmespath="[owner, key]",
            payload_validation_jmespath="body",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=IDEMPOTENCY_TTL_S,
        )
        if lambda_context is not None:  # lets an interrupted attempt's record expire early
            config.register_lambda_context(lambda_context)
        persistence = DynamoDBPersistenceLayer(
            table_name=self.settings.jobs_table,
            key_attr="pk",
            sort_key_attr="sk",
            static_pk_value=f"idempotency#{owner}",
            expiry_attr="expires_at",
            boto3_client=clients.dynamodb(self.settings),
        )

        def create(payload: dict[str, Any]) -> dict[str, str]:
            return {"id": self._create(owner, request).id}

        guarded = idempotent_function(
            create,
            data_keyword_argument="payload",
            persistence_store=persistence,
            config=config,
            key_prefix="create_batch",
        )
        payload = {"owner": owner, "key": idempotency_key, "body": msgspec.to_builtins(request)}
        try:
            result: dict[str, str] = guarded(payload=payload)
        except IdempotencyValidationError as exc:
            raise InvalidRequest(
                "This Idempotency-Key was already used with a different request body.",
                code="idempotency_key_reused",
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                code="idempotency_key_in_use",
            ) from exc
        return self.get_batch(owner, result["id"])

    def _create(self, owner: str, request: CreateBatch) -> BatchRecord:
        if request.endpoint not in SUPPORTED_ENDPOINTS:
            raise InvalidRequest(
                f"'endpoint' {request.endpoint!r} is not supported; use "
                f"{' or '.join(SUPPORTED_ENDPOINTS)}.",
                param="endpoint",
                code="invalid_value",
            )
        window = window_seconds(request.completion_window, self.settings)
        _check_metadata(request.metadata)
        file_id = request.input_file_id
        file = self.store.get_file(file_id) if _is_id(FILE_ID, file_id) else None
        if file is None or file.owner != owner or file.expires_at <= now_s():
            raise NotFound(f"No such File object: {shown(file_id)}", param="input_file_id")
        if file.purpose != "batch":
            raise InvalidRequest(
                f"File {file.id} has purpose {file.purpose!r}; a batch needs purpose 'batch'.",
                param="input_file_id",
            )
        info = self.store.object_info(file.s3_key)
        if info is None:
            raise InvalidRequest(
                f"File {file.id} has not been uploaded yet (POST the file to its upload URL).",
                param="input_file_id",
                code="file_not_uploaded",
            )
        size, etag = info
        if size > self.settings.max_file_bytes:
            raise PayloadTooLarge(
                f"File {file.id} is {size} bytes; the limit is {self.settings.max_file_bytes}.",
                param="input_file_id",
                code="file_too_large",
            )
        plan = validate_jsonl(
            iter_lines(self.store.stream_body(file.s3_key, etag)), self.settings, request.endpoint
        )
        if file.status != "processed":
            file.status, file.bytes, file.line_count = "processed", size, plan.lines
            self.store.update_file(file)
        now = now_s()
        batch = BatchRecord(
            id=new_batch_id(),
            owner=owner,
            status="in_progress",
            endpoint=request.endpoint,
            input_file_id=file.id,
            input_key=file.s3_key,
            input_etag=etag,
            completion_window=request.completion_window,
            created_at=now,
            deadline=now + window,
            total=plan.lines,
            chunks_total=len(plan.chunks),
            model=plan.model,
            metadata=request.metadata,
            timestamps={"in_progress_at": now},
        )
        try:
            self.store.create_batch(batch)
        except ClientError as exc:
            if not transaction_condition_failed(exc):
                raise
            # The input file was deleted between the check above and the write.
            raise NotFound(f"No such File object: {shown(file_id)}", param="input_file_id") from exc
        messages = [
            ChunkMessage(
                batch_id=batch.id,
                chunk=c.index,
                first_line=c.first_line,
                last_line=c.last_line,
                byte_start=c.byte_start,
                byte_end=c.byte_end,
            )
            for c in plan.chunks
        ]
        try:
            self.queue.send(messages)
        except Exception as exc:
            message = exc.message if isinstance(exc, ApiError) else "Could not queue the work."
            failed = self.store.set_status(
                batch.id,
                "failed",
                expect=("in_progress",),
                at=now_s(),
                errors=[{"code": "enqueue_failed", "message": message, "line": None}],
            )
            if failed is not None:
                self.store.release_file(batch.input_file_id)
            raise
        return batch

    def get_batch(self, owner: str, batch_id: str) -> BatchRecord:
        batch = self.store.get_batch(batch_id) if _is_id(BATCH_ID, batch_id) else None
        if batch is None or batch.owner != owner:
            raise NotFound(f"No such Batch object: {shown(batch_id)}", param="batch_id")
        if (
            batch.status not in TERMINAL
            and batch.finalize_token is None
            and now_s() >= batch.deadline
        ):
            # Past its window and nobody finalizing yet: nudge a worker. Best effort, since
            # the scheduled sweep does the same, a read must not fail for it.
            try:
                self.queue.send([FinalizeMessage(batch_id=batch.id)])
            except Exception:
                log.warning("could not queue the finalize of %s; the sweep will", batch.id)
        return batch

    def list_batches(self, owner: str, after: str | None, limit: int | None) -> dict[str, Any]:
        records, more = self.store.list_batches(owner, _cursor(BATCH_ID, after), _limit(limit))
        return _page([r.to_openai() for r in records], more)

    def cancel_batch(self, owner: str, batch_id: str) -> BatchRecord:
        batch = self.get_batch(owner, batch_id)
        if batch.status in ("cancelling", "cancelled"):
            return batch
        moved = self.store.set_status(
            batch_id, "cancelling", expect=("validating", "in_progress"), at=now_s()
        )
        if moved is None:
            current = self.get_batch(owner, batch_id)
            if current.status in ("cancelling", "cancelled", "finalizing"):
                return current  # already ending: cancel has nothing left to stop
            raise Conflict(
                f"Cannot cancel a batch with status '{current.status}'.",
                code="batch_not_cancellable",
            )
        self.queue.send([FinalizeMessage(batch_id=batch_id)])
        return moved

    def sweep(self) -> list[str]:
        """Queue a finalize for every unfinished batch that needs one: past its window,
        cancelling, or whose finalizer died holding the lease (run it on a schedule)."""
        due: list[str] = []
        now = now_s()
        for batch_id in self.store.active_batch_ids():
            batch = self.store.get_batch(batch_id)
            if batch is not None and batch.needs_finalize(now):
                due.append(batch_id)
        if due:
            self.queue.send([FinalizeMessage(batch_id=b) for b in due])
        return due


def _page(data: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": more,
    }


@lru_cache(maxsize=8)
def service_for(settings: Settings) -> BatchService:
    """One service per settings (the API app builds none at import: Mangum runs no lifespan)."""
    return BatchService(settings)
