"""One reply of the local stand-in: a spoken (or written) message, or a function call.

``response.created`` goes out at once; the reply then waits for what it answers (the turn's
transcription, :mod:`.answer`) and streams its output item. A message's text is ``I heard:
...`` and then the local chat model's words, spoken by espeak-ng and streamed as
``response.output_audio.delta`` no faster than real time.

Text and speech overlap: tokens gather into phrases; a phrase is spoken as soon as it ends
(punctuation, or 12 words) or as soon as the audio already sent would run out within
300 ms, so the first words are spoken while the model is still thinking. Audio goes out in
50 ms deltas, each no earlier than its place in real time minus
``REALTIME_LOCAL_AUDIO_LEAD_MS``. ``max_output_tokens`` counts every token of the reply
(the local tokenizer: a word with its leading space); a reply cut by it ends
``incomplete``.

Ending a reply early (``response.cancel``, barge-in, session end) is :meth:`Reply.cancel`:
it writes the closing events at once, in order, and nothing of this reply is emitted after
them, whatever the task was awaiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from core.providers import ModelProvider, TokenDelta
from core.providers.base import Finish
from core.providers.local import count_tokens, iter_tokens
from core.schemas.chat import ChatCompletionRequest
from stream_service.realtime.local.answer import Answer, FunctionCall
from stream_service.realtime.local.audio import BYTES_PER_MS, encode_audio
from stream_service.realtime.local.conversation import Conversation, Item, Span
from stream_service.realtime.local.tts import Speaker
from stream_service.realtime.protocol import new_id

CHUNK_MS = 50
_PHRASE_END = re.compile(r"[.!?;:,]\s*$")
PHRASE_WORDS = 12
STARVING_MS = 300
ARGUMENT_FRAGMENTS = 3
# What rate_limits.updated reports (the stand-in has no account limits; these are the
# figures of an OpenAI tier-1 realtime key, requests and tokens per minute).
RATE_LIMITS = {"requests": 5000, "tokens": 400_000}

Status = Literal["completed", "cancelled", "incomplete", "failed"]
CancelReason = Literal["turn_detected", "client_cancelled"]
Emit = Callable[[dict[str, Any]], object]


@dataclass(frozen=True, slots=True)
class ReplyParams:
    """What one response is asked for (the session's settings under response.create's)."""

    audio_out: bool
    voice: Any
    max_output_tokens: int | None
    metadata: dict[str, str] | None
    in_conversation: bool  # False: conversation "none", an out-of-band response


class Reply:
    def __init__(
        self,
        *,
        emit: Emit,
        provider: ModelProvider,
        speaker: Speaker,
        model: str,
        context: Callable[[], Awaitable[Answer]],
        params: ReplyParams,
        conversation: Conversation,
        pace: float,
        lead_ms: int,
        on_first_audio: Callable[[], None],
        on_done: Callable[[Reply], None],
    ) -> None:
        self.id = new_id("resp")
        self.item: Item | None = None
        self.params = params
        self._emit = emit
        self._provider = provider
        self._speaker = speaker
        self._model = model
        self._context = context
        self._conversation = conversation
        self._audio_out = params.audio_out
        self._pace = pace
        self._lead_s = lead_ms / 1000
        self._on_first_audio = on_first_audio
        self._on_done = on_done
        self.finished = False
        self._text: list[str] = []  # transcript / text sent so far
        self._usage_in = 0
        self._usage_out = 0
        self._cut = False  # max_output_tokens reached
        self._task: asyncio.Task[None] | None = None
        self._phrases: asyncio.Queue[str | None] = asyncio.Queue()
        self._clock_start: float | None = None  # when the item's audio position 0 played
        self._speech_ends_at = 0.0  # when the audio synthesized so far will have played

    @property
    def in_conversation(self) -> bool:
        return self.params.in_conversation

    # --- the events ---------------------------------------------------------------------

    def _out(self, event: dict[str, Any]) -> None:
        if not self.finished:
            self._emit(event)

    def _ids(self, content: bool = True) -> dict[str, Any]:
        assert self.item is not None
        ids: dict[str, Any] = {"response_id": self.id, "item_id": self.item.id, "output_index": 0}
        if content:
            ids["content_index"] = 0
        return ids

    def _resource(self, status: str, details: dict[str, Any] | None) -> dict[str, Any]:
        done = status != "in_progress"
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [self.item.render()] if done and self.item is not None else [],
            "conversation_id": "conv_default" if self.in_conversation else None,
            "output_modalities": ["audio"] if self._audio_out else ["text"],
            "max_output_tokens": self.params.max_output_tokens or "inf",
            "audio": {
                "output": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "voice": self.params.voice,
                }
            },
            "usage": self._usage() if done else None,
            "metadata": self.params.metadata,
        }

    def _usage(self) -> dict[str, Any]:
        audio = self._usage_out if self._audio_out else 0
        return {
            "total_tokens": self._usage_in + self._usage_out,
            "input_tokens": self._usage_in,
            "output_tokens": self._usage_out,
            "input_token_details": {
                "cached_tokens": 0,
                "text_tokens": self._usage_in,
                "audio_tokens": 0,
                "image_tokens": 0,
            },
            "output_token_details": {
                "text_tokens": self._usage_out - audio,
                "audio_tokens": audio,
            },
        }

    def start(self) -> None:
        self._emit({"type": "response.created", "response": self._resource("in_progress", None)})
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _open_item(self, item: Item) -> None:
        """The output item begins: response.output_item.added (and into the conversation)."""
        self.item = item
        rendered = item.render()
        if item.type == "message":
            rendered["content"] = []
        self._emit(
            {
                "type": "response.output_item.added",
                "response_id": self.id,
                "output_index": 0,
                "item": rendered,
            }
        )
        if self.in_conversation:
            previous = self._conversation.add(item)
            self._emit(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": rendered}
            )

    def _finish(self, status: Status, details: dict[str, Any] | None) -> None:
        """The closing events, in OpenAI's order; after them this reply emits nothing."""
        if self.finished:
            return
        item = self.item
        if item is not None:
            item.status = "completed" if status == "completed" else "incomplete"
            if item.type == "message":
                self._close_message(item)
            elif item.type == "function_call":
                self._emit(
                    {
                        "type": "response.function_call_arguments.done",
                        **self._ids(content=False),
                        "call_id": item.call_id,
                        "name": item.name,
                        "arguments": item.arguments,
                    }
                )
            rendered = item.render()
            self._emit(
                {
                    "type": "response.output_item.done",
                    "response_id": self.id,
                    "output_index": 0,
                    "item": rendered,
                }
            )
            if self.in_conversation:
                self._emit({"type": "conversation.item.done", "item": rendered})
        self._emit({"type": "response.done", "response": self._resource(status, details)})
        self._emit(
            {
                "type": "rate_limits.updated",
                "rate_limits": [
                    {"name": name, "limit": limit, "remaining": limit - used, "reset_seconds": 60.0}
                    for name, limit, used in (
                        ("requests", RATE_LIMITS["requests"], 1),
                        ("tokens", RATE_LIMITS["tokens"], self._usage_in + self._usage_out),
                    )
                ],
            }
        )
        self.finished = True
        self._on_done(self)

    def _close_message(self, item: Item) -> None:
        text = item.heard_transcript(item.audio_ms) if self._audio_out else "".join(self._text)
        key = "transcript" if self._audio_out else "text"
        item.content = [{"type": "output_audio" if self._audio_out else "output_text", key: text}]
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
            plan = await self._context()
            if self.finished:
                return
            self._usage_in = sum(count_tokens(m.text()) for m in plan.messages)
            if plan.error is not None:
                self._fail("invalid_value", plan.error)
                return
            if plan.call is not None:
                await self._call(plan.call)
            else:
                await self._message(plan)
            if self._cut:
                self._finish("incomplete", {"type": "incomplete", "reason": "max_output_tokens"})
            else:
                self._finish("completed", None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the model or espeak-ng failed: the reply fails, visibly
            self._fail("server_error", f"The local reply failed: {exc}")

    def _fail(self, code: str, message: str) -> None:
        kind = "server_error" if code == "server_error" else "invalid_request_error"
        self._finish(
            "failed",
            {"type": "failed", "error": {"type": kind, "code": code, "message": message}},
        )

    async def _call(self, call: FunctionCall) -> None:
        item = Item(
            id=new_id("item"),
            role=None,
            content=[],
            type="function_call",
            status="in_progress",
            call_id=new_id("call"),
            name=call.name,
            arguments="",
        )
        self._open_item(item)
        step = max(1, -(-len(call.arguments) // ARGUMENT_FRAGMENTS))
        for start in range(0, len(call.arguments), step):
            fragment = call.arguments[start : start + step]
            item.arguments = (item.arguments or "") + fragment
            self._out(
                {
                    "type": "response.function_call_arguments.delta",
                    **self._ids(content=False),
                    "call_id": item.call_id,
                    "delta": fragment,
                }
            )
            await asyncio.sleep(0)
        self._usage_out += count_tokens(call.arguments) + 1

    async def _message(self, plan: Answer) -> None:
        item = Item(
            id=new_id("item"),
            role="assistant",
            content=[{"type": "output_audio", "transcript": ""}],
            status="in_progress",
        )
        self._open_item(item)
        part = (
            {"type": "audio", "transcript": ""} if self._audio_out else {"type": "text", "text": ""}
        )
        self._emit({"type": "response.content_part.added", **self._ids(), "part": part})
        if self._audio_out:
            speech = asyncio.create_task(self._speak_phrases())
            try:
                await self._write_text(plan)
                await speech
            finally:
                speech.cancel()
        else:
            await self._write_text(plan)

    def _budget_left(self) -> int | None:
        limit = self.params.max_output_tokens
        return None if limit is None else limit - self._usage_out

    async def _write_text(self, plan: Answer) -> None:
        phrase: list[str] = []
        try:
            for token in iter_tokens(plan.prefix):
                if self._budget_left() == 0:
                    self._cut = True
                    return
                phrase = self._token(token, phrase)
            if not plan.ask_model or self._budget_left() == 0:
                self._cut = self._budget_left() == 0 and plan.ask_model
                return
            request = ChatCompletionRequest(
                model=self._model, messages=plan.messages, max_tokens=self._budget_left()
            )
            stream = self._provider.stream(request)
            try:
                first = bool(plan.prefix)
                async for event in stream:
                    if isinstance(event, Finish):
                        self._cut = event.reason == "length" and self._budget_left() == 0
                        continue
                    if not isinstance(event, TokenDelta):
                        continue
                    text = event.text
                    if first:  # the model's first word follows the prefix's sentence
                        text = " " + text.lstrip()
                        first = False
                    phrase = self._token(text, phrase)
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]
        finally:
            if phrase:
                self._phrases.put_nowait("".join(phrase))
            self._phrases.put_nowait(None)

    def _token(self, text: str, phrase: list[str]) -> list[str]:
        """One token out: written at once (text), or gathered into the phrase to speak."""
        self._usage_out += 1
        if not self._audio_out:
            self._text.append(text)
            self._out({"type": "response.output_text.delta", **self._ids(), "delta": text})
            return phrase
        phrase.append(text)
        joined = "".join(phrase)
        if _PHRASE_END.search(joined) or len(phrase) >= PHRASE_WORDS or self._starving():
            self._phrases.put_nowait(joined)
            return []
        return phrase

    def _starving(self) -> bool:
        """Nothing waits to be spoken and the speech handed out ends within STARVING_MS."""
        if not self._phrases.empty():
            return False
        return (self._speech_ends_at - time.monotonic()) * 1000 < STARVING_MS

    def _ahead_ms(self) -> float:
        """How far the audio sent runs ahead of real time (0 before any was sent)."""
        assert self.item is not None
        if self._clock_start is None:
            return 0.0
        played = (time.monotonic() - self._clock_start) * 1000 * self._pace
        return self.item.audio_ms - played

    async def _speak_phrases(self) -> None:
        item = self.item
        assert item is not None
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
            start_ms = item.audio_ms
            item.spans.append(Span(start_ms, start_ms + len(pcm) // BYTES_PER_MS, phrase))
            self._text.append(phrase)
            self._out(
                {"type": "response.output_audio_transcript.delta", **self._ids(), "delta": phrase}
            )
            await self._send_audio(pcm)

    async def _send_audio(self, pcm: bytes) -> None:
        item = self.item
        assert item is not None
        step = CHUNK_MS * BYTES_PER_MS
        for offset in range(0, len(pcm), step):
            chunk = pcm[offset : offset + step]
            now = time.monotonic()
            if self._clock_start is None or self._ahead_ms() < 0:
                # first audio, or the speech ran dry: real time restarts from here
                self._clock_start = now - item.audio_ms / 1000 / self._pace
            due = self._clock_start + item.audio_ms / 1000 / self._pace - self._lead_s
            if due > now:
                await asyncio.sleep(due - now)
            if self.finished:
                return
            first = item.audio_ms == 0
            item.has_audio = True
            item.audio_ms += len(chunk) // BYTES_PER_MS
            self._out(
                {"type": "response.output_audio.delta", **self._ids(), "delta": encode_audio(chunk)}
            )
            if first:
                self._on_first_audio()
