"""WebSocket knobs (environment variables, documented in docs/limits.md)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WsSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WS_", case_sensitive=False, extra="ignore", frozen=True
    )

    # One client frame, at most: a bigger one closes the socket with 1009 (message too big).
    max_message_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Frames waiting to go out on one socket; a client that stops reading past this is
    # closed with 4008 and resumes by seq (never unbounded memory on the server).
    send_buffer_bytes: int = Field(default=1024 * 1024, ge=16 * 1024)
    # Client frames per second per connection (a token bucket of `message_burst`); beyond
    # it: `error` `rate_limited`, and a close (1008) after `rate_strikes` refusals in a row.
    messages_per_s: float = Field(default=20.0, gt=0)
    message_burst: int = Field(default=40, ge=1)
    rate_strikes: int = Field(default=20, ge=1)
    # permessage-deflate costs tens of KB per connection: off unless configured.
    per_message_deflate: bool = False
    # How long a ticket from POST /stream/v1/ws/tickets opens a socket (SPEC: <= 60 s).
    ticket_ttl_s: int = Field(default=60, ge=1, le=60)
    # A room reply followed through the bus that stays silent this long is checked against
    # the store (one read): events the bus lost with no later one to reveal the gap (the
    # end of a reply during a bus outage) are then sent from the store.
    room_reply_stall_s: float = Field(default=2.0, gt=0, le=60)
    # The model of a room's replies when the chat.send names none; empty: the first of
    # MODELS (or LOCAL_MODELS with the local provider).
    room_model: str = ""


@lru_cache(maxsize=1)
def get_ws_settings() -> WsSettings:
    return WsSettings()


def uvicorn_ws_options(ws: WsSettings, keepalive_s: float) -> dict[str, Any]:
    """The server's WebSocket settings: protocol pings every ``KEEPALIVE_S`` (a socket that
    does not answer within another ``KEEPALIVE_S`` is closed), the frame size limit, and
    compression off unless configured."""
    return {
        "ws": "websockets-sansio",
        "ws_max_size": ws.max_message_bytes,
        "ws_ping_interval": keepalive_s,
        "ws_ping_timeout": keepalive_s,
        "ws_per_message_deflate": ws.per_message_deflate,
    }
