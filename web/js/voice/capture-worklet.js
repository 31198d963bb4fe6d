// AudioWorklet: microphone -> PCM16 mono at 24 kHz (what the Realtime API takes), in chunks.
//
// Runs at the AudioContext's rate (`sampleRate`, a global of the worklet scope): 24 kHz when the
// browser could make such a context, else the device rate (44.1 / 48 kHz...), resampled here.
// Downsampling first low-passes (a windowed-sinc FIR, cut-off at 0.42 x 24 kHz, so nothing
// above 12 kHz folds back into what the VAD and the recogniser hear), then reads the signal by
// linear interpolation at 24 kHz. Every `chunkMs` of output is posted as an Int16Array
// (transferred, no copy).

const TARGET_RATE = 24000;

/** A Hamming-windowed sinc low-pass: cut-off `fc` (cycles per input sample), `n` taps, DC gain 1. */
function lowPass(fc, n) {
  const k = new Float32Array(n);
  const mid = (n - 1) / 2;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const t = i - mid;
    const sinc = t === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * t) / (Math.PI * t);
    k[i] = sinc * (0.54 - 0.46 * Math.cos((2 * Math.PI * i) / (n - 1)));
    sum += k[i];
  }
  for (let i = 0; i < n; i++) k[i] /= sum;
  return k;
}

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.chunk = Math.round((TARGET_RATE * (opts.chunkMs || 40)) / 1000);
    this.out = new Int16Array(this.chunk);
    this.filled = 0;
    // Anti-alias FIR (none when not downsampling).
    this.kernel = this.ratio > 1 ? lowPass(0.42 * (TARGET_RATE / sampleRate), 24 * Math.ceil(this.ratio) + 1) : null;
    this.history = this.kernel ? new Float32Array(this.kernel.length * 2) : null; // doubled ring
    this.at = 0;
    this.prev = 0; // the previous filtered input sample (for interpolation across blocks)
    this.pos = 0; // where the next output sample is, in input samples relative to `prev`
    this.enabled = true;
    this.port.onmessage = (ev) => {
      if (ev.data && ev.data.type === "enable") this.enabled = Boolean(ev.data.on);
    };
  }

  _filter(x) {
    const k = this.kernel;
    if (!k) return x;
    const n = k.length;
    // The last n inputs, oldest first, are history[at .. at + n) (each written twice).
    this.history[this.at] = x;
    this.history[this.at + n] = x;
    this.at = (this.at + 1) % n;
    let acc = 0;
    for (let i = 0; i < n; i++) acc += k[i] * this.history[this.at + i];
    return acc;
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
