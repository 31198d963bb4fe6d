"""Input transcription with pocketsphinx and the US English model inside its wheel.

pocketsphinx holds the GIL while it decodes (about 0.3-0.5 s per second of speech here),
so it runs in worker processes, never on the event loop's thread: one decoder per worker,
loaded once. ``REALTIME_ASR_WORKERS`` bounds the CPU voice transcription may take.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

ASR_RATE = 16_000
_decoder: Any = None


def _load() -> None:
    global _decoder
    from pocketsphinx import Decoder  # type: ignore[import-untyped]

    _decoder = Decoder(samprate=ASR_RATE, logfn=os.devnull)


def _ready() -> bool:
    return _decoder is not None


def _transcribe(pcm16k: bytes) -> str:
    if _decoder is None:  # pragma: no cover - the initializer loads it
        _load()
    _decoder.start_utt()
    _decoder.process_raw(pcm16k, full_utt=True)
    _decoder.end_utt()
    hyp = _decoder.hyp()
    return str(hyp.hypstr) if hyp is not None else ""


class Transcriber:
    """A pool of decoder processes, started on first use (spawned: no forked event loop)."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def warm(self) -> None:
        """Start the workers and load their decoders now (a session asked for
        transcription), not when the first turn ends."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_load,
            )
            for _ in range(self._workers):
                self._pool.submit(_ready)

    async def transcribe(self, pcm16k: bytes) -> str:
        self.warm()
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, _transcribe, pcm16k)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
