"""The aiohttp transport under httpx2, against servers started by the test: bodies framed
right, and aiohttp's failures surfacing as the httpx2 errors the SDK retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from core.providers.aiohttp_transport import AiohttpTransport
from devstack.dispatch import read_body
from devstack.local_aws import free_port
from devstack.upstream import ScriptedUpstream
from tests.support.servers import ThreadServer


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the request body and how it was framed."""
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    framing = f"cl={headers.get('content-length')};te={headers.get('transfer-encoding')}"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": framing.encode() + b"|" + body})


async def test_a_streamed_request_body_arrives_whole_and_framed_once() -> None:
    async def parts() -> AsyncIterator[bytes]:
        yield b"hello "
        yield b"world"

    with ThreadServer(_echo) as server:
        async with httpx2.AsyncClient(transport=AiohttpTransport(max_connections=4)) as client:
            response = await client.post(f"{server.url}/x", content=parts())
    assert response.text == "cl=11;te=None|hello world"


async def test_nothing_listening_is_a_connect_error() -> None:
    async with httpx2.AsyncClient(transport=AiohttpTransport(max_connections=4)) as client:
        with pytest.raises(httpx2.ConnectError):
            await client.get(f"http://127.0.0.1:{free_port()}/")


async def test_a_server_slow_to_answer_is_a_read_timeout() -> None:
    slow = ScriptedUpstream(ttft_s=2.0)
    body = {"model": "upstream-model", "messages": [{"role": "user", "content": "x"}]}
    with ThreadServer(slow) as server:
        async with httpx2.AsyncClient(
            transport=AiohttpTransport(max_connections=4), timeout=httpx2.Timeout(5, read=0.2)
        ) as client:
            with pytest.raises(httpx2.ReadTimeout):
                await client.post(f"{server.url}/v1/chat/completions", json=body)
