// The private conversation (one user and the assistant): send, stream the reply over the
// chosen transport, stop it, pick it up again after a reload, retry a failed one.

import { ApiError } from "../transport/http.js";
import { tokensPerSecond } from "../view/metrics-view.js";
import { replyHandlers } from "./reply-handlers.js";

export function sendErrorText(err) {
  if (err instanceof ApiError) {
    if (err.status === 429) {
      const wait = err.retryAfterS ? ` Try again in ${Math.ceil(err.retryAfterS)} s.` : "";
      return `Too many replies at once.${wait}`;
    }
    return `Could not send: ${err.message}`;
  }
  if (err && err.code) return `Could not send: ${err.message || err.code}`;
  return navigator.onLine ? "Could not reach the server. Try again." : "You are offline. Send again when the network is back.";
}

export class PrivateChat {
  /**
   * @param {object} o
   * @param {import("./store.js").ConversationStore} o.store
   * @param {import("../view/chat-view.js").ChatView} o.view
   * @param {import("../view/metrics-view.js").MetricsView} o.metrics
   * @param {{sse: object, ws?: object}} o.transports  see transports.js
   * @param {() => string} o.transportName  the transport new replies use
   * @param {() => string} o.model
   * @param {(kind: string, detail?: string) => void} o.setConnection
   * @param {() => void} o.idle  called when no reply is active any more (connection status)
   * @param {() => void} [o.focusInput]
   */
  constructor({ store, view, metrics, transports, transportName, model, setConnection, idle, focusInput }) {
    this.store = store;
    this.view = view;
    this.metrics = metrics;
    this.transports = transports;
    this.transportName = transportName;
    this.model = model;
    this.setConnection = setConnection;
    this.idle = idle;
    this.focusInput = focusInput || (() => {});
    this.active = null; // the reply being streamed: {reply, progress, sub, stopping, stopRequested}
  }

  get busy() {
    return this.active !== null;
  }

  get state() {
    return this.store.state;
  }

  /** Draw the saved conversation and pick up a reply that was in flight. */
  render() {
    this.view.clear();
    this.view.empty.hidden = this.state.messages.length > 0 || Boolean(this.state.pending);
    for (const msg of this.state.messages) {
      if (msg.role === "user") {
        this.view.addUser(msg.content);
      } else {
        const reply = this.view.addAssistant();
        reply.setText(msg.content, { now: true });
        reply.showTtft(msg.ttftMs);
        reply.end(msg);
        if (msg.error) reply.addRetry(() => this.retry(reply));
      }
    }
    this.metrics.show(this.state, this.store.lastAssistant());
    this._resumePending();
  }

  /** Stop listening without cancelling (the page shows a room instead); the reply is kept. */
  detach() {
    if (!this.active) return;
    if (this.active.sub) this.active.sub.close();
    this.active = null;
    this.view.setTyping(false);
    this.view.setBusy(false);
  }

  async send(content) {
    if (this.active || !content.trim()) return;
    const t0 = performance.now();
    const transport = this.transports[this.transportName()] || this.transports.sse;
    this.view.notify("");
    this.view.setTyping(true);
    this.view.setBusy(true);
    const userNode = this.view.addUser(content);
    const reply = this.view.addAssistant();
    reply.setStreaming(true);
    const progress = {
      transport: transport.name,
      streamId: null,
      lastEventId: 0,
      text: "",
      sentAt: Date.now(),
      ttftMs: null,
    };
    const active = { reply, progress, sub: null, stopping: false, stopRequested: false };
    this.active = active;
    const request = { model: this.model(), messages: [...this.store.requestMessages(), { role: "user", content }] };
    active.sub = transport.start(request, this._handlers(active, t0));
    let created;
    try {
      created = await active.sub.created;
    } catch (err) {
      if (this.active !== active) return;
      // Nothing was generated: take the message back into the composer.
      active.sub.close();
      this.active = null;
      userNode.remove();
      reply.remove();
      this.view.setTyping(false);
      this.view.setBusy(false);
      this.view.empty.hidden = this.state.messages.length > 0;
      this.view.notify(sendErrorText(err));
      this.idle();
      this.focusInput(content);
      return;
    }
    if (this.active !== active) {
      // The chat was reset while the stream was being created: nobody will read it.
      active.sub.close();
      transport.cancel(created.streamId).catch(() => {});
      return;
    }
    progress.streamId = created.streamId;
    Object.assign(progress, created.saved);
    this.state.messages.push({ role: "user", content });
    this.state.pending = progress;
    this.store.save();
    if (active.stopRequested) this.stop();
  }

  _handlers(active, t0) {
    const { reply, progress } = active;
    return replyHandlers({
      reply,
      chatView: this.view,
      progress,
      t0,
      onEnd: (end) => this._finish(active, end),
      onEvent: () => {
        if (this.state.pending === progress) this.store.save(); // text and last id together
      },
      onConnection: (conn, info) => {
        if (this.active !== active) return;
        if (conn === "connected") {
          this.setConnection("connected");
          if (info.resumed) {
            this.store.countResume();
            this.metrics.show(this.state);
          }
        } else if (conn === "reconnecting") {
          this.setConnection("reconnecting", `resuming after event ${progress.lastEventId}`);
        } else if (conn === "offline") {
          this.setConnection("offline", "reconnecting when the network is back");
        } else if (conn === "connecting" && this.view.connection !== "connected") {
          this.setConnection("connecting");
        }
      },
    });
  }

  _finish(active, { finish, metrics, error }) {
    if (this.active !== active) return; // a reply of a chat that was reset
    const { reply, progress } = active;
    this.view.setTyping(false);
    const msg = {
      role: "assistant",
      content: progress.text,
      streamId: progress.streamId,
      ttftMs: progress.ttftMs ?? undefined,
      serverTtftMs: metrics ? metrics.ttft_ms : undefined,
      tps: tokensPerSecond(metrics),
      finish,
      error,
    };
    reply.end(msg);
    if (error) reply.addRetry(() => this.retry(reply));
    this.store.addTtft(msg.ttftMs);
    this.state.messages.push(msg);
    this.state.pending = null;
    this.store.save();
    this.metrics.show(this.state, msg);
    this.active = null;
    this.view.setBusy(false);
    this.idle();
    if (document.activeElement === document.body || document.activeElement === this.view.stop) this.focusInput();
  }

  /** A failed reply: it and its question are sent again (only the latest exchange). */
  retry(reply) {
    if (this.active) return;
    const at = this.state.messages.length - 2;
    if (this.state.messages[at]?.role !== "user" || !this.state.messages[at + 1]?.error) return;
    const question = this.state.messages[at].content;
    this.state.messages.splice(at, 2);
    this.store.save();
    reply.item.previousElementSibling?.remove();
    reply.remove();
    this.send(question);
  }

  async stop() {
    const active = this.active;
    if (!active) return;
    if (!this.state.pending || this.state.pending !== active.progress) {
      active.stopRequested = true; // the stream id is not known yet; stop once it is
      return;
    }
    if (active.stopping) return;
    active.stopping = true;
    this.view.setStopping(true);
    const { streamId, transport } = active.progress;
    try {
      // The stream then ends with done(finish_reason=cancelled).
      await (this.transports[transport] || this.transports.sse).cancel(streamId);
    } catch (err) {
      if (this.active === active) {
        active.stopping = false;
        this.view.setStopping(false);
      }
      this.view.notify(`Could not stop the reply: ${err.message}`);
    }
  }

  _resumePending() {
    const pending = this.state.pending;
    if (!pending || this.active) return;
    const transport = this.transports[pending.transport || "sse"];
    if (!pending.streamId || !transport) {
      this.state.pending = null;
      this.store.save();
      return;
    }
    const reply = this.view.addAssistant();
    reply.setText(pending.text, { now: true });
    reply.showTtft(pending.ttftMs);
    reply.setStreaming(true);
    const active = { reply, progress: pending, sub: null, stopping: false, stopRequested: false };
    this.active = active;
    this.view.setBusy(true);
    this.view.setTyping(!pending.text);
    active.sub = transport.resume(pending, this._handlers(active, null));
  }

  newChat() {
    const active = this.active;
    if (active) {
      if (active.sub) active.sub.close();
      const pending = this.state.pending;
      if (pending && pending.streamId) {
        (this.transports[pending.transport] || this.transports.sse).cancel(pending.streamId).catch(() => {});
      }
      this.active = null;
    }
    this.store.reset();
    this.view.clear();
    this.view.setTyping(false);
    this.view.setBusy(false);
    this.view.notify("");
    this.idle();
    this.focusInput();
  }
}
