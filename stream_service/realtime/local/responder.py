"""One reply of the local stand-in: text from the local chat model, spoken by espeak-ng,
streamed as ``response.output_audio.delta`` no faster than real time.

Text and speech overlap: tokens gather into phrases; a phrase is spoken as soon as it ends
(punctuation, or 12 words) or as soon as the audio already sent would run out within
300 ms, so the first words are spoken as the first tokens arrive. Audio goes out in 50 ms
deltas, each no earlier than its place in real time minus ``REALTIME_LOCAL_AUDIO_LEAD_MS``.

Ending a reply early (``response.cancel``, barge-in, session end) is :meth:`Reply.cancel`:
it writes the closing events at once, in order, and nothing of this reply is emitted after
them, whatever the task was awaiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable
from typing import Any, Literal

from core.providers import ModelProvider, TokenDelta
from core.schemas.chat import ChatCompletionRequest, ChatMessage
from stream_service.realtime.local.audio import BYTES_PER_MS, encode_audio
from stream_service.realtime.local.conversation import Item, Span
from stream_service.realtime.local.tts import Speaker
from stream_service.realtime.protocol import new_id

CHUNK_MS = 50
_PHRASE_END = re.compile(r"[.!?;:,]\s*$")
PHRASE_WORDS = 12
STARVING_MS = 300

Status = Literal["completed", "cancelled", "incomplete", "failed"]
CancelReason = Literal["turn_detected", "client_cancelled"]
Emit = Callable[[dict[str, Any]], object]


class Reply:
    def __init__(
        self,
        *,
        emit: Emit,
        provider: ModelProvider,
        speaker: Speaker,
        model: str,
        messages: list[ChatMessage],
        item: Item,
        audio_out: bool,
        voice: str,
        max_output_tokens: int | None,
        pace: float,
        lead_ms: int,
        on_first_audio: Callable[[], None],
        on_done: Callable[[Reply], None],
    ) -> None:
        self.id = new_id("resp")
        self.item = item
        self._emit = emit
        self._provider = provider
        self._speaker = speaker
        self._model = model
        self._messages = messages
        self._audio_out = audio_out
        self._voice = voice
        self._max_tokens = max_output_tokens
        self._pace = pace
        self._lead_s = lead_ms / 1000
        self._on_first_audio = on_first_audio
        self._on_done = on_done
        self.finished = False
        self._text: list[str] = []  # transcript / text sent so far
        self._usage_out = 0
        self._task: asyncio.Task[None] | None = None
        self._phrases: asyncio.Queue[str | None] = asyncio.Queue()
        self._clock_start: float | None = None  # when the item's audio position 0 played
        self._speech_ends_at = 0.0  # when the audio synthesized so far will have played

    # --- the events ---------------------------------------------------------------------

    def _out(self, event: dict[str, Any]) -> None:
        if not self.finished:
            self._emit(event)

    def _ids(self, content: bool = True) -> dict[str, Any]:
        ids: dict[str, Any] = {"response_id": self.id, "item_id": self.item.id, "output_index": 0}
        if content:
            ids["content_index"] = 0
        return ids

    def _resource(self, status: str, details: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [self.item.render()] if status != "in_progress" else [],
            "conversation_id": "conv_default",
            "output_modalities": ["audio"] if self._audio_out else ["text"],
            "max_output_tokens": self._max_tokens or "inf",
            "audio": {
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": self._voice}
            },
            "usage": None
            if status == "in_progress"
            else {
                "total_tokens": self._usage_out,
                "input_tokens": 0,
                "output_tokens": self._usage_out,
            },
            "metadata": None,
        }

    def start(self, previous_item_id: str | None) -> None:
        self._emit({"type": "response.created", "response": self._resource("in_progress", None)})
        rendered = self.item.render()
        rendered["content"] = []
        self._emit(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": 0,
                "item": rendered,
            }
        )
        self._emit(
            {
                "type": "conversation.item.added",
                "previous_item_id": previous_item_id,
                "item": rendered,
            }
        )
        part = (
            {"type": "audio", "transcript": ""} if self._audio_out else {"type": "text", "text": ""}
        )
        self._emit({"type": "response.content_part.added", **self._ids(), "part": part})
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _finish(self, status: Status, details: dict[str, Any] | None) -> None:
        """The closing events, in OpenAI's order; after them this reply emits nothing."""
        if self.finished:
            return
        text = (
            self.item.heard_transcript(self.item.audio_ms)
            if self._audio_out
            else "".join(self._text)
        )
        key = "transcript" if self._audio_out else "text"
        self.item.content = [
            {"type": "output_audio" if self._audio_out else "output_text", key: text}
        ]
        self.item.status = "completed" if status == "completed" else "incomplete"
        if self._audio_out:
            self._emit({"type": "response.output_audio.done", **self._ids()})
            self._emit(
                {"type": "response.output_audio_transcript.done", **self._ids(), "transcript": text}
            )
            part = {"type": "audio", "transcript": text}
        else:
            self._emit({"type": "response.output_text.done", **self._ids(), "text": text})
            part = {"type": "text", "text": text}
        self._emit({"type": "response.content_part.done", **self._ids(), "part": part})
        rendered = self.item.render()
        self._emit(
            {
                "type": "response.output_item.done",
                "response_id": self.id,
                "output_index": 0,
                "item": rendered,
            }
        )
        self._emit({"type": "conversation.item.done", "item": rendered})
        self._emit({"type": "response.done", "response": self._resource(status, details)})
        self.finished = True
        self._on_done(self)

    def cancel(self, reason: CancelReason) -> None:
        """End now with status ``cancelled``; no audio of this reply follows."""
        if self.finished:
            return
        self._finish("cancelled", {"type": "cancelled", "reason": reason})
        if self._task is not None:
            self._task.cancel()

    @property
    def playback_ends_at(self) -> float:
        """When the reply's audio will have played out at the client (monotonic)."""
        return self._speech_ends_at

    async def wait(self) -> None:
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # --- the work -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._audio_out:
                speech = asyncio.create_task(self._speak_phrases())
                try:
                    await self._write_text()
                    await speech
                finally:
                    speech.cancel()
            else:
                await self._write_text()
            self._finish("completed", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model or espeak-ng failed: the reply fails, visibly
            self._finish(
                "failed",
                {
                    "type": "failed",
                    "error": {
                        "type": "server_error",
                        "code": "server_error",
                        "message": f"The local reply failed: {exc}",
                    },
                },
            )

    async def _write_text(self) -> None:
        request = ChatCompletionRequest(
            model=self._model, messages=self._messages, max_tokens=self._max_tokens
        )
        stream = self._provider.stream(request)
        phrase: list[str] = []
        try:
            async for event in stream:
                if not isinstance(event, TokenDelta):
                    continue
                self._usage_out += 1
                if not self._audio_out:
                    self._text.append(event.text)
                    self._out(
                        {"type": "response.output_text.delta", **self._ids(), "delta": event.text}
                    )
                    continue
                phrase.append(event.text)
                text = "".join(phrase)
                if _PHRASE_END.search(text) or len(phrase) >= PHRASE_WORDS or self._starving():
                    self._phrases.put_nowait(text)
                    phrase = []
        finally:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]
            if phrase:
                self._phrases.put_nowait("".join(phrase))
            self._phrases.put_nowait(None)

    def _starving(self) -> bool:
        """Nothing waits to be spoken and the speech handed out ends within STARVING_MS."""
        if not self._phrases.empty():
            return False
        return (self._speech_ends_at - time.monotonic()) * 1000 < STARVING_MS

    def _ahead_ms(self) -> float:
        """How far the audio sent runs ahead of real time (0 before any was sent)."""
        if self._clock_start is None:
            return 0.0
        played = (time.monotonic() - self._clock_start) * 1000 * self._pace
        return self.item.audio_ms - played

    async def _speak_phrases(self) -> None:
        while (phrase := await self._phrases.get()) is not None:
            words = phrase.strip()
            if not words:
                continue
            pcm = await self._speaker.speak(words)
            if self.finished:
                return
            now = time.monotonic()
            duration = len(pcm) / BYTES_PER_MS / 1000 / self._pace
            self._speech_ends_at = max(now, self._speech_ends_at) + duration
            start_ms = self.item.audio_ms
            self.item.spans.append(Span(start_ms, start_ms + len(pcm) // BYTES_PER_MS, phrase))
            self._text.append(phrase)
            self._out(
                {"type": "response.output_audio_transcript.delta", **self._ids(), "delta": phrase}
            )
            await self._send_audio(pcm)

    async def _send_audio(self, pcm: bytes) -> None:
        step = CHUNK_MS * BYTES_PER_MS
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            now = time.monotonic()
            if self._clock_start is None or self._ahead_ms() < 0:
                # first audio, or the speech ran dry: real time restarts from here
                self._clock_start = now - self.item.audio_ms / 1000 / self._pace
            due = self._clock_start + self.item.audio_ms / 1000 / self._pace - self._lead_s
            if due > now:
                await asyncio.sleep(due - now)
            if self.finished:
                return
            first = self.item.audio_ms == 0
            self.item.has_audio = True
            self.item.audio_ms += len(chunk) // BYTES_PER_MS
            self._out(
                {"type": "response.output_audio.delta", **self._ids(), "delta": encode_audio(chunk)}
            )
            if first:
                self._on_first_audio()
