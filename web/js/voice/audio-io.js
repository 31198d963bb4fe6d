// The microphone and the speaker of a voice session: getUserMedia, one AudioContext, the
// capture worklet (PCM16 24 kHz chunks out) and the playback worklet (PCM16 24 kHz in, gapless,
// samples played counted per item). No network, no DOM.

export const RATE = 24000;
const WORKLETS = {
  capture: new URL("./capture-worklet.js", import.meta.url),
  playback: new URL("./playback-worklet.js", import.meta.url),
};

/** getUserMedia constraints: echo cancellation, noise suppression and gain control on unless raw. */
export function micConstraints({ raw = false } = {}) {
  const on = !raw;
  return {
    audio: { channelCount: 1, echoCancellation: on, noiseSuppression: on, autoGainControl: on },
    video: false,
  };
}

export function int16ToBase64(pcm) {
  const bytes = new Uint8Array(pcm.buffer, pcm.byteOffset, pcm.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** base64 PCM16 little-endian -> Float32Array in [-1, 1]. */
export function base64ToFloat32(b64) {
  const binary = atob(b64);
  const n = binary.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = binary.charCodeAt(2 * i) | (binary.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 0x8000;
  }
  return out;
}

export class AudioIO {
  /**
   * @param {object} o
   * @param {(pcm: Int16Array) => void} o.onPcm  a chunk of microphone audio, 24 kHz mono
   * @param {(msg: {type: string, itemId: string, played?: number}) => void} o.onPlayback
   *   started / progress / drained (see playback-worklet.js)
   * @param {boolean} [o.raw]  audio processing off (?audio=raw)
   * @param {boolean} [o.deviceRate]  run the context at the device's rate even where 24 kHz
   *   works (?audio_rate=device): the worklets then resample, as on browsers without 24 kHz
   */
  constructor({ onPcm, onPlayback, raw = false, deviceRate = false }) {
    this.onPcm = onPcm;
    this.onPlayback = onPlayback;
    this.raw = raw;
    this.deviceRate = deviceRate;
    this.ctx = null;
    this.stream = null;
    this.capture = null;
    this.playback = null;
    this._clearWaiters = [];
  }

  /** Ask for the microphone and start both worklets. Throws if the user says no. */
  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia(micConstraints({ raw: this.raw }));
    this.ctx = this._context();
    await this.ctx.audioWorklet.addModule(WORKLETS.capture);
    await this.ctx.audioWorklet.addModule(WORKLETS.playback);
    let source;
    try {
      source = this.ctx.createMediaStreamSource(this.stream);
    } catch {
      // This browser cannot feed a device-rate microphone into a 24 kHz context: run the
      // context at the device's rate; the capture worklet resamples to 24 kHz itself.
      await this.ctx.close();
      this.ctx = new AudioContext();
      await this.ctx.audioWorklet.addModule(WORKLETS.capture);
      await this.ctx.audioWorklet.addModule(WORKLETS.playback);
      source = this.ctx.createMediaStreamSource(this.stream);
    }
    this.capture = new AudioWorkletNode(this.ctx, "pcm16-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
      processorOptions: { chunkMs: 40 },
    });
    this.capture.port.onmessage = (ev) => {
      if (ev.data && ev.data.type === "pcm") this.onPcm(ev.data.pcm);
    };
    // A worklet only runs while it is part of a rendered graph: its (silent) output goes to the
    // destination through a muted gain, so the microphone is never heard locally.
    const mute = new GainNode(this.ctx, { gain: 0 });
    source.connect(this.capture).connect(mute).connect(this.ctx.destination);
    this.playback = new AudioWorkletNode(this.ctx, "pcm16-playback", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this.playback.port.onmessage = (ev) => this._onPlayback(ev.data);
    this.playback.connect(this.ctx.destination);
    if (this.ctx.state !== "running") await this.ctx.resume();
  }

  _context() {
    if (this.deviceRate) return new AudioContext({ latencyHint: "interactive" });
    try {
      return new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    } catch {
      return new AudioContext({ latencyHint: "interactive" });
    }
  }

  get sampleRate() {
    return this.ctx ? this.ctx.sampleRate : 0;
  }

  /** How long a sample handed to the audio graph takes to be heard, in ms. */
  get outputLatencyMs() {
    if (!this.ctx) return 0;
    return ((this.ctx.outputLatency || 0) + (this.ctx.baseLatency || 0)) * 1000;
  }

  _onPlayback(msg) {
    if (!msg) return;
    if (msg.type === "cleared") {
      for (const resolve of this._clearWaiters.splice(0)) resolve(msg);
      return;
    }
    this.onPlayback(msg);
  }

  /** Queue reply audio (base64 PCM16 24 kHz) of `itemId`; returns the samples queued. */
  play(itemId, b64) {
    if (!this.playback) return 0;
    const samples = base64ToFloat32(b64);
    this.playback.port.postMessage({ type: "audio", itemId, samples }, [samples.buffer]);
    return samples.length;
  }

  /** Drop everything queued now; resolves with {itemId, played} of the item that was playing. */
  clear() {
    if (!this.playback) return Promise.resolve({ itemId: null, played: 0 });
    return new Promise((resolve) => {
      this._clearWaiters.push(resolve);
      this.playback.port.postMessage({ type: "clear" });
    });
  }

  /** Pause or resume sending microphone audio (the capture keeps running). */
  setCapturing(on) {
    if (this.capture) this.capture.port.postMessage({ type: "enable", on });
  }

  async stop() {
    for (const resolve of this._clearWaiters.splice(0)) resolve({ itemId: null, played: 0 });
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.ctx) await this.ctx.close().catch(() => {});
    this.ctx = this.stream = this.capture = this.playback = null;
  }
}
