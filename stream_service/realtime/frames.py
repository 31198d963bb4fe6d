"""The voice socket's frame size: OpenAI's, not the chat socket's.

uvicorn has one frame cap for every WebSocket (``WS_MAX_MESSAGE_BYTES``, 256 KiB, which
the chat and rooms socket keeps). OpenAI accepts an ``input_audio_buffer.append`` of up to
15 MiB of audio (20 MiB as base64) and image items of several MB, so ``/stream/v1/realtime``
takes frames up to ``REALTIME_MAX_EVENT_BYTES``: :func:`ws_protocol` is uvicorn's
websockets protocol (the lean one, :mod:`stream_service.transports.ws.server_protocol`)
with the cap raised for that path once its handshake is read.
"""

from __future__ import annotations

from websockets.http11 import Request

from stream_service.transports.ws.server_protocol import LeanWebSocketProtocol

PATH_PREFIX = "/stream/v1/realtime"


def ws_protocol(realtime_max_bytes: int) -> type[LeanWebSocketProtocol]:
    class RealtimeSizedProtocol(LeanWebSocketProtocol):
        def handle_connect(self, event: Request) -> None:
            if event.path.split("?", 1)[0].rstrip("/") == PATH_PREFIX:
                cap = max(realtime_max_bytes, self.conn.max_message_size or 0)
                self.conn.max_message_size = cap
            super().handle_connect(event)

    return RealtimeSizedProtocol
