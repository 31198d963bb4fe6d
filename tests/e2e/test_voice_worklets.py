"""The voice worklets' signal work in real Chromium, rendered offline (OfflineAudioContext,
faster than real time, exact): resampling to 24 kHz, anti-aliasing, gapless playback and the
per-item sample count that barge-in truncates by. Needs only the page's static files."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.support.servers import ThreadServer

pytestmark = pytest.mark.browser

CAPTURE = """async ({ rate, freq, seconds }) => {
  const ctx = new OfflineAudioContext(1, Math.round(rate * seconds), rate);
  await ctx.audioWorklet.addModule('/js/voice/capture-worklet.js');
  const osc = new OscillatorNode(ctx, { frequency: freq });
  const node = new AudioWorkletNode(ctx, 'pcm16-capture', {
    channelCount: 1, channelCountMode: 'explicit', processorOptions: { chunkMs: 40 } });
  const chunks = [];
  node.port.onmessage = (e) => chunks.push(e.data.pcm);
  osc.connect(node).connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  await new Promise((r) => setTimeout(r, 300));
  const n = chunks.reduce((a, c) => a + c.length, 0);
  const all = new Int16Array(n);
  let at = 0;
  for (const c of chunks) { all.set(c, at); at += c.length; }
  // Skip the filter's start-up, then measure.
  const body = all.subarray(200);
  let crossings = 0, peak = 0;
  for (let i = 1; i < body.length; i++) {
    if ((body[i - 1] < 0) !== (body[i] < 0)) crossings++;
    peak = Math.max(peak, Math.abs(body[i]));
  }
  return { n, chunks: chunks.map((c) => c.length), crossings, bodyLength: body.length, peak };
}"""

PLAYBACK = """async ({ rate, chunkSizes, clearAt }) => {
  const total = chunkSizes.reduce((a, b) => a + b, 0);
  const ctx = new OfflineAudioContext(1, Math.round(rate * (total / 24000 + 0.5)), rate);
  await ctx.audioWorklet.addModule('/js/voice/playback-worklet.js');
  const node = new AudioWorkletNode(ctx, 'pcm16-playback', {
    numberOfInputs: 0, numberOfOutputs: 1, outputChannelCount: [1] });
  const events = [];
  node.port.onmessage = (e) => events.push(e.data);
  node.connect(ctx.destination);
  // A 300 Hz sine at 24 kHz, cut into chunks of uneven sizes (as deltas arrive).
  let t = 0;
  const send = () => {
    for (const size of chunkSizes) {
      const samples = new Float32Array(size);
      for (let i = 0; i < size; i++, t++) samples[i] = 0.5 * Math.sin(2 * Math.PI * 300 * t / 24000);
      node.port.postMessage({ type: 'audio', itemId: 'item_a', samples }, [samples.buffer]);
    }
  };
  ctx.suspend(0).then(async () => {
    send();
    await new Promise((r) => setTimeout(r, 100));
    ctx.resume();
  });
  if (clearAt) {
    ctx.suspend(clearAt).then(async () => {
      node.port.postMessage({ type: 'clear' });
      await new Promise((r) => setTimeout(r, 100));
      ctx.resume();
    });
  }
  const rendered = await ctx.startRendering();
  await new Promise((r) => setTimeout(r, 300));
  const out = rendered.getChannelData(0);
  // Where sound is, and the largest step between neighbouring samples while it plays.
  let first = -1, last = -1, maxStep = 0;
  for (let i = 0; i < out.length; i++) {
    if (Math.abs(out[i]) > 1e-6) { if (first < 0) first = i; last = i; }
  }
  for (let i = first + 1; i <= last; i++) maxStep = Math.max(maxStep, Math.abs(out[i] - out[i - 1]));
  // The longest run of silence between them (the sine itself touches 0 for one sample).
  let longestSilence = 0, run = 0;
  for (let i = first; i <= last; i++) {
    run = Math.abs(out[i]) < 1e-6 ? run + 1 : 0;
    longestSilence = Math.max(longestSilence, run);
  }
  return { total, first, last, maxStep, longestSilence, events };
}"""


@pytest.fixture
def blank_page(dev_server: ThreadServer, make_page: Any) -> Any:
    page, _ = make_page(dev_server.url)
    page.goto("/")
    return page


@pytest.mark.parametrize("rate", [24_000, 44_100, 48_000])
def test_capture_resamples_to_24k(blank_page: Any, rate: int) -> None:
    r = blank_page.evaluate(CAPTURE, {"rate": rate, "freq": 440, "seconds": 1.0})
    # One second in: 24,000 samples out (whole 40 ms chunks of 960), the tone still at 440 Hz.
    assert set(r["chunks"]) == {960}
    assert 23_040 <= r["n"] <= 24_000, r["n"]
    freq = r["crossings"] / 2 / (r["bodyLength"] / 24_000)
    assert abs(freq - 440) < 3, freq
    assert r["peak"] > 0.97 * 32_767, r["peak"]  # the low-pass keeps the voice band whole


@pytest.mark.parametrize("rate", [44_100, 48_000])
def test_capture_does_not_alias_above_12k(blank_page: Any, rate: int) -> None:
    """A 15 kHz tone cannot be represented at 24 kHz; without filtering it would fold back to
    9 kHz at full strength."""
    r = blank_page.evaluate(CAPTURE, {"rate": rate, "freq": 15_000, "seconds": 0.5})
    assert r["peak"] < 0.05 * 32_767, r["peak"]


@pytest.mark.parametrize("rate", [24_000, 48_000])
def test_playback_is_gapless_and_counts_what_it_played(blank_page: Any, rate: int) -> None:
    sizes = [480, 960, 7, 1200, 333, 960, 2400, 1, 4819]  # 11,160 samples: 465 ms
    r = blank_page.evaluate(PLAYBACK, {"rate": rate, "chunkSizes": sizes, "clearAt": 0})
    total = sum(sizes)
    # No gap and no click anywhere between the first and the last sample.
    assert r["longestSilence"] <= 1, r["longestSilence"]
    step = 2 * math.pi * 300 / rate * 0.5
    assert r["maxStep"] < step * 1.1, (r["maxStep"], step)
    played = (r["last"] - r["first"] + 1) * 24_000 / rate
    assert abs(played - total) <= 2 * rate / 24_000, (played, total)
    kinds = [e["type"] for e in r["events"]]
    assert kinds[0] == "started" and r["events"][0]["itemId"] == "item_a"
    drained = [e for e in r["events"] if e["type"] == "drained"]
    assert len(drained) == 1 and drained[0]["played"] == total


def test_playback_clear_stops_at_once_and_reports_what_was_played(blank_page: Any) -> None:
    sizes = [2400] * 10  # 1 s of audio
    r = blank_page.evaluate(PLAYBACK, {"rate": 48_000, "chunkSizes": sizes, "clearAt": 0.25})
    cleared = [e for e in r["events"] if e["type"] == "cleared"]
    assert len(cleared) == 1 and cleared[0]["itemId"] == "item_a"
    # Cleared after 0.25 s (suspend lands on a 128-frame boundary): ~6,000 samples played.
    assert abs(cleared[0]["played"] - 6_000) <= 64, cleared[0]
    # And silence right after: nothing queued plays on.
    assert (r["last"] + 1) / 48_000 == pytest.approx(0.25, abs=128 / 48_000)


def test_truncate_point_is_what_was_heard(blank_page: Any) -> None:
    heard = blank_page.evaluate(
        """async () => {
          const { heardMs } = await import('/js/voice/voice-session.js');
          return [
            heardMs(24000, 48000, 100),   // 1 s played, 100 ms still in the output: 900 ms
            heardMs(24000, 12000, 0),     // never past what was received: 500 ms
            heardMs(1200, 48000, 200),    // less than the latency played: 0
          ];
        }"""
    )
    assert heard == [900, 500, 0]
