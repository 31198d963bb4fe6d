"""A scripted OpenAI Realtime upstream (a WebSocket server), for relay tests and the voice
benchmark.

It answers ``/v1/realtime?model=...`` with ``session.created``, records every connection
(path, headers, frames received, when it closed), and reacts to a few client events:

- ``response.create``: a reply of ``audio_frames`` audio deltas (20 ms of PCM16 each),
  one every 20 ms (real time), then ``response.done``. Each delta carries
  ``x_sent_ns`` (``time.monotonic_ns()`` at send) so a client can time the path. With
  ``response.tools``, the reply is a call of the first tool instead (its arguments in two
  ``response.function_call_arguments.delta``, then ``.done``), as OpenAI streams one.
- ``test.echo``: answered with ``test.echoed`` carrying the event received.
- ``test.drop``: the upstream cuts the TCP connection (a crash); ``test.close`` closes it
  with code 1011; ``test.refuse`` with 1008 (what OpenAI does with a client's mistake).

Every frame it sends is recorded too (``Connection.sent``).

A connection for the model ``refuse`` is refused at the handshake (HTTP 503).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

Send = Callable[[str], Awaitable[None]]
FRAME_MS = 20
FRAME_AUDIO = base64.b64encode(b"\x01\x00" * (24 * FRAME_MS)).decode()


@dataclass
class Connection:
    path: str
    headers: dict[str, str]
    frames: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    closed_at: float | None = None


class RealtimeUpstream:
    def __init__(self, audio_frames: int = 25) -> None:
        self.audio_frames = audio_frames
        self.connections: list[Connection] = []
        self._ids = itertools.count(1)

    def _event(self, **event: Any) -> str:
        event["event_id"] = f"event_up_{next(self._ids)}"
        return json.dumps(event)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if "model=refuse" in request.path:
            return ws.respond(503, "upstream overloaded\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        record = Connection(request.path, {k.lower(): v for k, v in request.headers.raw_items()})
        self.connections.append(record)
        model = request.path.partition("model=")[2].split("&")[0]
        replies: list[asyncio.Task[None]] = []

        async def send(frame: str) -> None:
            record.sent.append(frame)
            await ws.send(frame)

        try:
            await send(
                self._event(
                    type="session.created",
                    session={
                        "type": "realtime",
                        "object": "realtime.session",
                        "id": "sess_upstream_1",
                        "model": model,
                    },
                )
            )
            async for message in ws:
                frame = message if isinstance(message, str) else message.decode()
                record.frames.append(frame)
                event = json.loads(frame)
                kind = event.get("type")
                if kind == "test.drop":
                    ws.transport.abort()
                    return
                if kind == "test.close":
                    await ws.close(1011, "upstream failure")
                    return
                if kind == "test.refuse":
                    await ws.close(1008, "invalid event")
                    return
                if kind == "test.echo":
                    await send(self._event(type="test.echoed", received=event))
                elif kind == "response.create":
                    tools = (event.get("response") or {}).get("tools")
                    if tools:
                        replies.append(asyncio.create_task(self._call(send, tools[0]["name"])))
                    else:
                        replies.append(asyncio.create_task(self._reply(send)))
        except Exception:  # a dropped client: recorded below
            pass
        finally:
            for task in replies:
                task.cancel()
            record.closed_at = time.monotonic()

    async def _call(self, send: Send, name: str) -> None:
        response_id = f"resp_up_{next(self._ids)}"
        ids = {"response_id": response_id, "item_id": "item_up_call", "output_index": 0}
        call = {"call_id": "call_up_1", "name": name}
        arguments = '{"city": "Paris"}'
        item = {"id": "item_up_call", "type": "function_call", "status": "completed", **call}
        await send(self._event(type="response.created", response={"id": response_id}))
        await send(
            self._event(
                type="response.output_item.added",
                response_id=response_id,
                output_index=0,
                item={**item, "status": "in_progress", "arguments": ""},
            )
        )
        for piece in (arguments[:8], arguments[8:]):
            await send(
                self._event(
                    type="response.function_call_arguments.delta",
                    call_id=call["call_id"],
                    delta=piece,
                    **ids,
                )
            )
        await send(
            self._event(
                type="response.function_call_arguments.done", arguments=arguments, **call, **ids
            )
        )
        await send(
            self._event(
                type="response.output_item.done",
                response_id=response_id,
                output_index=0,
                item={**item, "arguments": arguments},
            )
        )
        await send(
            self._event(
                type="response.done",
                response={"id": response_id, "status": "completed", "output": [item]},
            )
        )

    async def _reply(self, send: Send) -> None:
        response_id = f"resp_up_{next(self._ids)}"
        ids = {
            "response_id": response_id,
            "item_id": "item_up",
            "output_index": 0,
            "content_index": 0,
        }
        await send(
            self._event(
                type="response.created", response={"id": response_id, "status": "in_progress"}
            )
        )
        start = time.monotonic()
        for n in range(self.audio_frames):
            delay = start + n * FRAME_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await send(
                self._event(
                    type="response.output_audio.delta",
                    delta=FRAME_AUDIO,
                    x_sent_ns=time.monotonic_ns(),
                    **ids,
                )
            )
        await send(
            self._event(type="response.done", response={"id": response_id, "status": "completed"})
        )


class RealtimeUpstreamServer:
    """The upstream on 127.0.0.1 in its own thread and event loop."""

    def __init__(self, upstream: RealtimeUpstream, port: int = 0) -> None:
        self.upstream = upstream
        self._port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> RealtimeUpstreamServer:
        self._thread.start()

        async def start() -> Server:
            return await serve(
                self.upstream.handler,
                "127.0.0.1",
                self._port,
                max_size=None,
                compression=None,
                process_request=self.upstream.process_request,
            )

        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        server = self._server
        if server is not None:

            async def stop() -> None:
                server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 5)

            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def main() -> None:
    """``python -m devstack.realtime_upstream --port P [--frames N]`` (benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", type=int, default=250, help="audio deltas per reply")
    args = parser.parse_args()
    upstream = RealtimeUpstream(audio_frames=args.frames)

    async def run() -> None:
        async with serve(
            upstream.handler,
            args.host,
            args.port,
            max_size=None,
            compression=None,
            process_request=upstream.process_request,
        ):
            await asyncio.Future()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
