"""Why the room bus is Redis/Valkey pub/sub: publish -> receive latency across two nodes
through a real redis-server on loopback, against polling the DynamoDB store (moto's
server, in its own process) at an interval.

    .venv/bin/python -m bench.room_bus_latency [--quick]

Prints a markdown table (and writes bench/results/room_bus_latency.json). Everything runs
on 127.0.0.1; loops are bounded by count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from core.aws.tables import ensure_tables
from core.settings import Settings
from devstack.local_aws import free_port
from stream_service.rooms.bus.base import BusMetrics
from stream_service.rooms.bus.redis import RedisBus
from stream_service.store.rooms_base import RoomLimits
from stream_service.store.rooms_dynamodb import DynamoRoomStore
from tests.support.redis import RedisServer

RESULTS = Path(__file__).resolve().parent / "results"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, ms: list[float], note: str) -> dict[str, Any]:
    return {
        "path": name,
        "n": len(ms),
        "p50_ms": round(pct(ms, 0.50), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "note": note,
    }


async def bus_latency(url: str, n: int, receivers: int) -> list[float]:
    """One publisher node, ``receivers`` other nodes; latency to each receiver."""
    pub = RedisBus(url, "pub", BusMetrics())
    subs = [RedisBus(url, f"sub{i}", BusMetrics()) for i in range(receivers)]
    got: list[float] = []
    done = asyncio.Event()
    expected = n * receivers

    async def on_message(channel: str, data: bytes) -> None:
        got.append((time.perf_counter() - float(data)) * 1000)
        if len(got) >= expected:
            done.set()

    await pub.start()
    for bus in subs:
        await bus.start()
        await bus.subscribe("room:bench", on_message)
    try:
        for _ in range(n):
            await pub.publish("room:bench", repr(time.perf_counter()).encode())
            await asyncio.sleep(0.001)  # one message per ms: latency, not throughput
        await asyncio.wait_for(done.wait(), 30)
    finally:
        for bus in (pub, *subs):
            await bus.close()
    return got


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.list_tables()
            return proc, endpoint
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.1)


async def poll_latency(endpoint: str, n: int, interval_s: float) -> tuple[list[float], list[float]]:
    """A writer appends a message at random moments; a reader polls the conversation every
    ``interval_s``. Returns (append-complete -> seen latencies, query times) in ms."""
    table = f"bench-{uuid.uuid4().hex[:6]}"
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
    ensure_tables(client, Settings(streams_table=table, jobs_table=f"{table}-j"))
    limits = RoomLimits(max_messages=10_000, max_bytes=10_000_000)
    writer = DynamoRoomStore(client, table, limits)
    reader = DynamoRoomStore(
        boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1"), table, limits
    )
    room = await writer.create(f"rm_{uuid.uuid4().hex}", "alice")
    written: dict[str, float] = {}
    latencies: list[float] = []
    queries: list[float] = []
    stop = asyncio.Event()

    async def poll() -> None:
        seen: set[str] = set()
        while not stop.is_set():
            t0 = time.perf_counter()
            messages = await reader.messages(room.id)
            now = time.perf_counter()
            queries.append((now - t0) * 1000)
            for m in messages:
                if m.id not in seen and m.id in written:
                    seen.add(m.id)
                    latencies.append((now - written[m.id]) * 1000)
            await asyncio.sleep(interval_s)

    task = asyncio.create_task(poll())
    rng = uuid.uuid4().int
    for i in range(n):
        await asyncio.sleep(interval_s * (0.3 + ((rng >> (i % 64)) & 7) / 10))
        message = await writer.append(room.id, "alice", "user", f"m{i}")
        written[message.id] = time.perf_counter()
    await asyncio.sleep(interval_s * 2 + 0.2)
    stop.set()
    await task
    writer.close()
    reader.close()
    return latencies, queries


async def main(quick: bool) -> None:
    n_bus = 300 if quick else 2000
    n_poll = 20 if quick else 60
    rows: list[dict[str, Any]] = []
    with RedisServer() as redis:
        rows.append(summary("Redis pub/sub, 1 other node", await bus_latency(redis.url, n_bus, 1),
                            "redis-server 7 on loopback, redis-py asyncio, 1 msg/ms"))  # fmt: skip
        rows.append(summary("Redis pub/sub, 3 other nodes", await bus_latency(redis.url, n_bus, 3),
                            "every receiver's latency"))  # fmt: skip
    proc, endpoint = start_moto()
    try:
        for interval in (0.1, 0.25, 1.0):
            seen, queries = await poll_latency(endpoint, n_poll, interval)
            rows.append(summary(f"poll DynamoDB store every {int(interval * 1000)} ms", seen,
                                f"moto server; one query p50 {pct(queries, 0.5):.1f} ms"))  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    print("| path | n | p50 ms | p99 ms | mean ms | note |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['path']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} | {r['note']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "room_bus_latency.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
