"""``make bench`` (rooms): fan-out of room replies, presence and typing across two nodes.

Two stream-service nodes share one DynamoDB (moto's server) and one real ``redis-server``
(the bus). ``--rooms`` rooms of ``--members`` members each, every member on its own
WebSocket, half of each room on each node. Measured:
- fan-out: in every room at once, a member asks for a reply (stamped tokens from the
  scripted upstream); each member's receive time of each token minus the upstream's emit
  time, p50 / p99 (the producer's node relays and publishes once per event; every member
  on both nodes receives it);
- presence and typing: the time from a member's ``join`` / ``typing`` to the ``presence`` /
  ``typing`` frame at the members connected to the other node, p50 / p99.
Written to ``bench/results/room_bench.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
import uvloop

from bench import raise_fd_limit, ws_client
from bench.stream_bench import RESULTS, SECRET, STAMP, mint_token, pct, start, start_moto
from devstack.local_aws import free_port


@dataclass
class Member:
    room: str
    user: str
    node: int
    token: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Figures:
    fanout_ms: list[float] = field(default_factory=list)
    presence_ms: list[float] = field(default_factory=list)
    typing_ms: list[float] = field(default_factory=list)
    sent_at: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (kind, room, user)
    errors: int = 0


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    return proc


async def listen(member: Member, nodes: dict[str, int], figures: Figures) -> None:
    assert member.reader is not None
    assert member.writer is not None
    async for raw in ws_client.messages(member.reader, member.writer):
        now = time.time()
        if raw.startswith(b'{"type":"delta"'):
            stamp = STAMP.search(raw)
            if stamp is not None:
                figures.fanout_ms.append((time.time_ns() - int(stamp.group(1))) / 1e6)
            continue
        message = json.loads(raw)
        kind = message["type"]
        if kind == "joined":
            member.joined.set()
        elif kind == "done":
            member.done.set()
        elif kind in ("presence", "typing"):
            other = message["user"]
            if nodes.get(other) == member.node:
                continue  # only what crossed nodes
            active = message.get("state") == "joined" or message.get("active") is True
            sent = figures.sent_at.get((kind, message["room"], other))
            if sent is not None and active:
                (figures.presence_ms if kind == "presence" else figures.typing_ms).append(
                    (now - sent) * 1000
                )
        elif kind == "error":
            figures.errors += 1
            print("  error:", message, flush=True)


async def run(ports: list[int], rooms: int, size: int, typing_rounds: int) -> Figures:
    figures = Figures()
    members: list[Member] = []
    nodes: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as http:
        for r in range(rooms):
            users = [f"r{r}-m{m}" for m in range(size)]
            creator = mint_token(users[0])
            created = await http.post(
                f"http://127.0.0.1:{ports[0]}/stream/v1/rooms",
                headers={"authorization": f"Bearer {creator}"},
            )
            room = created.json()["id"]
            for user in users[1:]:
                added = await http.post(
                    f"http://127.0.0.1:{ports[0]}/stream/v1/rooms/{room}/members",
                    json={"user": user},
                    headers={"authorization": f"Bearer {creator}"},
                )
                assert added.status_code < 300, added.text
            for m, user in enumerate(users):
                members.append(Member(room, user, m % 2, mint_token(user)))
                nodes[user] = m % 2
    listeners = []
    for member in members:
        member.reader, member.writer = await ws_client.connect(
            "127.0.0.1", ports[member.node], "/stream/v1/ws", member.token
        )
        listeners.append(asyncio.create_task(listen(member, nodes, figures)))
    # presence: every member joins; the others see it (those on the other node count)
    for member in members:
        figures.sent_at[("presence", member.room, member.user)] = time.time()
        assert member.writer is not None
        member.writer.write(
            ws_client.frame(json.dumps({"type": "join", "room": member.room}).encode())
        )
        await asyncio.sleep(0.005)
    await asyncio.wait_for(asyncio.gather(*(m.joined.wait() for m in members)), 30)
    await asyncio.sleep(1)
    # typing, a few rounds: one member of each room types
    for round_ in range(typing_rounds):
        for room_members in _by_room(members).values():
            typist = room_members[1 + round_ % (len(room_members) - 1)]
            figures.sent_at[("typing", typist.room, typist.user)] = time.time()
            assert typist.writer is not None
            typist.writer.write(
                ws_client.frame(
                    json.dumps({"type": "typing", "room": typist.room, "active": True}).encode()
                )
            )
        await asyncio.sleep(0.5)
    # fan-out: a reply in every room at once
    for room_members in _by_room(members).values():
        asker = room_members[0]
        assert asker.writer is not None
        asker.writer.write(
            ws_client.frame(
                json.dumps({"type": "chat.send", "room": asker.room, "content": "go"}).encode()
            )
        )
    await asyncio.wait_for(asyncio.gather(*(m.done.wait() for m in members)), 120)
    for task in listeners:
        task.cancel()
    for member in members:
        if member.writer is not None:
            member.writer.close()
    return figures


def _by_room(members: list[Member]) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = {}
    for member in members:
        out.setdefault(member.room, []).append(member)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=200, help="tokens per reply")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second")
    parser.add_argument("--typing-rounds", type=int, default=5)
    args = parser.parse_args()
    raise_fd_limit()
    RESULTS.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    up_port, moto_port, redis_port = free_port(), free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start_redis(redis_port))
        procs.append(start_moto(moto_port))
        up_cmd = [py, "-m", "bench.upstream_server", "--port", str(up_port)]
        up_cmd += ["--interval", str(1 / args.rate), "--tokens", str(args.tokens)]
        procs.append(start(up_cmd, {}, f"http://127.0.0.1:{up_port}/v1/models"))
        env = {
            "LLM_PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
            "OPENAI_MAX_RETRIES": "0",
            "MODELS": "upstream-model",
            "DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
            "STREAMS_TABLE": "bench-rooms",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_REGION": "us-east-1",
            "BUS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "AUTH_DEV_SECRET": SECRET,
            "MAX_STREAMS_PER_USER": "1000",
            "ROOM_MAX_MEMBERS": str(max(50, args.members)),
            "WS_MESSAGES_PER_S": "1000",
        }
        ports = [free_port(), free_port()]
        for n, port in enumerate(ports):
            procs.append(
                start(
                    [py, "-m", "stream_service", "--host", "127.0.0.1", "--port", str(port)],
                    {**env, "NODE_ID": f"room-bench-{n}"},
                    f"http://127.0.0.1:{port}/stream/healthz",
                )
            )
        os.setpriority(os.PRIO_PROCESS, 0, 10)
        figures = uvloop.run(run(ports, args.rooms, args.members, args.typing_rounds))
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
    summary = {
        "rooms": args.rooms,
        "members_per_room": args.members,
        "tokens_per_reply": args.tokens,
        "fanout_p50_ms": pct(figures.fanout_ms, 0.5),
        "fanout_p99_ms": pct(figures.fanout_ms, 0.99),
        "fanout_samples": len(figures.fanout_ms),
        "presence_p50_ms": pct(figures.presence_ms, 0.5),
        "presence_p99_ms": pct(figures.presence_ms, 0.99),
        "presence_samples": len(figures.presence_ms),
        "typing_p50_ms": pct(figures.typing_ms, 0.5),
        "typing_p99_ms": pct(figures.typing_ms, 0.99),
        "typing_samples": len(figures.typing_ms),
        "errors": figures.errors,
    }
    table = "\n".join(
        [
            f"{args.rooms} rooms x {args.members} members over two nodes (one redis-server, one "
            f"moto DynamoDB), replies of {args.tokens} tokens at {args.rate:.0f} tokens/s in every "
            "room at once.",
            "",
            "| figure | p50 ms | p99 ms | samples | target |",
            "|---|---:|---:|---:|---|",
            f"| fan-out: member receive - upstream emit, per token | {summary['fanout_p50_ms']:.1f} "
            f"| {summary['fanout_p99_ms']:.1f} | {summary['fanout_samples']} | 5 / 50 |",
            f"| presence across nodes | {summary['presence_p50_ms']:.1f} | "
            f"{summary['presence_p99_ms']:.1f} | {summary['presence_samples']} | p99 250 |",
            f"| typing across nodes | {summary['typing_p50_ms']:.1f} | "
            f"{summary['typing_p99_ms']:.1f} | {summary['typing_samples']} | p99 250 |",
            "",
            f"errors: {figures.errors}",
            "",
        ]
    )
    print(table)
    (RESULTS / "room_bench.md").write_text(table)
    (RESULTS / "room_bench.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
