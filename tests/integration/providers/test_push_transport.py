"""The push transport under httpx2 (the stream service's upstream HTTP), against servers
started by the test, on both event loops the code meets (asyncio; uvloop, the service's):
bodies pushed in order, connections reused and closed when they must be, and every
failure the httpx2 error the SDK retries or reports."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import socket
import struct
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.providers.push_transport import PushTransport, StreamedBody, take_body
from devstack.dispatch import read_body
from devstack.local_aws import free_port
from devstack.upstream import ScriptedUpstream
from tests.support.servers import ThreadServer

Run = Callable[[Coroutine[Any, Any, Any]], Any]
SSE_BODY = {"model": "upstream-model", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run:
    return asyncio.run if request.param == "asyncio" else uvloop.run


class Pieces:
    """``/pieces?n=N``: N chunked pieces; ``/gzip``: a gzip-encoded body; ``/echo``: the
    request body and its framing. Records each request's client port (its connection)."""

    def __init__(self) -> None:
        self.ports: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.ports.append(scope["client"][1])
        body = await read_body(receive)
        if scope["path"] == "/echo":
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            framing = f"cl={headers.get('content-length')};te={headers.get('transfer-encoding')}"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": f"{framing}|".encode() + body})
            return
        if scope["path"] == "/gzip":
            gzipped = [(b"content-encoding", b"gzip")]
            await send({"type": "http.response.start", "status": 200, "headers": gzipped})
            await send({"type": "http.response.body", "body": gzip.compress(b"unzipped")})
            return
        count = int(scope["query_string"].decode().partition("=")[2] or 3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for index in range(count):
            piece = f"piece-{index}\n".encode()
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})


def expected_pieces(count: int) -> bytes:
    return b"".join(f"piece-{i}\n".encode() for i in range(count))


@pytest.fixture(scope="module")
def pieces() -> Iterator[tuple[Pieces, ThreadServer]]:
    app = Pieces()
    with ThreadServer(app) as server:
        yield app, server


def client(transport: PushTransport | None = None, **timeouts: float) -> httpx2.AsyncClient:
    timeout = httpx2.Timeout(5, **timeouts) if timeouts else httpx2.Timeout(5)
    return httpx2.AsyncClient(
        transport=transport or PushTransport(max_connections=4), timeout=timeout
    )


async def open_body(
    http: httpx2.AsyncClient, url: str, *, stream_tokens: int | None = None
) -> StreamedBody:
    """The taken body of a GET of ``url``, or with ``stream_tokens`` of a streamed chat
    completion of that many tokens from the upstream at ``url``."""
    if stream_tokens is None:
        request = http.build_request("GET", url)
    else:
        body = {**SSE_BODY, "stream": True, "max_tokens": stream_tokens}
        request = http.build_request("POST", f"{url}/v1/chat/completions", json=body)
    taken = take_body(await http.send(request, stream=True))
    assert taken is not None
    return taken


async def pushed(body: StreamedBody) -> tuple[bytes, BaseException | None]:
    """Everything ``body`` pushes, and what it ended with."""
    got: list[bytes] = []
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
    body.push(got.append, ended.set_result)
    error = await asyncio.wait_for(ended, 5)
    return b"".join(got), error


def test_a_pushed_body_arrives_whole_in_order_and_its_connection_is_reused(
    run: Run, pieces: tuple[Pieces, ThreadServer]
) -> None:
    app, server = pieces

    async def go() -> list[bytes]:
        bodies = []
        async with client() as http:
            for _ in range(3):
                response = await http.send(
                    http.build_request("GET", f"{server.url}/p?n=200"), stream=True
                )
                body = take_body(response)
                assert body is not None and response.status_code == 200
                await response.aclose()  # the httpx2 response goes; the body stays
                data, error = await pushed(body)
                assert error is None
                body.close()
                bodies.append(data)
        return bodies

    before = len(app.ports)
    assert run(go()) == [expected_pieces(200)] * 3
    assert len(set(app.ports[before:])) == 1  # one connection for the three


def test_bodies_read_through_httpx2_are_framed_and_decoded(
    run: Run, pieces: tuple[Pieces, ThreadServer]
) -> None:
    _, server = pieces

    async def go() -> tuple[str, str, bytes, bool]:
        async with client() as http:
            echo = await http.post(f"{server.url}/echo", content=b"hello world")
            unzipped = await http.get(f"{server.url}/gzip")
            streamed = await http.send(
                http.build_request("GET", f"{server.url}/p?n=50"), stream=True
            )
            chunked = await streamed.aread()
            async with http.stream("GET", f"{server.url}/gzip") as zipped:
                untaken = take_body(zipped) is None  # a compressed body stays httpx2's
                await zipped.aread()
            return echo.text, unzipped.text, chunked, untaken

    assert run(go()) == ("cl=11;te=None|hello world", "unzipped", expected_pieces(50), True)


def test_closing_a_body_mid_stream_stops_the_upstream(run: Run) -> None:
    upstream = ScriptedUpstream(ttft_s=0.0, interval_s=0.005)

    async def go(url: str) -> None:
        async with client() as http:
            body = await open_body(http, url, stream_tokens=10_000)
            got: list[bytes] = []
            body.push(got.append, lambda _: None)
            while len(got) < 5:
                await asyncio.sleep(0.01)
            body.close()
            for _ in range(300):
                if upstream.stats.disconnects:
                    return
                await asyncio.sleep(0.01)

    with ThreadServer(upstream) as server:
        run(go(server.url))
    assert upstream.stats.disconnects == 1
    assert upstream.stats.streams_completed == 0


def test_a_consumer_that_fails_closes_the_connection_and_hears_why(run: Run) -> None:
    upstream = ScriptedUpstream(ttft_s=0.0, interval_s=0.005)

    async def go(url: str) -> BaseException | None:
        async with client() as http:
            body = await open_body(http, url, stream_tokens=10_000)
            seen = 0

            def on_data(_: bytes) -> None:
                nonlocal seen
                seen += 1
                if seen == 3:
                    raise ValueError("consumer broke")

            ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
            body.push(on_data, ended.set_result)
            error = await asyncio.wait_for(ended, 5)
            body.close()
            for _ in range(300):
                if upstream.stats.disconnects:
                    break
                await asyncio.sleep(0.01)
            return error

    with ThreadServer(upstream) as server:
        error = run(go(server.url))
    assert isinstance(error, ValueError) and str(error) == "consumer broke"
    assert upstream.stats.disconnects == 1


def test_a_stream_read_to_its_done_line_gives_its_connection_back(run: Run) -> None:
    upstream = ScriptedUpstream(ttft_s=0.0, interval_s=0.0)
    ports: list[int] = []

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            ports.append(scope["client"][1])
        await upstream(scope, receive, send)

    async def go(url: str) -> None:
        async with client() as http:
            for _ in range(3):
                body = await open_body(http, url, stream_tokens=5)
                data = b""
                async for chunk in body.chunks():
                    data += chunk
                    if b"[DONE]" in data:
                        break
                body.close(drain=True)  # the reader is done; the body's end may still come

    with ThreadServer(recording) as server:
        run(go(server.url))
    assert len(ports) == 3 and len(set(ports)) == 1


class RawServer:
    """A TCP server answering with ``answer(request_number_on_this_connection)``: bytes to
    send (then keep reading, unless they say ``Connection: close`` or the number is in
    ``close_after``), or None to close the connection without a word; ``reset``: closed
    with a TCP reset, not a FIN."""

    def __init__(
        self,
        answer: Callable[[int], bytes | None],
        close_after: frozenset[int] = frozenset(),
        reset: bool = False,
    ) -> None:
        self.answer = answer
        self.close_after = close_after
        self.reset = reset
        self.port = free_port()
        self.connections = 0
        self.requests = 0
        self._sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            number = 0
            pending = b""
            while True:
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data:
                        return
                    pending += data
                _, _, pending = pending.partition(b"\r\n\r\n")
                self.requests += 1
                number += 1
                reply = self.answer(number)
                if reply is None:
                    return
                conn.sendall(reply)
                if b"connection: close" in reply.lower() or number in self.close_after:
                    if self.reset:
                        linger = struct.pack("ii", 1, 0)
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    return

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_pooled_connection_closed_as_it_is_taken_is_retried_once(run: Run) -> None:
    server = RawServer(lambda number: OK if number == 1 else None)

    async def go() -> list[str]:
        async with client() as http:
            return [(await http.get(f"{server.url}/{i}")).text for i in range(2)]

    with server:
        assert run(go()) == ["ok", "ok"]
        # the second request went out on the first connection, met its close, went again
        assert (server.connections, server.requests) == (2, 3)


@pytest.mark.parametrize(
    "answer",
    [None, b"SPAM 200 nonsense\r\n\r\n"],
    ids=["a new connection closed unanswered", "a garbled response"],
)
def test_a_response_that_is_not_http_is_a_protocol_error_not_a_retry(
    run: Run, answer: bytes | None
) -> None:
    async def go(url: str) -> None:
        async with client() as http:
            with pytest.raises(httpx2.RemoteProtocolError):
                await http.get(f"{url}/")

    with RawServer(lambda _: answer) as server:
        run(go(server.url))
        assert server.requests == 1


def test_a_body_without_length_ends_with_the_connection(run: Run) -> None:
    reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    server = RawServer(lambda _: reply)

    async def go() -> tuple[str, bytes, BaseException | None]:
        async with client() as http:
            pulled = (await http.get(f"{server.url}/")).text
            body = await open_body(http, server.url)
            data, error = await pushed(body)
            body.close()
            return pulled, data, error

    with server:
        assert run(go()) == ("until the end", b"until the end", None)


def test_a_body_cut_short_is_a_read_error(run: Run) -> None:
    server = RawServer(
        lambda _: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nonly ten b"
    )

    async def go() -> BaseException | None:
        async with client() as http:
            with pytest.raises(httpx2.ReadError):
                await http.get(f"{server.url}/")
            body = await open_body(http, server.url)
            data, error = await pushed(body)
            body.close()
            assert data == b"only ten b"
            return error

    with server:
        assert isinstance(run(go()), httpx2.ReadError)


def test_nothing_listening_is_a_connect_error(run: Run) -> None:
    async def go() -> None:
        async with client() as http:
            with pytest.raises(httpx2.ConnectError):
                await http.get(f"http://127.0.0.1:{free_port()}/")

    run(go())


def test_slow_headers_and_a_silent_body_are_read_timeouts(run: Run) -> None:
    slow = ScriptedUpstream(ttft_s=2.0)
    stalled = ScriptedUpstream(ttft_s=0.0, interval_s=2.0)

    async def go(slow_url: str, stalled_url: str) -> None:
        async with client(read=0.2) as http:
            with pytest.raises(httpx2.ReadTimeout):
                await http.post(f"{slow_url}/v1/chat/completions", json=SSE_BODY)
            body = await open_body(http, stalled_url, stream_tokens=20)
            with pytest.raises(httpx2.ReadTimeout):
                async for _ in body.chunks():
                    pass
            body.close()

    with ThreadServer(slow) as a, ThreadServer(stalled) as b:
        run(go(a.url, b.url))


def test_requests_beyond_the_pool_wait_then_time_out(
    run: Run, pieces: tuple[Pieces, ThreadServer]
) -> None:
    upstream = ScriptedUpstream(ttft_s=0.0, interval_s=0.01)

    async def go(url: str, other: str) -> str:
        async with client(PushTransport(max_connections=1), pool=0.2) as http:
            request = http.build_request(
                "POST",
                f"{url}/v1/chat/completions",
                json={**SSE_BODY, "stream": True, "max_tokens": 10_000},
            )
            held = await http.send(request, stream=True)
            with pytest.raises(httpx2.PoolTimeout):
                await http.get(f"{other}/p?n=1")
            waiting = asyncio.create_task(http.get(f"{other}/p?n=2"))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await held.aclose()  # its slot goes to the one waiting
            return (await waiting).text

    with ThreadServer(upstream) as server:
        assert run(go(server.url, pieces[1].url)) == expected_pieces(2).decode()


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_is_verified_against_the_trusted_certificates(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _certificate(tmp_path)
    app = Pieces()

    async def go(url: str) -> bytes:
        async with client() as http:
            body = await open_body(http, f"{url}/p?n=20")
            data, error = await pushed(body)
            body.close()
            assert error is None
            return data

    async def untrusted(url: str) -> None:
        async with client() as http:
            with pytest.raises(httpx2.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"{url}/p?n=1")

    with ThreadServer(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        url = server.url.replace("http://", "https://")
        run(untrusted(url))
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert run(go(url)) == expected_pieces(20)


def test_an_interim_response_is_skipped_for_the_real_one(run: Run) -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    server = RawServer(lambda _: interim + b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")

    async def go() -> tuple[int, str]:
        async with client() as http:
            response = await http.post(f"{server.url}/", content=b"x")
            return response.status_code, response.text

    with server:
        assert run(go()) == (201, "ok")


def test_a_body_ending_with_the_connection_but_cut_by_a_reset_is_a_read_error(run: Run) -> None:
    server = RawServer(lambda _: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial", reset=True)

    async def go() -> None:
        async with client() as http:
            with pytest.raises(httpx2.ReadError):
                await http.get(f"{server.url}/")

    with server:
        run(go())


def test_a_request_half_answered_on_a_reused_connection_is_not_sent_again(run: Run) -> None:
    # the upstream may have started on it: a POST sent twice could be two generations
    server = RawServer(lambda n: OK if n == 1 else b"HTTP/1.1 20", close_after=frozenset({2}))

    async def go() -> None:
        async with client() as http:
            assert (await http.post(f"{server.url}/", content=b"1")).text == "ok"
            with pytest.raises(httpx2.ReadError):
                await http.post(f"{server.url}/", content=b"2")

    with server:
        run(go())
        assert (server.connections, server.requests) == (1, 2)


def test_a_header_that_would_split_the_request_is_refused(
    run: Run, pieces: tuple[Pieces, ThreadServer]
) -> None:
    async def go(url: str) -> None:
        async with client() as http:
            with pytest.raises(httpx2.LocalProtocolError):
                await http.get(f"{url}/p?n=1", headers={"x-note": "a\r\nx-injected: 1"})

    run(go(pieces[1].url))


def test_head_is_answered_without_waiting_for_a_body(
    run: Run, pieces: tuple[Pieces, ThreadServer]
) -> None:
    async def go(url: str) -> int:
        async with client(read=2) as http:
            return (await http.head(f"{url}/p?n=3")).status_code

    assert run(go(pieces[1].url)) == 200
