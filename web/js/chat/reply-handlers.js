// The handlers that turn one stream's events (status / delta / done / error, SPEC 5 and 6)
// into a reply on screen, whichever transport carries them and whoever started the reply.

/**
 * @param {object} o
 * @param {import("../view/chat-view.js").ReplyView} o.reply   the bubble to fill
 * @param {import("../view/chat-view.js").ChatView} o.chatView typing indicator
 * @param {{text: string, ttftMs: number|null, lastEventId: number, sentAt?: number}} o.progress
 *   mutable progress of the reply (persisted by the caller in onEvent)
 * @param {number|null} o.t0 performance.now() of the send click (null: after a reload, or a
 *   reply someone else started; then TTFT comes from progress.sentAt if known)
 * @param {(end: {finish?: string, metrics?: object, error?: string}) => void} o.onEnd
 * @param {(kind: string, data: object, seq: number) => void} [o.onEvent] every event, after it
 *   is applied (persist here)
 * @param {(state: string, info: object) => void} [o.onConnection]
 */
export function replyHandlers({ reply, chatView, progress, t0, onEnd, onEvent, onConnection }) {
  const firstDelta = () => {
    let ms = null;
    if (t0 !== null) ms = performance.now() - t0;
    else if (Number.isFinite(progress.sentAt)) ms = Date.now() - progress.sentAt;
    progress.ttftMs = ms;
    reply.showTtft(ms);
    chatView.setTyping(false);
  };
  return {
    onStatus({ state }) {
      if (!progress.text) chatView.setTyping(true, state === "queued" ? "Queued…" : "Assistant is typing…");
    },
    onDelta({ text }) {
      if (typeof text !== "string" || !text) return;
      const first = !progress.text;
      progress.text += text;
      reply.setText(progress.text, { now: first }); // the first token is painted, then TTFT taken
      if (first) firstDelta();
    },
    onDone(data) {
      onEnd({ finish: data.finish_reason, metrics: data.metrics });
    },
    onError(data) {
      onEnd({ error: data.message || data.code || "The reply failed." });
    },
    onEvent(kind, data, seq) {
      progress.lastEventId = seq;
      if (onEvent) onEvent(kind, data, seq);
    },
    onConnection(state, info) {
      if (onConnection) onConnection(state, info || {});
    },
  };
}
