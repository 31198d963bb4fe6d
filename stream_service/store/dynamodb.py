"""DynamoDB backend: one table, string ``pk``/``sk``, TTL on ``expires_at``.

Items
- ``S#<id> / meta``: owner, node, status, lease, cancel flag, reader heartbeat, last seq.
- ``S#<id> / e#<first seq, 10 digits>``: one flushed batch of events (msgpack), written
  with ``attribute_not_exists`` so a retried flush is a no-op.
- ``U#<user> / slot#<n>``: per-user stream slots, leases that lapse if a node dies.

boto3 is synchronous; calls run on a dedicated thread pool so the event loop never blocks.
Retries are boto3's own (adaptive mode, see :mod:`core.aws.clients`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec
from botocore.exceptions import ClientError

from core.aws.errors import conditional_failed
from stream_service.store.base import (
    LeaseLost,
    PollResult,
    ReadResult,
    Slot,
    StoredEvent,
    StreamMeta,
    StreamStore,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[int, str, bytes]])


def _meta_key(stream_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"S#{stream_id}"}, "sk": {"S": "meta"}}


def _batch_sk(first: int) -> str:
    return f"e#{first:010d}"


def _slot_key(user: str, index: int) -> dict[str, Any]:
    return {"pk": {"S": f"U#{user}"}, "sk": {"S": f"slot#{index:03d}"}}


class DynamoStreamStore(StreamStore):
    def __init__(
        self, client: DynamoDBClient, table: str, *, ttl_s: int, max_batch: int, threads: int = 32
    ) -> None:
        super().__init__(ttl_s=ttl_s, max_batch=max_batch)
        self._client = client
        self._table = table
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ddb")

    async def _run(self, fn: Callable[..., Any], write: str | None = None, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        try:
            return await loop.run_in_executor(
                self._pool, lambda: fn(TableName=self._table, **kwargs)
            )
        finally:
            if write is not None:
                self._wrote(write, time.perf_counter() - start)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- streams -----------------------------------------------------------------------
    async def create(self, meta: StreamMeta) -> None:
        # An update, not a put: a cancel requested before the record existed (the per-user
        # limit may cancel a stream in its first milliseconds) must survive its creation.
        values = {
            ":owner": {"S": meta.owner},
            ":node": {"S": meta.node},
            ":model": {"S": meta.model},
            ":status": {"S": meta.status},
            ":created": {"N": str(meta.created_ms)},
            ":lease": {"N": str(meta.lease_until_ms)},
            ":no": {"BOOL": False},
            ":zero": {"N": "0"},
            ":seq": {"N": str(meta.last_seq)},
            ":cid": {"S": meta.completion_id or "-"},
            ":usage": {"BOOL": meta.include_usage},
            ":exp": {"N": str(self.expires_at())},
        }
        await self._run(
            self._client.update_item,
            "create",
            Key=_meta_key(meta.id),
            UpdateExpression=(
                "SET #o = :owner, #n = :node, model = :model, #st = :status, "
                "created_ms = :created, lease_until = :lease, cancel = if_not_exists(cancel, :no), "
                "reader_until = if_not_exists(reader_until, :zero), last_seq = :seq, "
                "completion_id = :cid, include_usage = :usage, expires_at = :exp"
            ),
            ExpressionAttributeNames={"#o": "owner", "#n": "node", "#st": "status"},
            ExpressionAttributeValues=values,
        )

    async def get_meta(self, stream_id: str) -> StreamMeta | None:
        out = await self._run(self._client.get_item, Key=_meta_key(stream_id), ConsistentRead=True)
        item = out.get("Item")
        if not item or "owner" not in item:
            return None
        completion_id = item["completion_id"]["S"]
        return StreamMeta(
            id=stream_id,
            owner=item["owner"]["S"],
            node=item["node"]["S"],
            model=item["model"]["S"],
            status=item["status"]["S"],
            created_ms=int(item["created_ms"]["N"]),
            lease_until_ms=int(item["lease_until"]["N"]),
            cancel=item["cancel"]["BOOL"],
            reader_until_ms=int(item["reader_until"]["N"]),
            last_seq=int(item["last_seq"]["N"]),
            completion_id="" if completion_id == "-" else completion_id,
            include_usage=item["include_usage"]["BOOL"],
        )

    async def append(self, stream_id: str, events: list[StoredEvent]) -> bool:
        item = {
            "pk": {"S": f"S#{stream_id}"},
            "sk": {"S": _batch_sk(events[0][0])},
            "last": {"N": str(events[-1][0])},
            "at": {"N": str(int(time.time() * 1000))},
            "data": {"B": _encoder.encode(events)},
            "expires_at": {"N": str(self.expires_at())},
        }
        try:
            await self._run(
                self._client.put_item,
                "append",
                Item=item,
                ConditionExpression="attribute_not_exists(sk)",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    async def read(self, stream_id: str, after_seq: int) -> ReadResult:
        lower = _batch_sk(max(0, after_seq - self.max_batch + 1))
        events: list[StoredEvent] = []
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :lo AND :hi",
            "ExpressionAttributeValues": {
                ":pk": {"S": f"S#{stream_id}"},
                ":lo": {"S": lower},
                ":hi": {"S": "e#9999999999"},
            },
            "ConsistentRead": True,
        }
        while True:
            out = await self._run(self._client.query, **kwargs)
            for item in out.get("Items", []):
                if int(item["last"]["N"]) <= after_seq:
                    continue
                events.extend(e for e in _decoder.decode(item["data"]["B"]) if e[0] > after_seq)
            if "LastEvaluatedKey" not in out:
                return ReadResult(events)
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    async def last_seq(self, stream_id: str) -> int:
        out = await self._run(
            self._client.query,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :e)",
            ExpressionAttributeValues={":pk": {"S": f"S#{stream_id}"}, ":e": {"S": "e#"}},
            ScanIndexForward=False,
            Limit=1,
            ProjectionExpression="#l",
            ExpressionAttributeNames={"#l": "last"},
            ConsistentRead=True,
        )
        items = out.get("Items", [])
        return int(items[0]["last"]["N"]) if items else 0

    async def heartbeat(
        self, stream_id: str, node: str, lease_until_ms: int, last_seq: int
    ) -> PollResult:
        try:
            out = await self._run(
                self._client.update_item,
                "heartbeat",
                Key=_meta_key(stream_id),
                UpdateExpression="SET lease_until = :l, last_seq = :s",
                ConditionExpression="#n = :node AND #st = :running",
                ExpressionAttributeNames={"#n": "node", "#st": "status"},
                ExpressionAttributeValues={
                    ":l": {"N": str(lease_until_ms)},
                    ":s": {"N": str(last_seq)},
                    ":node": {"S": node},
                    ":running": {"S": "running"},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                raise LeaseLost(stream_id) from exc
            raise
        attrs = out["Attributes"]
        return PollResult(attrs["cancel"]["BOOL"], int(attrs["reader_until"]["N"]))

    async def poll(self, stream_ids: list[str]) -> dict[str, PollResult]:
        results: dict[str, PollResult] = {}
        for start in range(0, len(stream_ids), 100):
            keys = [_meta_key(sid) for sid in stream_ids[start : start + 100]]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "pk, cancel, reader_until",
                    "ConsistentRead": True,
                }
            }
            while request:
                out = await self._run_batch_get(request)
                for item in out.get("Responses", {}).get(self._table, []):
                    sid = item["pk"]["S"][2:]
                    results[sid] = PollResult(
                        item["cancel"]["BOOL"], int(item["reader_until"]["N"])
                    )
                request = out.get("UnprocessedKeys") or {}
        return results

    async def _run_batch_get(self, request: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._pool, lambda: self._client.batch_get_item(RequestItems=request)
        )

    async def finish(self, stream_id: str, node: str, status: str, last_seq: int) -> None:
        try:
            await self._run(
                self._client.update_item,
                "finish",
                Key=_meta_key(stream_id),
                UpdateExpression="SET #st = :status, last_seq = :s",
                ConditionExpression="#n = :node AND #st = :running",
                ExpressionAttributeNames={"#n": "node", "#st": "status"},
                ExpressionAttributeValues={
                    ":status": {"S": status},
                    ":s": {"N": str(last_seq)},
                    ":node": {"S": node},
                    ":running": {"S": "running"},
                },
            )
        except ClientError as exc:
            if conditional_failed(exc):
                raise LeaseLost(stream_id) from exc
            raise

    async def request_cancel(self, stream_id: str) -> None:
        await self._run(
            self._client.update_item,
            "cancel",
            Key=_meta_key(stream_id),
            UpdateExpression="SET cancel = :t, expires_at = if_not_exists(expires_at, :exp)",
            ExpressionAttributeValues={":t": {"BOOL": True}, ":exp": {"N": str(self.expires_at())}},
        )

    async def touch_reader(self, stream_id: str, until_ms: int) -> None:
        try:
            await self._run(
                self._client.update_item,
                "reader",
                Key=_meta_key(stream_id),
                UpdateExpression="SET reader_until = :u",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":u": {"N": str(until_ms)}},
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    async def mark_lost(self, stream_id: str, at_ms: int) -> bool:
        try:
            await self._run(
                self._client.update_item,
                "mark_lost",
                Key=_meta_key(stream_id),
                UpdateExpression="SET #st = :failed",
                ConditionExpression="#st = :running AND lease_until < :now",
                ExpressionAttributeNames={"#st": "status"},
                ExpressionAttributeValues={
                    ":failed": {"S": "failed"},
                    ":running": {"S": "running"},
                    ":now": {"N": str(at_ms)},
                },
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    # --- per-user slots ----------------------------------------------------------------
    async def list_slots(self, user: str) -> list[Slot]:
        out = await self._run(
            self._client.query,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :s)",
            ExpressionAttributeValues={":pk": {"S": f"U#{user}"}, ":s": {"S": "slot#"}},
            ConsistentRead=True,
        )
        return [
            Slot(
                index=int(item["sk"]["S"][5:]),
                stream_id=item["stream_id"]["S"],
                lease_until_ms=int(item["lease_until"]["N"]),
                created_ms=int(item["created_ms"]["N"]),
            )
            for item in out.get("Items", [])
        ]

    async def claim_slot(
        self, user: str, slot: Slot, at_ms: int, expect_stream: str | None = None
    ) -> bool:
        condition = "attribute_not_exists(pk) OR lease_until < :now OR stream_id = :me"
        values: dict[str, Any] = {":now": {"N": str(at_ms)}, ":me": {"S": slot.stream_id}}
        if expect_stream is not None:
            condition += " OR stream_id = :old"
            values[":old"] = {"S": expect_stream}
        item = {
            **_slot_key(user, slot.index),
            "stream_id": {"S": slot.stream_id},
            "lease_until": {"N": str(slot.lease_until_ms)},
            "created_ms": {"N": str(slot.created_ms)},
            "expires_at": {"N": str(int(slot.lease_until_ms / 1000) + 3600)},
        }
        try:
            await self._run(
                self._client.put_item,
                "slot",
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    async def release_slot(self, user: str, index: int, stream_id: str) -> None:
        try:
            await self._run(
                self._client.delete_item,
                "slot_release",
                Key=_slot_key(user, index),
                ConditionExpression="stream_id = :me",
                ExpressionAttributeValues={":me": {"S": stream_id}},
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
