"""The SDK's HTTP transport on aiohttp, with a short path for streamed bodies.

The ``openai`` SDK builds requests, retries and maps errors on top of an ``httpx2`` client;
this transport gives that client aiohttp underneath (C HTTP parser, one pool with O(1)
connection hand-out, no cancel scope per socket read). ``body_chunks`` then reads a
streamed response straight from aiohttp: at thousands of concurrent streams the httpx
layers between the socket and the provider are most of the per-token cost.

Errors are raised as ``httpx2`` request errors, so the SDK retries and reports them as it
does for its own transport.
"""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx2

_RAW = "rtai.aiohttp_response"


class AiohttpTransport(httpx2.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive_expiry_s = keepalive_expiry_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, keepalive_timeout=self._keepalive_expiry_s
            )
            # Proxies from the environment are looked up once per host (_env_proxy), not by
            # aiohttp's trust_env, which reads ~/.netrc and the environment in a thread on
            # every request.
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        with _mapped(request, connecting=True):
            response = await self._client().request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=body or None,
                proxy=_env_proxy(request.url.scheme, request.url.host),
                allow_redirects=False,
                auto_decompress=False,  # httpx2 decodes what it reads; body_chunks checks
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
        extensions = {"http_version": b"HTTP/1.1", _RAW: response}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in _read(self._response, self._request):
            yield chunk

    async def aclose(self) -> None:
        _close(self._response)


def body_chunks(response: httpx2.Response) -> AsyncIterator[bytes]:
    """The body of a streamed response as it arrives: straight from aiohttp when this
    transport served it uncompressed, else through httpx2 (which decodes)."""
    raw = response.extensions.get(_RAW)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if isinstance(raw, aiohttp.ClientResponse) and encoding == "identity":
        return _read(raw, response.request)
    return response.aiter_bytes()


async def _read(response: aiohttp.ClientResponse, request: httpx2.Request) -> AsyncIterator[bytes]:
    with _mapped(request, connecting=False):
        while chunk := await response.content.readany():
            yield chunk


@functools.lru_cache(maxsize=64)
def _env_proxy(scheme: str, host: str) -> str | None:
    """``HTTPS_PROXY``/``HTTP_PROXY`` for this host unless ``NO_PROXY`` exempts it, as the
    SDK's own client would use (read once per host)."""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)


def _close(response: aiohttp.ClientResponse) -> None:
    """Back to the pool when read to the end; otherwise the connection is closed, which is
    how the upstream learns that nobody wants the rest."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


@contextmanager
def _mapped(request: httpx2.Request, *, connecting: bool) -> Iterator[None]:
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        kind = httpx2.ConnectTimeout if connecting else httpx2.ReadTimeout
        raise kind(str(exc) or "timed out", request=request) from exc
    except aiohttp.ClientError as exc:
        kind_ = httpx2.ConnectError if connecting else httpx2.ReadError
        raise kind_(str(exc) or type(exc).__name__, request=request) from exc
