"""A voice socket without the SDK, for what the SDK does not do: drop the connection
abruptly and resume with ``session_id`` / ``after_event_id``."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import websockets

from tests.integration.realtime.conftest import MODEL, ws_base
from tests.support.servers import ProcessServer


async def open_voice(node: ProcessServer, token: str, **query: str) -> websockets.ClientConnection:
    url = f"{ws_base(node)}/realtime?{urlencode({'model': MODEL, **query})}"
    return await websockets.connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    )


async def send(ws: websockets.ClientConnection, **event: Any) -> None:
    await ws.send(json.dumps(event))


async def recv(ws: websockets.ClientConnection, within: float = 10.0) -> dict[str, Any]:
    return dict(json.loads(await asyncio.wait_for(ws.recv(decode=True), within)))


def drop(ws: websockets.ClientConnection) -> None:
    """The network goes away: no close frame, the TCP connection is cut."""
    ws.transport.abort()
