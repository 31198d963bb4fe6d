"""Per-socket limits on client events (docs/limits.md): size, rate and audio per append."""

from __future__ import annotations

import time

from stream_service.realtime.protocol import ProtocolError
from stream_service.realtime.settings import RealtimeSettings


class EventRate:
    """A token bucket: ``rate`` events a second on average, bursts of up to ``burst``."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._at = time.monotonic()

    def take(self, *, always: bool = False) -> bool:
        """One event's token; ``always``: counted, but never refused (it may go into debt)."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1 and not always:
            return False
        self._tokens -= 1
        return True


# What a client's turn cannot do without: never dropped by the rate limit (an unpaced
# upload still gets its commit and its reply; a stop button always stops).
NEVER_DROPPED = frozenset(
    {"input_audio_buffer.commit", "response.create", "response.cancel", "session.update"}
)


class ClientLimits:
    def __init__(self, settings: RealtimeSettings) -> None:
        self._max_bytes = settings.max_event_bytes
        self._rate = EventRate(settings.max_events_per_s, 2 * settings.max_events_per_s)
        self._max_events_per_s = settings.max_events_per_s
        self.max_append_bytes = settings.max_append_bytes

    def check_frame(
        self, frame: str | bytes, event_id: str | None, event_type: str | None = None
    ) -> None:
        """Raise the error for a frame over the size or rate limit (it is then dropped)."""
        if len(frame) > self._max_bytes:
            raise ProtocolError(
                f"The event is {len(frame)} bytes; the limit is {self._max_bytes} "
                "(REALTIME_MAX_EVENT_BYTES).",
                "event_too_large",
                event_id=event_id,
            )
        if not self._rate.take(always=event_type in NEVER_DROPPED):
            raise ProtocolError(
                f"Too many events: the limit is {self._max_events_per_s:g} a second "
                "(REALTIME_MAX_EVENTS_PER_S). This event was dropped.",
                "rate_limit_exceeded",
                event_id=event_id,
                type="rate_limit_error",
            )

    def check_append(self, audio_bytes: int, event_id: str | None) -> None:
        """``audio_bytes``: the decoded size of the event's audio (base64 is 4/3 of it)."""
        if audio_bytes > self.max_append_bytes:
            raise ProtocolError(
                f"input_audio_buffer.append carries more than {self.max_append_bytes} bytes of "
                "audio (REALTIME_MAX_APPEND_BYTES); send smaller chunks.",
                "audio_too_large",
                param="audio",
                event_id=event_id,
            )
