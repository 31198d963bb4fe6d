// The message log and the status around it: user and assistant bubbles (with their author in
// a room), the typing indicator, busy state, notices and the connection status. DOM only: no
// network, no state beyond what is on screen.

import { renderInto } from "../markdown.js";

const $ = (id) => document.getElementById(id);

/** A reply's footer text: tokens per second, stopped / cut off, its error. */
export function describeEnd(msg) {
  const bits = [];
  if (Number.isFinite(msg.tps)) bits.push(`${msg.tps.toFixed(1)} tok/s`);
  if (msg.finish === "cancelled") bits.push("stopped");
  else if (msg.finish === "length") bits.push("cut off (length)");
  else if (msg.finish === "interrupted") bits.push("interrupted");
  if (msg.error) bits.push(msg.error);
  return bits.length ? ` · ${bits.join(" · ")}` : "";
}

/** One assistant bubble: text rendered as Markdown at most once per animation frame. */
export class ReplyView {
  constructor(log, item, body, ttft, extra) {
    this.log = log;
    this.item = item;
    this.body = body;
    this.ttftNode = ttft;
    this.extra = extra;
    this.text = "";
    this.frame = 0;
  }

  /** Replace the whole text; `now` paints at once (the first token), else on the next frame. */
  setText(text, { now = false } = {}) {
    this.text = text;
    if (now) this.paint();
    else if (!this.frame) this.frame = requestAnimationFrame(() => this.paint());
  }

  paint() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    renderInto(this.body, this.text);
    this.log.scrollToEnd();
  }

  showTtft(ms) {
    if (Number.isFinite(ms)) this.ttftNode.textContent = `${Math.round(ms)} ms`;
  }

  setStreaming(on) {
    this.item.classList.toggle("streaming", on);
    if (on) this.body.setAttribute("aria-busy", "true");
    else this.body.removeAttribute("aria-busy");
  }

  /** The end of the reply: final paint, footer, failed styling. */
  end(msg) {
    this.paint();
    this.setStreaming(false);
    this.item.classList.toggle("failed", Boolean(msg.error));
    const end = describeEnd(msg);
    this.extra.textContent = this.ttftNode.textContent ? end : end.replace(/^ · /, "");
  }

  addRetry(onRetry) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "retry";
    button.textContent = "Retry";
    button.addEventListener("click", onRetry);
    this.item.querySelector(".meta").appendChild(button);
  }

  remove() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.item.remove();
  }
}

export class ChatView {
  constructor() {
    this.messages = $("messages");
    this.empty = $("empty-state");
    this.typing = $("typing-indicator");
    this.typingLabel = this.typing.querySelector(".typing-label");
    this.typingStatus = $("typing-status");
    this.form = $("composer");
    this.send = $("send");
    this.stop = $("stop");
    this.conn = $("connection-status");
    this.connLabel = this.conn.querySelector(".conn-label");
    this.connDetail = this.conn.querySelector(".conn-detail");
    this.notice = $("notice");
    this.model = $("model-name");
    this.following = false; // a reply streams: keep the log scrolled to its end
  }

  scrollToEnd() {
    const box = this.messages;
    const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 160;
    if (nearBottom || this.following) box.scrollTop = box.scrollHeight;
  }

  /** Remove every message (a new chat, entering or leaving a room). */
  clear() {
    for (const node of [...this.messages.children]) if (node !== this.empty) node.remove();
    this.empty.hidden = false;
  }

  _article(kind, label, author) {
    this.empty.hidden = true;
    const item = document.createElement("article");
    item.className = `msg ${kind}`;
    item.setAttribute("aria-label", author ? `${label} (${author})` : label);
    if (author) {
      item.dataset.user = author;
      const by = document.createElement("header");
      by.className = "author";
      by.dataset.testid = "message-author";
      by.textContent = author; // plain text, never parsed
      item.appendChild(by);
    }
    return item;
  }

  /** A user's message; `author` (rooms) is shown above it, `mine` aligns it right. */
  addUser(content, { author = null, mine = true } = {}) {
    const item = this._article(mine ? "user" : "user other", "You", author);
    if (author && !mine) item.setAttribute("aria-label", `Message from ${author}`);
    const body = document.createElement("div");
    body.className = "bubble";
    body.dataset.testid = "user-message";
    body.textContent = content; // plain text, never parsed
    item.appendChild(body);
    this.messages.appendChild(item);
    this.scrollToEnd();
    return item;
  }

  /** An assistant bubble with its TTFT and footer; `author` labels it in a room. */
  addAssistant({ author = null } = {}) {
    const item = this._article("assistant", "Assistant", author);
    const body = document.createElement("div");
    body.className = "bubble md";
    body.dataset.testid = "assistant-message";
    const meta = document.createElement("footer");
    meta.className = "meta";
    const ttft = document.createElement("span");
    ttft.className = "ttft";
    ttft.dataset.testid = "ttft";
    ttft.title = "Time to first token, measured by this page";
    const extra = document.createElement("span");
    extra.className = "extra";
    meta.append(ttft, extra);
    item.append(body, meta);
    this.messages.appendChild(item);
    this.scrollToEnd();
    return new ReplyView(this, item, body, ttft, extra);
  }

  setTyping(on, label = "Assistant is typing…") {
    this.typing.hidden = !on;
    this.typingLabel.textContent = label;
    // The visual indicator appears with its text, which screen readers often skip; a live
    // region that is always present announces the change instead.
    this.typingStatus.textContent = on ? label : "";
  }

  setBusy(busy) {
    // While a reply streams, screen readers wait for it instead of re-reading every frame.
    this.following = busy;
    this.messages.setAttribute("aria-busy", String(busy));
    this.stop.disabled = !busy;
    this.send.disabled = busy;
    this.form.classList.toggle("busy", busy);
  }

  /** Stop is pending (the cancel request is in flight) or available again. */
  setStopping(stopping) {
    this.stop.disabled = stopping;
  }

  notify(message) {
    this.notice.textContent = message || "";
    this.notice.hidden = !message;
  }

  setConnection(kind, detail = "") {
    this.conn.dataset.state = kind;
    this.connLabel.textContent = kind;
    this.connDetail.textContent = detail ? ` · ${detail}` : "";
    this.conn.title = detail ? `${kind}: ${detail}` : kind;
  }

  get connection() {
    return this.conn.dataset.state;
  }

  setModel(name) {
    this.model.textContent = name;
  }
}
