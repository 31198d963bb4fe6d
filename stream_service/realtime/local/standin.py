"""The offline stand-in for OpenAI's Realtime API (``LLM_PROVIDER=local``).

It reads the client events OpenAI's server reads and answers with the same events:
server VAD (:mod:`.vad`) or manual commits, input transcription (:mod:`.asr`) when the
session asks for it, replies spoken by :mod:`.responder`, barge-in, cancel and truncate.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from msgspec import UNSET, to_builtins

from core.providers import ModelProvider
from core.schemas.realtime import (
    RealtimeParamError,
    ResponseParams,
    check_response,
    default_session,
)
from stream_service.realtime.limits import ClientLimits
from stream_service.realtime.local.answer import Answer, answer
from stream_service.realtime.local.asr import Transcriber, Utterance
from stream_service.realtime.local.audio import BYTES_PER_MS, decode_audio
from stream_service.realtime.local.conversation import Conversation, Item, item_from_client
from stream_service.realtime.local.responder import CancelReason, Reply, ReplyParams
from stream_service.realtime.local.tts import Speaker
from stream_service.realtime.local.vad import SpeechStarted, TurnDetector
from stream_service.realtime.protocol import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    Envelope,
    ItemCreate,
    ItemDelete,
    ItemRetrieve,
    ItemTruncate,
    OutputAudioClear,
    ProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    decode_client_event,
    new_id,
)
from stream_service.realtime.session import RealtimeSession
from stream_service.realtime.session_config import (
    VoiceConfig,
    merge_session,
)
from stream_service.realtime.settings import RealtimeSettings

MIN_COMMIT_MS = 100
HEAR_SLICE_BYTES = 4 * 48_000  # 4 s of input audio per pass of the VAD
# A reply waits this long at most for its turn's transcript (a worker starting, a machine
# out of CPU), then answers without it ("(inaudible)").
TRANSCRIPT_WAIT_S = 10.0


class LocalVoice:
    def __init__(
        self,
        *,
        settings: RealtimeSettings,
        provider: ModelProvider,
        speaker: Speaker,
        transcriber: Transcriber,
        limits: ClientLimits,
        initial_session: dict[str, Any] | None = None,
    ) -> None:
        self._settings = settings
        self._provider = provider
        self._speaker = speaker
        self._transcriber = transcriber
        self._limits = limits
        self._initial = initial_session
        self._session: RealtimeSession | None = None
        self._config_obj: dict[str, Any] = {}
        self.config: VoiceConfig | None = None
        self.conversation = Conversation()
        self._buffer = bytearray()  # uncommitted input audio
        self._buffer_start_ms = 0  # its position in all audio received
        self._received_ms = 0
        self._detector: TurnDetector | None = None
        self._speech_item: str | None = None  # announced by speech_started
        self.reply: Reply | None = None  # the response of the default conversation
        self._out_of_band: set[Reply] = set()  # conversation "none" responses
        self._utterance: Utterance | None = None  # the speech in progress, being transcribed
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn_stopped_at: float | None = None
        # idle_timeout_ms: input audio position from which silence counts (None: disarmed)
        self._idle_from_ms: int | None = None

    # --- Backend ------------------------------------------------------------------------

    async def start(self, session: RealtimeSession) -> None:
        self._session = session
        obj = default_session(session.id, session.model, self._settings.max_session_s)
        if self._initial:
            obj = merge_session(obj, self._initial)
        self._apply(obj)
        session.emit({"type": "session.created", "session": self._config_obj})

    async def handle(self, frame: str, envelope: Envelope, received_at: float) -> None:
        event = decode_client_event(frame)
        try:
            if isinstance(event, AudioAppend):
                await self._append(event)
            else:
                self._dispatch(event)
        except ProtocolError as exc:
            exc.event_id = event.event_id
            raise

    async def close(self) -> None:
        for reply in [self.reply, *self._out_of_band]:
            if reply is not None:
                reply.cancel("client_cancelled")
        self._abort_utterance()
        for task in list(self._tasks):
            task.cancel()

    # --- events -------------------------------------------------------------------------

    @property
    def session(self) -> RealtimeSession:
        assert self._session is not None
        return self._session

    def _emit(self, event: dict[str, Any]) -> object:
        return self.session.emit(event)

    def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, SessionUpdate):
            self._apply(merge_session(self._config_obj, event.session))
            self._emit({"type": "session.updated", "session": self._config_obj})
        elif isinstance(event, AudioCommit):
            self._commit_by_client()
        elif isinstance(event, AudioClear):
            self._buffer.clear()
            self._buffer_start_ms = self._received_ms
            self._speech_item = None
            self._abort_utterance()
            if self._detector is not None:
                self._detector.reset()
            self._emit({"type": "input_audio_buffer.cleared"})
        elif isinstance(event, ResponseCreate):
            self._create_response(event)
        elif isinstance(event, ResponseCancel):
            replies = [r for r in (self.reply, *self._out_of_band) if r is not None]
            if event.response_id:
                replies = [r for r in replies if r.id == event.response_id]
            if not replies:
                raise ProtocolError(
                    "Cancellation failed: no active response found.", "response_cancel_not_active"
                )
            replies[0].cancel("client_cancelled")
        elif isinstance(event, ItemCreate):
            if not isinstance(event.item, dict):
                raise ProtocolError("item must be an object.", "invalid_type", param="item")
            item = item_from_client(event.item, event.event_id)
            previous = self.conversation.add(item, event.event_id, event.previous_item_id)
            self._emit(
                {
                    "type": "conversation.item.added",
                    "previous_item_id": previous,
                    "item": item.render(),
                }
            )
            self._emit(
                {
                    "type": "conversation.item.done",
                    "previous_item_id": previous,
                    "item": item.render(),
                }
            )
        elif isinstance(event, ItemTruncate):
            self._truncate(event)
        elif isinstance(event, ItemDelete):
            self.conversation.get(event.item_id, event.event_id)
            del self.conversation.items[event.item_id]
            self._emit({"type": "conversation.item.deleted", "item_id": event.item_id})
        elif isinstance(event, ItemRetrieve):
            item = self.conversation.get(event.item_id, event.event_id)
            self._emit({"type": "conversation.item.retrieved", "item": item.render()})
        elif isinstance(event, OutputAudioClear):
            raise ProtocolError(
                "output_audio_buffer.clear is for WebRTC sessions; over a WebSocket the client "
                "holds the playback buffer (stop it and send conversation.item.truncate).",
                "invalid_value",
                param="type",
            )

    def _apply(self, obj: dict[str, Any]) -> None:
        self._config_obj = obj
        self.config = VoiceConfig.of(obj)
        turn = self.config.turn_detection
        if turn is None:
            self._detector = None
        elif self._detector is None:
            self._detector = TurnDetector(turn, self._received_ms)
        else:
            self._detector.reconfigure(turn)
        self._transcriber.warm()  # every turn is transcribed: the reply answers what was said

    # --- input audio --------------------------------------------------------------------

    async def _append(self, event: AudioAppend) -> None:
        """An append (up to 15 MiB: minutes of audio) is heard in slices of a few seconds,
        with the event loop free in between."""
        self._limits.check_append(len(event.audio) * 3 // 4, event.event_id)
        pcm = decode_audio(event.audio, event.event_id)
        max_ms = int(self._settings.max_input_buffer_s * 1000)
        if self._detector is None and (len(self._buffer) + len(pcm)) // BYTES_PER_MS > max_ms:
            raise ProtocolError(
                f"The input audio buffer holds {max_ms} ms already (REALTIME_MAX_INPUT_BUFFER_S)"
                "; commit or clear it. This audio was dropped.",
                "input_audio_buffer_full",
                param="audio",
            )
        for start in range(0, len(pcm), HEAR_SLICE_BYTES):
            if start:
                await asyncio.sleep(0)
            self._hear(pcm[start : start + HEAR_SLICE_BYTES])

    def _hear(self, pcm: bytes) -> None:
        max_ms = int(self._settings.max_input_buffer_s * 1000)
        detector = self._detector
        held_ms = (len(self._buffer) + len(pcm)) // BYTES_PER_MS
        if detector is not None and detector.speaking and held_ms > max_ms:
            # a turn as long as the buffer: it ends here, and the VAD goes on listening
            detector.reset()
            self._speech_stopped(self._received_ms)
        self._buffer += pcm
        self._received_ms += len(pcm) // BYTES_PER_MS
        if detector is None:
            return
        if self._utterance is not None:
            self._utterance.feed(pcm)  # transcribed while the user speaks
        for vad_event in detector.push(pcm, self._buffer_start_ms):
            if isinstance(vad_event, SpeechStarted):
                self._speech_started(vad_event.audio_start_ms)
            else:
                self._speech_stopped(vad_event.audio_end_ms)
        if not detector.speaking:
            self._check_idle(detector.config.idle_timeout_ms)
            # silence is never held beyond what a coming start's padding may need: however
            # long the user is quiet, the buffer stays small and the next speech is heard
            self._trim_buffer(self._received_ms - detector.config.prefix_padding_ms - 100)

    def _check_idle(self, idle_timeout_ms: int | None) -> None:
        """``idle_timeout_ms``: silence that long after a reply played out prompts a reply."""
        start = self._idle_from_ms
        if idle_timeout_ms is None or start is None or self.reply is not None:
            return
        if self._received_ms - start < idle_timeout_ms:
            return
        self._idle_from_ms = None
        item_id = new_id("item")
        self._emit(
            {
                "type": "input_audio_buffer.timeout_triggered",
                "audio_start_ms": start,
                "audio_end_ms": self._received_ms,
                "item_id": item_id,
            }
        )
        self._commit(self._take_buffer(self._received_ms), item_id, transcribe=False)
        self._turn_stopped_at = None
        self._start_reply(None)

    def _trim_buffer(self, to_ms: int) -> None:
        cut = max(0, to_ms - self._buffer_start_ms)
        if cut > 0:
            del self._buffer[: cut * BYTES_PER_MS]
            self._buffer_start_ms += cut

    def _abort_utterance(self) -> None:
        if self._utterance is not None:
            self._utterance.abort()
            self._utterance = None

    def _speech_started(self, audio_start_ms: int) -> None:
        self._idle_from_ms = None
        self._trim_buffer(audio_start_ms)
        self._abort_utterance()
        self._utterance = self._transcriber.begin()
        self._utterance.feed(bytes(self._buffer))
        self._speech_item = new_id("item")
        self._emit(
            {
                "type": "input_audio_buffer.speech_started",
                "audio_start_ms": audio_start_ms,
                "item_id": self._speech_item,
            }
        )
        turn = self.config.turn_detection if self.config else None
        if self.reply is not None and turn is not None and turn.interrupt_response:
            self.session.metrics.barge_ins.inc()
            self._cancel_reply("turn_detected")

    def _speech_stopped(self, audio_end_ms: int) -> None:
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        self._emit(
            {
                "type": "input_audio_buffer.speech_stopped",
                "audio_end_ms": audio_end_ms,
                "item_id": item_id,
            }
        )
        stopped_at = time.monotonic()
        utterance, self._utterance = self._utterance, None
        keep = self._take_buffer(audio_end_ms)
        self._commit(keep, item_id, utterance=utterance)
        turn = self.config.turn_detection if self.config else None
        if turn is not None and turn.create_response and self.reply is None:
            self._turn_stopped_at = stopped_at
            self._start_reply(None)

    def _take_buffer(self, upto_ms: int) -> bytes:
        cut = max(0, upto_ms - self._buffer_start_ms) * BYTES_PER_MS
        audio = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        self._buffer_start_ms += len(audio) // BYTES_PER_MS
        return audio

    def _commit_by_client(self) -> None:
        ms = len(self._buffer) // BYTES_PER_MS
        if ms < MIN_COMMIT_MS:
            raise ProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms}ms of audio.",
                "input_audio_buffer_commit_empty",
            )
        item_id = self._speech_item or new_id("item")
        self._speech_item = None
        self._abort_utterance()
        if self._detector is not None:
            self._detector.reset()
        self._commit(self._take_buffer(self._received_ms), item_id)

    def _commit(
        self,
        audio: bytes,
        item_id: str,
        *,
        utterance: Utterance | None = None,
        transcribe: bool = True,
    ) -> None:
        item = Item(id=item_id, role="user", content=[{"type": "input_audio", "transcript": None}])
        if transcribe:
            if utterance is None:  # a manual commit: the whole clip now
                utterance = self._transcriber.begin()
                utterance.feed(audio)
            item.transcription = utterance.end()
        previous = self.conversation.add(item)
        self._emit(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        self._emit(
            {"type": "conversation.item.added", "previous_item_id": previous, "item": item.render()}
        )
        self._emit(
            {"type": "conversation.item.done", "previous_item_id": previous, "item": item.render()}
        )
        if item.transcription is not None:
            self._spawn(self._transcribed(item, len(audio)))

    async def _transcribed(self, item: Item, audio_bytes: int) -> None:
        """The turn's transcript: into the item, and to the client if the session asked."""
        assert item.transcription is not None
        try:
            text = (await item.transcription).strip()
        except asyncio.CancelledError:
            return
        except Exception as exc:
            item.content[0]["transcript"] = ""
            if self.config is not None and self.config.transcribe:
                self._emit(
                    {
                        "type": "conversation.item.input_audio_transcription.failed",
                        "item_id": item.id,
                        "content_index": 0,
                        "error": {
                            "type": "server_error",
                            "code": "transcription_failed",
                            "message": str(exc),
                            "param": None,
                        },
                    }
                )
            return
        item.content[0]["transcript"] = text
        if self.config is None or not self.config.transcribe:
            return
        self._emit(
            {
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item.id,
                "content_index": 0,
                "delta": text,
            }
        )
        self._emit(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item.id,
                "content_index": 0,
                "transcript": text,
                "usage": {"type": "duration", "seconds": round(audio_bytes / 48_000, 3)},
            }
        )

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- replies ------------------------------------------------------------------------

    def _create_response(self, event: ResponseCreate) -> None:
        raw = event.response or {}
        try:
            params = check_response(raw)
        except RealtimeParamError as exc:
            raise ProtocolError(exc.message, exc.code, param=exc.param) from exc
        if params.conversation != "none" and self.reply is not None:
            raise ProtocolError(
                f"Conversation already has an active response in progress: {self.reply.id}. "
                "Wait until the response is finished before creating a new one.",
                "conversation_already_has_active_response",
            )
        inputs: list[Item] | None = None
        if params.input is not UNSET:
            inputs = []
            for n, entry in enumerate(params.input):
                if entry.get("type") == "item_reference":
                    inputs.append(self.conversation.get(str(entry.get("id")), event.event_id))
                    continue
                try:
                    inputs.append(item_from_client(entry, event.event_id))
                except ProtocolError as exc:
                    exc.param = f"response.input[{n}]" + (exc.param or "").removeprefix("item")
                    raise
        self._turn_stopped_at = None
        self._start_reply(params, inputs)

    def _start_reply(self, params: ResponseParams | None, inputs: list[Item] | None = None) -> None:
        config = self.config
        assert config is not None
        params = params or ResponseParams()
        obj = self._config_obj
        audio_out = (
            config.audio_out
            if params.output_modalities is UNSET
            else params.output_modalities == ["audio"]
        )
        tokens = params.max_output_tokens
        max_tokens = (
            config.max_output_tokens
            if tokens is UNSET
            else (tokens if isinstance(tokens, int) else None)
        )
        instructions = config.instructions if params.instructions is UNSET else params.instructions
        tools = (obj.get("tools") or []) if params.tools is UNSET else to_builtins(params.tools)
        tool_choice = (
            obj.get("tool_choice", "auto")
            if params.tool_choice is UNSET
            else to_builtins(params.tool_choice)
        )
        voice = obj["audio"]["output"].get("voice") or "alloy"
        audio_params = params.audio
        if (
            audio_params is not UNSET
            and audio_params.output is not UNSET
            and audio_params.output.voice is not UNSET
        ):
            voice = to_builtins(audio_params.output.voice)
        in_conversation = params.conversation != "none"
        conversation = self.conversation
        stopped_at = self._turn_stopped_at
        metrics = self.session.metrics

        async def context() -> Answer:
            items = inputs if inputs is not None else list(conversation.items.values())
            deadline = time.monotonic() + TRANSCRIPT_WAIT_S
            for item in items:
                await item.transcribed(deadline - time.monotonic())
            if inputs is None:  # what the conversation holds now the transcripts are in
                items = [i for i in conversation.items.values() if i.status != "in_progress"]
            return answer(items, instructions, tools, tool_choice)

        def first_audio() -> None:
            if stopped_at is not None:
                metrics.turn_latency.observe(time.monotonic() - stopped_at)

        reply = Reply(
            emit=self._emit,
            provider=self._provider,
            speaker=self._speaker,
            model=self.session.model,
            context=context,
            params=ReplyParams(
                audio_out=audio_out,
                voice=voice,
                max_output_tokens=max_tokens,
                metadata=params.metadata,
                in_conversation=in_conversation,
            ),
            conversation=conversation,
            pace=self._settings.local_pace,
            lead_ms=self._settings.local_audio_lead_ms,
            on_first_audio=first_audio,
            on_done=self._reply_done,
        )
        if in_conversation:
            self.reply = reply
        else:
            self._out_of_band.add(reply)
        reply.start()

    def _reply_done(self, reply: Reply) -> None:
        self._out_of_band.discard(reply)
        if self.reply is reply:
            self.reply = None
            # silence counts from when the reply has played out at the client
            still_playing_ms = max(0.0, reply.playback_ends_at - time.monotonic()) * 1000
            self._idle_from_ms = self._received_ms + int(still_playing_ms)

    def _cancel_reply(self, reason: CancelReason) -> None:
        if self.reply is not None:
            self.reply.cancel(reason)

    def _truncate(self, event: ItemTruncate) -> None:
        item = self.conversation.get(event.item_id, event.event_id)
        if item.role != "assistant" or not item.has_audio:
            raise ProtocolError(
                "Only assistant messages with audio can be truncated.",
                "invalid_value",
                param="item_id",
            )
        if event.content_index != 0:
            raise ProtocolError(
                "content_index must be 0 (the item's audio).",
                "invalid_value",
                param="content_index",
            )
        if event.audio_end_ms < 0:
            raise ProtocolError(
                "audio_end_ms must not be negative.", "invalid_value", param="audio_end_ms"
            )
        if event.audio_end_ms > item.audio_ms:
            raise ProtocolError(
                f"Audio content of {item.audio_ms}ms is already shorter than "
                f"{event.audio_end_ms}ms.",
                "invalid_value",
                param="audio_end_ms",
            )
        if self.reply is not None and self.reply.item is item:
            self._cancel_reply("client_cancelled")  # nothing past the cut may still be sent
        item.audio_ms = event.audio_end_ms
        heard = item.heard_transcript(event.audio_end_ms)
        item.content = [{"type": "output_audio", "transcript": heard}]
        item.spans = [s for s in item.spans if s.start_ms < event.audio_end_ms]
        self.session.metrics.truncations.inc()
        self._emit(
            {
                "type": "conversation.item.truncated",
                "item_id": item.id,
                "content_index": 0,
                "audio_end_ms": event.audio_end_ms,
            }
        )
