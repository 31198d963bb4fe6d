"""Rooms in DynamoDB, in the streams table (string ``pk``/``sk``, TTL on ``expires_at``).

Items
- ``R#<id> / meta``: created_by, created_ms, members (string set), next_seq (messages ever
  appended), total (content bytes ever appended), floor_seq / floor_cum (the oldest kept
  message's seq and the bytes before it, a hint for trimming), expires_at.
- ``R#<id> / m#<seq, 10 digits>``: one message: user, role, content, size, cum (bytes
  appended up to and including it), expires_at; an assistant reply's also stream_id, part,
  parts (a long reply is several messages of consecutive seqs).
- ``R#<id> / r#<stream id>``: a running assistant reply: user, started_ms, expires_at.
- ``RU#<user> / rooms``: the ids of the rooms the user created (string set), for
  ``max_rooms_per_user``; it lapses ``ttl_s`` after their last create.

Bounds: an append allocates its seq and byte offset atomically on ``meta``; when the
offsets say the conversation is over a bound, the oldest message items are deleted
(conditionally, so two nodes trimming at once never over-count) and the floor hint moves
up. Retained size is computed from the oldest item actually present, so messages that
TTL already removed never skew it. Reads clamp to the bounds too.

boto3 is synchronous; calls run on a thread pool so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from core.aws.errors import conditional_failed
from stream_service.store.rooms_base import (
    Role,
    Room,
    RoomFull,
    RoomLimits,
    RoomMessage,
    RoomNotFound,
    RoomStore,
    RunningReply,
    TooManyRooms,
    clamp,
    message_id,
    now_ms,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_TRIM_PAGE = 25


def _pk(room_id: str) -> dict[str, str]:
    return {"S": f"R#{room_id}"}


def _meta_key(room_id: str) -> dict[str, Any]:
    return {"pk": _pk(room_id), "sk": {"S": "meta"}}


def _creator_key(user: str) -> dict[str, Any]:
    return {"pk": {"S": f"RU#{user}"}, "sk": {"S": "rooms"}}


def _msg_sk(seq: int) -> str:
    return f"m#{seq:010d}"


def _room(room_id: str, item: dict[str, Any]) -> Room:
    return Room(
        id=room_id,
        created_by=item["created_by"]["S"],
        members=frozenset(item["members"]["SS"]),
        created_ms=int(item["created_ms"]["N"]),
    )


def _message(item: dict[str, Any]) -> RoomMessage:
    seq = int(item["sk"]["S"][2:])
    return RoomMessage(
        id=message_id(seq),
        seq=seq,
        user=item["user"]["S"],
        role=cast(Role, item["role"]["S"]),
        content=item["content"]["S"],
        at_ms=int(item["at"]["N"]),
        stream_id=item["stream_id"]["S"] if "stream_id" in item else None,
        part=int(item["part"]["N"]) if "part" in item else 1,
        parts=int(item["parts"]["N"]) if "parts" in item else 1,
    )


class DynamoRoomStore(RoomStore):
    def __init__(
        self, client: DynamoDBClient, table: str, limits: RoomLimits, *, threads: int = 8
    ) -> None:
        super().__init__(limits)
        self._client = client
        self._table = table
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ddb-rooms")

    async def _run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(TableName=self._table, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- rooms -------------------------------------------------------------------------
    async def create(self, room_id: str, creator: str) -> Room:
        await self._claim(creator, room_id)
        created = now_ms()
        item = {
            **_meta_key(room_id),
            "created_by": {"S": creator},
            "created_ms": {"N": str(created)},
            "members": {"SS": [creator]},
            "next_seq": {"N": "0"},
            "total": {"N": "0"},
            "floor_seq": {"N": "1"},
            "floor_cum": {"N": "0"},
            "expires_at": {"N": str(self.expires_at())},
        }
        try:
            await self._run(
                self._client.put_item, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
        except BaseException:
            # given back; if even that fails, the next prune finds no such room
            await asyncio.shield(self._unclaim(creator, [room_id]))
            raise
        return Room(room_id, creator, frozenset({creator}), created)

    # --- rooms per creator (``RU#<user> / rooms``: the ids of the rooms they created) ------
    async def _claim(self, creator: str, room_id: str) -> None:
        """Count the new room against its creator's limit; TooManyRooms at it (rooms that
        are gone stop counting: they are pruned when the limit is reached)."""
        for attempt in range(2):
            try:
                await self._run(
                    self._client.update_item,
                    Key=_creator_key(creator),
                    UpdateExpression="ADD rooms :r SET expires_at = :exp",
                    ConditionExpression="attribute_not_exists(rooms) OR size(rooms) < :max",
                    ExpressionAttributeValues={
                        ":r": {"SS": [room_id]},
                        ":exp": {"N": str(self.expires_at())},
                        ":max": {"N": str(self.limits.max_rooms_per_user)},
                    },
                )
                return
            except ClientError as exc:
                if not conditional_failed(exc):
                    raise
            if attempt or not await self._prune(creator):
                break
        raise TooManyRooms(self.limits.max_rooms_per_user)

    async def _prune(self, creator: str) -> bool:
        """Forget the creator's rooms that are gone (expired, or never written); True if
        any was."""
        out = await self._run(self._client.get_item, Key=_creator_key(creator), ConsistentRead=True)
        ids = sorted(out.get("Item", {}).get("rooms", {}).get("SS", []))
        alive: set[str] = set()
        now = time.time()
        for start in range(0, len(ids), 100):  # BatchGetItem's most keys per call
            keys = [_meta_key(rid) for rid in ids[start : start + 100]]
            while keys:
                got = await self._batch_get(keys)
                for item in got.get("Responses", {}).get(self._table, []):
                    if int(item["expires_at"]["N"]) > now:
                        alive.add(item["pk"]["S"][2:])
                keys = got.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
        gone = [rid for rid in ids if rid not in alive]
        if gone:
            await self._unclaim(creator, gone)
        return bool(gone)

    async def _batch_get(self, keys: list[dict[str, Any]]) -> Any:
        loop = asyncio.get_running_loop()
        request: dict[str, Any] = {
            self._table: {"Keys": keys, "ProjectionExpression": "pk, expires_at",
                          "ConsistentRead": True}
        }  # fmt: skip
        return await loop.run_in_executor(
            self._pool, lambda: self._client.batch_get_item(RequestItems=request)
        )

    async def _unclaim(self, creator: str, room_ids: list[str]) -> None:
        await self._run(
            self._client.update_item,
            Key=_creator_key(creator),
            UpdateExpression="DELETE rooms :r",
            ExpressionAttributeValues={":r": {"SS": room_ids}},
        )

    async def get(self, room_id: str) -> Room | None:
        out = await self._run(self._client.get_item, Key=_meta_key(room_id), ConsistentRead=True)
        item = out.get("Item")
        if not item or int(item["expires_at"]["N"]) <= time.time():
            return None
        return _room(room_id, item)

    async def add_member(self, room_id: str, actor: str, user: str) -> Room:
        try:
            out = await self._run(
                self._client.update_item,
                Key=_meta_key(room_id),
                UpdateExpression="ADD members :u",
                ConditionExpression=(
                    "attribute_exists(pk) AND expires_at > :now AND contains(members, :actor) "
                    "AND (size(members) < :max OR contains(members, :user))"
                ),
                ExpressionAttributeValues={
                    ":u": {"SS": [user]},
                    ":user": {"S": user},
                    ":actor": {"S": actor},
                    ":now": {"N": str(int(time.time()))},
                    ":max": {"N": str(self.limits.max_members)},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise
            room = await self.get(room_id)
            if room is None or not room.has_member(actor):
                raise RoomNotFound(room_id) from None
            raise RoomFull(room_id) from None
        return _room(room_id, out["Attributes"])

    # --- conversation ------------------------------------------------------------------
    async def append_all(
        self,
        room_id: str,
        user: str,
        role: Role,
        contents: list[str],
        stream_id: str | None = None,
    ) -> list[RoomMessage]:
        sizes = [self.check_size(content) for content in contents]
        expires = self.expires_at()
        try:
            out = await self._run(
                self._client.update_item,
                Key=_meta_key(room_id),
                UpdateExpression="SET next_seq = next_seq + :k, #t = #t + :n, expires_at = :exp",
                ConditionExpression="attribute_exists(pk) AND expires_at > :now",
                ExpressionAttributeNames={"#t": "total"},
                ExpressionAttributeValues={
                    ":k": {"N": str(len(contents))},
                    ":n": {"N": str(sum(sizes))},
                    ":exp": {"N": str(expires)},
                    ":now": {"N": str(int(time.time()))},
                },
                ReturnValues="ALL_NEW",
            )
        except ClientError as exc:
            if conditional_failed(exc):
                raise RoomNotFound(room_id) from None
            raise
        attrs = out["Attributes"]
        last_seq, total = int(attrs["next_seq"]["N"]), int(attrs["total"]["N"])
        seq, cum = last_seq - len(contents), total - sum(sizes)
        at = now_ms()
        messages = []
        for part, (content, size) in enumerate(zip(contents, sizes, strict=True), 1):
            seq, cum = seq + 1, cum + size
            item = {
                "pk": _pk(room_id),
                "sk": {"S": _msg_sk(seq)},
                "user": {"S": user},
                "role": {"S": role},
                "content": {"S": content},
                "size": {"N": str(size)},
                "cum": {"N": str(cum)},
                "at": {"N": str(at)},
                "expires_at": {"N": str(expires)},
            }
            if stream_id is not None:
                item["stream_id"] = {"S": stream_id}
                item["part"] = {"N": str(part)}
                item["parts"] = {"N": str(len(contents))}
            await self._run(self._client.put_item, Item=item)
            messages.append(RoomMessage(message_id(seq), seq, user, role, content, at,
                                        stream_id, part, len(contents)))  # fmt: skip
        floor_seq, floor_cum = int(attrs["floor_seq"]["N"]), int(attrs["floor_cum"]["N"])
        if (
            last_seq - floor_seq + 1 > self.limits.max_messages
            or total - floor_cum > self.limits.max_bytes
        ):
            await self._trim(room_id, last_seq, total)
        return messages

    async def _trim(self, room_id: str, last_seq: int, total: int) -> None:
        """Delete the oldest messages until the newest ones (through ``last_seq``) fit."""
        start: dict[str, Any] | None = None
        while True:
            kwargs: dict[str, Any] = {
                "KeyConditionExpression": "pk = :pk AND begins_with(sk, :m)",
                "ExpressionAttributeValues": {":pk": _pk(room_id), ":m": {"S": "m#"}},
                "ProjectionExpression": "sk, #s, cum",
                "ExpressionAttributeNames": {"#s": "size"},
                "ConsistentRead": True,
                "Limit": _TRIM_PAGE,
            }
            if start is not None:
                kwargs["ExclusiveStartKey"] = start
            out = await self._run(self._client.query, **kwargs)
            for item in out.get("Items", []):
                seq = int(item["sk"]["S"][2:])
                before = int(item["cum"]["N"]) - int(item["size"]["N"])
                count, size = last_seq - seq + 1, total - before
                if count <= self.limits.max_messages and size <= self.limits.max_bytes:
                    await self._move_floor(room_id, seq, before)
                    return
                await self._run(
                    self._client.delete_item, Key={"pk": _pk(room_id), "sk": item["sk"]}
                )
            start = out.get("LastEvaluatedKey")
            if start is None:
                return

    async def _move_floor(self, room_id: str, seq: int, cum_before: int) -> None:
        try:
            await self._run(
                self._client.update_item,
                Key=_meta_key(room_id),
                UpdateExpression="SET floor_seq = :s, floor_cum = :c",
                ConditionExpression="attribute_exists(pk) AND floor_seq < :s",
                ExpressionAttributeValues={":s": {"N": str(seq)}, ":c": {"N": str(cum_before)}},
            )
        except ClientError as exc:
            if not conditional_failed(exc):
                raise

    async def messages(self, room_id: str) -> list[RoomMessage]:
        now = int(time.time())
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :m)",
            "ExpressionAttributeValues": {":pk": _pk(room_id), ":m": {"S": "m#"}},
            "ConsistentRead": True,
        }
        found: list[RoomMessage] = []
        while True:
            out = await self._run(self._client.query, **kwargs)
            found.extend(
                _message(item)
                for item in out.get("Items", [])
                if int(item["expires_at"]["N"]) > now
            )
            if "LastEvaluatedKey" not in out:
                return clamp(found, self.limits)
            kwargs["ExclusiveStartKey"] = out["LastEvaluatedKey"]

    # --- running replies ---------------------------------------------------------------
    async def add_reply(self, room_id: str, stream_id: str, user: str) -> None:
        await self._run(
            self._client.put_item,
            Item={
                "pk": _pk(room_id),
                "sk": {"S": f"r#{stream_id}"},
                "user": {"S": user},
                "started_ms": {"N": str(now_ms())},
                "expires_at": {"N": str(self.expires_at(self.limits.reply_ttl_s))},
            },
        )

    async def remove_reply(self, room_id: str, stream_id: str) -> None:
        await self._run(
            self._client.delete_item, Key={"pk": _pk(room_id), "sk": {"S": f"r#{stream_id}"}}
        )

    async def replies(self, room_id: str) -> list[RunningReply]:
        now = int(time.time())
        out = await self._run(
            self._client.query,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": _pk(room_id), ":r": {"S": "r#"}},
            ConsistentRead=True,
        )
        found = [
            RunningReply(item["sk"]["S"][2:], item["user"]["S"], int(item["started_ms"]["N"]))
            for item in out.get("Items", [])
            if int(item["expires_at"]["N"]) > now
        ]
        return sorted(found, key=lambda r: r.started_ms)
