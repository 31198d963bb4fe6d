"""The SDK's HTTP transport on asyncio protocols and httptools, with streamed bodies pushed.

The ``openai`` SDK builds requests, retries and maps errors on top of an ``httpx2`` client;
this transport does the HTTP/1.1 underneath it: one small :class:`asyncio.Protocol` per
upstream connection, parsed by httptools (llhttp, the parser uvicorn uses), pooled per
host. What no client library offers is the point of it: a streamed body can be *pushed*
(:meth:`StreamedBody.push`): every piece of the body goes to a callback from the socket's
``data_received``, so a relayed token costs no future, task wake-up or async generator
step between the socket and the stream, and an idle stream holds one protocol object and
one parser rather than a client library's request, response and reader objects.

What it leaves to others: requests through a proxy (``HTTPS_PROXY``/``HTTP_PROXY``), and
HEAD requests, go to :class:`~core.providers.aiohttp_transport.AiohttpTransport`;
compressed bodies are decoded by httpx2 (a pushed body must be identity-encoded); HTTP/2
is not spoken (nor by aiohttp).
Errors are raised as the ``httpx2`` request errors the SDK retries and reports.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import ssl
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, cast

import httptools
import httpx2

from core.providers.proxies import env_proxy

if TYPE_CHECKING:
    from core.providers.aiohttp_transport import AiohttpTransport

# A header carrying one of these would end the header or the request early (injection).
_UNSAFE = re.compile(rb"[\r\n\0]")
_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive"})
# A pulled body stops reading from the socket while this much waits unread.
_PAUSE_AT_BYTES = 256 * 1024
# How long a body whose reader is done may take to end before its connection is closed.
_DRAIN_S = 5.0

OnData = Callable[[bytes], None]
OnEnd = Callable[[BaseException | None], None]
_Key = tuple[str, str, int]


class PushTransport(httpx2.AsyncBaseTransport):
    def __init__(self, *, max_connections: int, keepalive_expiry_s: float = 30.0) -> None:
        self._max_connections = max_connections
        self._pool = _Pool(max_connections, keepalive_expiry_s)
        self._proxied: AiohttpTransport | None = None
        self._tls: ssl.SSLContext | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if (
            url.scheme not in ("http", "https")
            or request.method == "HEAD"  # httptools cannot be told a HEAD reply has no body
            or env_proxy(url.scheme, url.host) is not None
        ):
            if self._proxied is None:
                from core.providers.aiohttp_transport import AiohttpTransport

                self._proxied = AiohttpTransport(max_connections=self._max_connections)
            return await self._proxied.handle_async_request(request)
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        head = _head(request, body)
        secure = url.scheme == "https"
        key = (url.scheme, url.host, url.port or (443 if secure else 80))
        await self._pool.take_slot(timeout.get("pool"), request)
        try:
            for attempt in (1, 2):
                conn = self._pool.idle(key)
                reused = conn is not None
                if conn is None:
                    conn = await self._pool.connect(
                        key, self._context() if secure else None, timeout.get("connect"), request
                    )
                response = _Response(conn, request)
                try:
                    conn.send(head, body, response)
                    await response.headers_in(timeout.get("read"))
                except _Stale:
                    # An idle connection the upstream had closed as it was taken: no byte
                    # of the request was answered, so it is sent again on a new one, once.
                    if attempt == 2 or not reused:
                        raise httpx2.RemoteProtocolError(
                            "Server disconnected without sending a response.", request=request
                        ) from None
                    continue
                except BaseException:
                    conn.close()
                    raise
                break
        except BaseException:
            self._pool.give_slot()
            raise
        stream = StreamedBody(response, self._pool, timeout.get("read"))
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1", _BODY: stream}
        if response.reason:
            extensions["reason_phrase"] = response.reason
        headers, response.headers = response.headers, []  # httpx2 keeps its own copy
        return httpx2.Response(
            status_code=response.status,
            headers=headers,
            stream=stream,
            request=request,
            extensions=extensions,
        )

    def _context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    async def aclose(self) -> None:
        self._pool.close()
        if self._proxied is not None:
            await self._proxied.aclose()


_BODY = "rtai.push_body"


def take_body(response: httpx2.Response) -> StreamedBody | None:
    """Take the body of a streamed response that this transport served uncompressed:
    closing the httpx2 response (and the SDK's around it) then leaves the upstream
    connection open, and only the body stays referenced. None for any other response: it
    is read through httpx2 (which decodes)."""
    body = response.extensions.get(_BODY)
    encoding = response.headers.get("content-encoding", "identity").lower()
    if not isinstance(body, StreamedBody) or encoding != "identity" or body.taken:
        return None
    body.taken = True
    return body


def _head(request: httpx2.Request, body: bytes) -> bytes:
    parts = [request.method.encode(), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        if _UNSAFE.search(name) or _UNSAFE.search(value):
            raise httpx2.LocalProtocolError(f"Illegal header: {name!r}", request=request)
        if name.lower() not in _FRAMING:
            parts += (name, b": ", value, b"\r\n")
    if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        parts.append(b"Content-Length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    return b"".join(parts)


class _Stale(Exception):
    """The connection closed before any byte of a response came."""


class _Pool:
    """Idle connections per host (newest first, each closed after ``keepalive_s``), and the
    slots that bound the requests in flight."""

    def __init__(self, limit: int, keepalive_s: float) -> None:
        self._keepalive_s = keepalive_s
        self._limit = limit
        self._free = limit
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle: dict[_Key, list[_Conn]] = {}
        self._idle_count = 0

    async def take_slot(self, wait_s: float | None, request: httpx2.Request) -> None:
        if self._free > 0 and not self._waiting:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(wait_s):
                await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                self.give_slot()  # handed a slot as it timed out or was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # give_slot may have dropped it
                    self._waiting.remove(waiter)
            if isinstance(exc, TimeoutError):
                message = "no upstream connection free in time"
                raise httpx2.PoolTimeout(message, request=request) from None
            raise

    def give_slot(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1

    def idle(self, key: _Key) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            self._idle_count -= 1
            conn.taken()
            if conn.usable:
                return conn
        return None

    async def connect(
        self, key: _Key, tls: ssl.SSLContext | None, wait_s: float | None, request: httpx2.Request
    ) -> _Conn:
        loop = asyncio.get_running_loop()
        host, port = key[1], key[2]
        try:
            async with asyncio.timeout(wait_s):
                _, conn = await loop.create_connection(
                    lambda: _Conn(self, key),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                )
        except TimeoutError:
            message = f"connecting to {host}:{port} timed out"
            raise httpx2.ConnectTimeout(message, request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx2.ConnectError(str(exc) or type(exc).__name__, request=request) from exc
        return conn

    def put(self, conn: _Conn) -> None:
        if self._idle_count >= self._limit:
            conn.close()
            return
        self._idle.setdefault(conn.key, []).append(conn)
        self._idle_count += 1
        conn.parked(self._keepalive_s)

    def drop(self, conn: _Conn) -> None:
        """An idle connection closed (by the upstream, or its keep-alive ran out)."""
        conns = self._idle.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            self._idle_count -= 1

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        self._idle_count = 0


class _Conn(asyncio.Protocol):
    """One upstream connection: writes a request, parses its response with httptools and
    hands the response's parts to the current :class:`_Response`."""

    __slots__ = ("_expiry", "_parser", "_pool", "_response", "_transport", "key", "usable")

    def __init__(self, pool: _Pool, key: _Key) -> None:
        self._pool = pool
        self.key = key
        self._transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._response: _Response | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.usable = True

    # --- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # nothing asked: a server talking out of turn
            self.close()
            return
        self._response.started = True  # not sent again, even if this is half a status line
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools' HttpParserError, or a response out of turn
            # httptools raises its own error for one raised in a callback: a pushed body's
            # consumer that failed is told of its own exception
            stop = _stop_of(exc)
            self._fail(stop or httpx2.RemoteProtocolError(f"Invalid HTTP response: {exc}"))

    def eof_received(self) -> bool | None:
        return False  # the transport closes itself; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        self._transport = None
        response, self._response = self._response, None
        if response is not None:
            response.lost(exc)
        else:
            self._pool.drop(self)
            self._cancel_expiry()

    # --- httptools' callbacks -----------------------------------------------------------
    def on_status(self, reason: bytes) -> None:
        if self._response is not None:
            self._response.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._response is not None
        self._response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._response is not None
        self._response.headers_done(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response.data(body)

    def on_message_complete(self) -> None:
        response = self._response
        assert response is not None
        if not response.status:
            return  # an interim (1xx) response ended: the real one follows
        keep = self._parser.should_keep_alive()
        self._response = None
        self._parser = None
        if not keep:
            self.usable = False
        response.complete()

    # --- for the transport ---------------------------------------------------------------
    def send(self, head: bytes, body: bytes, response: _Response) -> None:
        if self._transport is None or self._transport.is_closing():
            raise _Stale
        self._response = response
        self._parser = httptools.HttpResponseParser(self)
        self._transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self._transport.write(body)

    def pause(self, paused: bool) -> None:
        if self._transport is not None:
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    def release(self) -> None:
        """The response was read to its end: back to the pool if it may be reused."""
        if self.usable and self._transport is not None and self._response is None:
            self._pool.put(self)
        else:
            self.close()

    def close(self) -> None:
        """At once (abort: no TLS close_notify exchange): the upstream learns now that
        nobody wants the rest; nothing is left to send on a connection being closed."""
        self.usable = False
        if self._transport is not None:
            self._transport.abort()
        self._cancel_expiry()

    def parked(self, keepalive_s: float) -> None:
        self._expiry = asyncio.get_running_loop().call_later(keepalive_s, self._expire)

    def taken(self) -> None:
        self._cancel_expiry()

    def _expire(self) -> None:
        self._expiry = None
        self._pool.drop(self)
        self.close()

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _fail(self, error: httpx2.HTTPError | BaseException) -> None:
        response, self._response = self._response, None
        self.close()
        if response is not None:
            response.failed(error)


class _Stop(Exception):
    """Raised out of the parser's callback by a pushed body's consumer that failed."""

    def __init__(self, reason: BaseException) -> None:
        self.reason = reason


def _stop_of(exc: BaseException) -> BaseException | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _Stop):
            return seen.reason
        seen = seen.__cause__ or seen.__context__
    return None


class _Response:
    """One response as it arrives: status and headers, then the body, pulled (queued, with
    a read timeout) or pushed (to a callback, as it comes)."""

    __slots__ = (
        "_conn",
        "_drain_timer",
        "_on_data",
        "_on_end",
        "_queued",
        "_queued_bytes",
        "_ready",
        "_request",
        "_waiter",
        "done",
        "error",
        "framed",
        "headers",
        "reason",
        "started",
        "status",
    )

    def __init__(self, conn: _Conn, request: httpx2.Request) -> None:
        self._conn = conn
        self._request: httpx2.Request | None = request
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.framed = False  # a length or chunks: the body does not end with the connection
        self.started = False  # a byte of the response came
        self.done = False
        self.error: BaseException | None = None
        self._ready: asyncio.Future[None] | None = asyncio.get_running_loop().create_future()
        self._queued: list[bytes] = []  # a list, not a deque: 56 bytes idle, not 760
        self._queued_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._on_data: OnData | None = None
        self._on_end: OnEnd | None = None
        self._drain_timer: asyncio.TimerHandle | None = None

    # --- from the connection ------------------------------------------------------------
    def headers_done(self, status: int) -> None:
        self.started = True
        if 100 <= status < 200 and status != 101:
            self.headers = []  # an interim response: the real one follows
            return
        self.status = status
        self.framed = _framed(self.headers)
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    def data(self, chunk: bytes) -> None:
        if self._on_data is not None:
            try:
                self._on_data(chunk)
            except Exception as exc:
                raise _Stop(exc) from exc
            return
        self._queued.append(chunk)
        self._queued_bytes += len(chunk)
        if self._queued_bytes > _PAUSE_AT_BYTES:
            self._conn.pause(True)
        self._wake()

    def complete(self) -> None:
        self.done = True
        self._end(None)

    def lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        if not self.started:
            self.failed(_Stale())
        elif self.status and not self.framed and exc is None:
            self.complete()  # a body that ends when the connection does (not a reset)
        else:
            message = "peer closed connection without sending complete message body"
            self.failed(httpx2.ReadError(f"{message}: {exc}" if exc else message))

    def failed(self, error: BaseException) -> None:
        if isinstance(error, httpx2.RequestError) and self._request is not None:
            error.request = self._request
        self.error = error
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
            return
        self._end(error)

    # --- for the transport and the body ----------------------------------------------------
    async def headers_in(self, wait_s: float | None) -> None:
        ready = self._ready
        assert ready is not None
        try:
            async with asyncio.timeout(wait_s):
                await ready
        except TimeoutError:
            raise httpx2.ReadTimeout("read timed out", request=self._request) from None
        finally:
            self._ready = None
        self._request = None  # the SDK holds it for as long as it needs it

    def push(self, on_data: OnData, on_end: OnEnd) -> None:
        queued, self._queued = self._queued, []
        for chunk in queued:
            on_data(chunk)
        self._queued_bytes = 0
        self._conn.pause(False)
        if self.done or self.error is not None:
            on_end(self.error)
            return
        self._on_data, self._on_end = on_data, on_end

    async def next_chunk(self, wait_s: float | None) -> bytes:
        while not self._queued:
            if self.error is not None:
                raise self.error
            if self.done:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(wait_s):
                    await self._waiter
            except TimeoutError:
                raise httpx2.ReadTimeout("read timed out") from None
            finally:
                self._waiter = None
        # everything that waits, at once: one piece for the reader however many came
        queued, self._queued = self._queued, []
        self._queued_bytes = 0
        self._conn.pause(False)
        return queued[0] if len(queued) == 1 else b"".join(queued)

    def close(self, drain: bool) -> None:
        self._on_data = self._on_end = None
        if self.done:
            self._queued = []
            self._conn.release()
        elif drain and self.error is None:
            # The reader had all it wanted (an SSE stream's [DONE]) but the body's end had
            # not come yet: it is let to come, for the connection to be reused.
            self._queued = []
            self._conn.pause(False)
            self._on_data, self._on_end = _discard, self._drained
            self._drain_timer = asyncio.get_running_loop().call_later(_DRAIN_S, self._conn.close)
        else:
            self._conn.close()  # how the upstream learns that nobody wants the rest

    def _drained(self, error: BaseException | None) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if error is None:
            self._conn.release()

    def _end(self, error: BaseException | None) -> None:
        on_end, self._on_end, self._on_data = self._on_end, None, None
        if on_end is not None:
            on_end(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class StreamedBody(httpx2.AsyncByteStream):
    """A response body: read by httpx2 (``__aiter__``) or, once :func:`take_body` took it,
    by its taker, who ``push``-es it or iterates ``chunks``, and then ``close``-s it (the
    connection goes back to the pool if the body was read to its end)."""

    __slots__ = ("_pool", "_read_timeout_s", "_response", "taken")

    def __init__(self, response: _Response, pool: _Pool, read_timeout_s: float | None) -> None:
        self._response: _Response | None = response
        self._pool = pool
        self._read_timeout_s = read_timeout_s  # the request's: None, no per-read timer
        self.taken = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.taken:
            raise httpx2.StreamConsumed()
        async for chunk in self.chunks():
            yield chunk

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's pieces as they come; ``httpx2.ReadTimeout`` if none comes within the
        request's read timeout."""
        response = self._response
        if response is None:
            raise httpx2.StreamClosed()
        while chunk := await response.next_chunk(self._read_timeout_s):
            yield chunk

    def push(self, on_data: OnData, on_end: OnEnd) -> None:
        """From now on every piece of the body goes to ``on_data`` as it arrives, from the
        socket's callback (what had arrived already, at once); then ``on_end(None)``, or
        ``on_end(error)`` if the body broke off. ``on_data`` must not block; if it raises,
        the connection is closed and ``on_end`` gets the exception. No read timeout
        applies: the consumer watches for a silent upstream (the engine's watchdog)."""
        assert self._response is not None
        self._response.push(on_data, on_end)

    async def aclose(self) -> None:
        if not self.taken:  # a taken body is closed by its taker
            self.close()

    def close(self, drain: bool = False) -> None:
        """Done with the body: if it was read to its end, or ``drain`` and it ends within
        a few seconds, the connection goes back to the pool; otherwise it is closed, which
        tells the upstream to stop sending."""
        response, self._response = self._response, None
        if response is not None:
            response.close(drain)
            self._pool.give_slot()


def _discard(_: bytes) -> None:
    pass


def _framed(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)
