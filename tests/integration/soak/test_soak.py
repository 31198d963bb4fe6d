"""Soak: two nodes on one DynamoDB (moto's server), hundreds of streams with random
disconnects, resumes on either node, cancels and per-user limit hits, compressed into about
a minute (bounded in count and time, loopback only).

Afterwards: every stream ended exactly once (its stored events are 1..N with one terminal
event, last); nothing is left running, reading or counted against a limit on either node;
and each node's RSS is back within 10 % of its level after a warm-up round of the same mix.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from devstack.upstream import ScriptedUpstream
from tests.support.servers import ProcessServer, ThreadServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

MODEL = "upstream-model"
USERS = [f"soak-{n}" for n in range(16)]
LIMIT = 4
TOKENS = DevTokens(DEV_SECRET_DEFAULT, 3600)
HEADERS = {user: {"authorization": f"Bearer {TOKENS.mint(user)}"} for user in USERS}


@pytest.fixture(scope="module")
def soak_cluster(aws_env: dict[str, str]) -> Iterator[tuple[list[ProcessServer], str]]:
    upstream = ScriptedUpstream(ttft_s=0.02, interval_s=0.02, default_tokens=20)
    table = f"soak-{uuid.uuid4().hex[:8]}"
    with ThreadServer(upstream) as server:
        env = {
            **aws_env,
            "STREAMS_TABLE": table,
            "LLM_PROVIDER": "openai",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": f"{server.url}/v1",
            "OPENAI_MAX_RETRIES": "0",
            "KEEPALIVE_S": "1",
            "RESUME_GRACE_S": "1",
            "LEASE_TTL_S": "6",
            "POLL_INTERVAL_MS": "100",
            "FLUSH_INTERVAL_MS": "100",
            "TAIL_INTERVAL_MS": "50",
            "RETAIN_S": "2",
            # moto on two shared cores under this load: a record can take seconds to land
            "RECORD_WAIT_S": "10",
            "MAX_STREAMS_PER_USER": str(LIMIT),
            "STREAM_LIMIT_POLICY": "reject",
        }
        nodes = [
            ProcessServer(
                "stream_service", {**env, "NODE_ID": f"soak-{n}"}, health="/stream/healthz"
            ).start()
            for n in range(2)
        ]
        try:
            yield nodes, table
        finally:
            for node in nodes:
                node.stop()


def rss_kb(node: ProcessServer) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def metric(node: ProcessServer, name: str) -> float:
    text = httpx.get(f"{node.url}/stream/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def read_ids(
    client: httpx.AsyncClient,
    node: ProcessServer,
    sid: str,
    user: str,
    after: int,
    stop_after: int | None,
) -> tuple[list[tuple[int, str]], bool]:
    """Read events after ``after`` (at most ``stop_after`` of them); (ids and kinds, ended)."""
    headers = {**HEADERS[user], "Last-Event-ID": str(after)}
    seen: list[tuple[int, str]] = []
    async with client.stream(
        "GET", f"{node.url}/stream/v1/streams/{sid}/events", headers=headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        event_id, kind = None, None
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line == "" and event_id is not None:
                assert kind is not None
                seen.append((event_id, kind))
                if kind in ("done", "error"):
                    return seen, True
                event_id, kind = None, None
                if stop_after is not None and len(seen) >= stop_after:
                    return seen, False  # the client drops the connection here
    return seen, False


async def one_stream(
    client: httpx.AsyncClient,
    nodes: list[ProcessServer],
    rng: random.Random,
    log: Counter[str],
    created: list[tuple[str, str]],
) -> None:
    user = rng.choice(USERS)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "soak"}],
        "max_tokens": rng.randint(5, 60),
    }
    node = rng.choice(nodes)
    answer = await client.post(f"{node.url}/stream/v1/streams", json=body, headers=HEADERS[user])
    if answer.status_code == 429:
        assert answer.json()["error"]["code"] == "too_many_streams"
        assert "retry-after" in answer.headers
        log["limited"] += 1
        return
    assert answer.status_code == 201, answer.text
    sid = answer.json()["id"]
    created.append((user, sid))
    action = rng.choice(["read", "resume", "resume", "cancel", "abandon"])
    log[action] += 1
    after = 0
    ids: list[int] = []
    if action == "abandon":  # a client that goes away for good: cancelled after the grace
        seen, _ = await read_ids(client, rng.choice(nodes), sid, user, 0, rng.randint(1, 3))
        return
    if action == "cancel":
        seen, ended = await read_ids(client, rng.choice(nodes), sid, user, 0, rng.randint(1, 4))
        ids += [i for i, _ in seen]
        after = ids[-1] if ids else 0
        cancelled = await client.post(
            f"{rng.choice(nodes).url}/stream/v1/streams/{sid}/cancel", headers=HEADERS[user]
        )
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] in ("cancelled", "cancelling", "completed")
    drops = rng.randint(1, 3) if action == "resume" else 0
    for attempt in range(12):
        stop = rng.randint(1, 8) if attempt < drops else None
        seen, ended = await read_ids(client, rng.choice(nodes), sid, user, after, stop)
        ids += [i for i, _ in seen]
        if seen:
            after = seen[-1][0]
        if ended:
            break
    else:
        raise AssertionError(f"{sid}: never ended")
    assert ids == list(range(1, len(ids) + 1)), f"{sid}: {ids}"  # no gap, no repeat


async def soak(
    nodes: list[ProcessServer], streams: int, seed: int
) -> tuple[Counter[str], list[tuple[str, str]]]:
    rng = random.Random(seed)
    log: Counter[str] = Counter()
    created: list[tuple[str, str]] = []
    sem = asyncio.Semaphore(40)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:

        async def run() -> None:
            async with sem:
                await one_stream(client, nodes, rng, log, created)

        await asyncio.wait_for(asyncio.gather(*(run() for _ in range(streams))), 240)
    return log, created


async def settle(nodes: list[ProcessServer], wait_s: float = 30.0) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        busy = [
            metric(n, "rtai_stream_active_streams") + metric(n, "rtai_stream_connections")
            for n in nodes
        ]
        if not any(busy) or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.5)


def test_soak_ends_every_stream_once_and_leaves_nothing_behind(
    soak_cluster: tuple[list[ProcessServer], str], aws_env: dict[str, str]
) -> None:
    nodes, table = soak_cluster
    asyncio.run(soak(nodes, 80, seed=1))  # warm-up: pools, caches, allocator arenas
    asyncio.run(settle(nodes))
    before = [rss_kb(n) for n in nodes]

    log, created = asyncio.run(soak(nodes, 240, seed=2))
    asyncio.run(settle(nodes))
    assert log["limited"] > 0 and log["resume"] > 0 and log["cancel"] > 0 and log["abandon"] > 0

    # nothing left running, reading or counted against a limit, on either node
    for node in nodes:
        assert metric(node, "rtai_stream_active_streams") == 0
        assert metric(node, "rtai_stream_connections") == 0
    started = sum(metric(n, "rtai_stream_streams_started_total") for n in nodes)
    finished = sum(metric(n, "rtai_stream_streams_finished_total") for n in nodes)
    assert started == finished  # each producer ended exactly once
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=aws_env["DYNAMODB_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    for user in USERS:
        item = dynamodb.get_item(
            TableName=table, Key={"pk": {"S": f"U#{user}"}, "sk": {"S": "streams"}}
        ).get("Item", {})
        assert int(item.get("n", {"N": "0"})["N"]) == 0, item
        assert not [k for k in item if k.startswith("h_")], item

    # every stream's stored story: ids 1..N, exactly one terminal event, last
    async def stored(user: str, sid: str) -> list[tuple[int, str]]:
        async with httpx.AsyncClient(timeout=30) as client:
            seen, ended = await read_ids(client, nodes[0], sid, user, 0, None)
        assert ended
        return seen

    async def all_stored() -> list[list[tuple[int, str]]]:
        sem = asyncio.Semaphore(20)

        async def one(user: str, sid: str) -> list[tuple[int, str]]:
            async with sem:
                return await stored(user, sid)

        return await asyncio.gather(*(one(u, s) for u, s in created))

    for story in asyncio.run(all_stored()):
        assert [i for i, _ in story] == list(range(1, len(story) + 1))
        kinds = [k for _, k in story]
        assert sum(k in ("done", "error") for k in kinds) == 1
        assert kinds[-1] in ("done", "error")

    after = [rss_kb(n) for n in nodes]
    for b, a in zip(before, after, strict=True):
        assert a <= b * 1.10, f"RSS grew from {b} KB to {a} KB"
    print(json.dumps({"log": dict(log), "rss_before_kb": before, "rss_after_kb": after}))
