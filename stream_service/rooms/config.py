"""Room settings: SPEC section 2 (`BUS_URL`, `TYPING_TTL_S`) and the room limits.

Every value is an environment variable of the same name (case-insensitive); the limits are
listed in docs/limits.md.
"""

from __future__ import annotations

import enum
from functools import lru_cache

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream_service.rooms.bus.wire import MAX_CHANNELS_PER_COMMAND


class BusMode(enum.StrEnum):
    """What ``BUS_URL`` points at."""

    STANDALONE = "standalone"  # one Redis/Valkey server (or a primary with replicas)
    CLUSTER = "cluster"  # a Redis Cluster: ElastiCache Serverless, or self-managed


class RoomSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    # --- SPEC section 2 ---------------------------------------------------------------
    # `redis://` or `rediss://` URL of the Redis/Valkey server that carries room traffic
    # between nodes; unset: an in-process bus (one node).
    bus_url: str | None = None
    # A `typing` state that is not refreshed expires after this long.
    typing_ttl_s: float = Field(default=6.0, gt=0, le=300)

    # --- the bus ----------------------------------------------------------------------
    # `cluster` for ElastiCache Serverless (always cluster mode, TLS: `rediss://`) or any
    # Redis Cluster: sharded pub/sub (SPUBLISH / SSUBSCRIBE per slot); `standalone`: one
    # server, PUBLISH / SUBSCRIBE.
    bus_mode: BusMode = BusMode.STANDALONE
    # Channels per (S)SUBSCRIBE when a node (re)subscribes its rooms: ElastiCache caps a
    # request at 3,999 arguments, so a node with thousands of rooms subscribes in chunks.
    bus_subscribe_chunk: int = Field(default=1000, ge=1, le=MAX_CHANNELS_PER_COMMAND)
    # Reconnect backoff after Redis goes away: doubles from MIN to MAX (with jitter).
    bus_reconnect_min_s: float = Field(default=0.1, gt=0)
    bus_reconnect_max_s: float = Field(default=5.0, gt=0)
    # The pub/sub connection is pinged this often when idle; no answer within three
    # intervals counts as an outage (a half-open TCP connection would otherwise go unseen).
    bus_ping_s: float = Field(default=1.0, gt=0)
    # How long subscribe() waits for Redis to confirm a subscription before going on.
    bus_subscribe_timeout_s: float = Field(default=2.0, gt=0)

    # --- presence ---------------------------------------------------------------------
    # Each node re-announces the members it holds every HEARTBEAT; an entry not renewed
    # within PRESENCE_TTL_S is dropped (members of a dead node go `left`).
    presence_heartbeat_s: float = Field(default=1.0, gt=0)
    presence_ttl_s: float = Field(default=3.5, gt=0)
    # On the first join of a room on a node, how long to collect the other nodes'
    # presence before answering `joined` (other members arriving later come as `presence`).
    presence_sync_ms: int = Field(default=100, ge=0, le=5000)
    # A room message the bus lost (a gap in message seqs, or an outage) is fetched from the
    # store and delivered this long after the gap is seen (a late one usually arrives).
    room_repair_delay_s: float = Field(default=0.5, ge=0, le=30)

    # --- room limits (docs/limits.md) -------------------------------------------------
    # Members per room (the creator included).
    room_max_members: int = Field(default=50, ge=1, le=10_000)
    # Stored conversation: beyond either bound the oldest messages are dropped.
    room_max_messages: int = Field(default=200, ge=1, le=100_000)
    room_max_bytes: int = Field(default=512 * 1024, ge=1024)
    # One message's content (UTF-8 bytes); larger ones are refused (`message_too_large`).
    room_max_message_bytes: int = Field(default=32 * 1024, ge=16, le=350_000)
    # An assistant reply longer than one message is stored as several (rooms/reply_parts.py);
    # beyond this many bytes (and ROOM_MAX_BYTES) it is kept truncated, with a marker.
    room_max_reply_bytes: int = Field(default=128 * 1024, ge=64)
    # A `joined` frame on the wire (JSON-escaped bytes): the newest messages that fit, the
    # older ones left out (`"truncated": true`). At most half of WS_SEND_BUFFER_BYTES.
    room_joined_max_bytes: int = Field(default=512 * 1024, ge=4096)
    # A room and its conversation are kept this long after its last message (DynamoDB TTL).
    room_ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    # A running reply is listed in `joined` at most this long (a lost producer's entry lapses).
    room_reply_ttl_s: int = Field(default=3600, gt=0)
    # Longest user id accepted by POST /rooms/{id}/members.
    room_max_user_chars: int = Field(default=256, ge=1, le=1024)
    # Rooms one user created that are alive at once (a room counts until it expires);
    # beyond: 409 `too_many_rooms` on POST /rooms.
    room_max_rooms_per_user: int = Field(default=100, ge=1, le=10_000)
    # Rooms one connection is in at once (each is a bus channel of its node); beyond:
    # `error` `too_many_joined_rooms` on `join`.
    room_max_joined_per_socket: int = Field(default=16, ge=1, le=1000)

    @field_validator("bus_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("BUS_URL must be a redis://, rediss:// or unix:// URL")
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> RoomSettings:
        if self.presence_ttl_s <= 2 * self.presence_heartbeat_s:
            raise ValueError("PRESENCE_TTL_S must be above twice PRESENCE_HEARTBEAT_S")
        if self.bus_reconnect_max_s < self.bus_reconnect_min_s:
            raise ValueError("BUS_RECONNECT_MAX_S must be >= BUS_RECONNECT_MIN_S")
        if self.bus_mode is BusMode.CLUSTER and (self.bus_url or "").startswith("unix://"):
            raise ValueError("BUS_MODE=cluster needs a redis:// or rediss:// BUS_URL")
        if self.room_max_message_bytes > self.room_max_bytes:
            raise ValueError("ROOM_MAX_MESSAGE_BYTES must not exceed ROOM_MAX_BYTES")
        return self


@lru_cache(maxsize=1)
def get_room_settings() -> RoomSettings:
    return RoomSettings()
