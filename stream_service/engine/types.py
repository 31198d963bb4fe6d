"""The engine's typed vocabulary: stream statuses, event kinds, why a producer stopped."""

from __future__ import annotations

from enum import StrEnum


class StreamStatus(StrEnum):
    """A stream's public status (``GET /stream/v1/streams/{id}``)."""

    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class EventKind(StrEnum):
    STATUS = "status"
    DELTA = "delta"
    DONE = "done"
    ERROR = "error"


TERMINAL_KINDS = frozenset({EventKind.DONE.value, EventKind.ERROR.value})


class StopReason(StrEnum):
    """Why a producer was stopped before its upstream finished."""

    CLIENT = "client"  # a cancel request, from any node
    NO_READER = "no_reader"  # nobody read it for RESUME_GRACE_S
    REPLACED = "replaced"  # STREAM_LIMIT_POLICY=replace took its slot
    UNREAD = "unread"  # nobody read it: a new stream of its user took its slot
    FIRST_TOKEN_TIMEOUT = "first_token_timeout"  # UPSTREAM_FIRST_TOKEN_S without a token
    UPSTREAM_TIMEOUT = "upstream_timeout"  # UPSTREAM_IDLE_S of silence between tokens
    DRAIN_DEADLINE = "drain_deadline"  # SIGTERM and DRAIN_S ran out
    LEASE_LOST = "lease_lost"  # another node declared it lost: it must not write any more

    @property
    def cancels(self) -> bool:
        """Ends as ``done`` ``cancelled`` (the others end with an ``error``)."""
        return self in (
            StopReason.CLIENT,
            StopReason.NO_READER,
            StopReason.REPLACED,
            StopReason.UNREAD,
        )

    @property
    def counted_as_cancel(self) -> bool:
        """Counted in the upstream-cancels metric (tokens nobody will read, stopped)."""
        return self is not StopReason.LEASE_LOST


class ErrorCode(StrEnum):
    """``code`` of an ``error`` event."""

    PRODUCER_LOST = "producer_lost"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_ERROR = "upstream_error"
    INTERNAL_ERROR = "internal_error"
