"""Chats in DynamoDB, in the streams table (string ``pk``/``sk``, TTL on ``expires_at``).

Items
- ``C#<chat id> / u#<user>``: that user's newest reply in the chat: stream (the stream
  id), message (its UI message id), created_ms, expires_at. Keyed by user as well as chat,
  so a chat id is bound to its user: another user's record under the same id is another
  item.

``bind`` is one conditional put (absent, or older than the new reply); ``newest`` one
strongly consistent get (a resume right after a send, on any node, sees the new reply).
An item whose TTL passed but that DynamoDB has not removed yet is treated as absent.

boto3 is synchronous; calls run on a thread pool so the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from core.aws.errors import conditional_failed
from stream_service.store.chats_base import ChatReply, ChatStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def _key(user: str, chat_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"C#{chat_id}"}, "sk": {"S": f"u#{user}"}}


class DynamoChatStore(ChatStore):
    def __init__(self, client: DynamoDBClient, table: str, *, ttl_s: int, threads: int = 8) -> None:
        super().__init__(ttl_s)
        self._client = client
        self._table = table
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ddb-chats")

    async def _run(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(TableName=self._table, **kwargs))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def bind(self, user: str, chat_id: str, reply: ChatReply) -> None:
        item = {
            **_key(user, chat_id),
            "stream": {"S": reply.stream_id},
            "message": {"S": reply.message_id},
            "created_ms": {"N": str(reply.created_ms)},
            "expires_at": {"N": str(self.expires_at())},
        }
        try:
            await self._run(
                self._client.put_item,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR created_ms <= :created",
                ExpressionAttributeValues={":created": {"N": str(reply.created_ms)}},
            )
        except ClientError as exc:
            if not conditional_failed(exc):  # refused: a newer reply is bound already
                raise

    async def newest(self, user: str, chat_id: str) -> ChatReply | None:
        found = await self._run(self._client.get_item, Key=_key(user, chat_id), ConsistentRead=True)
        item = found.get("Item")
        if item is None or int(item["expires_at"]["N"]) <= int(time.time()):
            return None
        return ChatReply(
            stream_id=item["stream"]["S"],
            message_id=item["message"]["S"],
            created_ms=int(item["created_ms"]["N"]),
        )
