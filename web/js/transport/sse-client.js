// Resumable SSE streams from the stream service (SPEC section 5). No DOM: lift this file
// (with http.js) into any browser app.
//
//   import { StreamClient } from "./transport/sse-client.js";
//   const client = new StreamClient({ getToken });          // getToken: async () => "<JWT>"
//   const stream = await client.create({ model, messages }); // {id, events_url}
//   const sub = client.consume(stream, {
//     onStatus: ({ state }) => {},         // queued | thinking | streaming (typing indicator)
//     onDelta: ({ text }) => {},           // append text; one or more tokens per event
//     onDone: ({ finish_reason, usage, metrics }) => {},
//     onError: ({ code, message, retryable }) => {},
//     onConnection: (state, info) => {},   // connecting | connected | reconnecting | offline | closed
//     onEvent: (kind, data, id) => {},     // every event, after the typed handler (persist here)
//   }, { lastEventId: 0 });                // resume after this event id (e.g. after a reload)
//   await client.cancel(stream.id);        // the stream ends with done(finish_reason=cancelled)
//   sub.close();                           // stop listening (the stream keeps running server-side)
//
// Guarantees: every handler sees each event id exactly once and in order, across browser
// auto-reconnects (Last-Event-ID header), network loss (reopened with ?last_event_id= when
// the browser is back online) and HTTP failures (reopened with backoff). Events with an id
// already seen are dropped; a gap makes the subscription reopen from the last id it has.

import { ApiClient, ApiError, backoffDelay, isOnline, joinUrl } from "./http.js";

export { ApiError as StreamHttpError };

const DEFAULT_BACKOFF = { initialMs: 250, maxMs: 8000 };
// The handler each event kind goes to (besides onEvent, which gets every event).
const HANDLERS = { status: "onStatus", delta: "onDelta", done: "onDone", error: "onError" };

function withLastEventId(url, lastEventId) {
  const u = new URL(url, globalThis.location ? globalThis.location.href : undefined);
  u.searchParams.delete("last_event_id");
  if (lastEventId > 0) u.searchParams.set("last_event_id", String(lastEventId));
  return u.toString();
}

export class StreamClient {
  /**
   * @param {object} options
   * @param {ApiClient} [options.api] the authenticated HTTP client (or baseUrl + getToken)
   * @param {string} [options.baseUrl] origin of the API ("" = same origin)
   * @param {(opts?: {refresh?: boolean}) => Promise<string>} [options.getToken] bearer token source
   * @param {{initialMs: number, maxMs: number}} [options.backoff]
   */
  constructor({ api, baseUrl = "", getToken, fetch: fetchImpl, backoff } = {}) {
    this.api = api || new ApiClient({ baseUrl, getToken, fetch: fetchImpl });
    this.baseUrl = this.api.baseUrl;
    this.backoff = { ...DEFAULT_BACKOFF, ...(backoff || {}) };
  }

  /** The authenticated fetch (one token refresh on 401); throws StreamHttpError. */
  request(method, path, body) {
    return this.api.request(method, path, body);
  }

  /** Start generating: an OpenAI chat request -> {id, events_url}. */
  create(chatRequest) {
    return this.request("POST", "/stream/v1/streams", chatRequest);
  }

  /** {id, status: running|completed|cancelled|failed, last_event_id} */
  describe(streamId) {
    return this.request("GET", `/stream/v1/streams/${encodeURIComponent(streamId)}`);
  }

  /** Stop generation now; the stream ends with done(finish_reason="cancelled"). */
  cancel(streamId) {
    return this.request("POST", `/stream/v1/streams/${encodeURIComponent(streamId)}/cancel`);
  }

  /** Listen to a stream's events; see the top of this file. Returns a StreamSubscription. */
  consume(stream, handlers = {}, { lastEventId = 0 } = {}) {
    return new StreamSubscription(this, stream, handlers, lastEventId);
  }
}

export class StreamSubscription {
  constructor(client, stream, handlers, lastEventId) {
    this.client = client;
    this.streamId = stream.id;
    this.eventsUrl = joinUrl(client.baseUrl, stream.events_url);
    this.handlers = handlers;
    this.lastEventId = Number(lastEventId) || 0;
    this.resumes = 0; // successful reconnects after an interruption
    this.state = "idle";
    this.closed = false;
    this.es = null;
    this._attempt = 0;
    this._timer = null;
    this._interrupted = false;
    this._onOnline = () => this._resumeNow();
    this._onOffline = () => this._goOffline();
    if (globalThis.addEventListener) {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
    }
    if (isOnline()) this._open();
    else this._goOffline();
  }

  /** Stop listening (idempotent). Does not cancel the stream on the server. */
  close() {
    if (this.closed) return;
    this.closed = true;
    this._teardown();
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
    }
    this._setState("closed");
  }

  _setState(state, info) {
    if (this.state === state) return;
    this.state = state;
    this._call("onConnection", state, { resumes: this.resumes, lastEventId: this.lastEventId, ...info });
  }

  _call(name, ...args) {
    const fn = this.handlers[name];
    if (typeof fn === "function") {
      try {
        fn(...args);
      } catch (err) {
        // A handler bug must not break the transport; surface it without swallowing it.
        setTimeout(() => {
          throw err;
        });
      }
    }
  }

  _teardown() {
    clearTimeout(this._timer);
    this._timer = null;
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  _open() {
    if (this.closed) return;
    this._teardown();
    this._setState(this._interrupted ? "reconnecting" : "connecting");
    const es = new EventSource(withLastEventId(this.eventsUrl, this.lastEventId));
    this.es = es;
    es.onopen = () => {
      if (es !== this.es) return;
      this._attempt = 0;
      if (this._interrupted) {
        this._interrupted = false;
        this.resumes += 1;
        this._setState("connected", { resumed: true });
      } else {
        this._setState("connected");
      }
    };
    const listener = (kind) => (ev) => this._onEvent(es, kind, ev);
    es.addEventListener("status", listener("status"));
    es.addEventListener("delta", listener("delta"));
    es.addEventListener("done", listener("done"));
    // "error" is both the server's error event (a MessageEvent with data) and the
    // transport's failure signal (a plain Event).
    es.addEventListener("error", (ev) => {
      if (typeof ev.data === "string") this._onEvent(es, "error", ev);
      else this._onTransportError(es);
    });
  }

  _onEvent(es, kind, ev) {
    if (this.closed || es !== this.es) return;
    const id = Number.parseInt(ev.lastEventId, 10);
    if (!Number.isFinite(id)) return; // every event has an id (SPEC 5); ignore anything else
    if (id <= this.lastEventId) return; // already delivered (a replay overlap)
    if (id !== this.lastEventId + 1) {
      // A gap must never reach the handlers: reopen from what we have, with backoff.
      this._interrupted = true;
      this._retryLater();
      return;
    }
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      data = {};
    }
    this.lastEventId = id;
    this._call(HANDLERS[kind], data, id);
    this._call("onEvent", kind, data, id);
    if (kind === "done" || kind === "error") this.close();
  }

  _onTransportError(es) {
    if (this.closed || es !== this.es) return;
    this._interrupted = true;
    if (!isOnline()) {
      this._goOffline();
      return;
    }
    if (es.readyState === EventSource.CONNECTING) {
      // The browser reconnects by itself and sends Last-Event-ID (after the server's retry:).
      this._setState("reconnecting");
      return;
    }
    // CLOSED: the browser gave up (an HTTP error such as 503 from a draining node, 401, 404).
    this._retryLater();
  }

  _retryLater() {
    this._teardown();
    this._setState("reconnecting");
    this._scheduleRetry();
  }

  _goOffline() {
    if (this.closed) return;
    this._interrupted = true;
    this._teardown(); // don't let the browser spin on a dead network; "online" resumes us
    this._setState("offline");
  }

  _resumeNow() {
    if (this.closed || this.es) return;
    this._attempt = 0;
    this._interrupted = true;
    this._open();
  }

  _scheduleRetry() {
    const delay = backoffDelay(this._attempt, this.client.backoff);
    this._attempt += 1;
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._checkThenOpen(), delay);
  }

  async _checkThenOpen() {
    if (this.closed) return;
    if (!isOnline()) {
      this._goOffline();
      return;
    }
    let info;
    try {
      info = await this.client.describe(this.streamId);
      if (info && typeof info.events_url === "string") {
        this.eventsUrl = joinUrl(this.client.baseUrl, info.events_url); // a fresh URL token
      }
    } catch (err) {
      if (this.closed) return;
      if (err instanceof ApiError && (err.status === 404 || err.status === 403)) {
        this._call("onError", {
          code: "stream_not_found",
          message: "This reply is no longer available.",
          retryable: false,
        });
        this.close();
        return;
      }
      this._scheduleRetry(); // network error or 5xx: the service is restarting; try again
      return;
    }
    // Things may have changed while we asked: closed, reopened by `online`, or offline.
    if (this.closed || this.es) return;
    if (!isOnline()) {
      this._goOffline();
      return;
    }
    if (info && info.status !== "running" && Number(info.last_event_id) <= this.lastEventId) {
      // It ended, and nothing after what we have is left to read: don't reopen forever.
      this._call("onError", {
        code: "stream_ended",
        message: "The reply ended and cannot be resumed.",
        retryable: true,
      });
      this.close();
      return;
    }
    this._open();
  }
}
