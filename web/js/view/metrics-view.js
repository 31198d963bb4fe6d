// The metrics panel: TTFT measured by the page and by the server, tokens per second, resumes,
// and the chart of recent TTFTs.

import { createTtftChart } from "../metrics-chart.js";

const $ = (id) => document.getElementById(id);

/** Tokens per second of a finished reply, from the server's done.metrics (never counted). */
export function tokensPerSecond(metrics) {
  if (!metrics || !metrics.tokens) return undefined;
  const genMs = (metrics.duration_ms || 0) - (metrics.ttft_ms || 0);
  return genMs > 0 ? (metrics.tokens * 1000) / genMs : undefined;
}

export class MetricsView {
  constructor() {
    this.ttft = $("m-ttft");
    this.ttftServer = $("m-ttft-server");
    this.tps = $("m-tps");
    this.resumes = $("m-resumes");
    this.details = $("metrics-details");
    this.chart = createTtftChart($("ttft-chart"));
    if (window.matchMedia("(max-width: 900px)").matches) this.details.open = false;
  }

  /** `ttfts`: recent page TTFTs; `last`: the latest finished reply (or undefined). */
  show({ ttfts, resumes }, last) {
    this.chart.set(ttfts);
    this.resumes.textContent = String(resumes);
    if (!last) return;
    if (Number.isFinite(last.ttftMs)) this.ttft.textContent = `${Math.round(last.ttftMs)} ms`;
    if (Number.isFinite(last.serverTtftMs)) this.ttftServer.textContent = `${Math.round(last.serverTtftMs)} ms`;
    if (Number.isFinite(last.tps)) this.tps.textContent = last.tps.toFixed(1);
  }
}
