"""``make bench-voice``: what the voice path adds, measured on this machine.

1. **Relay, added latency per audio frame.** A scripted upstream realtime server
   (``devstack.realtime_upstream``, its own process) streams each reply as 20 ms audio
   deltas in real time, each stamped with its send time; one stream-service node
   (``LLM_PROVIDER=openai`` pointed at it) relays N concurrent sessions; this process is N
   clients. The same N sessions run once straight against the upstream and once through
   the node: the relay's added latency is the difference of the two (p50, p99), and the
   node's own histogram (``rtai_voice_relay_added_downstream_seconds``: upstream frame read
   to client write returned) is printed beside it. The same sessions then run through
   ``bench/voice_floor_relay.py`` (messages passed on unread, on the node's core): what the
   hop itself adds, so the node's own share is the relay's added latency minus it. Node CPU per session is its CPU time
   over the streaming window divided by N.
2. **Local stand-in, turn latency.** One node with ``LLM_PROVIDER=local``; a client speaks
   espeak-ng utterances in real time (100 ms appends) and times, per turn,
   ``input_audio_buffer.speech_stopped`` to the first ``response.output_audio.delta``
   (the node's ``rtai_voice_turn_latency_seconds`` measures the same on its side).

The node runs on core 0, the upstream and this harness on the others (as stream_bench).
Targets: relay p50 0.5 ms / p99 2 ms at 100 sessions; stand-in p50 under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import uvloop
import websockets

from bench import raise_fd_limit
from bench.stream_bench import HARNESS_CPUS, HARNESS_NICE, NODE_CPUS, cpu_s, pct, start
from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from devstack.local_aws import free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MODEL = "gpt-realtime"


@dataclass
class RelayRun:
    latencies_ms: list[float] = field(default_factory=list)
    frames: int = 0
    failures: int = 0


async def relay_session(url: str, headers: dict[str, str], run: RelayRun, delay: float) -> None:
    await asyncio.sleep(delay)
    try:
        async with websockets.connect(
            url, additional_headers=headers, max_size=None, compression=None
        ) as ws:
            created = json.loads(await ws.recv())
            if created.get("type") != "session.created":
                run.failures += 1
                return
            await ws.send('{"type":"response.create"}')
            async for message in ws:
                now = time.monotonic_ns()
                event = json.loads(message)
                kind = event.get("type")
                if kind == "response.output_audio.delta":
                    run.latencies_ms.append((now - event["x_sent_ns"]) / 1e6)
                    run.frames += 1
                elif kind == "response.done":
                    return
                elif kind == "error":
                    run.failures += 1
                    return
    except (OSError, websockets.WebSocketException):
        run.failures += 1


async def relay_level(url_of: Any, sessions: int, ramp_s: float) -> RelayRun:
    run = RelayRun()
    await asyncio.gather(
        *(relay_session(*url_of(i), run, ramp_s * i / sessions) for i in range(sessions))
    )
    return run


async def scrape(port: int) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{port}/stream/metrics")).text


def histogram_quantiles(text: str, name: str, qs: tuple[float, ...]) -> list[float]:
    """Quantiles (upper bucket bounds) of a Prometheus histogram in exposition text."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return [float("nan")] * len(qs)
    total = buckets[-1][1]
    return [next(bound for bound, count in buckets if count >= q * total) for q in qs]


async def bench_relay(sessions: int, frames: int) -> dict[str, Any]:
    up_port, node_port = free_port(), free_port()
    upstream = start(
        [
            sys.executable,
            "-m",
            "devstack.realtime_upstream",
            "--port",
            str(up_port),
            "--frames",
            str(frames),
        ],
        {},
        f"http://127.0.0.1:{up_port}/",
        nice=HARNESS_NICE,
        cpus=HARNESS_CPUS,
    )
    env = {
        "STREAM_STORE": "memory",
        "LLM_PROVIDER": "openai",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{up_port}/v1",
        "REALTIME_MAX_SESSIONS_PER_USER": str(sessions + 1),
    }
    node = start(
        [sys.executable, "-m", "stream_service", "--host", "127.0.0.1", "--port", str(node_port)],
        env,
        f"http://127.0.0.1:{node_port}/stream/healthz",
        cpus=NODE_CPUS,
    )
    floor_port = free_port()
    floor = start(
        [
            sys.executable,
            "-m",
            "bench.voice_floor_relay",
            "--port",
            str(floor_port),
            "--upstream",
            f"ws://127.0.0.1:{up_port}/v1/realtime",
        ],
        {},
        f"http://127.0.0.1:{floor_port}/",  # a plain GET is answered 426: it is up
        cpus=NODE_CPUS,
    )
    tokens = DevTokens(DEV_SECRET_DEFAULT, 3600)
    try:
        direct_url = f"ws://127.0.0.1:{up_port}/v1/realtime?model={MODEL}"
        direct = await relay_level(lambda i: (direct_url, {}), sessions, ramp_s=1.0)
        node_url = f"ws://127.0.0.1:{node_port}/stream/v1/realtime?" + urlencode({"model": MODEL})
        users = [{"Authorization": f"Bearer {tokens.mint(f'voice-{i}')}"} for i in range(sessions)]
        cpu0, t0 = cpu_s(node.pid), time.monotonic()
        relayed = await relay_level(lambda i: (node_url, users[i]), sessions, ramp_s=1.0)
        cpu1, t1 = cpu_s(node.pid), time.monotonic()
        metrics = await scrape(node_port)
        floor_url = f"ws://127.0.0.1:{floor_port}/v1/realtime?" + urlencode({"model": MODEL})
        hop = await relay_level(lambda i: (floor_url, {}), sessions, ramp_s=1.0)
    finally:
        for proc in (node, upstream, floor):
            proc.terminate()
            proc.wait(15)
    node_p50, node_p99 = histogram_quantiles(
        metrics, "rtai_voice_relay_added_downstream_seconds", (0.5, 0.99)
    )
    wall = t1 - t0
    return {
        "sessions": sessions,
        "frames_per_session": frames,
        "frames_direct": direct.frames,
        "frames_relayed": relayed.frames,
        "failures": direct.failures + relayed.failures,
        "direct_p50_ms": pct(direct.latencies_ms, 0.5),
        "direct_p99_ms": pct(direct.latencies_ms, 0.99),
        "relayed_p50_ms": pct(relayed.latencies_ms, 0.5),
        "relayed_p99_ms": pct(relayed.latencies_ms, 0.99),
        "added_p50_ms": pct(relayed.latencies_ms, 0.5) - pct(direct.latencies_ms, 0.5),
        "added_p99_ms": pct(relayed.latencies_ms, 0.99) - pct(direct.latencies_ms, 0.99),
        "frames_floor": hop.frames,
        "floor_failures": hop.failures,
        "hop_p50_ms": pct(hop.latencies_ms, 0.5) - pct(direct.latencies_ms, 0.5),
        "hop_p99_ms": pct(hop.latencies_ms, 0.99) - pct(direct.latencies_ms, 0.99),
        "node_hist_p50_le_ms": node_p50 * 1000,
        "node_hist_p99_le_ms": node_p99 * 1000,
        "node_cpu_s": cpu1 - cpu0,
        "wall_s": wall,
        "cpu_per_session_pct": 100 * (cpu1 - cpu0) / wall / sessions,
    }


UTTERANCES = (
    "What is the weather like today",
    "Tell me something about streaming",
    "How long does the battery last",
    "Can you repeat that please",
    "Where is the nearest station",
)


async def bench_standin(turns: int) -> dict[str, Any]:
    from tests.support.speech import silence, speech

    port = free_port()
    env = {"STREAM_STORE": "memory", "LLM_PROVIDER": "local"}
    node = start(
        [sys.executable, "-m", "stream_service", "--host", "127.0.0.1", "--port", str(port)],
        env,
        f"http://127.0.0.1:{port}/stream/healthz",
        cpus=NODE_CPUS,
    )
    token = DevTokens(DEV_SECRET_DEFAULT, 3600).mint("voice-bench")
    url = f"ws://127.0.0.1:{port}/stream/v1/realtime?model={MODEL}"
    latencies: list[float] = []
    try:
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
        ) as ws:
            json.loads(await ws.recv())
            for n in range(turns):
                pcm = speech(UTTERANCES[n % len(UTTERANCES)]) + silence(1200)
                stopped: float | None = None

                async def speak(pcm: bytes = pcm) -> None:
                    begin = time.monotonic()
                    for i, offset in enumerate(range(0, len(pcm), 4800)):
                        await asyncio.sleep(max(0.0, begin + i * 0.1 - time.monotonic()))
                        chunk = base64.b64encode(pcm[offset : offset + 4800]).decode()
                        await ws.send(
                            json.dumps({"type": "input_audio_buffer.append", "audio": chunk})
                        )

                mic = asyncio.create_task(speak())
                async for message in ws:
                    event = json.loads(message)
                    if event["type"] == "input_audio_buffer.speech_stopped":
                        stopped = time.monotonic()
                    elif event["type"] == "response.output_audio.delta" and stopped is not None:
                        latencies.append((time.monotonic() - stopped) * 1000)
                        break
                await mic
                await ws.send('{"type":"response.cancel"}')
                async for message in ws:
                    if json.loads(message)["type"] == "response.done":
                        break
        metrics = await scrape(port)
    finally:
        node.terminate()
        node.wait(15)
    node_p50 = histogram_quantiles(metrics, "rtai_voice_turn_latency_seconds", (0.5,))[0]
    return {
        "turns": turns,
        "turn_latency_ms": [round(v, 1) for v in latencies],
        "p50_ms": pct(latencies, 0.5),
        "max_ms": max(latencies) if latencies else float("nan"),
        "node_hist_p50_le_ms": node_p50 * 1000,
    }


def render(relay: dict[str, Any], standin: dict[str, Any]) -> str:
    return "\n".join(
        [
            "| voice figure | value | target |",
            "|---|---|---|",
            f"| relay sessions (concurrent) | {relay['sessions']} ({relay['frames_relayed']} frames, "
            f"{relay['failures']} failures) | 100 |",
            f"| relay added latency per frame, p50 | {relay['added_p50_ms']:.2f} ms "
            f"(direct {relay['direct_p50_ms']:.2f}, relayed {relay['relayed_p50_ms']:.2f}) | 0.5 ms |",
            f"| relay added latency per frame, p99 | {relay['added_p99_ms']:.2f} ms "
            f"(direct {relay['direct_p99_ms']:.2f}, relayed {relay['relayed_p99_ms']:.2f}) | 2 ms |",
            f"| the hop alone (bench/voice_floor_relay.py: messages passed on unread), added p50 / "
            f"p99 | {relay['hop_p50_ms']:.2f} / {relay['hop_p99_ms']:.2f} ms ({relay['frames_floor']} "
            f"frames, {relay['floor_failures']} failures) | |",
            f"| the node's own code: relay added minus the hop, p50 | "
            f"{relay['added_p50_ms'] - relay['hop_p50_ms']:.2f} ms | 0.5 ms |",
            f"| node's own histogram, p50 / p99 (bucket bounds) | <= {relay['node_hist_p50_le_ms']:g} ms"
            f" / <= {relay['node_hist_p99_le_ms']:g} ms | |",
            f"| node CPU per relayed session | {relay['cpu_per_session_pct']:.2f} % of a core | |",
            f"| stand-in speech_stopped -> first audio delta, p50 ({standin['turns']} turns) | "
            f"{standin['p50_ms']:.0f} ms (max {standin['max_ms']:.0f}) | < 300 ms |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--frames", type=int, default=250, help="20 ms audio deltas per reply")
    parser.add_argument("--turns", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="10 sessions, 100 frames, 3 turns")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.frames, args.turns = 10, 100, 3
    raise_fd_limit()
    relay = uvloop.run(bench_relay(args.sessions, args.frames))
    standin = uvloop.run(bench_standin(args.turns))
    table = render(relay, standin)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    name = "voice_bench"
    if args.quick:
        name += "-quick"
    elif (args.sessions, args.frames, args.turns) != (100, 250, 7):
        name += f"-{args.sessions}x{args.frames}"
    (RESULTS / f"{name}.json").write_text(
        json.dumps({"relay": relay, "standin": standin}, indent=2)
    )
    (RESULTS / f"{name}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
