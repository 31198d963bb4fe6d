// AudioWorklet: gapless playback of the reply's PCM16 24 kHz audio, counting what was played.
//
// The main thread posts {type: "audio", itemId, samples: Float32Array at 24 kHz} as deltas
// arrive; they play back to back with no gap (one queue, read across chunk boundaries), at
// whatever rate the AudioContext runs (linear interpolation from 24 kHz). The processor counts,
// per item, the 24 kHz samples it has played and tells the main thread:
//   {type: "started", itemId}                  the item's first sample is being played
//   {type: "progress", itemId, played}         about every 50 ms while playing
//   {type: "drained", itemId, played}          the queue ran empty (all received audio played)
//   {type: "cleared", itemId, played}          answer to {type: "clear"}: the queue is dropped
// `played` is in 24 kHz samples of that item. What the listener has *heard* is that minus the
// output latency, which the main thread knows (AudioContext.outputLatency).

const SOURCE_RATE = 24000;

class Pcm16Playback extends AudioWorkletProcessor {
  constructor() {
    super();
    this.queue = []; // [{itemId, samples}]
    this.offset = 0; // read position in queue[0].samples (fractional, in source samples)
    this.step = SOURCE_RATE / sampleRate; // source samples per output frame
    this.itemId = null; // the item being played
    this.played = new Map(); // itemId -> source samples played
    this.sinceReport = 0;
    this.reportEvery = Math.round(sampleRate / 20);
    this.playing = false;
    this.port.onmessage = (ev) => this._onMessage(ev.data);
  }

  _onMessage(msg) {
    if (!msg) return;
    if (msg.type === "audio") {
      this.queue.push({ itemId: msg.itemId, samples: msg.samples });
    } else if (msg.type === "clear") {
      const itemId = this.itemId;
      this.queue = [];
      this.offset = 0;
      this.playing = false;
      this.port.postMessage({ type: "cleared", itemId, played: itemId ? this.played.get(itemId) || 0 : 0 });
    } else if (msg.type === "forget") {
      this.played.delete(msg.itemId);
    }
  }

  /** The source sample at fractional position `pos` of the queue head (crossing into the next). */
  _sampleAt(pos) {
    const head = this.queue[0].samples;
    const i = Math.floor(pos);
    const frac = pos - i;
    const a = head[i];
    let b = a;
    if (i + 1 < head.length) b = head[i + 1];
    else if (this.queue.length > 1 && this.queue[1].itemId === this.queue[0].itemId) b = this.queue[1].samples[0];
    return a + (b - a) * frac;
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const left = out[0];
    for (let f = 0; f < left.length; f++) {
      while (this.queue.length && this.offset >= this.queue[0].samples.length) {
        this.offset -= this.queue[0].samples.length;
        this.queue.shift();
      }
      if (!this.queue.length) {
        left[f] = 0;
        if (this.playing) {
          this.playing = false;
          this.port.postMessage({ type: "drained", itemId: this.itemId, played: this.played.get(this.itemId) || 0 });
        }
        continue;
      }
      const head = this.queue[0];
      if (head.itemId !== this.itemId || !this.playing) {
        if (head.itemId !== this.itemId) {
          this.itemId = head.itemId;
          if (!this.played.has(head.itemId)) this.played.set(head.itemId, 0);
          this.port.postMessage({ type: "started", itemId: head.itemId });
        }
        this.playing = true;
      }
      left[f] = this._sampleAt(this.offset);
      const before = Math.floor(this.offset);
      this.offset += this.step;
      const consumed = Math.min(Math.floor(this.offset), head.samples.length) - before;
      if (consumed > 0) this.played.set(head.itemId, (this.played.get(head.itemId) || 0) + consumed);
    }
    for (let c = 1; c < out.length; c++) out[c].set(left);
    this.sinceReport += left.length;
    if (this.playing && this.sinceReport >= this.reportEvery) {
      this.sinceReport = 0;
      this.port.postMessage({ type: "progress", itemId: this.itemId, played: this.played.get(this.itemId) || 0 });
    }
    return true;
  }
}

registerProcessor("pcm16-playback", Pcm16Playback);
