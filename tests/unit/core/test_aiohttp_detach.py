"""A streamed body taken from httpx2 (detach_body) outlives the SDK's response objects:
closing those leaves the upstream connection reading, and closing the detached body
before its end closes the connection (the upstream learns nobody wants the rest)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx2
import pytest
from aiohttp import web

from core.providers.aiohttp_transport import AiohttpTransport, DetachedBody, detach_body


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, list[str]]]:
    events: list[str] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        try:
            for i in range(50):
                await response.write(b"data: %d\n\n" % i)
                await asyncio.sleep(0.01)
            events.append("finished")
        except (ConnectionResetError, asyncio.CancelledError):
            events.append("client left")
            raise
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/stream", events
    await runner.cleanup()


@contextlib.asynccontextmanager
async def _detached(url: str) -> AsyncIterator[DetachedBody]:
    """A streamed GET through the transport, its body detached and the httpx2 response
    closed at once (what leaving the SDK's context does)."""
    transport = AiohttpTransport(max_connections=4)
    async with httpx2.AsyncClient(transport=transport) as client:
        response = await client.send(client.build_request("GET", url), stream=True)
        body = detach_body(response)
        assert body is not None
        await response.aclose()
        yield body
    await transport.aclose()


async def test_a_detached_body_reads_on_after_the_httpx2_response_is_closed(
    upstream: tuple[str, list[str]],
) -> None:
    url, events = upstream
    async with _detached(url) as body:
        received = b"".join([chunk async for chunk in body.chunks()])
        body.close()
    assert received == b"".join(b"data: %d\n\n" % i for i in range(50))
    assert events == ["finished"]


async def test_closing_a_detached_body_early_closes_the_upstream_connection(
    upstream: tuple[str, list[str]],
) -> None:
    url, events = upstream
    async with _detached(url) as body:
        first = await anext(body.chunks())
        assert first.startswith(b"data: 0")
        body.close()
        for _ in range(100):
            if events:
                break
            await asyncio.sleep(0.01)
    assert events == ["client left"]
