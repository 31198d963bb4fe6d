"""The store on DynamoDB (the jobs table) and S3 (the files bucket).

Keys in the jobs table (string ``pk``/``sk``, TTL ``expires_at``, no GSIs)::

    file#<file id>      meta               a file's metadata (body at s3://bucket/files/<id>)
    batch#<batch id>    meta               a batch: status, counters, timestamps, lease
    batch#<batch id>    item#<line:07d>    one line's result (written once)
    batch#<batch id>    chunk#<n:06d>      one chunk done (written once)
    owner#<sub>         file#<id>|batch#<id>   the owner's listing index (ids sort by time)
    active#batches      <batch id>         batches not yet finalized (for the expiry sweep)
    idempotency#<sub>   <key hash>         Powertools idempotency records for batch creation
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from core.aws import clients
from core.aws.errors import conditional_failed, error_code, transaction_condition_failed
from core.settings import Settings
from functions.batch.schemas import BatchRecord, FileRecord, ItemResult, now_s
from functions.batch.store.base import BatchStore, FileInUse

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

META = "meta"
ACTIVE_PK = "active#batches"
_TIMESTAMPS = (
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
_ser = TypeSerializer()
_de = TypeDeserializer()


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set):
        return [_plain(v) for v in value]
    return value


def _dump(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items() if v is not None}


def _load(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_de.deserialize(v)) for k, v in raw.items()}


def _values(**values: Any) -> dict[str, Any]:
    return {f":{k}": _ser.serialize(v) for k, v in values.items()}


def file_key(file_id: str) -> str:
    return f"files/{file_id}"


# DynamoDB items are at most 400 KB: a result body above this goes to S3 and its item
# keeps a pointer (a long completion, a large error echo).
INLINE_RESULT_BYTES = 256 * 1024


def result_key(batch_id: str, line: int, request_id: str) -> str:
    """Where a large result body lives: one object per attempt (a retried line writes its
    own, and only the attempt whose item is written keeps it)."""
    return f"results/{batch_id}/{line:07d}-{request_id}.json"


class DynamoBatchStore(BatchStore):
    def __init__(
        self,
        settings: Settings,
        ddb: DynamoDBClient | None = None,
        s3: S3Client | None = None,
    ) -> None:
        self.settings = settings
        self.table = settings.jobs_table
        self.bucket = settings.files_bucket
        self.ddb = ddb or clients.dynamodb(settings)
        self.s3 = s3 or clients.s3(settings)

    # --- helpers --------------------------------------------------------------------
    def _key(self, pk: str, sk: str) -> dict[str, Any]:
        return {"pk": {"S": pk}, "sk": {"S": sk}}

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        raw = self.ddb.get_item(TableName=self.table, Key=self._key(pk, sk), ConsistentRead=True)
        item = raw.get("Item")
        return _load(dict(item)) if item else None

    def _ttl(self, created_at: int) -> int:
        return created_at + self.settings.batch_retention_s

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.ddb.get_paginator("query")
        for page in paginator.paginate(TableName=self.table, ConsistentRead=True, **kwargs):
            for raw in page.get("Items", []):
                yield _load(dict(raw))

    def _owned_ids(
        self, owner: str, kind: str, after: str | None, limit: int
    ) -> tuple[list[str], bool]:
        values: dict[str, Any] = {":pk": {"S": f"owner#{owner}"}, ":lo": {"S": f"{kind}#"}}
        if after:
            condition = "pk = :pk AND sk BETWEEN :lo AND :hi"
            values[":hi"] = {"S": f"{kind}#{after}"}
        else:
            condition = "pk = :pk AND begins_with(sk, :lo)"
        ids: list[str] = []
        start: dict[str, Any] | None = None
        while len(ids) <= limit:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
                "Limit": limit + 2,
                "ConsistentRead": True,
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.ddb.query(**kwargs)
            for raw in page.get("Items", []):
                item_id = raw["sk"]["S"].split("#", 1)[1]
                if item_id != after:
                    ids.append(item_id)
            start = dict(page["LastEvaluatedKey"]) if page.get("LastEvaluatedKey") else None
            if start is None:
                break
        return ids[:limit], len(ids) > limit

    def _batch_get(self, pks: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for i in range(0, len(pks), 100):
            keys: list[dict[str, Any]] = [self._key(pk, META) for pk in pks[i : i + 100]]
            request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                reply = self.ddb.batch_get_item(RequestItems=request)
                for raw in reply.get("Responses", {}).get(self.table, []):
                    item = _load(dict(raw))
                    found[item["pk"]] = item
                request = dict(reply.get("UnprocessedKeys") or {})
        return found

    # --- files ----------------------------------------------------------------------
    def put_file(self, record: FileRecord, body: bytes | None = None) -> None:
        if body is not None:
            self.s3.put_object(
                Bucket=self.bucket, Key=record.s3_key, Body=body, ContentType="application/jsonl"
            )
        item = _dump({"pk": f"file#{record.id}", "sk": META, **record.__dict__})
        self.ddb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": self.table, "Item": item}},
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _dump(
                            {
                                "pk": f"owner#{record.owner}",
                                "sk": f"file#{record.id}",
                                "expires_at": record.expires_at,
                            }
                        ),
                    }
                },
            ]
        )

    def get_file(self, file_id: str) -> FileRecord | None:
        item = self._get(f"file#{file_id}", META)
        return _file(item) if item else None

    def update_file(self, record: FileRecord) -> None:
        item = _dump({"pk": f"file#{record.id}", "sk": META, **record.__dict__})
        self.ddb.put_item(TableName=self.table, Item=item)

    def delete_file(self, record: FileRecord) -> None:
        try:  # the record first, and only while no running batch reads the file
            self.ddb.delete_item(
                TableName=self.table,
                Key=self._key(f"file#{record.id}", META),
                ConditionExpression="attribute_not_exists(in_use) OR in_use <= :zero",
                ExpressionAttributeValues=_values(zero=0),
            )
        except ClientError as exc:
            if conditional_failed(exc):
                raise FileInUse(record.id) from exc
            raise
        self.s3.delete_object(Bucket=self.bucket, Key=record.s3_key)
        self.ddb.delete_item(
            TableName=self.table, Key=self._key(f"owner#{record.owner}", f"file#{record.id}")
        )

    def release_file(self, file_id: str) -> None:
        """A batch that read ``file_id`` has ended (best effort: the file may be gone)."""
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._key(f"file#{file_id}", META),
                UpdateExpression="ADD in_use :minus",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=_values(minus=-1),
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    def list_files(
        self, owner: str, after: str | None, limit: int, purpose: str | None = None
    ) -> tuple[list[FileRecord], bool]:
        """A page of ``limit`` files (of ``purpose``, if given), newest first: the filter
        applies before paging, so a page is full whenever more matching files exist."""
        matches: list[FileRecord] = []
        cursor = after
        while True:
            ids, more = self._owned_ids(owner, "file", cursor, max(limit, _SCAN_PAGE))
            found = self._batch_get([f"file#{i}" for i in ids])
            for file_id in ids:
                item = found.get(f"file#{file_id}")
                if item is not None and (purpose is None or item.get("purpose") == purpose):
                    matches.append(_file(item))
                    if len(matches) > limit:
                        return matches[:limit], True
            if not more or not ids:
                return matches, False
            cursor = ids[-1]

    def object_info(self, key: str) -> tuple[int, str] | None:
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"]), head["ETag"]

    def read_body(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def stream_body(self, key: str, etag: str | None = None) -> Iterator[bytes]:
        extra: dict[str, Any] = {"IfMatch": etag} if etag else {}
        body = self.s3.get_object(Bucket=self.bucket, Key=key, **extra)["Body"]
        try:
            yield from body.iter_chunks(chunk_size=1024 * 1024)
        finally:
            body.close()

    def read_range(self, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        if end <= start:
            return b""
        extra: dict[str, Any] = {"IfMatch": etag} if etag else {}
        reply = self.s3.get_object(
            Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end - 1}", **extra
        )
        return reply["Body"].read()

    def delete_object(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def write_body(self, key: str, fileobj: Any) -> None:
        self.s3.upload_fileobj(
            fileobj, self.bucket, key, ExtraArgs={"ContentType": "application/jsonl"}
        )

    def presign_upload(self, key: str, max_bytes: int, expires_in: int) -> dict[str, Any]:
        post = self.s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=key,
            Conditions=[["content-length-range", 1, max_bytes]],
            ExpiresIn=expires_in,
        )
        return {"url": post["url"], "fields": post["fields"]}

    def presign_download(self, key: str, filename: str, expires_in: int) -> str:
        return self.s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=expires_in,
        )

    # --- batches --------------------------------------------------------------------
    def create_batch(self, record: BatchRecord) -> None:
        ttl = self._ttl(record.created_at)
        self.ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _batch_item(record, ttl),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _dump(
                            {
                                "pk": f"owner#{record.owner}",
                                "sk": f"batch#{record.id}",
                                "expires_at": ttl,
                            }
                        ),
                    }
                },
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _dump({"pk": ACTIVE_PK, "sk": record.id, "expires_at": ttl}),
                    }
                },
                {  # the input file is in use until the batch ends (DELETE answers 409)
                    "Update": {
                        "TableName": self.table,
                        "Key": self._key(f"file#{record.input_file_id}", META),
                        "UpdateExpression": "ADD in_use :one",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": _values(one=1),
                    }
                },
            ]
        )

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        item = self._get(f"batch#{batch_id}", META)
        return _batch(item) if item else None

    def list_batches(
        self, owner: str, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        ids, more = self._owned_ids(owner, "batch", after, limit)
        found = self._batch_get([f"batch#{i}" for i in ids])
        return [_batch(found[f"batch#{i}"]) for i in ids if f"batch#{i}" in found], more

    def set_status(
        self,
        batch_id: str,
        status: str,
        *,
        expect: tuple[str, ...],
        at: int,
        errors: list[dict[str, Any]] | None = None,
    ) -> BatchRecord | None:
        names = {"#s": "status", "#at": f"{status}_at"}
        values = _values(status=status, at=at)
        expected = []
        for index, value in enumerate(expect):
            values[f":e{index}"] = {"S": value}
            expected.append(f":e{index}")
        update = "SET #s = :status, #at = :at"
        if errors is not None:
            update += ", errors_json = :errors"
            values[":errors"] = {"S": json.dumps(errors)}
        try:
            reply = self.ddb.update_item(
                TableName=self.table,
                Key=self._key(f"batch#{batch_id}", META),
                UpdateExpression=update,
                ConditionExpression=f"#s IN ({', '.join(expected)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise
        if status in ("failed", "completed", "expired", "cancelled"):
            self._deactivate(batch_id)
        return _batch(_load(dict(reply["Attributes"])))

    def _deactivate(self, batch_id: str) -> None:
        self.ddb.delete_item(TableName=self.table, Key=self._key(ACTIVE_PK, batch_id))

    def active_batch_ids(self) -> list[str]:
        return [
            item["sk"]
            for item in self._query(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": ACTIVE_PK}},
            )
        ]

    # --- lines and chunks -----------------------------------------------------------
    def done_lines(self, batch_id: str, first: int, last: int) -> set[int]:
        lines: set[int] = set()
        for item in self._query(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":pk": {"S": f"batch#{batch_id}"},
                ":lo": {"S": f"item#{first:07d}"},
                ":hi": {"S": f"item#{last:07d}"},
            },
            ProjectionExpression="sk",
        ):
            lines.add(int(item["sk"].split("#", 1)[1]))
        return lines

    def record_result(self, batch_id: str, item: ItemResult) -> bool:
        body_json = json.dumps(item.body, separators=(",", ":"), ensure_ascii=False)
        record: dict[str, Any] = {
            "pk": f"batch#{batch_id}",
            "sk": f"item#{item.line:07d}",
            "line": item.line,
            "custom_id": item.custom_id,
            "succeeded": item.succeeded,
            "status_code": item.status_code,
            "request_id": item.request_id,
            "input_tokens": item.input_tokens,
            "output_tokens": item.output_tokens,
            "expires_at": self._ttl(now_s()),
        }
        body_key = None
        encoded = body_json.encode()
        if len(encoded) + len(item.custom_id.encode()) > INLINE_RESULT_BYTES:
            body_key = result_key(batch_id, item.line, item.request_id)
            self.s3.put_object(
                Bucket=self.bucket, Key=body_key, Body=encoded, ContentType="application/json"
            )
            record["body_key"] = body_key
        else:
            record["body_json"] = body_json
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=_dump(record),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if body_key is not None:  # this attempt's body is nobody's
                self.s3.delete_object(Bucket=self.bucket, Key=body_key)
            if conditional_failed(exc):
                return False
            raise
        counter = "completed" if item.succeeded else "failed"
        try:
            self.ddb.update_item(
                TableName=self.table,
                Key=self._key(f"batch#{batch_id}", META),
                UpdateExpression="ADD #c :one, input_tokens :i, output_tokens :o",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(finalize_token)",
                ExpressionAttributeNames={"#c": counter},
                ExpressionAttributeValues=_values(one=1, i=item.input_tokens, o=item.output_tokens),
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
        return True

    def mark_chunk_done(self, batch_id: str, chunk: int) -> int:
        pk = f"batch#{batch_id}"
        try:
            self.ddb.put_item(
                TableName=self.table,
                Item=_dump(
                    {
                        "pk": pk,
                        "sk": f"chunk#{chunk:06d}",
                        "expires_at": self._ttl(now_s()),
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            return self._count_chunks(pk)  # a retry: the counter may have missed this one
        reply = self.ddb.update_item(
            TableName=self.table,
            Key=self._key(pk, META),
            UpdateExpression="ADD chunks_done :one",
            ExpressionAttributeValues=_values(one=1),
            ReturnValues="UPDATED_NEW",
        )
        return int(_plain(_de.deserialize(reply["Attributes"]["chunks_done"])))

    def _count_chunks(self, pk: str) -> int:
        total = 0
        paginator = self.ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
            ExpressionAttributeValues={":pk": {"S": pk}, ":c": {"S": "chunk#"}},
            Select="COUNT",
            ConsistentRead=True,
        ):
            total += int(page.get("Count", 0))
        return total

    def iter_items(self, batch_id: str) -> Iterator[ItemResult]:
        for item in self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :i)",
            ExpressionAttributeValues={":pk": {"S": f"batch#{batch_id}"}, ":i": {"S": "item#"}},
        ):
            body_key = item.get("body_key")
            body_json = self.read_body(body_key) if isinstance(body_key, str) else item["body_json"]
            yield ItemResult(
                line=item["line"],
                custom_id=item["custom_id"],
                succeeded=item["succeeded"],
                status_code=item["status_code"],
                body=json.loads(body_json),
                request_id=item["request_id"],
                input_tokens=item.get("input_tokens", 0),
                output_tokens=item.get("output_tokens", 0),
            )

    # --- finalizing -----------------------------------------------------------------
    def begin_finalize(
        self, batch: BatchRecord, token: str, now: int, lease_s: int
    ) -> BatchRecord | None:
        status = "finalizing" if batch.status in ("validating", "in_progress") else batch.status
        try:
            reply = self.ddb.update_item(
                TableName=self.table,
                Key=self._key(f"batch#{batch.id}", META),
                UpdateExpression=(
                    "SET #s = :new, finalize_token = :token, lease_until = :lease"
                    + (
                        ", finalizing_at = if_not_exists(finalizing_at, :now)"
                        if status == "finalizing"
                        else ""
                    )
                ),
                ConditionExpression=(
                    "#s = :cur AND (attribute_not_exists(finalize_token) OR lease_until < :now)"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_values(
                    new=status, token=token, lease=now + lease_s, now=now, cur=batch.status
                ),
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise
        return _batch(_load(dict(reply["Attributes"])))

    def complete_finalize(
        self,
        batch: BatchRecord,
        token: str,
        status: str,
        now: int,
        files: Sequence[FileRecord] = (),
    ) -> BatchRecord | None:
        values = _values(
            status=status,
            now=now,
            token=token,
            completed=batch.completed,
            failed=batch.failed,
            i=batch.input_tokens,
            o=batch.output_tokens,
        )
        update = (
            "SET #s = :status, #at = :now, completed = :completed, failed = :failed, "
            "input_tokens = :i, output_tokens = :o"
        )
        for name in ("output_file_id", "error_file_id"):
            value = getattr(batch, name)
            if value:
                update += f", {name} = :{name}"
                values[f":{name}"] = {"S": value}
        if batch.errors:
            update += ", errors_json = :errors"
            values[":errors"] = {"S": json.dumps(batch.errors)}
        # One transaction: the batch ends and its output/error files appear only if the lease
        # is still ours, so a finalizer that outlived its lease changes nothing.
        items: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": self._key(f"batch#{batch.id}", META),
                    "UpdateExpression": update + " REMOVE lease_until",
                    "ConditionExpression": "finalize_token = :token",
                    "ExpressionAttributeNames": {"#s": "status", "#at": f"{status}_at"},
                    "ExpressionAttributeValues": values,
                }
            }
        ]
        for record in files:
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _dump({"pk": f"file#{record.id}", "sk": META, **record.__dict__}),
                    }
                }
            )
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": _dump(
                            {
                                "pk": f"owner#{record.owner}",
                                "sk": f"file#{record.id}",
                                "expires_at": record.expires_at,
                            }
                        ),
                    }
                }
            )
        try:
            self.ddb.transact_write_items(TransactItems=items)  # type: ignore[arg-type]
        except ClientError as exc:
            if transaction_condition_failed(exc):
                return None
            raise
        self._deactivate(batch.id)
        self.release_file(batch.input_file_id)
        ended = self.get_batch(batch.id)
        return ended


# Owner index entries read per round while filtering files by purpose.
_SCAN_PAGE = 100


def _file(item: dict[str, Any]) -> FileRecord:
    return FileRecord(
        id=item["id"],
        owner=item["owner"],
        filename=item["filename"],
        purpose=item["purpose"],
        bytes=item["bytes"],
        created_at=item["created_at"],
        expires_at=item["expires_at"],
        s3_key=item["s3_key"],
        status=item.get("status", "processed"),
        line_count=item.get("line_count"),
    )


def _batch_item(record: BatchRecord, ttl: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"batch#{record.id}",
        "sk": META,
        "id": record.id,
        "owner": record.owner,
        "status": record.status,
        "endpoint": record.endpoint,
        "input_file_id": record.input_file_id,
        "input_key": record.input_key,
        "input_etag": record.input_etag,
        "completion_window": record.completion_window,
        "created_at": record.created_at,
        "deadline": record.deadline,
        "total": record.total,
        "completed": record.completed,
        "failed": record.failed,
        "chunks_total": record.chunks_total,
        "chunks_done": record.chunks_done,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "model": record.model,
        "metadata_json": json.dumps(record.metadata) if record.metadata is not None else None,
        "errors_json": json.dumps(record.errors) if record.errors else None,
        "expires_at": ttl,
        **record.timestamps,
    }
    return _dump(item)


def _batch(item: dict[str, Any]) -> BatchRecord:
    return BatchRecord(
        id=item["id"],
        owner=item["owner"],
        status=item["status"],
        endpoint=item["endpoint"],
        input_file_id=item["input_file_id"],
        input_key=item["input_key"],
        input_etag=item.get("input_etag"),
        completion_window=item["completion_window"],
        created_at=item["created_at"],
        deadline=item["deadline"],
        total=item.get("total", 0),
        completed=item.get("completed", 0),
        failed=item.get("failed", 0),
        chunks_total=item.get("chunks_total", 0),
        chunks_done=item.get("chunks_done", 0),
        input_tokens=item.get("input_tokens", 0),
        output_tokens=item.get("output_tokens", 0),
        model=item.get("model"),
        metadata=json.loads(item["metadata_json"]) if "metadata_json" in item else None,
        timestamps={k: item[k] for k in _TIMESTAMPS if k in item},
        output_file_id=item.get("output_file_id"),
        error_file_id=item.get("error_file_id"),
        errors=json.loads(item["errors_json"]) if "errors_json" in item else None,
        finalize_token=item.get("finalize_token"),
        lease_until=item.get("lease_until"),
    )
