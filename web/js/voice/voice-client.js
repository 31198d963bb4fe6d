// The Realtime voice socket (SPEC 7): OpenAI's Realtime protocol (GA event names) at
// /stream/v1/realtime, with the page's resume extension. No DOM, no audio: events in, events out.
//
//   const client = new VoiceClient({ api, model, session });
//   client.on("session.created", (ev) => {});   // any server event type; "*" gets every one
//   client.on("connection", (state, info) => {}); // connecting|connected|reconnecting|offline|closed
//   await client.connect();                        // mints a client secret, opens the socket
//   client.send({ type: "input_audio_buffer.append", audio: base64 });
//   client.close();
//
// Auth: a browser cannot set headers on a WebSocket, so the page mints a short-lived client
// secret (POST /api/v1/realtime/client_secrets, OpenAI's shape) and offers the subprotocols
// `realtime` and `openai-insecure-api-key.<secret>`; the server answers `realtime`.
// Resume: a socket that drops (network, a proxy) is reopened with a fresh secret and
// `?model=...&session_id=<session.created's id>&after_event_id=<last event_id received>`, so
// the server replays every event after that one and the session goes on. Tried with backoff
// for `resumeWindowMs` (the server's REALTIME_RESUME_GRACE_S); after that, or if the server
// answers `session_not_found`, a new session starts (emitted as "session.lost").

import { backoffDelay, isOnline, toWebSocketUrl } from "../transport/http.js";

export const SECRET_TTL_S = 600;
export const DEFAULT_RESUME_WINDOW_MS = 15_000;

export class VoiceClient {
  /**
   * @param {object} o
   * @param {import("../transport/http.js").ApiClient} o.api
   * @param {string} o.model
   * @param {object} [o.session]  the session configuration minted into the client secret
   * @param {number} [o.resumeWindowMs]
   */
  constructor({ api, model, session = {}, resumeWindowMs = DEFAULT_RESUME_WINDOW_MS, backoff } = {}) {
    this.api = api;
    this.model = model;
    this.session = session;
    this.resumeWindowMs = resumeWindowMs;
    this.backoff = { initialMs: 200, maxMs: 3000, ...(backoff || {}) };
    this.ws = null;
    this.state = "idle";
    this.sessionId = null;
    this.lastEventId = null;
    this.wanted = false;
    this.droppedAt = 0;
    this.resumes = 0;
    this._attempt = 0;
    this._timer = null;
    this._listeners = new Map();
    this._clientEvents = 0;
    this._refused = null; // the error event that came before the server closed the socket
    this._onOnline = () => this._reopenNow();
    this._onOffline = () => this._goOffline();
  }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this._listeners.get(type)?.delete(fn);
  }

  _emit(type, ...args) {
    for (const key of [type, "*"]) {
      for (const fn of [...(this._listeners.get(key) || [])]) {
        try {
          fn(...args);
        } catch (err) {
          setTimeout(() => {
            throw err;
          });
        }
      }
    }
  }

  _setState(state, info = {}) {
    if (this.state === state && !info.resumed) return;
    this.state = state;
    for (const fn of [...(this._listeners.get("connection") || [])]) fn(state, info);
  }

  get open() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  /** Open a new session. Resolves when the socket is open (session.created follows). */
  async connect() {
    this.wanted = true;
    this.sessionId = null;
    this.lastEventId = null;
    globalThis.addEventListener("online", this._onOnline);
    globalThis.addEventListener("offline", this._onOffline);
    this._setState("connecting");
    await this._open();
  }

  close() {
    this.wanted = false;
    clearTimeout(this._timer);
    globalThis.removeEventListener("online", this._onOnline);
    globalThis.removeEventListener("offline", this._onOffline);
    this._drop(1000, "bye");
    this._setState("closed");
  }

  /** Send a client event (an event_id is added so errors can name it). False if not open. */
  send(event) {
    if (!this.open) return false;
    this._clientEvents += 1;
    const withId = event.event_id ? event : { event_id: `evt_page_${this._clientEvents}`, ...event };
    this.ws.send(JSON.stringify(withId));
    return true;
  }

  async _mintSecret() {
    const body = await this.api.request("POST", "/api/v1/realtime/client_secrets", {
      expires_after: { anchor: "created_at", seconds: SECRET_TTL_S },
      session: { type: "realtime", model: this.model, ...this.session },
    });
    if (!body || typeof body.value !== "string") throw new Error("client_secrets: no value in the answer");
    return body.value;
  }

  _url() {
    const params = new URLSearchParams({ model: this.model });
    if (this.sessionId) {
      params.set("session_id", this.sessionId);
      if (this.lastEventId) params.set("after_event_id", this.lastEventId);
    }
    return toWebSocketUrl(this.api.baseUrl, `/stream/v1/realtime?${params}`);
  }

  async _open() {
    const secret = await this._mintSecret(); // errors reach connect()'s caller (or a retry)
    if (!this.wanted) return;
    const resuming = Boolean(this.sessionId);
    const ws = new WebSocket(this._url(), ["realtime", `openai-insecure-api-key.${secret}`]);
    this.ws = ws;
    this._refused = null;
    await new Promise((resolve, reject) => {
      ws.onopen = () => {
        this._attempt = 0;
        if (resuming) this.resumes += 1;
        this._setState("connected", { resumed: resuming });
        resolve();
      };
      ws.onmessage = (ev) => this._onMessage(ws, ev);
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        reject(new Error(`The voice socket closed (${ev.code}).`));
        this._onClose(ws, ev);
      };
    });
  }

  _onMessage(ws, ev) {
    if (ws !== this.ws) return;
    let event;
    try {
      event = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (!event || typeof event.type !== "string") return;
    if (event.event_id) this.lastEventId = event.event_id;
    if (event.type === "session.created" && event.session && event.session.id) this.sessionId = event.session.id;
    if (event.type === "error") this._refused = event;
    this._emit(event.type, event);
  }

  _onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (!this.wanted) return;
    const code = this._refused && this._refused.error ? this._refused.error.code : null;
    if (code === "session_not_found" || (this.sessionId && ev.code === 1008)) {
      this._newSession("The voice session ended on the server; a new one started.");
      return;
    }
    if (!this.droppedAt) this.droppedAt = Date.now();
    if (!isOnline()) {
      this._goOffline();
      return;
    }
    this._retry();
  }

  _retry() {
    clearTimeout(this._timer);
    if (this.sessionId && Date.now() - this.droppedAt > this.resumeWindowMs) {
      this._newSession("The connection was away longer than the session waits; a new one started.");
      return;
    }
    this._setState("reconnecting");
    const delay = backoffDelay(this._attempt++, this.backoff);
    this._timer = setTimeout(() => {
      this._timer = null;
      this._reopenNow();
    }, delay);
  }

  _reopenNow() {
    if (!this.wanted || this.ws) return;
    clearTimeout(this._timer);
    this._timer = null;
    if (!isOnline()) {
      this._goOffline();
      return;
    }
    this._open().then(
      () => {
        this.droppedAt = 0;
      },
      () => {
        // The secret could not be minted (a socket that fails is retried by its close).
        if (this.wanted && !this.ws && !this._timer) this._retry();
      },
    );
  }

  _newSession(reason) {
    this.sessionId = null;
    this.lastEventId = null;
    this.droppedAt = 0;
    this._emit("session.lost", { type: "session.lost", reason });
    this._reopenNow();
  }

  _goOffline() {
    if (!this.wanted) return;
    if (!this.droppedAt) this.droppedAt = Date.now();
    // Not 1000: a normal close ends the session on the server; this one should wait for us.
    this._drop(4000, "offline");
    this._setState("offline");
  }

  _drop(code, reason) {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(code, reason);
    } catch {
      /* closing already */
    }
  }
}
