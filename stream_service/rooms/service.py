"""The room service: rooms, membership, the stored conversation, presence, typing and the
live fan-out of a room's replies, for the connections on this node.

Transport-neutral: a connection is a :class:`~stream_service.rooms.members.Member`; frames
are SPEC section 6 JSON bytes (see :mod:`stream_service.rooms.frames`). Every node that
has a member of a room connected subscribes to the room's bus channel; everything a member
must see goes through it.

Join order (no gap, no duplicate): subscribe to the room's channel first, buffer what
arrives for the joining connection, read the conversation and running replies from the
store, send ``joined``, then the buffered frames minus those already in ``joined``
(messages by id, reply events by ``seq``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream_service.rooms import frames
from stream_service.rooms.bus.base import Bus, Subscription
from stream_service.rooms.config import RoomSettings
from stream_service.rooms.ledger import MessageLedger
from stream_service.rooms.members import Member
from stream_service.rooms.presence import RoomPresence
from stream_service.rooms.reply_parts import reply_parts
from stream_service.rooms.typing import RoomTyping
from stream_service.store.rooms_base import (
    Role,
    Room,
    RoomMessage,
    RoomNotFound,
    RoomStore,
    TooManyJoined,
    clamp,
    message_seq,
    now_ms,
)

log = logging.getLogger("rtai.rooms")

ASSISTANT = "assistant"

# stream id -> the last seq of a reply still running, None when it is not running.
ReplyStatus = Callable[[str], Awaitable[int | None]]
OverflowHook = Callable[[Member], None]


def new_room_id() -> str:
    """An unguessable room id (128 random bits, URL-safe: fits ``#room=<id>``)."""
    return "rm_" + secrets.token_urlsafe(16)


@dataclass(frozen=True, slots=True)
class JoinSnapshot:
    """What a joining connection was sent as ``joined``."""

    room: str
    members: list[str]
    messages: list[RoomMessage]  # the newest of the conversation that fit the frame
    streams: list[tuple[str, int]]  # (stream_id, last_seq) of replies still running
    frame: bytes
    omitted: int = 0  # older stored messages left out of the frame (ROOM_JOINED_MAX_BYTES)

    @classmethod
    def build(
        cls,
        room: str,
        members: list[str],
        messages: list[RoomMessage],
        streams: list[tuple[str, int]],
        max_bytes: int,
    ) -> JoinSnapshot:
        frame, kept = frames.joined_frame(room, members, messages, streams, max_bytes)
        held = messages[len(messages) - kept :]
        return cls(room, members, held, streams, frame, len(messages) - kept)


@dataclass(slots=True)
class _Pending:
    """Frames that arrived for a connection while its `joined` was being prepared."""

    frames: list[tuple[str, str, int, bytes]] = field(default_factory=list)  # kind, key, seq


@dataclass(slots=True)
class _LocalRoom:
    id: str
    presence: RoomPresence[Member]
    typing: RoomTyping
    sub: Subscription | None = None
    members: set[str] = field(default_factory=set)  # known members (membership only grows)
    joining: dict[Member, _Pending] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    ledger: MessageLedger = field(default_factory=lambda: MessageLedger(1024))
    repairing: bool = False


class RoomMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rooms = Gauge(
            "rtai_rooms_local", "Rooms with a member connected to this node.", registry=registry
        )
        self.connections = Gauge(
            "rtai_room_connections", "Room memberships of connections on this node.",
            registry=registry,
        )  # fmt: skip
        self.messages = Counter(
            "rtai_room_messages", "Messages added to room conversations here.", registry=registry
        )
        self.repaired = Counter(
            "rtai_room_messages_repaired",
            "Room messages the bus lost, delivered from the store instead.",
            registry=registry,
        )
        self.overflows = Counter(
            "rtai_room_send_overflows",
            "Frames for a room member whose send buffer was full (the member is closed).",
            registry=registry,
        )


class RoomService:
    def __init__(
        self,
        store: RoomStore,
        bus: Bus,
        config: RoomSettings,
        *,
        registry: CollectorRegistry | None = None,
        reply_status: ReplyStatus | None = None,
        on_overflow: OverflowHook | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.config = config
        self.node_id = bus.node_id
        self.metrics = RoomMetrics(registry or bus.metrics.registry)
        self._reply_status = reply_status
        self._on_overflow = on_overflow
        self.joined_max_bytes = config.room_joined_max_bytes
        self._rooms: dict[str, _LocalRoom] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._running = False
        self._draining = False
        self._stopped = False
        bus.on_reconnect(self._resync_all)

    # --- wiring --------------------------------------------------------------------------
    def set_reply_status(self, fn: ReplyStatus) -> None:
        """How ``joined`` learns which replies still run and their last seq (the engine)."""
        self._reply_status = fn

    def set_overflow_hook(self, fn: OverflowHook) -> None:
        self._on_overflow = fn

    def fit_frames(self, send_buffer_bytes: int) -> None:
        """A member's send buffer holds this much: ``joined`` stays within half of it (the
        rest for what is already queued), so joining never overflows it."""
        self.joined_max_bytes = min(self.config.room_joined_max_bytes, send_buffer_bytes // 2)

    async def start(self) -> None:
        """Start the bus and this node's presence heartbeat and expiry timers."""
        await self.bus.start()
        self._running = True
        loop = asyncio.get_running_loop()
        self._loops = [
            loop.create_task(self._heartbeat_loop(), name="rooms-heartbeat"),
            loop.create_task(self._sweep_loop(), name="rooms-sweep"),
        ]

    async def drain(self) -> None:
        """This node is going away (SIGTERM) and its clients will reconnect elsewhere:
        stop renewing presence and leave rooms quietly from now on, so the other nodes
        keep this node's members until their entries lapse (``PRESENCE_TTL_S``). A member
        who is back on another node by then never shows as `left`."""
        self._draining = True
        if self._loops:
            self._loops[0].cancel()  # the heartbeat; the sweep keeps expiring typing

    async def stop(self, *, graceful: bool = True) -> None:
        """Stop; ``graceful`` (and not draining) tells the other nodes at once that this
        node's members left; without it they find out when the presence entries lapse, as
        after a crash. A second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._running = False
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops = []
        if graceful and not self._draining:
            for room in list(self._rooms.values()):
                with contextlib.suppress(Exception):
                    await self.bus.publish(
                        frames.channel(room.id), frames.bus_heartbeat(self.node_id, [])
                    )
        for task in list(self._tasks):
            task.cancel()
        self._rooms.clear()
        self.metrics.rooms.set(0)
        self.metrics.connections.set(0)
        await self.bus.close()
        self.store.close()

    # --- rooms and members (REST) ----------------------------------------------------------
    async def create_room(self, creator: str) -> Room:
        return await self.store.create(new_room_id(), creator)

    async def add_member(self, actor: str, room_id: str, user: str) -> Room:
        """``actor`` adds ``user``; RoomNotFound unless ``actor`` is a member."""
        room = await self.store.add_member(room_id, actor, user)
        local = self._rooms.get(room_id)
        if local is not None:
            local.members.update(room.members)
        return room

    async def require_member(self, room_id: str, user: str) -> None:
        """RoomNotFound unless ``user`` is a member (cached for rooms held here)."""
        local = self._rooms.get(room_id)
        if local is not None and user in local.members:
            return
        room = await self.store.get(room_id)
        if room is None or not room.has_member(user):
            raise RoomNotFound(room_id)
        if local is not None:
            local.members.update(room.members)

    # --- join / leave --------------------------------------------------------------------
    async def join(self, member: Member, room_id: str) -> JoinSnapshot:
        """Join ``member`` to the room: sends it ``joined`` then live frames. RoomNotFound
        (nothing sent) unless its user is a member. Joining again re-sends ``joined``."""
        room = await self.store.get(room_id)
        if room is None or not room.has_member(member.user):
            raise RoomNotFound(room_id)
        self._check_joined(member, room_id)
        local = await self._hold(room_id)
        while self._rooms.get(room_id) is not local:  # released while we waited for it
            local = await self._hold(room_id)
        local.members.update(room.members)
        pending = _Pending()
        local.joining[member] = pending
        try:
            if local.presence.add(member):
                self._changed(local)
                self._spawn(self._announce(local))
            messages, replies = await asyncio.gather(
                self.store.messages(room_id), self.store.replies(room_id)
            )
            streams = await self._running_streams(room_id, [r.stream_id for r in replies])
        except BaseException:
            local.joining.pop(member, None)
            await self._drop_member(local, member)
            raise
        self._ledger_join(local, member, messages)
        snapshot = JoinSnapshot.build(room_id, local.presence.snapshot(), messages, streams,
                                      self.joined_max_bytes)  # fmt: skip
        self._flush_join(local, member, snapshot)
        self.metrics.connections.set(self._connection_count())
        return snapshot

    def _check_joined(self, member: Member, room_id: str) -> None:
        """TooManyJoined if ``member`` is in ROOM_MAX_JOINED_PER_SOCKET other rooms."""
        limit = self.config.room_max_joined_per_socket
        local = self._rooms.get(room_id)
        if local is not None and local.presence.has(member):
            return  # joining again: re-sends `joined`
        if sum(1 for r in self._rooms.values() if r.presence.has(member)) >= limit:
            raise TooManyJoined(limit)

    async def leave(self, member: Member, room_id: str) -> bool:
        """Take ``member`` out of the room; False if it was not in it."""
        local = self._rooms.get(room_id)
        if local is None or not local.presence.has(member):
            return False
        local.joining.pop(member, None)
        await self._drop_member(local, member)
        self.metrics.connections.set(self._connection_count())
        return True

    async def leave_all(self, member: Member) -> list[str]:
        """The connection is gone (closed, dropped): leave every room it was in."""
        left = [rid for rid, local in list(self._rooms.items()) if local.presence.has(member)]
        for room_id in left:
            await self.leave(member, room_id)
        return left

    def health(self) -> dict[str, object]:
        """For ``/stream/healthz``: the bus's state (a Redis outage degrades rooms across
        nodes but this node keeps serving, so it should not fail the health check)."""
        return {
            "bus": self.bus.health().as_dict(),
            "rooms": len(self._rooms),
            "connections": self._connection_count(),
        }

    def rooms_of(self, member: Member) -> list[str]:
        return [rid for rid, local in self._rooms.items() if local.presence.has(member)]

    def members_present(self, room_id: str) -> list[str]:
        local = self._rooms.get(room_id)
        return [] if local is None else sorted(local.presence.present())

    # --- messages, typing, replies ---------------------------------------------------------
    async def post_message(self, user: str, room_id: str, content: str) -> RoomMessage:
        """Add a member's message to the stored conversation and send it to every member.
        RoomNotFound / MessageTooLarge; the conversation then feeds the assistant's reply
        (:meth:`conversation`)."""
        await self.require_member(room_id, user)
        return await self._add_message(room_id, user, "user", content)

    async def conversation(self, room_id: str) -> list[RoomMessage]:
        return await self.store.messages(room_id)

    async def conversation_with(self, user: str, room_id: str, content: str) -> list[RoomMessage]:
        """The conversation as it will be once ``user``'s message is added (within the
        bounds), without adding it: what a reply to that message reads. RoomNotFound /
        MessageTooLarge as :meth:`post_message` would raise them."""
        await self.require_member(room_id, user)
        self.store.check_size(content)
        stored = await self.store.messages(room_id)
        return clamp([*stored, RoomMessage("", 0, user, "user", content, now_ms())],
                     self.store.limits)  # fmt: skip

    async def set_typing(self, user: str, room_id: str, active: bool) -> None:
        """A member's typing state; ``active: true`` lapses after TYPING_TTL_S by itself."""
        await self.require_member(room_id, user)
        await self.bus.publish(frames.channel(room_id), frames.bus_typing(user, active))

    async def reply_started(self, room_id: str, stream_id: str, user: str) -> None:
        """A reply of the room started (listed in `joined` while it runs)."""
        await self.store.add_reply(room_id, stream_id, user)

    async def publish_reply_event(
        self, room_id: str, stream_id: str, seq: int, frame: bytes
    ) -> bool:
        """One live event of a room reply (``frame``: the WebSocket frame with
        ``stream_id`` and ``seq``) to every member on every node. At-most-once: a member
        who misses one resumes from the store by ``seq``. False if other nodes were not
        reached (bus down)."""
        return await self.bus.publish(
            frames.channel(room_id), frames.bus_event(stream_id, seq, frame)
        )

    async def reply_finished(
        self, room_id: str, stream_id: str, content: str | None
    ) -> list[RoomMessage]:
        """The reply ended: its text becomes the assistant's message of the room (sent to
        every member as ``message``; a long one as several, see :mod:`.reply_parts`) and
        it leaves the running list."""
        messages: list[RoomMessage] = []
        if content:
            limits = self.store.limits
            longest = min(self.config.room_max_reply_bytes, limits.max_bytes)
            parts = reply_parts(content, limits.max_message_bytes, longest)
            messages = await self._add_messages(
                room_id, ASSISTANT, "assistant", parts, stream_id=stream_id
            )
        await self.store.remove_reply(room_id, stream_id)
        return messages

    # --- bus handling ----------------------------------------------------------------------
    async def _on_bus(self, channel: str, data: bytes) -> None:
        room_id = channel[5:]
        local = self._rooms.get(room_id)
        if local is None or not data:
            return
        kind, body = data[:1], data[1:]
        if kind == b"E":
            stream_id, seq, frame = frames.split_event(body)
            self._deliver(local, frame, "E", stream_id, seq)
        elif kind == b"M":
            message_id, frame = frames.split2(body)
            author = frames.message_author(frame)
            if author is not None:  # a message ends its author's typing, on every node
                self._typing_done(local, author)
            self._deliver_message(local, message_id, frame)
        elif kind == b"T":
            state = frames.typing_decoder.decode(body)
            self._apply_typing(local, state.user, state.active)
        elif kind == b"P":
            beat = frames.heartbeat_decoder.decode(body)
            if beat.node != self.node_id:
                local.presence.heartbeat(beat.node, beat.users, self._now())
                self._changed(local)
        elif kind == b"S" and body.decode() != self.node_id and not local.presence.empty:
            self._spawn(self._announce(local))

    def _deliver_message(
        self, local: _LocalRoom, message_id: str, frame: bytes, skip: Member | None = None
    ) -> None:
        new, gap = local.ledger.record(message_seq(message_id))
        # Joining connections always get it (buffered; their `joined` decides); joined
        # ones only if it is new to this node.
        self._deliver(local, frame, "M", message_id, joining_only=not new, skip_member=skip)
        if gap:
            self._schedule_repair(local)

    def _ledger_join(self, local: _LocalRoom, member: Member, messages: list[RoomMessage]) -> None:
        """A `joined` snapshot: the first one starts the ledger; a later one may hold
        messages the bus lost: the others here get them now (the joiner has them)."""
        if not local.ledger.started:
            local.ledger.start(m.seq for m in messages)
            return
        for seq in local.ledger.unseen(m.seq for m in messages):
            message = next(m for m in messages if m.seq == seq)
            self.metrics.repaired.inc()
            frame = frames.message_frame(local.id, message)
            self._deliver_message(local, message.id, frame, skip=member)

    def _schedule_repair(self, local: _LocalRoom) -> None:
        if not local.repairing and local.ledger.started:
            local.repairing = True
            self._spawn(self._repair(local))

    async def _repair(self, local: _LocalRoom) -> None:
        """Deliver the stored messages this node's members were never sent (lost by the
        bus), after a short delay."""
        try:
            await asyncio.sleep(self.config.room_repair_delay_s)
            stored = await self.store.messages(local.id)
        finally:
            local.repairing = False
        if self._rooms.get(local.id) is not local:
            return
        by_seq = {m.seq: m for m in stored}
        for seq in local.ledger.unseen(list(by_seq)):
            message = by_seq[seq]
            self.metrics.repaired.inc()
            self._deliver_message(local, message.id, frames.message_frame(local.id, message))

    def _apply_typing(self, local: _LocalRoom, user: str, active: bool) -> None:
        if local.typing.set(user, active, self._now()):
            self._deliver(local, frames.typing_frame(local.id, user, active), "T", user,
                          skip_user=user)  # fmt: skip

    def _typing_done(self, local: _LocalRoom, user: str) -> None:
        if local.typing.clear(user):
            self._deliver(local, frames.typing_frame(local.id, user, False), "T", user,
                          skip_user=user)  # fmt: skip

    def _changed(self, local: _LocalRoom) -> None:
        """Presence may have changed: tell local members the difference."""
        diff = local.presence.diff()
        for user in diff.joined:
            self._deliver(local, frames.presence_frame(local.id, user, "joined"), "P", user)
        for user in diff.left:
            if local.typing.clear(user):
                self._deliver(local, frames.typing_frame(local.id, user, False), "T", user)
            self._deliver(local, frames.presence_frame(local.id, user, "left"), "P", user)

    def _deliver(
        self,
        local: _LocalRoom,
        frame: bytes,
        kind: str,
        key: str,
        seq: int = 0,
        *,
        skip_user: str | None = None,
        skip_member: Member | None = None,
        joining_only: bool = False,
    ) -> None:
        for member in local.presence.connections():
            if member.user == skip_user or member is skip_member:
                continue
            pending = local.joining.get(member)
            if pending is not None:
                pending.frames.append((kind, key, seq, frame))
            elif not joining_only:
                self._send(member, frame)

    def _send(self, member: Member, frame: bytes) -> None:
        if member.send(frame):
            return
        self.metrics.overflows.inc()
        if self._on_overflow is not None:
            self._on_overflow(member)

    def _flush_join(self, local: _LocalRoom, member: Member, snapshot: JoinSnapshot) -> None:
        pending = local.joining.pop(member, None)
        self._send(member, snapshot.frame)
        have_ids = {m.id for m in snapshot.messages}
        have_seq = dict(snapshot.streams)
        for kind, key, seq, frame in pending.frames if pending else ():
            if kind == "P" or kind == "T":
                continue  # presence: the snapshot is current; typing: sent below
            if kind == "M" and key in have_ids:
                continue
            if kind == "E" and seq <= have_seq.get(key, 0):
                continue
            self._send(member, frame)
        for user in local.typing.active():
            if user != member.user:
                self._send(member, frames.typing_frame(local.id, user, True))

    # --- presence across nodes ---------------------------------------------------------------
    async def _hold(self, room_id: str) -> _LocalRoom:
        """This node's state of the room, subscribed (first join: sync presence first)."""
        local = self._rooms.get(room_id)
        if local is not None:
            await local.ready.wait()
            return local
        local = _LocalRoom(
            room_id,
            RoomPresence(self.config.presence_ttl_s),
            RoomTyping(self.config.typing_ttl_s),
        )
        self._rooms[room_id] = local
        self.metrics.rooms.set(len(self._rooms))
        try:
            local.sub = await self.bus.subscribe(frames.channel(room_id), self._on_bus)
            if self.bus.shared:
                await self.bus.publish(frames.channel(room_id), frames.bus_sync(self.node_id))
                await asyncio.sleep(self.config.presence_sync_ms / 1000)
        except BaseException:
            await self._release(local)
            raise
        finally:
            local.ready.set()
        return local

    async def _drop_member(self, local: _LocalRoom, member: Member) -> None:
        if local.presence.discard(member):
            self._changed(local)
            if not self._draining:
                await self._announce(local)
        if local.presence.empty and not local.joining:
            await self._release(local)

    async def _release(self, local: _LocalRoom) -> None:
        if self._rooms.get(local.id) is local:
            del self._rooms[local.id]
            self.metrics.rooms.set(len(self._rooms))
        if local.sub is not None:
            sub, local.sub = local.sub, None
            await self.bus.unsubscribe(sub)

    async def _announce(self, local: _LocalRoom) -> None:
        """Publish this node's users of the room (a heartbeat, now)."""
        if self.bus.shared:
            await self.bus.publish(
                frames.channel(local.id),
                frames.bus_heartbeat(self.node_id, local.presence.local_users()),
            )

    async def _resync_all(self) -> None:
        """The bus came back: re-announce our members and ask the others for theirs."""
        for local in list(self._rooms.values()):
            await self._announce(local)
            await self.bus.publish(frames.channel(local.id), frames.bus_sync(self.node_id))
            self._schedule_repair(local)  # messages published while the bus was down

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.presence_heartbeat_s)
            for local in list(self._rooms.values()):
                if not local.presence.empty:
                    try:
                        await self._announce(local)
                    except Exception:
                        log.exception("presence heartbeat for %s failed", local.id)

    async def _sweep_loop(self) -> None:
        interval = min(0.25, self.config.typing_ttl_s / 4, self.config.presence_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = self._now()
            for local in list(self._rooms.values()):
                try:
                    local.presence.expire(now)
                    self._changed(local)
                    for user in local.typing.expire(now):
                        self._deliver(local, frames.typing_frame(local.id, user, False), "T",
                                      user, skip_user=user)  # fmt: skip
                except Exception:
                    log.exception("room sweep for %s failed", local.id)

    # --- helpers ---------------------------------------------------------------------------
    async def _add_message(self, room_id: str, user: str, role: Role, content: str) -> RoomMessage:
        return (await self._add_messages(room_id, user, role, [content]))[0]

    async def _add_messages(
        self,
        room_id: str,
        user: str,
        role: Role,
        contents: list[str],
        stream_id: str | None = None,
    ) -> list[RoomMessage]:
        messages = await self.store.append_all(room_id, user, role, contents, stream_id)
        self.metrics.messages.inc(len(messages))
        local = self._rooms.get(room_id)
        if local is not None and role == "user":
            self._typing_done(local, user)  # here at once (the bus may be down)
        for message in messages:
            await self.bus.publish(
                frames.channel(room_id),
                frames.bus_message(message.id, frames.message_frame(room_id, message)),
            )
        return messages

    async def _running_streams(self, room_id: str, stream_ids: list[str]) -> list[tuple[str, int]]:
        if self._reply_status is None:
            return [(sid, 0) for sid in stream_ids]
        out: list[tuple[str, int]] = []
        for sid in stream_ids:
            last = await self._reply_status(sid)
            if last is None:
                self._spawn(self.store.remove_reply(room_id, sid))
            else:
                out.append((sid, last))
        return out

    def _connection_count(self) -> int:
        return sum(len(local.presence.connections()) for local in self._rooms.values())

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("room background task failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()
