"""DynamoDB backend: one table, string ``pk``/``sk``, TTL on ``expires_at``.

Items
- ``S#<id> / meta``: owner, node, status, lease, cancel flag, reader heartbeat, since when
  its node sees no reader (``unread_since``), last seq.
- ``S#<id> / e#<first seq, 10 digits>``: one flushed batch of events (msgpack), written
  with ``attribute_not_exists`` so a retried flush is a no-op.
- ``U#<user> / streams``: the user's admission record: ``n`` active streams and one
  ``h_<stream id>`` attribute per stream (``<node>|<created ms>``), so admitting a stream
  is one conditional update whatever the user's active count.
- ``N#<node> / node``: a node's heartbeat; holders of a node whose heartbeat lapsed are
  evicted when they stand in the way of an admission.

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
    Admission,
    Holder,
    LeaseLost,
    PollResult,
    ReadResult,
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


def _user_key(user: str) -> dict[str, Any]:
    return {"pk": {"S": f"U#{user}"}, "sk": {"S": "streams"}}


def _node_key(node: str) -> dict[str, Any]:
    return {"pk": {"S": f"N#{node}"}, "sk": {"S": "node"}}


def _poll_result(item: dict[str, Any]) -> PollResult:
    unread = item.get("unread_since")  # absent until its node first saw it unread
    return PollResult(
        item["cancel"]["BOOL"], int(item["reader_until"]["N"]), int(unread["N"]) if unread else 0
    )


def _holder_value(holder: Holder) -> dict[str, Any]:
    return {"S": f"{holder.node}|{holder.created_ms}"}


def _holders(item: dict[str, Any]) -> list[Holder]:
    out = []
    for name, value in item.items():
        if name.startswith("h_"):
            node, _, created = value["S"].rpartition("|")
            out.append(Holder(name[2:], node, int(created)))
    return out


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
        try:
            await self._create(meta, values)
        except ClientError as exc:
            if conditional_failed(exc):
                raise LeaseLost(meta.id) from exc
            raise

    async def _create(self, meta: StreamMeta, values: dict[str, Any]) -> None:
        values[":running"] = {"S": "running"}
        await self._run(
            self._client.update_item,
            "create",
            Key=_meta_key(meta.id),
            # A retry that lands after another node declared the stream lost changes nothing.
            ConditionExpression=("attribute_not_exists(#st) OR (#n = :node AND #st = :running)"),
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

    async def read(self, stream_id: str, after_seq: int, limit: int | None = None) -> ReadResult:
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
        if limit is not None:  # whole batches: one more than needed covers a partial first
            kwargs["Limit"] = max(1, -(-limit // self.max_batch)) + 1
        while True:
            out = await self._run(self._client.query, **kwargs)
            for item in out.get("Items", []):
                if int(item["last"]["N"]) <= after_seq:
                    continue
                events.extend(e for e in _decoder.decode(item["data"]["B"]) if e[0] > after_seq)
            if "LastEvaluatedKey" not in out:
                return ReadResult(events)
            if limit is not None and len(events) >= limit:
                return ReadResult(events, more=True)
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
        return _poll_result(out["Attributes"])

    async def poll(self, stream_ids: list[str]) -> dict[str, PollResult]:
        results: dict[str, PollResult] = {}
        for start in range(0, len(stream_ids), 100):
            keys = [_meta_key(sid) for sid in stream_ids[start : start + 100]]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": "pk, cancel, reader_until, unread_since",
                    "ConsistentRead": True,
                }
            }
            while request:
                out = await self._run_batch_get(request)
                for item in out.get("Responses", {}).get(self._table, []):
                    sid = item["pk"]["S"][2:]
                    results[sid] = _poll_result(item)
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

    async def mark_unread(self, stream_id: str, since_ms: int) -> None:
        try:
            await self._run(
                self._client.update_item,
                "unread",
                Key=_meta_key(stream_id),
                UpdateExpression="SET unread_since = :u",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":u": {"N": str(since_ms)}},
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

    # --- per-user admission -----------------------------------------------------------
    async def admit(self, user: str, holder: Holder, limit: int) -> Admission:
        try:
            await self._run(
                self._client.update_item,
                "admit",
                Key=_user_key(user),
                UpdateExpression=(
                    "SET #h = :h, n = if_not_exists(n, :zero) + :one, expires_at = :exp"
                ),
                ConditionExpression=(
                    "attribute_not_exists(#h) AND (attribute_not_exists(n) OR n < :limit)"
                ),
                ExpressionAttributeNames={"#h": f"h_{holder.stream_id}"},
                ExpressionAttributeValues={
                    ":h": _holder_value(holder),
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(self.expires_at())},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
            if item is None:  # a backend that does not return it: read it
                out = await self._run(
                    self._client.get_item, Key=_user_key(user), ConsistentRead=True
                )
                item = out.get("Item", {})
            holders = _holders(item)
            if any(h.stream_id == holder.stream_id for h in holders):
                return Admission(True, [])  # a retry of a write that landed
            return Admission(False, holders)
        return Admission(True, [])

    async def release(self, user: str, stream_id: str) -> bool:
        try:
            await self._run(
                self._client.update_item,
                "release",
                Key=_user_key(user),
                UpdateExpression="REMOVE #h SET n = n - :one",
                ConditionExpression="attribute_exists(#h)",
                ExpressionAttributeNames={"#h": f"h_{stream_id}"},
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    async def replace(self, user: str, old_stream_id: str, holder: Holder) -> bool:
        try:
            await self._run(
                self._client.update_item,
                "replace",
                Key=_user_key(user),
                UpdateExpression="REMOVE #old SET #new = :h",
                ConditionExpression="attribute_exists(#old) AND attribute_not_exists(#new)",
                ExpressionAttributeNames={
                    "#old": f"h_{old_stream_id}",
                    "#new": f"h_{holder.stream_id}",
                },
                ExpressionAttributeValues={":h": _holder_value(holder)},
            )
        except ClientError as exc:
            if conditional_failed(exc):
                return False
            raise
        return True

    async def evict(self, user: str, stream_ids: list[str]) -> int:
        # Each one conditional: a holder released meanwhile is not counted twice.
        results = await asyncio.gather(*(self.release(user, sid) for sid in stream_ids))
        return sum(results)

    async def node_heartbeat(self, node: str, until_ms: int) -> None:
        await self._run(
            self._client.put_item,
            "node",
            Item={
                **_node_key(node),
                "until": {"N": str(until_ms)},
                "expires_at": {"N": str(until_ms // 1000 + 3600)},
            },
        )

    async def live_nodes(self, nodes: list[str], at_ms: int) -> set[str]:
        alive: set[str] = set()
        for start in range(0, len(nodes), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [_node_key(n) for n in nodes[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while request:
                out = await self._run_batch_get(request)
                for item in out.get("Responses", {}).get(self._table, []):
                    if int(item["until"]["N"]) >= at_ms:
                        alive.add(item["pk"]["S"][2:])
                request = out.get("UnprocessedKeys") or {}
        return alive
