"""Input transcription: a pool of worker processes (:mod:`.asr_worker`), each one decoder.

pocketsphinx holds the GIL while it decodes, so it never runs on the event loop's thread.
An utterance is streamed to a worker while the user speaks (:meth:`Transcriber.begin`,
then :meth:`Utterance.feed` per append): decoding keeps pace with the speech (about 0.15 s
of CPU per second of audio here), and when speech stops the transcript follows within tens
of milliseconds. A worker decodes one utterance at a time; utterances given to a busy worker
wait in its queue (their audio held here). ``REALTIME_ASR_WORKERS`` bounds the CPU voice
transcription may take.

A worker that dies fails the utterance it was decoding (the session sends
``conversation.item.input_audio_transcription.failed``) and is started again for the next
one. The workers read their input from a pipe: when the service stops (or dies), they see
the end of it and exit; :meth:`Transcriber.aclose` also waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys

from stream_service.realtime.local.asr_worker import END, FEED, HEADER, LENGTH, START

log = logging.getLogger("rtai.realtime")
_STOP_WAIT_S = 5.0


class TranscriptionFailed(Exception):
    pass


class Utterance:
    """The audio of one turn, streamed to a worker; :meth:`end` gives its transcript."""

    def __init__(self) -> None:
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.ended = False
        self.aborted = False

    def feed(self, pcm24k: bytes) -> None:
        if not self.ended and pcm24k:
            self._chunks.put_nowait(pcm24k)

    def end(self) -> asyncio.Future[str]:
        if not self.ended:
            self.ended = True
            self._chunks.put_nowait(None)
        return self.result

    def abort(self) -> None:
        """Not wanted any more (the buffer was cleared): decoded no further."""
        self.aborted = True
        self.end()
        if not self.result.done():
            self.result.cancel()


class _Worker:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Utterance] = asyncio.Queue()
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self.busy = False

    @property
    def load(self) -> int:
        return self.queue.qsize() + int(self.busy)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.returncode is None else None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _spawn(self) -> asyncio.subprocess.Process:
        if self.proc is None or self.proc.returncode is not None:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "stream_service.realtime.local.asr_worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        return self.proc

    async def _run(self) -> None:
        with contextlib.suppress(Exception):
            await self._spawn()  # warm: the decoder loads before the first turn
        while True:
            utterance = await self.queue.get()
            if utterance.aborted:
                continue
            self.busy = True
            try:
                text = await self._decode(utterance)
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                log.warning("a transcription worker failed (%s); it is started again", exc)
                await self._kill()
                if not utterance.result.done():
                    utterance.result.set_exception(
                        TranscriptionFailed("The transcription worker stopped.")
                    )
            else:
                if not utterance.result.done():
                    utterance.result.set_result(text)
            finally:
                self.busy = False

    async def _decode(self, utterance: Utterance) -> str:
        proc = await self._spawn()
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(HEADER.pack(START, 0))
        while (chunk := await utterance._chunks.get()) is not None:
            if utterance.aborted:
                continue
            proc.stdin.write(HEADER.pack(FEED, len(chunk)) + chunk)
            await proc.stdin.drain()
        proc.stdin.write(HEADER.pack(END, 0))
        await proc.stdin.drain()
        size = LENGTH.unpack(await proc.stdout.readexactly(LENGTH.size))[0]
        return (await proc.stdout.readexactly(size)).decode("utf-8", "replace")

    async def _kill(self) -> None:
        proc = self.proc
        self.proc = None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await proc.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        proc = self.proc
        self.proc = None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the worker exits at the end of its input
        try:
            await asyncio.wait_for(proc.wait(), _STOP_WAIT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


class Transcriber:
    """``workers`` decoder processes, started on first use."""

    def __init__(self, workers: int) -> None:
        self._workers = [_Worker() for _ in range(workers)]
        self._started = False

    def warm(self) -> None:
        """Start the workers and load their decoders now, not when the first turn ends."""
        if not self._started:
            self._started = True
            for worker in self._workers:
                worker.start()

    @property
    def pids(self) -> list[int]:
        return [pid for w in self._workers if (pid := w.pid) is not None]

    def begin(self) -> Utterance:
        """A new utterance, on the least busy worker."""
        self.warm()
        utterance = Utterance()
        min(self._workers, key=lambda w: w.load).queue.put_nowait(utterance)
        return utterance

    async def transcribe(self, pcm24k: bytes) -> str:
        """A whole clip (a manual commit)."""
        utterance = self.begin()
        utterance.feed(pcm24k)
        return await utterance.end()

    async def aclose(self) -> None:
        await asyncio.gather(*(w.stop() for w in self._workers))
        self._started = False
