"""``make bench``: what one stream-service node adds to a token stream, under load.

Three processes on this machine: a scripted OpenAI-compatible upstream that stamps each
token with its emit time and emits at a fixed cadence; one stream-service node (``openai``
provider pointed at that upstream); and this load generator (raw asyncio sockets, so the
client costs little). For each concurrency level N it runs N clients directly against
the upstream, then N through the node, and compares when tokens arrive. Each client runs
two streams back to back, the first starts spread over one stream's duration: for one
stream's duration exactly N streams run while new ones start at N / duration per second,
and only that stretch is measured. The node runs on core 0, the upstream and the load
generator on the other cores at nice 10 (in production the node has its cores to
itself); the node's CPU per token and the harness's share are printed too.

Printed and written to ``bench/results/``: added latency per token (through the node minus
direct, p50/p99), TTFT overhead, the highest level whose p99 added latency stays under
50 ms, RSS per idle stream (streams open, upstream not yet answering), and store writes
per token (the node's own counter). The node uses the in-memory store (``STREAM_STORE=memory``),
which counts writes exactly as the DynamoDB store does; a moto server cannot absorb a
thousand streams' writes on two cores. Each stream has its own user.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

from bench import raise_fd_limit, ws_client
from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from devstack.local_aws import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STAMP = re.compile(rb"@(\d{19})")
SECRET = DEV_SECRET_DEFAULT


HARNESS_NICE = 10
# With two or more cores the node gets core 0 to itself and the harness the rest, as in
# production, where nothing else runs on the node's cores.
_CORES = os.cpu_count() or 1
NODE_CPUS = "0" if _CORES >= 2 else None
HARNESS_CPUS = ",".join(str(c) for c in range(1, _CORES)) if _CORES >= 2 else None


# --tool-calls: each stream is one tool call whose arguments come in ~`tokens` fragments
# (the scripted upstream's `/tool NAME {JSON}`); fragments are counted, not stamped.
TOOL_CALLS = False
_TOOLS = [{"type": "function", "function": {"name": "save", "parameters": {"type": "object"}}}]
_FRAGMENT = b'"arguments"'


def chat_body(tokens: int) -> dict[str, object]:
    """A stream's request: ``tokens`` text tokens, or a tool call of ~``tokens`` fragments."""
    if not TOOL_CALLS:
        return {
            "model": "upstream-model",
            "messages": [{"role": "user", "content": "x"}],
            "max_tokens": tokens,
        }
    arguments = json.dumps({"items": [f"item {i}" for i in range(max(1, tokens // 6))]})
    return {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": f"/tool save {arguments}"}],
        "tools": _TOOLS,
    }


@dataclass
class Run:
    """What one phase measured. Only tokens emitted inside ``window`` (wall-clock ns) and
    streams started inside it count: the steady state, not the ramp up or down."""

    window: tuple[int, int] = (0, 2**63)
    churn: bool = False
    latencies_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    errors: int = 0
    tokens: int = 0  # inside the window
    relayed: int = 0  # all of them


async def _http(
    host: str, port: int, request: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def _consume(reader: asyncio.StreamReader, run: Run, started_ns: int) -> None:
    """Read an SSE body to its end, recording per-token latency from the emit stamps."""
    lo, hi = run.window
    first = True
    buffer = b""
    head = await reader.readuntil(b"\r\n\r\n")  # the response head
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        run.errors += 1
        return
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            return
        now_ns = time.time_ns()
        buffer += chunk
        cut = buffer.rfind(b"\n\n") + 2  # complete events only; the rest waits
        if cut < 2:
            continue
        complete, buffer = buffer[:cut], buffer[cut:]
        if TOOL_CALLS:  # fragments carry no emit stamp: counted, for the CPU per fragment
            fragments = complete.count(_FRAGMENT)
            run.relayed += fragments
            run.tokens += fragments
            if first and fragments:
                run.ttft_ms.append((now_ns - started_ns) / 1e6)
                first = False
        for stamp in STAMP.findall(complete):
            emitted = int(stamp)
            run.relayed += 1
            if first and (lo <= started_ns < hi or not run.churn):  # churn: TTFT in the window
                run.ttft_ms.append((now_ns - started_ns) / 1e6)
            first = False
            if lo <= emitted < hi:
                run.latencies_ms.append((now_ns - emitted) / 1e6)
                run.tokens += 1
        if b"[DONE]" in complete or b"event: done" in complete:
            return


def _post(path: str, port: int, body: bytes, token: str | None = None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{auth}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def direct_stream(port: int, tokens: int, run: Run) -> None:
    body = json.dumps({**chat_body(tokens), "stream": True}).encode()
    started = time.time_ns()
    try:
        reader, writer = await _http("127.0.0.1", port, _post("/v1/chat/completions", port, body))
        await _consume(reader, run, started)
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        run.errors += 1


async def node_stream(port: int, token: str, tokens: int, run: Run) -> None:
    body = json.dumps(chat_body(tokens)).encode()
    started = time.time_ns()
    try:
        url = await create_stream(port, token, body, run)
        if url is None:
            return
        request = (
            f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        reader, writer = await _http("127.0.0.1", port, request)
        await _consume(reader, run, started)
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ValueError):
        run.errors += 1


async def chat_stream(port: int, token: str, tokens: int, run: Run) -> None:
    """One stream created and read on one connection (``POST /stream/v1/chat/completions``
    with ``stream: true``): whichever worker accepts the connection runs and serves it."""
    body = json.dumps({**chat_body(tokens), "stream": True}).encode()
    started = time.time_ns()
    try:
        request = _post("/stream/v1/chat/completions", port, body, token)
        reader, writer = await _http("127.0.0.1", port, request)
        await _consume(reader, run, started)
        writer.close()
    except (OSError, asyncio.IncompleteReadError):
        run.errors += 1


async def ws_stream(port: int, token: str, tokens: int, run: Run) -> None:
    """One stream over ``/stream/v1/ws``: ``chat.send``, then its frames to ``done``."""
    send = {
        "type": "chat.send",
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": tokens,
    }
    lo, hi = run.window
    started = time.time_ns()
    first = True
    try:
        reader, writer = await ws_client.connect("127.0.0.1", port, "/stream/v1/ws", token)
        writer.write(ws_client.frame(json.dumps(send).encode()))
        async for message in ws_client.messages(reader, writer):
            now_ns = time.time_ns()
            stamp = STAMP.search(message)
            if stamp is not None:
                emitted = int(stamp.group(1))
                run.relayed += 1
                if first and (lo <= started < hi or not run.churn):
                    run.ttft_ms.append((now_ns - started) / 1e6)
                first = False
                if lo <= emitted < hi:
                    run.latencies_ms.append((now_ns - emitted) / 1e6)
                    run.tokens += 1
            elif message.startswith(b'{"type":"done"'):
                break
            elif message.startswith(b'{"type":"error"'):
                run.errors += 1
                if run.errors <= 3:
                    print(f"  ws error: {message[:200]!r}", flush=True)
                break
        writer.close()
    except (OSError, asyncio.IncompleteReadError, ws_client.WsClosed):
        run.errors += 1


async def create_stream(port: int, token: str, body: bytes, run: Run) -> str | None:
    """``POST /stream/v1/streams`` on a raw socket (the load generator stays cheap): the
    new stream's events URL, or None (counted as an error) if it was refused."""
    reader, writer = await _http("127.0.0.1", port, _post("/stream/v1/streams", port, body, token))
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        answer = await reader.read()
    finally:
        writer.close()
    if b" 201 " not in head.split(b"\r\n", 1)[0]:
        run.errors += 1
        if run.errors <= 3:
            print(f"  create failed: {head[:40]!r} {answer[:200]!r}", flush=True)
        return None
    return str(json.loads(answer)["events_url"])


async def run_level(
    kind: str,
    concurrency: int,
    duration_s: float,
    port: int,
    users: list[str],
    tokens: int,
    churn: bool,
) -> Run:
    """``concurrency`` clients against the upstream (``kind="direct"``) or the node.

    Plateau (default): one stream each, started at up to 100 a second (over at most half a
    stream's duration); measured from a second after the last start until the first
    stream ends, while all of them stream and none starts. Churn: two streams each, back to back, the
    first starts spread over one stream's duration; measured over the next duration, while
    exactly ``concurrency`` streams run and new ones start at concurrency / duration per
    second, as replies of this length would.
    """
    start_ns = time.time_ns()
    span_ns = int(duration_s * 1e9)
    if churn:
        spread, streams = duration_s, 2
        window = (start_ns + span_ns, start_ns + 2 * span_ns)
    else:
        # at most 100 starts a second: a start costs the node about 2 ms of CPU
        spread, streams = min(duration_s / 2, concurrency / 100), 1
        settle = min(1.0, duration_s / 10)
        window = (start_ns + int((spread + settle) * 1e9), start_ns + span_ns)
    run = Run(window=window, churn=churn)

    async def client(index: int) -> None:
        await asyncio.sleep(spread * index / concurrency)
        for _ in range(streams):
            if kind == "direct":
                await direct_stream(port, tokens, run)
            elif kind == "ws":
                await ws_stream(port, users[index % len(users)], tokens, run)
            elif kind == "chat":
                await chat_stream(port, users[index % len(users)], tokens, run)
            else:
                await node_stream(port, users[index % len(users)], tokens, run)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    return run


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def cpu_split_s(pid: int) -> tuple[float, float]:
    """CPU seconds a process has used so far: in user space, in the kernel (system calls:
    on loopback a send also runs the receiving end's TCP stack)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far."""
    return sum(cpu_split_s(pid))


def tree_cpu_split_s(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of ``pid`` and its live children (a supervisor and its
    workers)."""
    user, system = cpu_split_s(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                u, s = cpu_split_s(int(child))
                user, system = user + u, system + s
    return user, system


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def metric_sum(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def start(
    cmd: list[str], env: dict[str, str], health: str, nice: int = 0, cpus: str | None = None
) -> subprocess.Popen[bytes]:
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    if cpus is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]  # every thread of it, on those cores only
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120  # a loaded machine starts a node slowly
    while time.monotonic() < deadline:
        try:
            if httpx.get(health, timeout=1).status_code < 500:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{cmd} did not start")


def established(port: int) -> int:
    """TCP connections established to ``port`` on this machine (both ends are local)."""
    out = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( dport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    return len(out.splitlines())


async def idle_rss(
    node_port: int, node_pid: int, users: list[str], count: int, upstream_port: int
) -> tuple[float, int, int]:
    """Open ``count`` streams whose upstream has not answered yet; RSS growth per stream, the
    client connections held, and the upstream connections the node holds for them."""
    before = rss_kb(node_pid)
    conns = []
    body = {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 5,
    }
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100), timeout=60) as client:
        sem = asyncio.Semaphore(100)

        async def one(token: str) -> None:
            async with sem:
                created = await client.post(
                    f"http://127.0.0.1:{node_port}/stream/v1/streams",
                    json=body,
                    headers={"authorization": f"Bearer {token}"},
                )
                if created.status_code != 201:
                    print(
                        f"  idle create failed: {created.status_code} {created.text[:200]}",
                        flush=True,
                    )
                    return
                url = created.json()["events_url"]
                request = f"GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
                try:
                    reader, writer = await _http("127.0.0.1", node_port, request)
                    await reader.readuntil(b"\r\n\r\n")
                except (OSError, asyncio.IncompleteReadError) as exc:  # counted as not held
                    print(f"  idle stream not held: {exc!r}", flush=True)
                    return
                conns.append(writer)

        await asyncio.gather(*(one(users[i % len(users)]) for i in range(count)))
        deadline = time.monotonic() + 60  # every producer reaches the upstream
        while established(upstream_port) < len(conns) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        await asyncio.sleep(1)
        after = rss_kb(node_pid)
        held = len(conns)
        upstream_held = established(upstream_port)
        for writer in conns:
            writer.close()
    return (after - before) / max(1, held), held, upstream_held


def mint_token(user: str = "bench") -> str:
    return DevTokens(SECRET, ttl_s=3600).mint(user)


def start_moto(port: int) -> subprocess.Popen[bytes]:
    """moto's DynamoDB over HTTP, in a process of its own. Not pinned nor niced: DynamoDB
    is a service of its own in production, and moto (pure Python) is far slower than it, so
    it gets whichever core is free."""
    return start(
        [sys.executable, "-m", "bench.moto_server", str(port)],
        {},
        f"http://127.0.0.1:{port}/moto-api/",
    )


async def idle_ws_rss(
    node_port: int, node_pid: int, users: list[str], count: int
) -> tuple[float, int]:
    """Open ``count`` WebSocket connections that do nothing; RSS growth per connection."""
    before = rss_kb(node_pid)
    conns = []
    sem = asyncio.Semaphore(100)

    async def one(token: str) -> None:
        async with sem:
            try:
                _, writer = await ws_client.connect("127.0.0.1", node_port, "/stream/v1/ws", token)
            except (OSError, ws_client.WsClosed):
                return
            conns.append(writer)

    await asyncio.gather(*(one(users[i % len(users)]) for i in range(count)))
    await asyncio.sleep(1)
    after = rss_kb(node_pid)
    for writer in conns:
        writer.close()
    return (after - before) / max(1, len(conns)), len(conns)


def measure_starts(
    node: subprocess.Popen[bytes], port: int, users: list[str], count: int, read: str
) -> dict[str, float]:
    """``count`` streams of one token each, 50 at a time: the node's CPU per stream start
    (create, first token, end) and the starts a second it served."""
    run = Run()
    kind = "chat" if read == "chat" else "node"

    async def starts() -> None:
        sem = asyncio.Semaphore(50)

        async def one(i: int) -> None:
            async with sem:
                user = users[i % len(users)]
                if kind == "chat":
                    await chat_stream(port, user, 1, run)
                else:
                    await node_stream(port, user, 1, run)

        await asyncio.gather(*(one(i) for i in range(count)))

    before = tree_cpu_split_s(node.pid)
    wall = time.monotonic()
    uvloop.run(starts())
    wall = time.monotonic() - wall
    after = tree_cpu_split_s(node.pid)
    cpu = after[0] - before[0] + after[1] - before[1]
    done = count - run.errors
    cost = {
        "streams": count,
        "errors": run.errors,
        "cpu_ms_per_start": cpu / max(1, done) * 1e3,
        "user_ms_per_start": (after[0] - before[0]) / max(1, done) * 1e3,
        "starts_per_s": done / wall,
    }
    print(
        f"  starts: {count} one-token streams ({kind}), {run.errors} errors: node CPU "
        f"{cost['cpu_ms_per_start']:.2f} ms per start (user {cost['user_ms_per_start']:.2f}), "
        f"{cost['starts_per_s']:.0f} starts/s",
        flush=True,
    )
    return cost


def measure(
    proc: subprocess.Popen[bytes],
    port: int,
    kind: str,
    level: int,
    mode: str,
    transport: str,
    users: list[str],
    direct: Run,
    args: argparse.Namespace,
    upstream_pid: int,
) -> dict[str, Any]:
    """One level through ``proc`` (the node, or the floor relay): latency against the
    direct run, and ``proc``'s CPU (its whole process tree) per relayed token."""
    node_before = tree_cpu_split_s(proc.pid)
    cpu_before = cpu_s(upstream_pid), time.process_time()
    wall = time.monotonic()
    via = uvloop.run(
        run_level(kind, level, args.tokens / args.rate, port, users, args.tokens, args.churn)
    )
    wall = time.monotonic() - wall
    node_after = tree_cpu_split_s(proc.pid)
    node_user = node_after[0] - node_before[0]
    node_sys = node_after[1] - node_before[1]
    node_cpu = node_user + node_sys
    harness_cpu = cpu_s(upstream_pid) - cpu_before[0] + time.process_time() - cpu_before[1]
    row: dict[str, Any] = {
        "streams": level,
        "users": mode,
        "transport": transport,
        "direct_p50": pct(direct.latencies_ms, 0.5),
        "direct_p99": pct(direct.latencies_ms, 0.99),
        "node_p50": pct(via.latencies_ms, 0.5),
        "node_p99": pct(via.latencies_ms, 0.99),
        "ttft_direct_p50": pct(direct.ttft_ms, 0.5),
        "ttft_node_p50": pct(via.ttft_ms, 0.5),
        "tokens": via.tokens,
        "errors": direct.errors + via.errors,
        # the node's CPU per relayed token, and its share of a core over the run
        "node_cpu_us_per_token": node_cpu / max(1, via.relayed) * 1e6,
        "node_user_us_per_token": node_user / max(1, via.relayed) * 1e6,
        "node_sys_us_per_token": node_sys / max(1, via.relayed) * 1e6,
        "node_cpu_pct": node_cpu / wall * 100,
        "harness_cpu_pct": harness_cpu / wall * 100,
    }
    row["added_p50"] = row["node_p50"] - row["direct_p50"]
    row["added_p99"] = row["node_p99"] - row["direct_p99"]
    row["ttft_overhead"] = row["ttft_node_p50"] - row["ttft_direct_p50"]
    print(
        f"{level:>6} streams ({mode} users, {transport}): added p50 {row['added_p50']:.2f} ms, "
        f"p99 {row['added_p99']:.2f} ms, TTFT +{row['ttft_overhead']:.1f} ms, "
        f"tokens {via.tokens}, errors {row['errors']}, node CPU "
        f"{row['node_cpu_us_per_token']:.1f} us/token (user "
        f"{row['node_user_us_per_token']:.1f} + kernel {row['node_sys_us_per_token']:.1f}; "
        f"{row['node_cpu_pct']:.0f}% "
        f"of a core; upstream + load generator {row['harness_cpu_pct']:.0f}%)",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--levels", default="250,500,750,1000,1250")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per stream")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens per second per stream")
    parser.add_argument("--idle", type=int, default=5000, help="idle streams for the memory figure")
    parser.add_argument(
        "--idle-ws", type=int, default=0, help="idle WebSockets for the memory figure"
    )
    parser.add_argument("--quick", action="store_true", help="small levels, for a smoke run")
    parser.add_argument(
        "--store",
        choices=["memory", "dynamodb"],
        default="memory",
        help="the node's store: in memory, or DynamoDB (moto's server over HTTP)",
    )
    parser.add_argument(
        "--users",
        choices=["many", "one", "both"],
        default="many",
        help="one user per stream (many), all streams by one user (one), or each level both ways",
    )
    parser.add_argument(
        "--transports",
        choices=["sse", "ws", "both"],
        default="sse",
        help="read the streams over SSE, over WebSocket, or each level both ways",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="each level also through bench/floor_relay.py (bytes only, on the node's core): "
        "the CPU per token no asyncio relay can go under",
    )
    parser.add_argument(
        "--floor-parse",
        action="store_true",
        help="each level also through bench/floor_relay.py --parse (the upstream's HTTP and "
        "JSON parsed, each token re-rendered as an SSE event and written from the socket's "
        "callback): the CPU per token of a relay that does nothing but understand the stream",
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=0,
        help="also start this many one-token streams (create + read, 50 at a time) and print "
        "the node's CPU per start",
    )
    parser.add_argument("--name", default=None, help="results file name (default from the options)")
    parser.add_argument(
        "--churn",
        action="store_true",
        help="measure while new streams keep starting (see run_level); results get a -churn suffix",
    )
    parser.add_argument(
        "--tool-calls",
        action="store_true",
        help="each stream is one tool call of ~TOKENS arguments fragments: the node's CPU per "
        "fragment (SSE; fragments are counted, latency is not stamped); results get -tools",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the node's WORKERS (processes behind its port); above 1 with the memory store, "
        "each stream is created and read on one connection (see --read)",
    )
    parser.add_argument(
        "--read",
        choices=["events", "chat"],
        default=None,
        help="SSE streams: created then read on GET events_url (events, the default with one "
        "worker), or created and read on one POST /stream/v1/chat/completions (chat, the "
        "default with more workers and the memory store)",
    )
    args = parser.parse_args()
    global TOOL_CALLS
    TOOL_CALLS = args.tool_calls
    if TOOL_CALLS and args.transports != "sse":
        parser.error("--tool-calls reads over SSE only")
    if args.read is None:
        args.read = "chat" if args.workers > 1 and args.store == "memory" else "events"
    if args.workers > 1 and args.store == "memory" and args.read != "chat":
        parser.error(
            "--workers > 1 with the memory store reads each stream where it runs: --read chat"
        )
    if args.quick:
        args.levels, args.tokens, args.idle = "50,100", 40, 300
    raise_fd_limit()
    levels = [int(x) for x in args.levels.split(",")]
    RESULTS.mkdir(parents=True, exist_ok=True)
    up_port, node_port, idle_up_port = free_port(), free_port(), free_port()
    py = sys.executable
    upstream = start(
        [
            py,
            "-m",
            "bench.upstream_server",
            "--port",
            str(up_port),
            "--interval",
            str(1 / args.rate),
        ],
        {},
        f"http://127.0.0.1:{up_port}/v1/models",
        nice=HARNESS_NICE,
        cpus=HARNESS_CPUS,
    )
    node_env = {
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "OPENAI_MAX_RETRIES": "0",
        "STREAM_STORE": "memory",
        "MAX_STREAMS_PER_USER": "100000",
        "MAX_READERS_PER_USER": "100000",
        "AUTH_DEV_SECRET": SECRET,
        "RESUME_GRACE_S": "60",
        "NODE_ID": "bench",
        "WORKERS": str(args.workers),
    }
    if args.workers > 1 and args.store == "memory":
        # bench only: each worker keeps its streams to itself (a stream is read on the
        # connection that created it, --read chat); moto cannot absorb this many writes
        node_env["WORKERS_UNSHARED_STORE"] = "true"
    moto = None
    if args.store == "dynamodb":
        moto_port = free_port()
        moto = start_moto(moto_port)
        node_env.update(
            {
                "STREAM_STORE": "dynamodb",
                "DYNAMODB_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
                "STREAMS_TABLE": "bench-streams",
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_REGION": "us-east-1",
            }
        )
    node = start(
        [py, "-m", "stream_service", "--host", "127.0.0.1", "--port", str(node_port)],
        node_env,
        f"http://127.0.0.1:{node_port}/stream/healthz",
        # several workers get every core (on 2 cores they share one with the harness)
        cpus=NODE_CPUS if args.workers == 1 else None,
    )
    start_cost: dict[str, float] | None = None
    floors: list[tuple[str, subprocess.Popen[bytes], int]] = []
    for name, wanted, extra in (
        ("floor", args.floor, []),
        ("parse", args.floor_parse, ["--parse"]),
    ):
        if not wanted:
            continue
        floor_port = free_port()
        floor = start(
            [
                py,
                "-m",
                "bench.floor_relay",
                "--port",
                str(floor_port),
                "--upstream-port",
                str(up_port),
                *extra,
            ],
            {},
            f"http://127.0.0.1:{floor_port}/",
            cpus=NODE_CPUS,
        )
        floors.append((name, floor, floor_port))
    # The harness (upstream and this load generator) yields the CPU to the node when they
    # contend: in production the node has its cores to itself.
    os.setpriority(os.PRIO_PROCESS, 0, HARNESS_NICE)
    if HARNESS_CPUS is not None:
        os.sched_setaffinity(0, {int(c) for c in HARNESS_CPUS.split(",")})
    # One user per stream, as in production, or every stream by one user (a backend service).
    many = [mint_token(f"bench-{i}") for i in range(max([*levels, args.idle, args.idle_ws]))]
    one = [mint_token("bench-service")]
    user_modes = ["many", "one"] if args.users == "both" else [args.users]
    transports = ["sse", "ws"] if args.transports == "both" else [args.transports]
    rows = []
    try:
        for level in levels:
            duration = args.tokens / args.rate
            direct = uvloop.run(
                run_level("direct", level, duration, up_port, many, args.tokens, args.churn)
            )
            for mode in user_modes:
                for transport in transports:
                    users = one if mode == "one" else many
                    kind = "ws" if transport == "ws" else "chat" if args.read == "chat" else "node"
                    rows.append(
                        measure(
                            node,
                            node_port,
                            kind,
                            level,
                            mode,
                            transport,
                            users,
                            direct,
                            args,
                            upstream.pid,
                        )
                    )
            for name, floor, floor_port in floors:
                rows.append(
                    measure(
                        floor,
                        floor_port,
                        "chat",
                        level,
                        "many",
                        name,
                        many,
                        direct,
                        args,
                        upstream.pid,
                    )
                )
        if args.starts:
            start_cost = measure_starts(node, node_port, many, args.starts, args.read)
        metrics = httpx.get(f"http://127.0.0.1:{node_port}/stream/metrics").text
        writes = metric_sum(metrics, "rtai_stream_store_writes_total")
        produced = metric_sum(metrics, "rtai_stream_tokens_total")
    finally:
        node.send_signal(signal.SIGKILL)
        upstream.send_signal(signal.SIGKILL)
        for _, floor, _ in floors:
            floor.send_signal(signal.SIGKILL)
    held = upstream_held = 0
    per_stream_kb = per_ws_kb = float("nan")
    ws_held = 0
    if args.idle or args.idle_ws:
        # Idle streams: a fresh node and an upstream that takes 10 minutes to answer.
        idle_upstream = start(
            [py, "-m", "bench.upstream_server", "--port", str(idle_up_port), "--ttft", "600"],
            {},
            f"http://127.0.0.1:{idle_up_port}/v1/models",
        )
        node_env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{idle_up_port}/v1"
        node_env["UPSTREAM_FIRST_TOKEN_S"] = "900"  # these streams wait on purpose

        def fresh_node() -> subprocess.Popen[bytes]:
            # one per figure: memory another figure's sockets freed is not reused here
            return start(
                [py, "-m", "stream_service", "--host", "127.0.0.1", "--port", str(node_port)],
                node_env,
                f"http://127.0.0.1:{node_port}/stream/healthz",
            )

        try:
            if args.idle_ws:
                node = fresh_node()
                try:
                    per_ws_kb, ws_held = uvloop.run(
                        idle_ws_rss(node_port, node.pid, many, args.idle_ws)
                    )
                finally:
                    node.send_signal(signal.SIGKILL)
                    node.wait()
            if args.idle:
                node = fresh_node()
                try:
                    per_stream_kb, held, upstream_held = uvloop.run(
                        idle_rss(node_port, node.pid, many, args.idle, idle_up_port)
                    )
                finally:
                    node.send_signal(signal.SIGKILL)
        finally:
            idle_upstream.send_signal(signal.SIGKILL)
    if moto is not None:
        moto.send_signal(signal.SIGKILL)

    ok = [
        r["streams"]
        for r in rows
        if r["added_p99"] < 50 and r["errors"] == 0 and r["transport"] == "sse"
    ]
    summary = {
        "rows": rows,
        "store": args.store,
        "max_streams_p99_added_under_50ms": max(ok) if ok else 0,
        "idle_streams_held": held,
        "idle_upstream_connections": upstream_held,
        "rss_kb_per_idle_stream": per_stream_kb,
        "idle_ws_held": ws_held,
        "rss_kb_per_idle_ws": per_ws_kb,
        "store_writes_per_token": writes / produced if produced else float("nan"),
        "tokens_per_stream": args.tokens,
        "rate_per_stream": args.rate,
        "churn": args.churn,
        "workers": args.workers,
        "read": args.read,
        "start_cost": start_cost,
    }
    table = render_table(summary)
    print(table)
    name = args.name or (
        "stream_bench"
        + ("-dynamodb" if args.store == "dynamodb" else "")
        + ("-churn" if args.churn else "")
        + ("-tools" if args.tool_calls else "")
        + (f"-workers{args.workers}" if args.workers > 1 else "")
    )
    (RESULTS / f"{name}.md").write_text(table)
    (RESULTS / f"{name}.json").write_text(json.dumps(summary, indent=2))
    plot(summary, RESULTS / f"{name}.png")
    print(f"wrote {RESULTS / name}.md, .json and .png")


def render_table(s: dict[str, object]) -> str:
    lines = [
        f"Streams of {s['tokens_per_stream']} tokens at {s['rate_per_stream']:.0f} tokens/s, one node "
        f"({s['workers']} worker process(es), {s['store']} store, SSE read via "
        f"{'POST /stream/v1/chat/completions' if s['read'] == 'chat' else 'GET events_url'}), "
        f"{_CORES} cores "
        "(load generator and upstream on the same machine); "
        + (
            f"churn: N streams at all times, N / {s['tokens_per_stream'] / s['rate_per_stream']:.0f} "  # type: ignore[operator]
            "new streams a second."
            if s["churn"]
            else "plateau: all N streaming, none starting."
        ),
        "",
        "| streams | users | transport | direct p50 / p99 ms | via node p50 / p99 ms | added p50 / p99 ms | TTFT overhead p50 ms | node CPU µs/token (% of a core) | of it user / kernel µs | errors |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in s["rows"]:  # type: ignore[attr-defined]
        lines.append(
            f"| {r['streams']} | {r['users']} | {r['transport']} | {r['direct_p50']:.1f} / {r['direct_p99']:.1f} | {r['node_p50']:.1f} / {r['node_p99']:.1f} "
            f"| {r['added_p50']:.1f} / {r['added_p99']:.1f} | {r['ttft_overhead']:.1f} "
            f"| {r['node_cpu_us_per_token']:.1f} ({r['node_cpu_pct']:.0f}%) "
            f"| {r.get('node_user_us_per_token', float('nan')):.1f} / {r.get('node_sys_us_per_token', float('nan')):.1f} "
            f"| {r['errors']} |"
        )
    lines += [
        "",
        f"- max concurrent streams with p99 added latency under 50 ms: {s['max_streams_p99_added_under_50ms']}",
        f"- idle streams held by one process: {s['idle_streams_held']} client connections and "
        f"{s['idle_upstream_connections']} upstream connections; RSS per idle stream: "
        f"{s['rss_kb_per_idle_stream']:.1f} KB",
        f"- idle WebSockets held: {s['idle_ws_held']}; RSS per idle WebSocket: {s['rss_kb_per_idle_ws']:.1f} KB",
        f"- store writes per token: {s['store_writes_per_token']:.3f}",
    ]
    cost = s.get("start_cost")
    if isinstance(cost, dict):
        lines.append(
            f"- stream starts ({cost['streams']} one-token streams, 50 at a time): node CPU "
            f"{cost['cpu_ms_per_start']:.2f} ms per start, {cost['starts_per_s']:.0f} starts/s, "
            f"{cost['errors']} errors"
        )
    lines.append("")
    return "\n".join(lines)


def plot(s: dict[str, object], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, float]] = s["rows"]  # type: ignore[assignment]
    fig, ax = plt.subplots(figsize=(7, 4))
    first = [
        r for r in rows if (r["users"], r["transport"]) == (rows[0]["users"], rows[0]["transport"])
    ]
    x = [r["streams"] for r in first]
    ax.plot(x, [r["direct_p50"] for r in first], "b--", marker="o", label="direct p50")
    ax.plot(x, [r["direct_p99"] for r in first], "b:", marker="o", label="direct p99")
    colours = iter("rgmck")
    for users, transport in dict.fromkeys((r["users"], r["transport"]) for r in rows):
        group = [r for r in rows if (r["users"], r["transport"]) == (users, transport)]
        colour = next(colours)
        gx = [r["streams"] for r in group]
        tag = f"{transport}, {users} users"
        ax.plot(gx, [r["node_p50"] for r in group], f"{colour}-", marker="o", label=f"{tag} p50")
        ax.plot(gx, [r["node_p99"] for r in group], f"{colour}-.", marker="o", label=f"{tag} p99")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("token latency, emit to receive (ms, log)")
    ax.set_title("Per-token latency: direct vs through one stream-service node")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
