"""No prompt freezes a node running the local model (the ``make dev`` default).

A real stream-service node on 127.0.0.1 gets the prompts that used to hold its event loop
for seconds (runs of whitespace: a quadratic tokenizer) or build millions of tokens
(``/tokens N``), while another client polls ``/stream/healthz`` the whole time.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
from tests.support.servers import ProcessServer

MAX_OUTPUT_TOKENS = 2000
# Generous for a loaded shared 2-core machine (the loop bound itself is 10 ms); the
# prompts below held the loop for seconds to minutes before.
HEALTHZ_BOUND_S = 1.0

PATHOLOGICAL = [
    "hi" + " " * 200_000,
    "/echo " + "a " * 300_000,
    "/echo x" + " " * 300_000 + "y",
    "/tokens " + "9" * 5_000,
    "/tokens 100000000000",
    "w " * 450_000,  # ~900 KB of one-letter words: the prompt's token count
]


@pytest.fixture(scope="module")
def node() -> Iterator[ProcessServer]:
    env = {
        "STREAM_STORE": "memory",
        "AUTH_MODE": "dev",
        "LLM_PROVIDER": "local",
        "LOCAL_TTFT_MS": "0",
        "LOCAL_TOKEN_DELAY_MS": "0",
        "MAX_OUTPUT_TOKENS": str(MAX_OUTPUT_TOKENS),
        "MAX_STREAMS_PER_USER": "50",
        "MAX_MESSAGE_CHARS": "1000000",  # one message may fill the whole 1 MiB body
    }
    with ProcessServer("stream_service", env, health="/stream/healthz") as server:
        yield server


async def _poll_health(client: httpx.AsyncClient, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        response = await client.get("/stream/healthz")
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.01)
    return latencies


async def _complete(client: httpx.AsyncClient, prompt: str, stream: bool) -> dict[str, object]:
    body = {
        "model": "local-model",
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    }
    if not stream:
        response = await client.post("/stream/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        result: dict[str, object] = response.json()
        return result
    finish = None
    async with client.stream("POST", "/stream/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                for choice in chunk["choices"]:
                    finish = choice.get("finish_reason") or finish
    return {"finish_reason": finish}


async def test_pathological_prompts_never_block_healthz(node: ProcessServer) -> None:
    token = DevTokens(DEV_SECRET_DEFAULT, 600).mint("mallory")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(base_url=node.url, headers=headers, timeout=60) as client,
        httpx.AsyncClient(base_url=node.url, timeout=10) as probe,
    ):
        stop = asyncio.Event()
        poller = asyncio.create_task(_poll_health(probe, stop))
        await asyncio.sleep(0.05)
        try:
            results = await asyncio.gather(
                *(_complete(client, p, stream) for p in PATHOLOGICAL for stream in (False, True))
            )
        finally:
            stop.set()
            latencies = await poller
    assert len(latencies) >= 5
    assert max(latencies) < HEALTHZ_BOUND_S, sorted(latencies)[-5:]
    plain = results[0::2]
    for prompt, result in zip(PATHOLOGICAL, plain, strict=True):
        usage = result["usage"]
        assert isinstance(usage, dict)
        assert usage["completion_tokens"] <= MAX_OUTPUT_TOKENS, prompt[:20]
    tokens_directive = plain[3]
    assert tokens_directive["choices"][0]["finish_reason"] == "length"  # type: ignore[index]
    assert results[7]["finish_reason"] == "length"
