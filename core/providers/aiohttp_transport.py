"""The SDK's HTTP transport on aiohttp, with a short path for streamed bodies.

The ``openai`` SDK builds requests, retries and maps errors on top of an ``httpx2`` client;
this transport gives that client aiohttp underneath (C HTTP parser, one pool with O(1)
connection hand-out, no cancel scope per socket read). ``detach_body`` then takes a
streamed response's body away from httpx2: the provider reads it straight from aiohttp (at
thousands of concurrent streams the httpx layers between the socket and the provider were
most of the per-token cost) and lets go of the SDK's and httpx2's objects for the request
at once, instead of holding them (~10 KB) for as long as the reply streams.

Errors are raised as ``httpx2`` request errors, so the SDK retries and reports them as it
does for its own transport.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx2
import yarl

from core.providers.proxies import env_proxy

_RAW = "rtai.aiohttp_response"
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


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
            # Proxies from the environment are looked up once per host (env_proxy), not by
            # aiohttp's trust_env, which reads ~/.netrc and the environment in a thread on
            # every request.
            # Cookies are httpx2's business (the SDK sends none of its own).
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._session

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        # The body is whole: aiohttp frames it (Content-Length) itself.
        headers = [
            _shared(k, v) for k, v in request.headers.multi_items() if k.lower() not in _FRAMING
        ]
        with _mapped(request):
            response = await self._client().request(
                request.method,
                yarl.URL(str(request.url), encoded=True),  # as httpx2 encoded it
                headers=headers,
                data=body or None,
                proxy=env_proxy(request.url.scheme, request.url.host),
                allow_redirects=False,
                auto_decompress=False,  # httpx2 decodes what it reads; detach_body checks
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                ),
            )
        stream = _Body(response, request)
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1", _RAW: stream}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        return httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=stream,
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Body(httpx2.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx2.Request) -> None:
        self._response: aiohttp.ClientResponse | None = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._response is None:
            raise httpx2.StreamConsumed()
        async for chunk in _read(self._response, self._request):
            yield chunk

    async def aclose(self) -> None:
        if self._response is not None:  # not when detached: its taker closes it
            _close(self._response)

    def detach(self) -> aiohttp.ClientResponse | None:
        response, self._response = self._response, None
        return response


class DetachedBody:
    """A streamed response's body that :func:`detach_body` took from httpx2: read it with
    ``chunks`` and ``close`` it when done (back to the pool if read to the end)."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def chunks(self) -> AsyncIterator[bytes]:
        return _read(self._response, None)

    def close(self, drain: bool = False) -> None:
        del drain  # aiohttp reuses a connection only if the body was read to its end
        _close(self._response)


def detach_body(response: httpx2.Response) -> DetachedBody | None:
    """Take the body of a streamed response that this transport served uncompressed:
    closing the httpx2 response (and the SDK's response around it) then leaves the upstream
    connection open, and only the aiohttp response stays referenced. None for any other
    response: it is read through httpx2 (which decodes)."""
    body = response.extensions.get(_RAW)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if not isinstance(body, _Body) or encoding != "identity":
        return None
    raw = body.detach()
    return DetachedBody(raw) if raw is not None else None


async def _read(
    response: aiohttp.ClientResponse, request: httpx2.Request | None
) -> AsyncIterator[bytes]:
    with _mapped(request):
        while chunk := await response.content.readany():
            yield chunk


@functools.lru_cache(maxsize=1024)
def _shared(name: str, value: str) -> tuple[str, str]:
    """One copy of a header line that every request sends alike (the SDK's user agent,
    platform and auth headers): aiohttp keeps a request's headers for as long as its
    response streams, and httpx2 decodes them into new strings for every request."""
    return name, value


def _close(response: aiohttp.ClientResponse) -> None:
    """Back to the pool when read to the end; otherwise the connection is closed, which is
    how the upstream learns that nobody wants the rest."""
    if response.content.at_eof():
        response.release()
    else:
        response.close()


@contextmanager
def _mapped(request: httpx2.Request | None) -> Iterator[None]:
    """aiohttp's errors as the httpx2 errors the SDK retries and reports."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # no connection (or pool slot) in time
        raise httpx2.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:  # a read timed out
        raise httpx2.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except (aiohttp.ClientConnectorError, aiohttp.ClientProxyConnectionError) as exc:
        raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx2.RemoteProtocolError(str(exc) or "disconnected", request=request) from exc
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
        raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
