// A room (SPEC 6): several users and the assistant in one conversation, over the WebSocket
// client. Members present, who is typing (sent while the user types, expired locally), each
// message with its author, and every assistant reply live for every member, token by token.
//
// Rendering goes through ChatView (messages) and RoomView (members, typing); the wire through
// WsClient; the REST calls (create, add member) through ApiClient.

import { replyHandlers } from "../chat/reply-handlers.js";
import { tokensPerSecond } from "../view/metrics-view.js";

export const TYPING_REFRESH_MS = 2000; // while the user types, `typing` active is sent this often
export const TYPING_IDLE_MS = 4000; // no keystroke for this long: `typing` active false
export const DEFAULT_TYPING_TTL_S = 6; // the server's TYPING_TTL_S (others' typing expires)
const ASSISTANT = "assistant";

export class RoomSession {
  /**
   * @param {object} o
   * @param {import("../transport/http.js").ApiClient} o.api
   * @param {import("../transport/ws-client.js").WsClient} o.ws
   * @param {import("../view/chat-view.js").ChatView} o.view
   * @param {import("../view/room-view.js").RoomView} o.roomView
   * @param {import("../chat/store.js").ConversationStore} o.store  metrics history only
   * @param {import("../view/metrics-view.js").MetricsView} o.metrics
   * @param {() => string|null} o.me  this user's id (the token's sub)
   * @param {() => string} o.model
   * @param {(content?: string) => void} o.focusInput
   * @param {number} [o.typingTtlS]
   */
  constructor({ api, ws, view, roomView, store, metrics, me, model, focusInput, typingTtlS = DEFAULT_TYPING_TTL_S }) {
    Object.assign(this, { api, ws, view, roomView, store, metrics, me, model, focusInput });
    this.typingTtlMs = typingTtlS * 1000;
    this.id = null;
    this._reset();
    ws.on("joined", (f) => f.room === this.id && this._onJoined(f));
    ws.on("message", (f) => f.room === this.id && this._onMessage(f));
    ws.on("presence", (f) => f.room === this.id && this._onPresence(f));
    ws.on("typing", (f) => f.room === this.id && this._onTyping(f));
    ws.on("stream", (f) => this._onUnknownStream(f));
    ws.on("error", (f) => this._onClientError(f));
  }

  _reset() {
    this.members = new Set();
    this.othersTyping = new Map(); // user -> expiry timer
    this.seenMessages = new Set(); // message ids on screen
    this.myPending = []; // my messages shown before the server's `message`: [{content, node}]
    this.replies = new Map(); // stream id -> {reply, progress, running, messageId}
    this.replyOrder = []; // reply entries, in the order their bubbles were added
    this.storedReplies = new Map(); // stream id -> the bubble of a stored reply (not live here)
    this.replyParts = new Map(); // stream id -> the parts of a reply stored in parts
    this.typingSentAt = 0;
    this.typingActive = false;
    clearTimeout(this.typingIdleTimer);
  }

  get busy() {
    for (const r of this.replies.values()) if (r.running) return true;
    return false;
  }

  // ---- lifecycle ----------------------------------------------------------------------------
  /** POST /stream/v1/rooms -> the new room's id (the caller puts it in the URL and joins). */
  async create() {
    const body = await this.api.request("POST", "/stream/v1/rooms", {});
    return body.id;
  }

  join(id) {
    if (this.id === id) return;
    if (this.id) this.leave();
    this.id = id;
    this._reset();
    this.view.clear();
    this.view.notify("");
    this.roomView.showRoom(id);
    this.ws.join(id);
  }

  leave() {
    if (!this.id) return;
    this._stopTyping();
    for (const [streamId, r] of this.replies) {
      if (r.follower) r.follower.close();
      this.replies.delete(streamId);
    }
    this.ws.leave(this.id);
    this.id = null;
    this._reset();
    this.view.setTyping(false);
    this.view.setBusy(false);
    this.roomView.showRoom(null);
  }

  async addMember(user) {
    if (!this.id) return;
    try {
      await this.api.request("POST", `/stream/v1/rooms/${encodeURIComponent(this.id)}/members`, { user });
      this.roomView.addMemberDone(user, null);
    } catch (err) {
      this.roomView.addMemberDone(user, err.message);
    }
  }

  // ---- sending ------------------------------------------------------------------------------
  send(content) {
    if (!this.id || !content.trim()) return;
    const room = this.id;
    const t0 = performance.now();
    this._stopTyping();
    this.view.notify("");
    const node = this.view.addUser(content, { author: this.me(), mine: true });
    node.classList.add("pending");
    const mine = { content, node };
    this.myPending.push(mine);
    const entry = this._newReply(null, { t0, mine: true });
    const started = this.ws.startStream({ room, content, model: this.model() }, entry.handlers);
    this.view.setTyping(true);
    this._syncBusy();
    started.created.then(
      ({ streamId }) => {
        if (this.id !== room) return;
        this._bindReply(entry, streamId);
        if (entry.stopRequested) this.stop();
      },
      (err) => {
        if (this.id !== room) return;
        this._dropReply(entry);
        const at = this.myPending.indexOf(mine);
        if (at >= 0) this.myPending.splice(at, 1);
        node.remove();
        this.view.setTyping(false);
        this._syncBusy();
        this.view.notify(`Could not send: ${err.message}`);
        this.focusInput(content);
      },
    );
  }

  /** Stop every running reply of the room (any member may). */
  stop() {
    for (const r of this.replies.values()) {
      if (!r.running) continue;
      if (!r.streamId) {
        r.stopRequested = true;
        continue;
      }
      if (r.stopping) continue;
      r.stopping = true;
      this.view.setStopping(true);
      this.ws.cancel(r.streamId).catch((err) => {
        r.stopping = false;
        this.view.setStopping(false);
        this.view.notify(`Could not stop the reply: ${err.message}`);
      });
    }
  }

  // ---- typing -------------------------------------------------------------------------------
  /** The user typed in the composer: `typing` active, refreshed every TYPING_REFRESH_MS. */
  userTyping() {
    if (!this.id) return;
    const now = Date.now();
    if (!this.typingActive || now - this.typingSentAt >= TYPING_REFRESH_MS) {
      this.typingActive = true;
      this.typingSentAt = now;
      this.ws.sendIfOpen({ type: "typing", room: this.id, active: true });
    }
    clearTimeout(this.typingIdleTimer);
    this.typingIdleTimer = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  /** Sent, blurred or idle: `typing` active false (once). */
  _stopTyping() {
    clearTimeout(this.typingIdleTimer);
    if (!this.typingActive) return;
    this.typingActive = false;
    if (this.id) this.ws.sendIfOpen({ type: "typing", room: this.id, active: false });
  }

  userStoppedTyping() {
    this._stopTyping();
  }

  // ---- server frames ------------------------------------------------------------------------
  _onJoined(f) {
    this.view.notify("");
    this.members = new Set(Array.isArray(f.members) ? f.members : []);
    this._showMembers();
    for (const msg of f.messages || []) this._onMessage({ ...msg, room: f.room });
    for (const s of f.streams || []) {
      if (this.replies.has(s.stream_id)) continue; // ours already: the client resumes it
      const entry = this._newReply(s.stream_id, { t0: null, mine: false });
      entry.follower = this.ws.follow(s.stream_id, entry.handlers, { afterSeq: 0, resume: true });
      this.view.setTyping(true);
    }
    this._syncBusy();
  }

  _onMessage(f) {
    if (f.id != null && this.seenMessages.has(f.id)) return;
    if (f.id != null) this.seenMessages.add(f.id);
    if (f.role === "assistant") {
      const text = this._storedReplyText(f);
      const entry = this._replyForMessage(f);
      if (entry) {
        entry.messageId = f.id;
        if (!entry.running) entry.reply.setText(text, { now: true }); // the stored text
        return;
      }
      const shown = f.stream_id ? this.storedReplies.get(f.stream_id) : null;
      if (shown) {
        shown.setText(text, { now: true }); // the next part of a reply shown already
        return;
      }
      const reply = this.view.addAssistant({ author: ASSISTANT });
      reply.setText(text, { now: true });
      reply.end({});
      if (f.stream_id) this.storedReplies.set(f.stream_id, reply);
      return;
    }
    if (f.user === this.me()) {
      const at = this.myPending.findIndex((p) => p.content === f.content);
      if (at >= 0) {
        const [mine] = this.myPending.splice(at, 1);
        mine.node.classList.remove("pending");
        return;
      }
    }
    this.view.addUser(f.content || "", { author: f.user, mine: f.user === this.me() });
  }

  /** The text of a stored reply: a long one comes as several messages (`part` of `parts`
   * of one `stream_id`), shown as one bubble with the parts seen so far. */
  _storedReplyText(f) {
    if (!(f.parts > 1) || !f.stream_id) return f.content || "";
    const parts = this.replyParts.get(f.stream_id) || [];
    parts[f.part - 1] = f.content || "";
    this.replyParts.set(f.stream_id, parts);
    return parts.join(""); // a part not seen (yet) joins as ""
  }

  /** The live bubble a stored assistant message is (by stream id if given, else its text). */
  _replyForMessage(f) {
    if (f.stream_id && this.replies.has(f.stream_id)) return this.replies.get(f.stream_id);
    for (const entry of this.replyOrder) {
      if (entry.messageId != null) continue;
      const text = entry.progress.text;
      if (text === f.content || (entry.running && (f.content || "").startsWith(text))) return entry;
    }
    return null;
  }

  _onPresence(f) {
    if (f.state === "joined") this.members.add(f.user);
    else if (f.state === "left") {
      this.members.delete(f.user);
      this._typingOff(f.user);
    }
    this._showMembers();
  }

  _onTyping(f) {
    if (f.user === this.me()) return;
    if (!f.active) {
      this._typingOff(f.user);
      return;
    }
    clearTimeout(this.othersTyping.get(f.user));
    // Expire by ourselves too: the `active: false` may never come (its sender's node died).
    this.othersTyping.set(f.user, setTimeout(() => this._typingOff(f.user), this.typingTtlMs));
    this._showTyping();
  }

  _typingOff(user) {
    if (!this.othersTyping.has(user)) return;
    clearTimeout(this.othersTyping.get(user));
    this.othersTyping.delete(user);
    this._showTyping();
  }

  _showTyping() {
    this.roomView.setTyping([...this.othersTyping.keys()].sort());
  }

  _showMembers() {
    this.roomView.setMembers([...this.members].sort());
  }

  /** A reply of this room that someone else started (or one we missed the start of). */
  _onUnknownStream(f) {
    if (!this.id || this.replies.has(f.stream_id)) return;
    if (f.room != null && f.room !== this.id) return;
    const entry = this._newReply(f.stream_id, { t0: null, mine: false });
    // Its frames come to us live; from its first seq on (a gap asks for the missing ones).
    entry.follower = this.ws.follow(f.stream_id, entry.handlers, { afterSeq: 0, resume: false });
    this._syncBusy();
  }

  _onClientError(f) {
    if (!this.id) return;
    if (f.code === "room_not_found") {
      this.view.notify("This room does not exist, or you are not one of its members.");
      return;
    }
    this.view.notify(`The server refused a message: ${f.message || f.code}`);
  }

  // ---- replies ------------------------------------------------------------------------------
  _newReply(streamId, { t0, mine }) {
    const reply = this.view.addAssistant({ author: ASSISTANT });
    reply.setStreaming(true);
    const progress = { streamId, lastEventId: 0, text: "", ttftMs: null };
    const entry = { streamId, reply, progress, running: true, mine, messageId: null, follower: null, stopping: false };
    entry.handlers = replyHandlers({
      reply,
      chatView: this.view,
      progress,
      t0,
      onEnd: (end) => this._endReply(entry, end),
    });
    entry.key = streamId || `pending-${this.replyOrder.length}-${Date.now()}`;
    this.replies.set(entry.key, entry);
    this.replyOrder.push(entry);
    return entry;
  }

  /** Our reply's stream id is known (stream.created): key it by that id. */
  _bindReply(entry, streamId) {
    this.replies.delete(entry.key);
    entry.key = streamId;
    entry.streamId = streamId;
    entry.progress.streamId = streamId;
    this.replies.set(streamId, entry);
  }

  _dropReply(entry) {
    entry.reply.remove();
    this.replies.delete(entry.key);
    this.replyOrder = this.replyOrder.filter((e) => e !== entry);
  }

  _endReply(entry, { finish, metrics, error }) {
    if (!entry.running) return;
    entry.running = false;
    const msg = {
      ttftMs: entry.progress.ttftMs ?? undefined,
      serverTtftMs: metrics ? metrics.ttft_ms : undefined,
      tps: tokensPerSecond(metrics),
      finish,
      error,
    };
    entry.reply.end(msg);
    if (entry.mine && Number.isFinite(msg.ttftMs)) {
      this.store.addTtft(msg.ttftMs);
      this.store.save();
      this.metrics.show(this.store.state, msg);
    }
    if (!this.busy) this.view.setTyping(false);
    this._syncBusy();
  }

  _syncBusy() {
    const busy = this.busy;
    this.view.setBusy(busy);
    if (busy) {
      const stopping = [...this.replies.values()].every((r) => !r.running || r.stopping);
      this.view.setStopping(stopping);
    }
  }
}
