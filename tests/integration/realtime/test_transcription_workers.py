"""The stand-in's transcription workers: a dead one is replaced, and none outlives the
service (SPEC section 7: the stand-in hears you; nothing left running after a stop)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from openai import AsyncOpenAI

from core.auth.dev import DevTokens
from tests.integration.realtime.client import Events, stream_audio
from tests.integration.realtime.conftest import MODEL, VOICE_ENV, start_node, ws_base
from tests.support.servers import ProcessServer
from tests.support.speech import require_espeak, silence, speech

pytestmark = pytest.mark.slow


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def workers_of(node: ProcessServer) -> set[int]:
    assert node.proc is not None
    return {
        pid
        for pid in children(node.proc.pid)
        if b"asr_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def session(node: ProcessServer, tokens: DevTokens) -> AbstractAsyncContextManager[Any]:
    client = AsyncOpenAI(
        api_key=tokens.mint("workers"),
        base_url=node.url + "/api/v1",
        websocket_base_url=ws_base(node),
    )
    return client.realtime.connect(model=MODEL)


async def wait_for(check: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def turn(conn: Any, events: Events) -> Any:
    sender = asyncio.create_task(stream_audio(conn, speech("Hello again my friend") + silence(900)))
    try:
        return await events.until(
            lambda e: (
                e.type
                in (
                    "conversation.item.input_audio_transcription.completed",
                    "conversation.item.input_audio_transcription.failed",
                )
            ),
            within=40,
        )
    finally:
        await sender


async def test_a_dead_worker_is_replaced_and_none_outlives_the_service(tokens: DevTokens) -> None:
    require_espeak()
    node = start_node(VOICE_ENV)
    try:
        async with session(node, tokens) as conn:
            events = Events(conn)
            await events.until("session.created")
            await conn.session.update(
                session={
                    "type": "realtime",
                    "output_modalities": ["text"],
                    "audio": {"input": {"transcription": {"model": "whisper-1"}}},
                }
            )
            await events.until("session.updated")
            await wait_for(lambda: workers_of(node))
            first = workers_of(node)
            for pid in first:
                os.kill(pid, signal.SIGKILL)
            await wait_for(lambda: not any(alive(p) for p in first))
            heard = await turn(conn, events)
            assert heard.type == "conversation.item.input_audio_transcription.completed"
            assert heard.transcript.strip()
            replaced = workers_of(node)
            assert replaced and not replaced & first
    finally:
        node.stop()
    deadline = time.monotonic() + 20
    while any(alive(p) for p in replaced) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not [p for p in replaced if alive(p)], "a transcription worker outlived the service"


async def test_a_killed_service_leaves_no_worker_behind(tokens: DevTokens) -> None:
    """Even a SIGKILL (no shutdown code runs): the workers see their input end and exit."""
    require_espeak()
    node = start_node(VOICE_ENV)
    try:
        async with session(node, tokens) as conn:
            events = Events(conn)
            await events.until("session.created")
            await wait_for(lambda: workers_of(node))
            started = workers_of(node)
            node.signal(signal.SIGKILL)
            node.wait(10)
    finally:
        node.stop()
    deadline = time.monotonic() + 20
    while any(alive(p) for p in started) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert not [p for p in started if alive(p)], "a transcription worker outlived the service"
