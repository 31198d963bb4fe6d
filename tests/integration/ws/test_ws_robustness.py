"""Robustness of ``/stream/v1/ws`` against real nodes (SPEC section 6, docs/limits.md):
the frame size limit (1009), bad frames answered with ``error`` on a socket that stays
usable, the per-connection rate limit (``rate_limited`` then 1008), the bounded send
buffer (4008, then a resume by ``seq`` with no gap), protocol pings and the close of a
dead socket."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode
from websockets.protocol import Event

from core.auth.dev import DevTokens
from tests.integration.ws.conftest import (
    WsClient,
    bearer,
    chat_request,
    open_ws,
    post,
    seqs,
    sse,
    text_of,
    ws_url,
)
from tests.support.nodes import Nodes, start_nodes
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

MAX_FRAME = 4096
LIMITS = {
    "WS_MAX_MESSAGE_BYTES": str(MAX_FRAME),
    "WS_MESSAGES_PER_S": "5",
    "WS_MESSAGE_BURST": "15",
    "WS_RATE_STRIKES": "5",
    "KEEPALIVE_S": "1",
}


@pytest.fixture(scope="module")
def nodes(node_env: dict[str, str]) -> Iterator[Nodes]:
    yield from start_nodes({**node_env, **LIMITS})


@pytest.fixture(scope="module")
def node(nodes: Nodes) -> ProcessServer:
    return nodes.start(NODE_ID="robust-a")


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_a_frame_over_the_size_limit_closes_with_1009(
    node: ProcessServer, tokens: DevTokens
) -> None:
    ws = await open_ws(node, tokens, user())
    # just under the limit: an ordinary frame (answered, socket open)
    await ws.send({"type": "chat.send", **chat_request("/tokens 3 " + "x" * (MAX_FRAME - 200))})
    stream_id = (await ws.expect({"type": "stream.created"}))["stream_id"]
    assert (await ws.stream(stream_id))[-1]["type"] == "done"
    await ws.send({"type": "chat.send", **chat_request("x" * (MAX_FRAME + 1))})
    assert await ws.closed() == 1009


BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json at all", "invalid_message"),
    ("[1, 2, 3]", "invalid_message"),
    ('"a string"', "invalid_message"),
    ('{"no": "type"}', "invalid_message"),
    ('{"type": 7}', "invalid_message"),
    ('{"type": "launch.missiles"}', "unknown_type"),
    ('{"type": "resume"}', "invalid_message"),
    ('{"type": "resume", "stream_id": "' + "0" * 32 + '", "after_seq": -1}', "invalid_message"),
    # a malformed id: refused, or answered as an unknown one (ids never leak)
    ('{"type": "resume", "stream_id": "' + "s" * 300 + '"}', "invalid_message|stream_not_found"),
    ('{"type": "typing", "room": "r", "active": "yes"}', "invalid_message"),
    ('{"type": "join", "room": ""}', "invalid_message"),
    ('{"type": "chat.send", "messages": "hello"}', "invalid_message"),
    ('{"type": "chat.send", "model": "local-model", "messages": []}', "invalid_message"),
    (b"\xff\xfe binary garbage", "invalid_message"),
]


async def test_bad_frames_get_an_error_and_the_socket_stays_usable(
    node: ProcessServer, tokens: DevTokens
) -> None:
    ws = await open_ws(node, tokens, user())
    for frame, code in BAD_FRAMES[:7]:
        await ws.send(frame)
        error = await ws.expect({"type": "error"})
        assert error["code"] in code.split("|"), (frame, error)
        assert error["message"]
    await ws.send({"type": "ping"})
    await ws.expect({"type": "pong"})
    await asyncio.sleep(1.6)  # stay within the rate limit (5/s, burst 15)
    for frame, code in BAD_FRAMES[7:]:
        await ws.send(frame)
        error = await ws.expect({"type": "error"})
        assert error["code"] in code.split("|"), (frame, error)
    await ws.send({"type": "resume", "stream_id": "s", "after_seq": -1, "ref": "mine"})
    assert (await ws.expect({"type": "error"}))["ref"] == "mine"  # errors name their frame
    # still a working socket: ping, and a whole stream
    await ws.send({"type": "ping"})
    await ws.expect({"type": "pong"})
    await ws.send({"type": "chat.send", "ref": "ok", **chat_request("/tokens 5")})
    stream_id = (await ws.expect({"type": "stream.created", "ref": "ok"}))["stream_id"]
    frames = await ws.stream(stream_id)
    assert frames[-1]["type"] == "done" and len(text_of(frames).split()) == 5
    await ws.close()


async def test_a_flooding_client_is_limited_then_closed_and_others_are_not_starved(
    node: ProcessServer, tokens: DevTokens
) -> None:
    bystander = await open_ws(node, tokens, user())
    flood = await open_ws(node, tokens, user())
    for _ in range(60):
        await flood.send({"type": "ping"})
    assert await flood.closed() == 1008
    kinds = [f["type"] for f in flood.frames]
    assert kinds.count("pong") <= 15 + 2  # the burst, plus what refilled meanwhile
    limited = [f for f in flood.frames if f["type"] == "error"]
    assert limited and {f["code"] for f in limited} == {"rate_limited"}, str(kinds)
    assert kinds.index("error") > kinds.index("pong")  # allowed first, refused after

    started = time.monotonic()
    await bystander.send({"type": "ping"})
    await bystander.expect({"type": "pong"}, within=2)
    assert time.monotonic() - started < 1.0
    await bystander.close()


class PingCounter(ClientConnection):
    """A client connection that counts the server's protocol pings."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings: list[float] = []

    def process_event(self, event: Event) -> None:
        if isinstance(event, Frame) and event.opcode is Opcode.PING:
            self.pings.append(time.monotonic())
        super().process_event(event)


async def test_the_server_pings_every_keepalive(node: ProcessServer, tokens: DevTokens) -> None:
    conn = await connect(
        ws_url(node),
        additional_headers=bearer(tokens, user()),
        create_connection=PingCounter,
        ping_interval=None,  # only the server pings
    )
    assert isinstance(conn, PingCounter)
    await asyncio.sleep(3.6)  # KEEPALIVE_S=1
    assert len(conn.pings) >= 3
    gaps = [b - a for a, b in zip(conn.pings, conn.pings[1:], strict=False)]
    assert max(gaps) < 2.0  # every KEEPALIVE_S (1 s), with slack for a loaded machine
    # the socket is alive and answering (the client library answered each ping)
    ws = WsClient(conn, "pinged")
    await ws.send({"type": "ping"})
    await ws.expect({"type": "pong"})
    await ws.close()


def raw_handshake(node: ProcessServer, token: str) -> socket.socket:
    """A bare TCP client that completes the WebSocket handshake, nothing more."""
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /stream/v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_until_eof(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


async def test_a_dead_client_is_closed_within_two_keepalives(
    node: ProcessServer, tokens: DevTokens
) -> None:
    silent = raw_handshake(node, tokens.mint(user()))
    started = time.monotonic()
    # it never answers a ping: the server pings at 1 s, gives up at 2 s and closes
    data = await asyncio.to_thread(read_until_eof, silent, 10.0)
    elapsed = time.monotonic() - started
    silent.close()
    assert 1.5 <= elapsed <= 4.5, elapsed  # about 2 x KEEPALIVE_S
    assert data.startswith(b"\x89")  # a ping frame first
    assert b"\x88" in data  # then a close frame


async def test_a_dead_member_leaves_its_room(
    nodes: Nodes, node: ProcessServer, tokens: DevTokens
) -> None:
    alice_name, bob_name = user(), user()
    created = await post(node, "/stream/v1/rooms", bearer(tokens, alice_name))
    room_id = created.json()["id"]
    await post(node, f"/stream/v1/rooms/{room_id}/members", bearer(tokens, alice_name),
               {"user": bob_name})  # fmt: skip
    alice = await open_ws(node, tokens, alice_name)
    await alice.send({"type": "join", "room": room_id})
    await alice.expect({"type": "joined"})

    bob = raw_handshake(node, tokens.mint(bob_name))
    join = json.dumps({"type": "join", "room": room_id}).encode()
    bob.sendall(Frame(Opcode.TEXT, join).serialize(mask=True))
    await alice.expect({"type": "presence", "user": bob_name, "state": "joined"})
    went_silent = time.monotonic()
    await alice.expect({"type": "presence", "user": bob_name, "state": "left"}, within=8)
    assert time.monotonic() - went_silent < 4.0
    bob.close()
    await alice.close()


@pytest.fixture(scope="module")
def fast_node(nodes: Nodes) -> ProcessServer:
    """Tokens as fast as the local model makes them, a 16 KiB send buffer, and pings slow
    enough that a client pausing its reads for a few seconds is not taken for dead."""
    return nodes.start(
        NODE_ID="robust-fast",
        LOCAL_TOKEN_DELAY_MS="0",
        MAX_OUTPUT_TOKENS="100000",
        WS_SEND_BUFFER_BYTES="16384",
        KEEPALIVE_S="6",
    )


async def test_a_client_that_stops_reading_is_closed_with_4008_then_resumes(
    fast_node: ProcessServer, node: ProcessServer, tokens: DevTokens
) -> None:
    name = user()
    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tiny.connect(("127.0.0.1", fast_node.port))
    conn = await connect(
        ws_url(fast_node), sock=tiny, additional_headers=bearer(tokens, name),
        max_queue=1, ping_interval=None,
    )  # fmt: skip
    ws = WsClient(conn, "slow-reader", reading=False)
    await ws.send({"type": "chat.send", "ref": "long", **chat_request("/tokens 70000",
                                                                       max_tokens=70000)})  # fmt: skip
    await asyncio.sleep(3.0)  # reads nothing while the reply pours out
    assert await ws.closed(within=30) == 4008
    stream_id = next(f["stream_id"] for f in ws.frames if f["type"] == "stream.created")
    seen = ws.of(stream_id)
    assert seen and seqs(seen) == list(range(1, seen[-1]["seq"] + 1))  # nothing skipped
    assert seen[-1]["type"] != "done"  # closed mid-reply

    # a new socket (another node) resumes after the last seq seen: what follows, no gap
    # (the first thousands of events: the whole reply is ~70,000 of them)
    again = await open_ws(node, tokens, name, max_size=None)
    await again.send({"type": "resume", "stream_id": stream_id, "after_seq": seen[-1]["seq"]})

    async def enough() -> None:
        while len(again.of(stream_id)) < 3000:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(enough(), 30)
    rest = again.of(stream_id)
    await again.close()
    assert seqs(rest) == list(range(seen[-1]["seq"] + 1, seen[-1]["seq"] + 1 + len(rest)))
    # the same events as SSE gives from that point
    over_sse = await sse(
        node,
        f"/stream/v1/streams/{stream_id}/events",
        headers={**bearer(tokens, name), "last-event-id": str(seen[-1]["seq"])},
        max_events=50,
    )
    assert [{"type": e.event, "stream_id": stream_id, "seq": e.id, **e.json()}
            for e in over_sse.events] == rest[:50]  # fmt: skip


async def test_a_room_member_that_stops_reading_leaves_the_room(
    fast_node: ProcessServer, node: ProcessServer, tokens: DevTokens
) -> None:
    """Its socket overflows (4008) but the close cannot reach a client that does not read:
    the server does not wait for it; the member leaves its rooms at once."""
    alice_name, bob_name = user(), user()
    created = await post(node, "/stream/v1/rooms", bearer(tokens, alice_name))
    room_id = created.json()["id"]
    await post(node, f"/stream/v1/rooms/{room_id}/members", bearer(tokens, alice_name),
               {"user": bob_name})  # fmt: skip
    alice = await open_ws(node, tokens, alice_name)
    await alice.send({"type": "join", "room": room_id})
    await alice.expect({"type": "joined"})

    tiny = socket.socket()
    tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    tiny.connect(("127.0.0.1", fast_node.port))
    conn = await connect(
        ws_url(fast_node), sock=tiny, additional_headers=bearer(tokens, bob_name),
        max_queue=1, ping_interval=None,
    )  # fmt: skip
    try:
        bob = WsClient(conn, "stuck-bob", reading=False)
        await bob.send({"type": "join", "room": room_id})
        await alice.expect({"type": "presence", "user": bob_name, "state": "joined"})
        await bob.send({"type": "chat.send", **chat_request("/tokens 70000", max_tokens=70000)})
        since = time.monotonic()  # bob reads nothing from now on
        await alice.expect({"type": "presence", "user": bob_name, "state": "left"}, within=10)
        assert time.monotonic() - since < 8.0  # not a ping timeout later, nor never
    finally:
        conn.transport.abort()
        await alice.close()
