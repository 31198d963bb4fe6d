// AudioWorklet: microphone -> PCM16 mono at 24 kHz (what the Realtime API takes), in chunks.
//
// Runs at the AudioContext's rate (`sampleRate`, a global of the worklet scope): 24 kHz when the
// browser could make such a context, else the device rate (44.1 / 48 kHz...), resampled here.
// Downsampling first low-passes with a moving average as long as the rate ratio (no aliasing
// of what the VAD and the recogniser listen to), then reads the signal by linear interpolation
// at 24 kHz. Every `chunkMs` of output is posted as an Int16Array (transferred, no copy).

const TARGET_RATE = 24000;

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.chunk = Math.round((TARGET_RATE * (opts.chunkMs || 40)) / 1000);
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
    // Anti-alias: a moving average over `taps` input samples (1 = none, when not downsampling).
    this.taps = this.ratio > 1 ? Math.max(1, Math.round(this.ratio)) : 1;
    this.ring = new Float32Array(this.taps);
    this.ringAt = 0;
    this.ringSum = 0;
    this.prev = 0; // the previous filtered input sample (for interpolation across blocks)
    this.pos = 0; // where the next output sample is, in input samples relative to `prev`
    this.enabled = true;
    this.port.onmessage = (ev) => {
      if (ev.data && ev.data.type === "enable") this.enabled = Boolean(ev.data.on);
    };
  }

  _filter(x) {
    if (this.taps === 1) return x;
    this.ringSum += x - this.ring[this.ringAt];
    this.ring[this.ringAt] = x;
    this.ringAt = (this.ringAt + 1) % this.taps;
    return this.ringSum / this.taps;
  }

  _emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.out[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.filled === this.chunk) {
      const full = this.out;
      this.port.postMessage({ type: "pcm", pcm: full }, [full.buffer]);
      this.out = new Int16Array(this.chunk);
      this.filled = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || !this.enabled) return true;
    const channel = input[0]; // mono: the first channel (getUserMedia asks for one)
    for (let i = 0; i < channel.length; i++) {
      const cur = this._filter(channel[i]);
      // Output samples that fall between `prev` (at 0) and `cur` (at 1).
      while (this.pos <= 1) {
        this._emit(this.prev + (cur - this.prev) * this.pos);
        this.pos += this.ratio;
      }
      this.pos -= 1;
      this.prev = cur;
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
