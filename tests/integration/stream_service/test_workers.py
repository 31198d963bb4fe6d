"""WORKERS=2: two processes behind one port, each a node of its own, any stream readable
from either (the shared store), drained together on SIGTERM, a dead worker started again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.auth.dev import DevTokens
from tests.integration.stream_service.conftest import MODEL, StartNode, auth
from tests.support.servers import ROOT
from tests.support.sse import read_sse


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def node_ids(url: str, tries: int = 60) -> set[str]:
    """The node ids that answer, each on a fresh connection (the kernel spreads them)."""
    seen = set()
    for _ in range(tries):
        seen.add(httpx.get(f"{url}/stream/healthz", timeout=5).json()["node"])
    return seen


def wait_for_workers(url: str, expected: set[str], timeout: float = 60) -> None:
    """Until every worker answers (each binds the port once its app is built: the first
    one up answers alone for a moment)."""
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        try:
            seen = node_ids(url, 30)
        except httpx.HTTPError:  # a worker between its bind and its first answer
            seen = set()
        if seen == expected:
            return
        time.sleep(0.2)
    pytest.fail(f"workers answering: {seen}, expected {expected}")


def read_events(url: str, path: str) -> list[tuple[int, str, str]]:
    """Every event of a stream, on a connection of its own."""
    result = read_sse(f"{url}{path}")
    assert result.status == 200, result.body
    return [(e.id or 0, e.event, e.data) for e in result.events]


def test_streams_are_read_from_either_worker(start_node: StartNode, tokens: DevTokens) -> None:
    node = start_node(NODE_ID="multi", WORKERS="2", MAX_STREAMS_PER_USER="50")
    wait_for_workers(node.url, {"multi-w0", "multi-w1"})
    headers = auth(tokens, "workers-reader")
    paths = []
    for i in range(8):
        with httpx.Client(timeout=10) as client:
            created = client.post(
                f"{node.url}/stream/v1/streams",
                headers=headers,
                json={"model": MODEL, "messages": [{"role": "user", "content": f"w{i}"}]},
            )
        assert created.status_code == 201, created.text
        paths.append((created.json()["id"], created.json()["events_url"]))
    for stream_id, path in paths:
        # read once it has ended: each read then comes from the store or the producer's
        # memory, whichever worker it lands on
        deadline = time.monotonic() + 60
        while True:
            status = httpx.get(
                f"{node.url}/stream/v1/streams/{stream_id}", headers=headers, timeout=10
            ).json()["status"]
            if status != "running":
                break
            assert time.monotonic() < deadline, "the stream never ended"
            time.sleep(0.2)
        reads = [read_events(node.url, path) for _ in range(3)]
        assert reads[0][-1][1] == "done", reads[0][-3:]
        assert [seq for seq, _, _ in reads[0]] == list(range(1, len(reads[0]) + 1))
        assert reads[1] == reads[0] and reads[2] == reads[0]


def test_sigterm_drains_every_worker_and_a_dead_one_is_restarted(
    start_node: StartNode, tokens: DevTokens
) -> None:
    node = start_node(NODE_ID="multi2", WORKERS="2")
    assert node.proc is not None
    workers = children(node.proc.pid)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = {pid for pid in children(node.proc.pid) if alive(pid)}
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the killed worker was not replaced: {children(node.proc.pid)}")
    wait_for_workers(node.url, {"multi2-w0", "multi2-w1"})
    # a stream in flight on a worker when the supervisor gets SIGTERM: it ends cleanly
    with httpx.Client(timeout=10) as client:
        created = client.post(
            f"{node.url}/stream/v1/streams",
            headers=auth(tokens, "workers-drain"),
            json={"model": MODEL, "messages": [{"role": "user", "content": "/tokens 5"}]},
        )
    assert created.status_code == 201, created.text
    workers = {pid for pid in children(node.proc.pid) if alive(pid)}
    node.signal(signal.SIGTERM)
    assert node.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in workers), "a worker outlived its supervisor"
    events = read_events_after_stop(created.json()["events_url"], start_node)
    assert events[-1][1] == "done"


def read_events_after_stop(path: str, start_node: StartNode) -> list[tuple[int, str, str]]:
    """The drained stream, read back from another node of the same store."""
    other = start_node(NODE_ID="after-drain")
    return read_events(other.url, path)


def test_workers_need_the_shared_store() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "stream_service", "--host", "127.0.0.1", "--port", "0"],
        env={**os.environ, "WORKERS": "2", "STREAM_STORE": "memory"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "WORKERS > 1 needs STREAM_STORE=dynamodb" in done.stderr
