// A voice conversation: the microphone streamed to the Realtime socket, the reply played,
// barge-in, the voice state, the latency of each turn and the transcripts of both sides.
//
// States (SPEC 8 `voice-state`): idle (mic off) -> listening (mic on; the user may talk) ->
// thinking (the server heard the end of the user's speech) -> speaking (reply audio is being
// played) -> listening (the reply ended and was all played, or the user interrupted it).
//
// Barge-in: on input_audio_buffer.speech_started while reply audio is queued or playing, the
// playback is cleared at once, then conversation.item.truncate tells the server how much of
// the item the user actually heard: the samples the worklet played minus the output latency,
// clamped to what was received, never sent when nothing was played. The server's
// interrupt_response cancels the response itself (no response.cancel from here); audio deltas
// of the interrupted response that were already on their way are dropped.
//
// Latency (SPEC 8 `voice-latency`): from the arrival of input_audio_buffer.speech_stopped to
// the first sample of the reply's audio played by the worklet, plus the output latency (when it
// is heard).

import { AudioIO, RATE, int16ToBase64 } from "./audio-io.js";
import { VoiceClient } from "./voice-client.js";

export const VOICE_STATES = ["idle", "listening", "speaking", "thinking"];

/** The session configuration the page asks for (OpenAI's GA session shape). */
export function sessionConfig() {
  return {
    output_modalities: ["audio"],
    audio: {
      input: {
        format: { type: "audio/pcm", rate: RATE },
        transcription: { model: "gpt-4o-mini-transcribe" },
        turn_detection: {
          type: "server_vad",
          threshold: 0.5,
          prefix_padding_ms: 300,
          silence_duration_ms: 500,
          create_response: true,
          interrupt_response: true,
        },
      },
      output: { format: { type: "audio/pcm", rate: RATE } },
    },
  };
}

/** Where a truncate cuts, in ms of the item's audio: heard = played - latency, clamped. */
export function heardMs(playedSamples, receivedSamples, outputLatencyMs) {
  const played = Math.min(playedSamples, receivedSamples);
  const ms = (played * 1000) / RATE - outputLatencyMs;
  return Math.max(0, Math.min(Math.floor(ms), Math.floor((receivedSamples * 1000) / RATE)));
}

export class VoiceSession {
  /**
   * @param {object} o
   * @param {import("../transport/http.js").ApiClient} o.api
   * @param {() => string} o.model  the realtime model name
   * @param {boolean} o.raw  microphone processing off (?audio=raw)
   * @param {boolean} [o.deviceRate]  the AudioContext at the device's rate (?audio_rate=device)
   * @param {object} o.ui  {setState(state), setLatency(ms), setConnection(state, info), notify(text),
   *   userTurn(itemId) -> {append(text), setText(text)}, assistantTurn(itemId) -> {append(text),
   *   setText(text), end(info)}}
   */
  constructor({ api, model, raw, deviceRate = false, ui }) {
    this.api = api;
    this.model = model;
    this.raw = raw;
    this.deviceRate = deviceRate;
    this.ui = ui;
    this.state = "idle";
    this.active = false;
    this._reset();
  }

  _reset() {
    this.client = null;
    this.audio = null;
    this.received = new Map(); // itemId -> samples received (24 kHz)
    this.cutResponses = new Set(); // responses interrupted: late audio is dropped
    this.responseActive = false;
    this.playingItem = null; // the item the worklet plays (or last played)
    this.currentItem = null; // the item whose audio came last
    this.playing = false;
    this.pendingStart = false; // audio queued that the worklet has not started playing yet
    this.stoppedAt = null; // performance.now() of the last speech_stopped (for the latency)
    this.userTurns = new Map();
    this.assistantTurns = new Map();
    this.lastLatencyMs = null;
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.ui.setState(state);
  }

  async start() {
    if (this.active) return;
    this.active = true;
    this._reset();
    this.audio = new AudioIO({
      raw: this.raw,
      deviceRate: this.deviceRate,
      onPcm: (pcm) => this._onPcm(pcm),
      onPlayback: (msg) => this._onPlayback(msg),
    });
    this.client = new VoiceClient({ api: this.api, model: this.model(), session: sessionConfig() });
    this.client.on("*", (ev) => this._onEvent(ev));
    this.client.on("connection", (state, info) => this.ui.setConnection(state, info));
    try {
      await this.audio.start();
      await this.client.connect();
    } catch (err) {
      await this.stop();
      const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
      this.ui.notify(denied ? "The microphone is blocked for this page." : `Voice could not start: ${err.message}`);
      return;
    }
  }

  async stop() {
    if (!this.active) return;
    this.active = false;
    if (this.client) this.client.close();
    if (this.audio) await this.audio.stop();
    for (const turn of this.assistantTurns.values()) turn.end({});
    this._reset();
    this._setState("idle");
  }

  _onPcm(pcm) {
    if (!this.client || !this.client.open || !this.client.sessionId) return; // dropped while away
    this.client.send({ type: "input_audio_buffer.append", audio: int16ToBase64(pcm) });
  }

  _onEvent(ev) {
    switch (ev.type) {
      case "session.created":
        this._setState(this.playing ? "speaking" : "listening");
        break;
      case "session.lost":
        this._dropPlayback();
        this.ui.notify(ev.reason);
        break;
      case "input_audio_buffer.speech_started":
        this._bargeIn();
        this._setState("listening");
        break;
      case "input_audio_buffer.speech_stopped":
        this.stoppedAt = performance.now();
        this._setState("thinking");
        break;
      case "input_audio_buffer.committed":
        this._userTurn(ev.item_id);
        break;
      case "conversation.item.input_audio_transcription.delta":
        this._userTurn(ev.item_id).append(ev.delta || "");
        break;
      case "conversation.item.input_audio_transcription.completed":
        this._userTurn(ev.item_id).setText(ev.transcript || "");
        break;
      case "conversation.item.input_audio_transcription.failed":
        this._userTurn(ev.item_id).setText("(not transcribed)");
        break;
      case "response.created":
        this.responseActive = true;
        break;
      case "response.output_audio.delta":
        this._onAudio(ev);
        break;
      case "response.output_audio_transcript.delta":
        if (!this.cutResponses.has(ev.response_id)) this._assistantTurn(ev.item_id).append(ev.delta || "");
        break;
      case "response.output_audio_transcript.done":
        if (!this.cutResponses.has(ev.response_id)) this._assistantTurn(ev.item_id).setText(ev.transcript || "");
        break;
      case "conversation.item.truncated":
        this._assistantTurn(ev.item_id).end({ interrupted: true });
        break;
      case "response.done": {
        this.responseActive = false;
        const response = ev.response || {};
        for (const item of response.output || []) {
          if (this.assistantTurns.has(item.id)) this.assistantTurns.get(item.id).end({ status: response.status });
        }
        if (!this.playing && !this.pendingStart) this._setState("listening");
        break;
      }
      case "error":
        this.ui.notify(`Voice: ${(ev.error && (ev.error.message || ev.error.code)) || "error"}`);
        break;
      default:
        break;
    }
  }

  _userTurn(itemId) {
    if (!this.userTurns.has(itemId)) this.userTurns.set(itemId, this.ui.userTurn(itemId));
    return this.userTurns.get(itemId);
  }

  _assistantTurn(itemId) {
    if (!this.assistantTurns.has(itemId)) this.assistantTurns.set(itemId, this.ui.assistantTurn(itemId));
    return this.assistantTurns.get(itemId);
  }

  _onAudio(ev) {
    if (this.cutResponses.has(ev.response_id) || !this.audio) return;
    const n = this.audio.play(ev.item_id, ev.delta || "");
    if (n > 0 && !this.playing) this.pendingStart = true;
    this.currentItem = ev.item_id;
    this.received.set(ev.item_id, (this.received.get(ev.item_id) || 0) + n);
    this._assistantTurn(ev.item_id).responseId = ev.response_id;
  }

  _onPlayback(msg) {
    if (msg.type === "started") {
      this.playingItem = msg.itemId;
      this.playing = true;
      this.pendingStart = false;
      if (this.stoppedAt !== null) {
        this.lastLatencyMs = performance.now() - this.stoppedAt + (this.audio ? this.audio.outputLatencyMs : 0);
        this.stoppedAt = null;
        this.ui.setLatency(this.lastLatencyMs);
      }
      this._setState("speaking");
    } else if (msg.type === "progress") {
      this.playing = true;
      this.pendingStart = false;
      this.playingItem = msg.itemId;
      if (this.state !== "speaking" && this.state !== "listening") this._setState("speaking");
    } else if (msg.type === "drained") {
      this.playing = false;
      // Underrun while the reply is still being generated: keep "speaking" until it ends.
      if (!this.responseActive && this.state === "speaking") this._setState("listening");
    }
  }

  /** The user talks over the reply: silence it now, tell the server what was heard. */
  async _bargeIn() {
    const itemId = this.currentItem;
    const turn = itemId ? this.assistantTurns.get(itemId) : null;
    const unplayed = itemId && (this.playing || this.pendingStart || this.responseActive);
    if (!unplayed || !this.audio) return;
    if (turn && turn.responseId) this.cutResponses.add(turn.responseId);
    const latency = this.audio.outputLatencyMs;
    this.pendingStart = false;
    const { itemId: cleared, played } = await this.audio.clear();
    this.playing = false;
    const item = cleared || itemId;
    const received = this.received.get(item) || 0;
    if (!item || played <= 0) return; // nothing was heard: nothing to truncate
    this.client?.send({
      type: "conversation.item.truncate",
      item_id: item,
      content_index: 0,
      audio_end_ms: heardMs(played, received, latency),
    });
  }

  _dropPlayback() {
    if (this.audio) this.audio.clear();
    this.playing = false;
    this.responseActive = false;
  }
}
