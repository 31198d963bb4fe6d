"""Stream events as WebSocket frames: ``{"type": <kind>, "stream_id", "seq", ...payload}``,
so a client reads the same numbers as the SSE ``id:`` (and resumes over either)."""

from __future__ import annotations

from dataclasses import dataclass

from stream_service.engine.events import Event, Format


@dataclass(frozen=True, eq=True, slots=True)
class WsEvents(Format):
    stream_id: str
    slot = 2

    def render(self, event: Event) -> bytes:
        head = b'{"type":"%s","stream_id":"%s","seq":%d' % (
            event.kind.encode(),
            self.stream_id.encode(),
            event.seq,
        )
        data = event.data  # a JSON object: its fields join the frame's
        return head + (b"}" if data == b"{}" else b"," + data[1:])
