// The WebSocket client of the stream service (SPEC section 6). No DOM: lift it (with
// http.js) into any browser app.
//
//   const ws = new WsClient({ api });               // api: an ApiClient (bearer token source)
//   ws.on("connection", (state, info) => {});       // connecting|connected|reconnecting|offline|unavailable|closed
//   const s = ws.startStream({ type: "chat.send", model, messages }, handlers);
//   const { streamId, room } = await s.created;     // the server's stream.created
//   ws.follow(streamId, handlers, { afterSeq: 17 }); // resume a stream (after a reload, a room reply)
//   await ws.cancel(streamId);                      // the stream ends with done(cancelled)
//   ws.join(room); ws.leave(room); ws.sendIfOpen({ type: "typing", room, active: true });
//   ws.on("joined" | "message" | "presence" | "typing", (frame) => {});
//   ws.on("error", (frame) => {});                  // an error about a client message (no stream)
//   ws.on("stream", (frame) => {});                 // a stream nobody follows yet (a room reply
//                                                   // someone else started): call follow() in it
//
// Stream handlers are the SSE client's: onStatus, onDelta, onDone, onError (each gets the
// frame), onEvent(kind, frame, seq), onConnection(state, info). Guarantees: each handler sees
// each seq of a stream exactly once, in order. Frames that arrive twice (a resume overlapping
// live room traffic) are dropped; a frame that skips ahead is held back and the missing ones
// are asked for with `resume` {stream_id, after_seq}; a dropped socket is reopened with a
// fresh ticket (POST /stream/v1/ws/tickets) with backoff, its rooms are joined again and
// every stream still followed is resumed after the last seq delivered.
//
// Browsers cannot send protocol pings, so the client sends {"type": "ping"} every
// `pingIntervalMs` (below every idle timeout on the path) and treats a socket that has not
// said anything for 2.5 intervals as dead.

import { ApiError, backoffDelay, isOnline, toWebSocketUrl } from "./http.js";

const STREAM_HANDLERS = { status: "onStatus", delta: "onDelta", done: "onDone", error: "onError" };
const MAX_HELD_FRAMES = 10_000; // out-of-order frames held per stream while a gap is filled

export class WsUnavailableError extends Error {
  constructor(message = "The WebSocket endpoint is not available on this server.") {
    super(message);
    this.name = "WsUnavailableError";
    this.code = "ws_unavailable";
  }
}

export class WsInterruptedError extends Error {
  constructor() {
    super("The connection dropped before the server answered.");
    this.name = "WsInterruptedError";
    this.code = "ws_interrupted";
  }
}

/** A client message the server refused: `error` {code, message, ref?}. */
export class WsRequestError extends Error {
  constructor(frame) {
    super(frame.message || frame.code || "The server refused the request.");
    this.name = "WsRequestError";
    this.code = frame.code || null;
    this.frame = frame;
  }
}

function callSafely(fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch (err) {
    // A handler bug must not break the transport; surface it without swallowing it.
    setTimeout(() => {
      throw err;
    });
  }
}

/** One followed stream: ordering, de-duplication and gap repair by seq. */
class StreamFollower {
  constructor(client, handlers, { streamId = null, afterSeq = 0, ref = null } = {}) {
    this.client = client;
    this.handlers = handlers;
    this.streamId = streamId;
    this.ref = ref;
    this.lastSeq = Number(afterSeq) || 0;
    this.held = new Map(); // seq -> frame, arrived ahead of a gap
    this.resumeSent = false; // a resume for the current gap is on its way
    this.needsResume = false; // send `resume` when the socket is open
    this.interrupted = false; // the socket dropped since this stream last got a frame
    this.closed = false;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    this.held.clear();
    this.client._forget(this);
  }

  _call(name, ...args) {
    callSafely(this.handlers[name], ...args);
  }

  _resume() {
    if (this.client._sendNow({ type: "resume", stream_id: this.streamId, after_seq: this.lastSeq })) {
      this.resumeSent = true;
      this.needsResume = false;
      this.client._awaitingResume.push(this);
    } else {
      this.needsResume = true;
    }
  }

  receive(frame) {
    if (this.closed) return;
    const seq = Number(frame.seq);
    if (!Number.isInteger(seq) || seq <= this.lastSeq) return; // a duplicate (or no seq)
    if (seq !== this.lastSeq + 1) {
      if (this.held.size >= MAX_HELD_FRAMES) this.held.clear(); // the resume brings them again
      this.held.set(seq, frame);
      if (!this.resumeSent) this._resume();
      return;
    }
    this._deliver(frame);
    while (!this.closed && this.held.has(this.lastSeq + 1)) {
      const next = this.held.get(this.lastSeq + 1);
      this.held.delete(this.lastSeq + 1);
      this._deliver(next);
    }
    for (const s of this.held.keys()) if (s <= this.lastSeq) this.held.delete(s);
    if (this.held.size === 0) this.resumeSent = false;
  }

  _deliver(frame) {
    this.lastSeq = Number(frame.seq);
    this.client._resumeAnswered(this);
    if (this.interrupted) {
      this.interrupted = false;
      this._call("onConnection", "connected", { resumed: true, lastEventId: this.lastSeq });
    }
    this._call(STREAM_HANDLERS[frame.type], frame, this.lastSeq);
    this._call("onEvent", frame.type, frame, this.lastSeq);
    if (frame.type === "done" || frame.type === "error") this.close();
  }

  /** A terminal failure outside the stream (not found on resume, not available). */
  fail(code, message) {
    if (this.closed) return;
    this._call("onError", { code, message, retryable: false });
    this.close();
  }
}

export class WsClient {
  /**
   * @param {object} o
   * @param {import("./http.js").ApiClient} o.api
   * @param {string} [o.ticketPath]
   * @param {number} [o.pingIntervalMs]
   * @param {{initialMs: number, maxMs: number}} [o.backoff]
   */
  constructor({ api, ticketPath = "/stream/v1/ws/tickets", pingIntervalMs = 20_000, backoff } = {}) {
    this.api = api;
    this.ticketPath = ticketPath;
    this.pingIntervalMs = pingIntervalMs;
    this.backoff = { initialMs: 250, maxMs: 8000, ...(backoff || {}) };
    this.state = "idle";
    this.ws = null;
    this.wanted = false; // keep a socket open (someone uses the client)
    this.rooms = new Set(); // rooms joined, joined again after a reconnect
    this._listeners = new Map();
    this._byRef = new Map(); // ref -> {follower, resolve, reject} waiting for stream.created
    this._byStream = new Map(); // stream id -> StreamFollower
    this._awaitingResume = []; // followers whose resume has had no answer yet
    // Frames of unknown streams that come while a chat.send waits for its stream.created (a
    // room's fan-out may overtake it): held until we know whether the stream is ours.
    this._orphans = new Map(); // stream id -> [frame]
    // Streams we stopped following (ended, or closed by the page): their late frames (a room's
    // live copy of what a resume already gave, a private reply nobody shows) are dropped.
    this._ignored = new Set();
    this._attempt = 0;
    this._timer = null;
    this._pinger = null;
    this._lastHeard = 0;
    this._everOpened = false;
    this._refreshToken = false;
    this._refs = 0;
    this._opening = null;
    this._openWaiters = [];
    globalThis.addEventListener?.("online", () => this._onOnline());
    globalThis.addEventListener?.("offline", () => this._onOffline());
  }

  /** `fn(...args)` on each `event`; returns the function that removes it. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  _emit(event, ...args) {
    for (const fn of [...(this._listeners.get(event) || [])]) callSafely(fn, ...args);
  }

  _setState(state, info = {}) {
    if (this.state === state && !info.resumed) return;
    this.state = state;
    this._emit("connection", state, info);
    for (const f of this._followers()) {
      if (state === "connected") continue; // each follower says "resumed" on its first frame
      f.handlers.onConnection && callSafely(f.handlers.onConnection, state, { lastEventId: f.lastSeq });
    }
  }

  _followers() {
    const all = new Set(this._byStream.values());
    for (const w of this._byRef.values()) all.add(w.follower);
    return [...all];
  }

  /** Open the socket (if not yet) and keep it open; resolves once it is open. */
  connect() {
    this.wanted = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    if (this.state === "unavailable") return Promise.reject(new WsUnavailableError());
    const waiter = new Promise((resolve, reject) => this._openWaiters.push({ resolve, reject }));
    if (!this.ws && !this._opening && !this._timer) {
      if (isOnline()) this._open();
      else this._setState("offline");
    }
    return waiter;
  }

  /** Close the socket and stop reconnecting (followed streams stay on the server). */
  close() {
    this.wanted = false;
    clearTimeout(this._timer);
    this._timer = null;
    this._dropSocket(1000, "client closed");
    this._setState("closed");
  }

  async _open() {
    if (!this.wanted || this._opening) return;
    clearTimeout(this._timer);
    this._timer = null;
    this._setState(this._everOpened ? "reconnecting" : "connecting");
    let ticket;
    this._opening = (async () => {
      if (this._refreshToken) {
        this._refreshToken = false;
        await this.api.getToken({ refresh: true });
      }
      return this.api.request("POST", this.ticketPath);
    })();
    try {
      ticket = await this._opening;
    } catch (err) {
      this._opening = null;
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        this._unavailable();
        return;
      }
      this._retryLater();
      return;
    }
    this._opening = null;
    if (!this.wanted || this.ws) return;
    if (!isOnline()) {
      this._onOffline();
      return;
    }
    let ws;
    try {
      ws = new WebSocket(toWebSocketUrl(this.api.baseUrl, ticket.url));
    } catch {
      this._retryLater();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (ev) => this._onMessage(ws, ev);
    ws.onclose = (ev) => this._onClose(ws, ev);
    ws.onerror = () => {}; // always followed by close
  }

  _unavailable() {
    this.wanted = false;
    this._setState("unavailable");
    const err = new WsUnavailableError();
    for (const w of this._openWaiters.splice(0)) w.reject(err);
    for (const [ref, w] of [...this._byRef]) {
      this._byRef.delete(ref);
      w.reject(err);
    }
    for (const f of [...this._byStream.values()]) f.fail("ws_unavailable", err.message);
  }

  _onOpen(ws) {
    if (ws !== this.ws) return;
    const resumed = this._everOpened;
    this._everOpened = true;
    this._lastHeard = Date.now();
    this._setState("connected", { resumed });
    clearInterval(this._pinger);
    this._pinger = setInterval(() => this._ping(), this.pingIntervalMs);
    for (const room of this.rooms) this._sendNow({ type: "join", room });
    for (const f of this._byStream.values()) if (f.needsResume) f._resume();
    for (const w of this._openWaiters.splice(0)) w.resolve();
  }

  _ping() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this._lastHeard > this.pingIntervalMs * 2.5) {
      // Nothing heard (not even a pong): a half-open connection. Start again.
      this._dropSocket(4000, "no pong");
      this._afterDrop();
      return;
    }
    this._sendNow({ type: "ping" });
  }

  _onMessage(ws, ev) {
    if (ws !== this.ws) return;
    this._lastHeard = Date.now();
    this._attempt = 0;
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return; // not ours to break on
    }
    if (!frame || typeof frame.type !== "string") return;
    this._dispatch(frame);
  }

  _dispatch(frame) {
    switch (frame.type) {
      case "stream.created": {
        const waiting = this._byRef.get(frame.ref);
        if (!waiting) return;
        this._byRef.delete(frame.ref);
        const f = waiting.follower;
        f.streamId = frame.stream_id;
        if (!f.closed) this._byStream.set(f.streamId, f);
        // Resolved even if nobody listens any more: the starter may want to cancel it.
        waiting.resolve({ streamId: frame.stream_id, room: frame.room ?? null });
        this._flushOrphans();
        return;
      }
      case "status":
      case "delta":
      case "done":
        this._streamFrame(frame);
        return;
      case "error":
        if (frame.stream_id != null && frame.seq != null) this._streamFrame(frame);
        else this._clientError(frame);
        return;
      case "pong":
        return;
      default:
        this._emit(frame.type, frame); // joined, message, presence, typing, anything newer
    }
  }

  _streamFrame(frame) {
    let f = this._byStream.get(frame.stream_id);
    if (!f && this._byRef.size > 0) {
      const held = this._orphans.get(frame.stream_id) || [];
      if (held.length < MAX_HELD_FRAMES) held.push(frame);
      this._orphans.set(frame.stream_id, held);
      return;
    }
    if (!f && this._ignored.has(frame.stream_id)) return;
    if (!f) {
      this._emit("stream", frame); // a listener may follow() it now
      f = this._byStream.get(frame.stream_id);
      if (!f) return;
    }
    f.receive(frame);
  }

  /** Held frames: to their follower if the stream turned out ours, else as unknown streams. */
  _flushOrphans() {
    for (const [streamId, frames] of [...this._orphans]) {
      const mine = this._byStream.has(streamId);
      if (!mine && this._byRef.size > 0) continue; // still undecided
      this._orphans.delete(streamId);
      for (const frame of frames) this._streamFrame(frame);
    }
  }

  _resumeAnswered(follower) {
    const at = this._awaitingResume.indexOf(follower);
    if (at >= 0) this._awaitingResume.splice(at, 1);
  }

  _clientError(frame) {
    if (frame.ref != null && this._byRef.has(frame.ref)) {
      const waiting = this._byRef.get(frame.ref);
      this._byRef.delete(frame.ref);
      waiting.follower.closed = true;
      waiting.reject(new WsRequestError(frame));
      this._flushOrphans();
      return;
    }
    const target =
      (frame.stream_id != null && this._byStream.get(frame.stream_id)) ||
      (/not_found/.test(frame.code || "") && frame.code !== "room_not_found" && this._awaitingResume.shift());
    if (target) {
      target.fail(frame.code || "stream_not_found", frame.message || "This reply is no longer available.");
      return;
    }
    this._emit("error", frame);
  }

  _onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearInterval(this._pinger);
    if (ev.code === 4401 || ev.code === 4403 || ev.code === 1008) this._refreshToken = true;
    this._afterDrop();
  }

  /** The socket is gone: streams waiting for stream.created fail, followed ones resume later. */
  _afterDrop() {
    for (const [ref, w] of [...this._byRef]) {
      this._byRef.delete(ref);
      w.follower.closed = true;
      w.reject(new WsInterruptedError());
    }
    this._orphans.clear(); // a gap in a room reply is repaired by resume once it is followed
    for (const f of this._byStream.values()) {
      f.needsResume = true;
      f.resumeSent = false;
      f.interrupted = true;
    }
    this._awaitingResume = [];
    if (!this.wanted) return;
    if (!isOnline()) {
      this._setState("offline");
      return;
    }
    this._retryLater();
  }

  _retryLater() {
    if (!this.wanted) return;
    if (!isOnline()) {
      this._setState("offline"); // "online" reopens at once
      return;
    }
    this._setState(this._everOpened ? "reconnecting" : "connecting");
    clearTimeout(this._timer);
    const delay = backoffDelay(this._attempt, this.backoff);
    this._attempt += 1;
    this._timer = setTimeout(() => {
      this._timer = null;
      if (!isOnline()) this._setState("offline");
      else this._open();
    }, delay);
  }

  _dropSocket(code, reason) {
    clearInterval(this._pinger);
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
      }
    }
  }

  _onOffline() {
    if (!this.wanted) return;
    // Don't wait for a dead network to time out: drop the socket, resume when back online.
    clearTimeout(this._timer);
    this._timer = null;
    if (this.ws) {
      this._dropSocket(4000, "offline"); // not a normal close: the server may expect a resume
      this._afterDrop();
    }
    this._setState("offline");
  }

  _onOnline() {
    if (!this.wanted || this.ws || this._opening) return;
    this._attempt = 0;
    this._open();
  }

  /** Send a frame if the socket is open; false if it is not (nothing is queued). */
  _sendNow(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Send a frame if the socket is open, else drop it (for frames that only matter now:
   * typing). Returns whether it was sent. */
  sendIfOpen(frame) {
    return this._sendNow(frame);
  }

  /** Send a frame now, opening the socket first if needed. */
  async send(frame) {
    if (this._sendNow(frame)) return;
    await this.connect();
    if (!this._sendNow(frame)) throw new WsInterruptedError();
  }

  /**
   * Start a stream: `frame` is a `chat.send` (private: model + messages; room: room + content).
   * Returns {created: Promise<{streamId, room}>, close()}; events go to `handlers`.
   */
  startStream(frame, handlers) {
    this._refs += 1;
    const ref = `r${Date.now().toString(36)}-${this._refs}`;
    const follower = new StreamFollower(this, handlers, { ref });
    const created = new Promise((resolve, reject) => {
      this._byRef.set(ref, { follower, resolve, reject });
    });
    this.send({ ...frame, type: "chat.send", ref }).catch((err) => {
      const waiting = this._byRef.get(ref);
      if (!waiting) return;
      this._byRef.delete(ref);
      waiting.reject(err);
    });
    return { created, close: () => follower.close(), follower };
  }

  /**
   * Follow a stream by id from after `afterSeq` (0: from the start). `resume: true` asks the
   * server for what came after `afterSeq` (a reload, a room reply already running); false when
   * its frames come anyway (a room reply seen live) — a gap still asks for the missing ones.
   */
  follow(streamId, handlers, { afterSeq = 0, resume = true } = {}) {
    const existing = this._byStream.get(streamId);
    if (existing) existing.close();
    this._ignored.delete(streamId);
    const follower = new StreamFollower(this, handlers, { streamId, afterSeq });
    this._byStream.set(streamId, follower);
    if (resume) {
      this.connect().catch(() => {}); // failures reach the follower through _unavailable
      follower._resume();
    }
    return follower;
  }

  isFollowing(streamId) {
    return this._byStream.has(streamId);
  }

  _forget(follower) {
    if (follower.streamId && this._byStream.get(follower.streamId) === follower) {
      this._byStream.delete(follower.streamId);
      this._ignored.add(follower.streamId);
      if (this._ignored.size > 500) this._ignored.delete(this._ignored.values().next().value);
    }
    this._resumeAnswered(follower);
  }

  /** Stop a stream (private, or a reply of a room you are in); it ends with done(cancelled). */
  cancel(streamId) {
    return this.send({ type: "cancel", stream_id: streamId });
  }

  /** Join a room now and after every reconnect; the server answers `joined`. */
  join(room) {
    this.rooms.add(room);
    // Not open yet: every room is joined as soon as the socket opens (and after each reconnect).
    if (!this._sendNow({ type: "join", room })) this.connect().catch(() => {});
  }

  leave(room) {
    if (!this.rooms.delete(room)) return;
    this._sendNow({ type: "leave", room });
  }
}
