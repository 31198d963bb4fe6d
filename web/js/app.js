// The chat page: composer, streamed replies, resume across network loss and reloads, metrics.
// Transport-independent bits live in stream-client.js (reusable); this file is the UI.

import { devTokenSource } from "./auth.js";
import { renderInto } from "./markdown.js";
import { createTtftChart } from "./metrics-chart.js";
import { StreamClient, StreamHttpError } from "./stream-client.js";

const API_BASE = document.querySelector('meta[name="rtai-api-base"]')?.content || "";
const STORE_KEY = "rtai.chat.v1"; // sessionStorage: per tab, survives reloads
const DEFAULT_MODEL = "local-model";

// The token source: swap devTokenSource for your identity provider (see js/auth.js).
const getToken = devTokenSource({ baseUrl: API_BASE });
const client = new StreamClient({ baseUrl: API_BASE, getToken });

const $ = (id) => document.getElementById(id);
const ui = {
  messages: $("messages"),
  empty: $("empty-state"),
  typing: $("typing-indicator"),
  typingLabel: document.querySelector("#typing-indicator .typing-label"),
  typingStatus: $("typing-status"),
  form: $("composer"),
  input: $("composer-input"),
  send: $("send"),
  stop: $("stop"),
  conn: $("connection-status"),
  connLabel: document.querySelector("#connection-status .conn-label"),
  connDetail: document.querySelector("#connection-status .conn-detail"),
  notice: $("notice"),
  model: $("model-name"),
  newChat: $("new-chat"),
  mTtft: $("m-ttft"),
  mTtftServer: $("m-ttft-server"),
  mTps: $("m-tps"),
  mResumes: $("m-resumes"),
  details: $("metrics-details"),
};

// ---- state (persisted) ----------------------------------------------------------------
// messages: [{role, content, ttftMs?, serverTtftMs?, tps?, finish?, error?}]
// pending:  {streamId, eventsUrl, lastEventId, text, sentAt, ttftMs, request} | null
let state = loadState();
let model = DEFAULT_MODEL;
let active = null; // the reply being streamed: {view, sub, t0, stopping}

function loadState() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
    if (saved && Array.isArray(saved.messages)) {
      return { messages: saved.messages, pending: saved.pending || null, ttfts: saved.ttfts || [], resumes: saved.resumes || 0 };
    }
  } catch {
    /* a corrupt entry starts a fresh conversation */
  }
  return { messages: [], pending: null, ttfts: [], resumes: 0 };
}

function saveState() {
  try {
    sessionStorage.setItem(STORE_KEY, JSON.stringify(state));
  } catch {
    /* storage full or disabled: the page still works, only reload-resume is lost */
  }
}

// ---- connection status -------------------------------------------------------------------
function setConnection(kind, detail = "") {
  ui.conn.dataset.state = kind;
  ui.connLabel.textContent = kind;
  ui.connDetail.textContent = detail ? ` · ${detail}` : "";
  ui.conn.title = detail ? `${kind}: ${detail}` : kind;
}

function idleConnection() {
  if (active) return;
  setConnection(navigator.onLine ? "connected" : "offline");
}

window.addEventListener("online", idleConnection);
window.addEventListener("offline", idleConnection);

// ---- rendering ---------------------------------------------------------------------------
function scrollToEnd() {
  const box = ui.messages;
  const nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 160;
  if (nearBottom || active) box.scrollTop = box.scrollHeight;
}

function addUserView(content) {
  ui.empty.hidden = true;
  const item = document.createElement("article");
  item.className = "msg user";
  item.setAttribute("aria-label", "You");
  const body = document.createElement("div");
  body.className = "bubble";
  body.dataset.testid = "user-message";
  body.textContent = content; // plain text, never parsed
  item.appendChild(body);
  ui.messages.appendChild(item);
  scrollToEnd();
  return item;
}

function addAssistantView() {
  ui.empty.hidden = true;
  const item = document.createElement("article");
  item.className = "msg assistant";
  item.setAttribute("aria-label", "Assistant");
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
  ui.messages.appendChild(item);
  scrollToEnd();
  return { item, body, ttft, extra, text: "", frame: 0 };
}

function paint(view) {
  view.frame = 0;
  renderInto(view.body, view.text);
  scrollToEnd();
}

function schedulePaint(view) {
  if (!view.frame) view.frame = requestAnimationFrame(() => paint(view));
}

function showTtft(view, ms) {
  if (Number.isFinite(ms)) view.ttft.textContent = `${Math.round(ms)} ms`;
}

function describeEnd(msg) {
  const bits = [];
  if (Number.isFinite(msg.tps)) bits.push(`${msg.tps.toFixed(1)} tok/s`);
  if (msg.finish === "cancelled") bits.push("stopped");
  else if (msg.finish === "length") bits.push("cut off (length)");
  if (msg.error) bits.push(msg.error);
  return bits.length ? ` · ${bits.join(" · ")}` : "";
}

function renderHistory() {
  for (const msg of state.messages) {
    if (msg.role === "user") {
      addUserView(msg.content);
    } else {
      const view = addAssistantView();
      view.text = msg.content;
      paint(view);
      showTtft(view, msg.ttftMs);
      view.extra.textContent = describeEnd(msg);
      if (msg.error) {
        view.item.classList.add("failed");
        addRetry(view);
      }
    }
  }
}

function setTyping(on, label = "Assistant is typing…") {
  ui.typing.hidden = !on;
  ui.typingLabel.textContent = label;
  // The visual indicator appears with its text, which screen readers often skip; a live
  // region that is always present announces the change instead.
  ui.typingStatus.textContent = on ? label : "";
}

function setBusy(busy) {
  // While a reply streams, screen readers wait for it instead of re-reading every frame.
  ui.messages.setAttribute("aria-busy", String(busy));
  ui.stop.disabled = !busy;
  ui.send.disabled = busy;
  ui.form.classList.toggle("busy", busy);
}

function notify(message) {
  ui.notice.textContent = message || "";
  ui.notice.hidden = !message;
}

// ---- metrics -----------------------------------------------------------------------------
const chart = createTtftChart($("ttft-chart"));

function refreshMetrics(last) {
  chart.set(state.ttfts);
  ui.mResumes.textContent = String(state.resumes);
  if (!last) return;
  if (Number.isFinite(last.ttftMs)) ui.mTtft.textContent = `${Math.round(last.ttftMs)} ms`;
  if (Number.isFinite(last.serverTtftMs)) ui.mTtftServer.textContent = `${Math.round(last.serverTtftMs)} ms`;
  if (Number.isFinite(last.tps)) ui.mTps.textContent = last.tps.toFixed(1);
}

function tokensPerSecond(metrics) {
  if (!metrics || !metrics.tokens) return undefined;
  const genMs = (metrics.duration_ms || 0) - (metrics.ttft_ms || 0);
  return genMs > 0 ? (metrics.tokens * 1000) / genMs : undefined;
}

// ---- a reply -----------------------------------------------------------------------------
function conversationForRequest() {
  return state.messages
    .filter((m) => (m.role === "user" || m.role === "assistant") && m.content)
    .map((m) => ({ role: m.role, content: m.content }));
}

async function send(content) {
  if (active || !content.trim()) return;
  const t0 = performance.now();
  notify("");
  setTyping(true);
  setBusy(true);
  const userView = addUserView(content);
  const view = addAssistantView();
  view.body.setAttribute("aria-busy", "true");
  view.item.classList.add("streaming");
  active = { view, sub: null, t0, stopping: false, stopRequested: false };

  const messages = [...conversationForRequest(), { role: "user", content }];
  let stream;
  try {
    stream = await client.create({ model, messages });
  } catch (err) {
    // Nothing was generated: take the message back into the composer.
    active = null;
    userView.remove();
    view.item.remove();
    setTyping(false);
    setBusy(false);
    ui.empty.hidden = state.messages.length > 0;
    ui.input.value = content;
    notify(createErrorText(err));
    idleConnection();
    ui.input.focus();
    return;
  }
  if (!active || active.view !== view) {
    // The chat was reset while the stream was being created: nobody will read it.
    client.cancel(stream.id).catch(() => {});
    return;
  }
  state.messages.push({ role: "user", content });
  state.pending = {
    streamId: stream.id,
    eventsUrl: stream.events_url,
    lastEventId: 0,
    text: "",
    sentAt: Date.now() - (performance.now() - t0),
    ttftMs: null,
  };
  saveState();
  attach(view, state.pending, t0);
  if (active.stopRequested) stop();
}

function createErrorText(err) {
  if (err instanceof StreamHttpError) {
    if (err.status === 429) {
      const wait = err.retryAfterS ? ` Try again in ${Math.ceil(err.retryAfterS)} s.` : "";
      return `Too many replies at once.${wait}`;
    }
    return `Could not send: ${err.message}`;
  }
  return navigator.onLine ? "Could not reach the server. Try again." : "You are offline. Send again when the network is back.";
}

/** Consume the pending reply's events into `view` (a fresh send, or a resume after reload). */
function attach(view, pending, t0) {
  const firstDelta = () => {
    const ms = t0 !== null ? performance.now() - t0 : Date.now() - pending.sentAt;
    pending.ttftMs = ms;
    showTtft(view, ms);
    setTyping(false);
  };
  const sub = client.consume(
    { id: pending.streamId, events_url: pending.eventsUrl },
    {
      onStatus({ state: s }) {
        if (!pending.text) setTyping(true, s === "queued" ? "Queued…" : "Assistant is typing…");
      },
      onDelta({ text }) {
        if (typeof text !== "string" || !text) return;
        const first = !pending.text;
        pending.text += text;
        view.text = pending.text;
        if (first) {
          paint(view); // the first token is painted now, then TTFT is taken
          firstDelta();
        } else {
          schedulePaint(view);
        }
      },
      onDone(data) {
        finish(view, pending, { finish: data.finish_reason, metrics: data.metrics });
      },
      onError(data) {
        finish(view, pending, { error: data.message || data.code || "The reply failed." });
      },
      onEvent(_kind, _data, id) {
        if (state.pending === pending) {
          pending.lastEventId = id;
          saveState(); // text and last id together: a reload resumes right after this event
        }
      },
      onConnection(conn, info) {
        if (conn === "connected") {
          setConnection("connected");
          if (info && info.resumed) {
            state.resumes += 1;
            saveState();
            refreshMetrics();
          }
        } else if (conn === "reconnecting") {
          setConnection("reconnecting", `resuming after event ${info.lastEventId}`);
        } else if (conn === "offline") {
          setConnection("offline", "reconnecting when the network is back");
        } else if (conn === "connecting" && ui.conn.dataset.state !== "connected") {
          setConnection("connecting");
        }
      },
    },
    { lastEventId: pending.lastEventId },
  );
  active.sub = sub;
}

function finish(view, pending, { finish: reason, metrics, error }) {
  if (!active || active.view !== view) return; // a reply of a chat that was reset
  if (view.frame) cancelAnimationFrame(view.frame);
  paint(view);
  view.body.removeAttribute("aria-busy");
  view.item.classList.remove("streaming");
  if (error) view.item.classList.add("failed");
  setTyping(false);
  const msg = {
    role: "assistant",
    content: pending.text,
    streamId: pending.streamId,
    ttftMs: pending.ttftMs ?? undefined,
    serverTtftMs: metrics ? metrics.ttft_ms : undefined,
    tps: tokensPerSecond(metrics),
    finish: reason,
    error,
  };
  view.extra.textContent = describeEnd(msg);
  if (error) addRetry(view);
  if (Number.isFinite(msg.ttftMs)) state.ttfts = [...state.ttfts, msg.ttftMs].slice(-20);
  state.messages.push(msg);
  state.pending = null;
  saveState();
  refreshMetrics(msg);
  active = null;
  setBusy(false);
  idleConnection();
  if (document.activeElement === document.body || document.activeElement === ui.stop) ui.input.focus();
}

/** A failed reply gets a Retry button: the reply and its question are sent again. */
function addRetry(view) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "retry";
  button.textContent = "Retry";
  button.addEventListener("click", () => {
    if (active) return;
    const at = state.messages.length - 2; // only the latest exchange can be retried
    if (state.messages[at]?.role !== "user" || !state.messages[at + 1]?.error) return;
    const question = state.messages[at].content;
    state.messages.splice(at, 2);
    saveState();
    view.item.previousElementSibling?.remove();
    view.item.remove();
    send(question);
  });
  view.item.querySelector(".meta").appendChild(button);
}

async function stop() {
  if (!active) return;
  if (!state.pending) {
    active.stopRequested = true; // the stream id is not known yet; stop once it is
    return;
  }
  if (active.stopping) return;
  active.stopping = true;
  ui.stop.disabled = true;
  const { streamId } = state.pending;
  try {
    await client.cancel(streamId); // the stream then ends with done(finish_reason=cancelled)
  } catch (err) {
    if (active) {
      active.stopping = false;
      ui.stop.disabled = false;
    }
    notify(`Could not stop the reply: ${err.message}`);
  }
}

function resumePending() {
  const pending = state.pending;
  if (!pending) return;
  if (!pending.streamId) {
    state.pending = null;
    saveState();
    return;
  }
  const view = addAssistantView();
  view.text = pending.text;
  paint(view);
  showTtft(view, pending.ttftMs);
  view.body.setAttribute("aria-busy", "true");
  view.item.classList.add("streaming");
  active = { view, sub: null, t0: null, stopping: false, stopRequested: false };
  setBusy(true);
  setTyping(!pending.text);
  attach(view, pending, null);
}

function newChat() {
  if (active) {
    if (active.sub) active.sub.close();
    if (state.pending) client.cancel(state.pending.streamId).catch(() => {});
    active = null;
  }
  state = { messages: [], pending: null, ttfts: state.ttfts, resumes: state.resumes };
  saveState();
  for (const node of [...ui.messages.children]) if (node !== ui.empty) node.remove();
  ui.empty.hidden = false;
  setTyping(false);
  setBusy(false);
  notify("");
  idleConnection();
  ui.input.focus();
}

// ---- input -------------------------------------------------------------------------------
function autosize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 200)}px`;
}

function submit() {
  const content = ui.input.value;
  if (!content.trim() || active) return;
  ui.input.value = "";
  autosize();
  ui.input.focus(); // keep typing while the reply streams; the send button is disabled now
  send(content);
}

ui.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  submit();
});
ui.input.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    submit();
  }
});
ui.input.addEventListener("input", autosize);
ui.stop.addEventListener("click", () => stop());
ui.newChat.addEventListener("click", newChat);
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape" && active) {
    ev.preventDefault();
    stop();
  }
});
for (const chip of document.querySelectorAll("[data-prompt]")) {
  chip.addEventListener("click", () => {
    ui.input.value = chip.dataset.prompt;
    submit();
  });
}

// ---- start -------------------------------------------------------------------------------
async function start() {
  if (window.matchMedia("(max-width: 900px)").matches) ui.details.open = false;
  renderHistory();
  refreshMetrics(state.messages.filter((m) => m.role === "assistant").at(-1));
  resumePending();
  if (!active) setConnection(navigator.onLine ? "connecting" : "offline");
  try {
    const body = await client.request("GET", "/api/v1/models");
    const ids = (body.data || []).map((m) => m.id);
    if (ids.length && !ids.includes(model)) model = ids[0];
    idleConnection();
  } catch (err) {
    if (err instanceof StreamHttpError) {
      // The server answered: we are online, the request itself failed.
      if (!active) idleConnection();
      notify(`Sign-in failed: ${err.message}`);
    } else if (!active) {
      setConnection("offline", "server unreachable");
    }
  }
  ui.model.textContent = model;
  ui.input.focus();
}

start();

// A small hook for tests and for debugging in the console (read-only view of the state).
window.rtaiChat = {
  get state() {
    return JSON.parse(JSON.stringify(state));
  },
  get busy() {
    return active !== null;
  },
  get connection() {
    return ui.conn.dataset.state;
  },
};
