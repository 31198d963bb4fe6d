"""A room's assistant replies: started by a member's ``chat.send``, streamed live to every
member on every node through the room's bus channel, stored like any stream.

The reply is an engine stream owned by ``room:<id>`` (every member may read, resume and
cancel it, over WebSocket or SSE), counted against the per-user limit of the member who
asked. On the producer's node an observer sees each event as it is appended and a
publisher task sends it, rendered once as a WebSocket frame, to the room's channel: one
publication per event whatever the number of members. When the reply ends its text
becomes the assistant's message of the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from core.schemas.chat import ChatCompletionRequest
from stream_service.engine.engine import StreamEngine
from stream_service.engine.events import DELTA_TEXT, Event
from stream_service.rooms.conversation import as_chat_messages
from stream_service.rooms.service import RoomService
from stream_service.transports.ws.format import WsEvents
from stream_service.transports.ws.room_fill import ReplyFills

log = logging.getLogger("rtai.ws.rooms")

ROOM_OWNER_PREFIX = "room:"


def room_owner(room_id: str) -> str:
    return ROOM_OWNER_PREFIX + room_id


class RoomReplies:
    def __init__(self, engine: StreamEngine, rooms: RoomService, default_model: str) -> None:
        self.engine = engine
        self.rooms = rooms
        self.default_model = default_model
        # events of a reply the bus lost: one reader per stream on this node, shared
        self.fills = ReplyFills(engine, record_wait_s=engine.config.record_wait_s)
        self._tasks: set[asyncio.Task[None]] = set()

    async def may_read(self, user: str, owner: str) -> bool:
        """The engine's shared access: members read their rooms' replies."""
        if not owner.startswith(ROOM_OWNER_PREFIX):
            return False
        try:
            await self.rooms.require_member(owner[len(ROOM_OWNER_PREFIX) :], user)
        except Exception:
            return False
        return True

    async def start(self, user: str, room_id: str, content: str, model: str | None) -> str:
        """Start the assistant's reply to the whole conversation with the member's message,
        then add that message; the reply's stream id.

        Whatever can refuse the request (membership, the message's size, an unknown model,
        a draining node, the member's per-user limit) refuses it before the message is
        stored: a refused ``chat.send`` adds nothing and sends nothing to the room, so the
        client's retry is its only copy. Room errors and 429s raise."""
        conversation = await self.rooms.conversation_with(user, room_id, content)
        request = ChatCompletionRequest(
            model=model or self.default_model, messages=as_chat_messages(conversation)
        )
        queue: asyncio.Queue[Event] = asyncio.Queue()
        stream = await self.engine.create(
            room_owner(room_id),
            request,
            time.perf_counter(),
            slot_user=user,
            observer=queue.put_nowait,
        )
        try:
            # stored and published before any event of the reply: members see the message
            # first (the publisher starts below)
            await self.rooms.post_message(user, room_id, content)
            await self.rooms.reply_started(room_id, stream.id, user)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.engine.cancel(room_owner(room_id), stream.id)
            raise
        task = asyncio.create_task(self._publish(room_id, stream.id, queue))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream.id

    async def _publish(self, room_id: str, stream_id: str, queue: asyncio.Queue[Event]) -> None:
        fmt = WsEvents(stream_id)
        text: list[str] = []
        finished = False
        try:
            while True:
                event = await queue.get()
                if event.kind == "delta":
                    text.append(DELTA_TEXT.decode(event.data).text)
                await self.rooms.publish_reply_event(
                    room_id, stream_id, event.seq, fmt.frame(event)
                )
                if event.terminal:
                    finished = True
                    break
        except Exception:
            log.warning("publishing reply %s of room %s failed", stream_id, room_id, exc_info=True)
        finally:
            if finished or text:
                try:
                    await self.rooms.reply_finished(room_id, stream_id, "".join(text) or None)
                except Exception:
                    log.warning(
                        "reply %s of room %s: not recorded", stream_id, room_id, exc_info=True
                    )

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fills.stop()
