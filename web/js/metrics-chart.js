// A tiny SVG bar chart of recent TTFTs (no library, no innerHTML).

const SVG = "http://www.w3.org/2000/svg";
const W = 240;
const H = 72;
const PAD_TOP = 12;

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/**
 * Draw into `host` (an element); returns {set(values)}. Keeps the last `size` values.
 * The SVG carries a text summary for screen readers.
 */
export function createTtftChart(host, { size = 20 } = {}) {
  let values = [];
  const root = svg("svg", {
    viewBox: `0 0 ${W} ${H}`,
    class: "chart",
    role: "img",
    preserveAspectRatio: "none",
  });
  const title = svg("title");
  root.appendChild(title);
  const bars = svg("g");
  root.appendChild(bars);
  const label = svg("text", { x: W - 2, y: 9, "text-anchor": "end", class: "chart-label" });
  root.appendChild(label);
  const base = svg("line", { x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, class: "chart-axis" });
  root.appendChild(base);
  host.replaceChildren(root);

  function draw() {
    bars.replaceChildren();
    const max = Math.max(100, ...values);
    const slot = W / size;
    values.forEach((v, i) => {
      const h = Math.max(2, ((H - PAD_TOP) * v) / max);
      const x = (size - values.length + i) * slot;
      const bar = svg("rect", {
        x: (x + 1).toFixed(1),
        y: (H - h).toFixed(1),
        width: Math.max(1, slot - 2).toFixed(1),
        height: h.toFixed(1),
        rx: 1.5,
        class: i === values.length - 1 ? "bar last" : "bar",
      });
      const tip = svg("title");
      tip.textContent = `${Math.round(v)} ms`;
      bar.appendChild(tip);
      bars.appendChild(bar);
    });
    label.textContent = values.length ? `max ${Math.round(max)} ms` : "no replies yet";
    const summary = values.length
      ? `Time to first token of the last ${values.length} replies, in ms: ${values.map(Math.round).join(", ")}`
      : "Time to first token chart: no replies yet";
    title.textContent = summary;
    root.setAttribute("aria-label", summary);
  }

  draw();
  return {
    set(list) {
      values = list.filter(Number.isFinite).slice(-size);
      draw();
    },
  };
}
