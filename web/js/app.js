// The page's wiring: builds the clients (transport/), the private chat (chat/), rooms
// (rooms/) and the views (view/), and connects them. No logic of its own beyond choosing
// what runs: a `#room=<id>` in the URL means that room (over WebSocket), else the private
// chat over the transport picked in the `transport` select.

import { devTokenSource, tokenSubject } from "./auth.js";
import { PrivateChat } from "./chat/private-chat.js";
import { ConversationStore } from "./chat/store.js";
import { SseTransport, WsTransport } from "./chat/transports.js";
import { RoomSession } from "./rooms/room-session.js";
import { ApiClient, ApiError } from "./transport/http.js";
import { StreamClient } from "./transport/sse-client.js";
import { WsClient } from "./transport/ws-client.js";
import { ChatView } from "./view/chat-view.js";
import { Composer } from "./view/composer.js";
import { MetricsView } from "./view/metrics-view.js";
import { RoomView } from "./view/room-view.js";
import { VoiceView } from "./view/voice-view.js";
import { VoiceSession } from "./voice/voice-session.js";

const API_BASE = document.querySelector('meta[name="rtai-api-base"]')?.content || "";
const VOICE_MODEL = document.querySelector('meta[name="rtai-voice-model"]')?.content || "gpt-realtime";
// ?audio=raw: the microphone without echo cancellation, noise suppression and gain control.
const RAW_AUDIO = new URLSearchParams(location.search).get("audio") === "raw";
// ?audio_rate=device: the audio context at the device's rate (the worklets resample to and
// from 24 kHz), as on browsers that cannot run a 24 kHz context; for tests and diagnosis.
const DEVICE_RATE = new URLSearchParams(location.search).get("audio_rate") === "device";
const DEFAULT_MODEL = "local-model";
const TRANSPORT_KEY = "rtai.transport"; // sessionStorage: the tab's transport survives reloads

// The token source: swap devTokenSource for your identity provider (see js/auth.js).
const getToken = devTokenSource({ baseUrl: API_BASE });
const api = new ApiClient({ baseUrl: API_BASE, getToken });
const ws = new WsClient({ api });
const transports = { sse: new SseTransport(new StreamClient({ api })), ws: new WsTransport(ws) };

const view = new ChatView();
const metrics = new MetricsView();
const store = new ConversationStore();
const transportSelect = document.getElementById("transport");
let model = DEFAULT_MODEL;
let me = null;

const usesWs = () => transportSelect.value === "ws" || room.id !== null;
const busy = () => (room.id ? room.busy : chat.busy);

const WS_DETAIL = {
  offline: "reconnecting when the network is back",
  reconnecting: "rejoining and resuming",
  unavailable: "no WebSocket on this server",
};

/** The socket's state as the connection status (in a room it is the only connection). */
function showWsConnection() {
  let state = ws.state;
  if (!navigator.onLine) state = "offline";
  if (state === "idle" || state === "closed") state = "connecting";
  const shown = state === "unavailable" ? "offline" : state;
  view.setConnection(shown, WS_DETAIL[state] || "");
}

function idleConnection() {
  if (room.id) {
    showWsConnection();
    return;
  }
  if (chat.busy) return; // the reply's own subscription reports its connection
  if (!navigator.onLine) view.setConnection("offline");
  else if (usesWs() && ws.state !== "connected") showWsConnection();
  else view.setConnection("connected");
}

const chat = new PrivateChat({
  store,
  view,
  metrics,
  transports,
  transportName: () => transportSelect.value,
  model: () => model,
  setConnection: (kind, detail) => view.setConnection(kind, detail),
  idle: idleConnection,
  focusInput: (restore) => composer.focus(restore),
});

const roomView = new RoomView({
  onJoin: (id) => openRoom(id),
  onCreate: async () => {
    try {
      openRoom(await room.create());
    } catch (err) {
      view.notify(`Could not create a room: ${err.message}`);
    }
  },
  onLeave: () => openRoom(null),
  onAddMember: (user) => room.addMember(user),
});

const room = new RoomSession({
  api,
  ws,
  view,
  roomView,
  store,
  metrics,
  me: () => me,
  model: () => model,
  focusInput: (restore) => composer.focus(restore),
});

const composer = new Composer({
  onSubmit: (content) => (room.id ? room.send(content) : chat.send(content)),
  onStop: () => (room.id ? room.stop() : chat.stop()),
  isBusy: busy,
  onInput: () => room.userTyping(),
  onBlur: () => room.userStoppedTyping(),
});

// ---- voice ---------------------------------------------------------------------------------
const voiceView = new VoiceView({
  chatView: view,
  onToggle: async (on) => {
    voiceView.setOn(on);
    if (on) await voice.start();
    else await voice.stop();
    voiceView.setOn(voice.active);
  },
});
const voice = new VoiceSession({
  api,
  model: () => VOICE_MODEL,
  raw: RAW_AUDIO,
  deviceRate: DEVICE_RATE,
  ui: {
    setState: (state) => voiceView.setState(state),
    setLatency: (ms) => voiceView.setLatency(ms),
    setConnection: (state) => voiceView.setConnection(state),
    notify: (text) => view.notify(text),
    userTurn: () => voiceView.userTurn(),
    assistantTurn: () => voiceView.assistantTurn(),
  },
});

// ---- which conversation: a room (#room=<id>) or the private chat ----------------------------
function roomFromHash() {
  const match = /(?:^#|&)room=([^&]+)/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

/** Put the room in the URL (a shareable link); the hashchange handler shows it. */
function openRoom(id) {
  const hash = id ? `#room=${encodeURIComponent(id)}` : "";
  if (location.hash === hash || (!id && !location.hash)) {
    showConversation();
    return;
  }
  if (id) location.hash = hash;
  else history.pushState(null, "", location.pathname + location.search);
  showConversation();
}

function showConversation() {
  const id = roomFromHash();
  if (id) {
    if (room.id === id) return;
    chat.detach(); // a private reply in flight keeps running; it resumes when we come back
    setTransport("ws");
    room.join(id);
  } else if (room.id) {
    room.leave();
    chat.render();
  }
  idleConnection();
}

function setTransport(name) {
  transportSelect.value = name;
  try {
    sessionStorage.setItem(TRANSPORT_KEY, name);
  } catch {
    /* storage disabled: the choice lasts until the reload */
  }
  if (name === "ws") ws.connect().catch(() => {});
}

window.addEventListener("hashchange", showConversation);
transportSelect.addEventListener("change", () => {
  setTransport(transportSelect.value);
  if (transportSelect.value === "sse" && room.id) openRoom(null);
  idleConnection();
});
ws.on("connection", (state) => {
  if (state === "unavailable") view.notify("The WebSocket transport is not available on this server.");
  if (state === "connected" && room.id) view.notify("");
  idleConnection();
});
window.addEventListener("online", idleConnection);
window.addEventListener("offline", idleConnection);
document.getElementById("new-chat").addEventListener("click", () => {
  if (room.id) openRoom(null);
  else chat.newChat();
});

async function start() {
  const saved = (() => {
    try {
      return sessionStorage.getItem(TRANSPORT_KEY);
    } catch {
      return null;
    }
  })();
  if (saved === "ws" || saved === "sse") transportSelect.value = saved;
  if (!roomFromHash()) chat.render();
  if (!busy()) view.setConnection(navigator.onLine ? "connecting" : "offline");
  let reachable = true;
  try {
    me = tokenSubject(await getToken());
    roomView.setMe(me);
    const body = await api.request("GET", "/api/v1/models");
    const ids = (body.data || []).map((m) => m.id);
    if (ids.length && !ids.includes(model)) model = ids[0];
  } catch (err) {
    if (err instanceof ApiError) {
      view.notify(`Sign-in failed: ${err.message}`); // the server answered: we are online
    } else {
      reachable = false;
      if (!busy()) view.setConnection("offline", "server unreachable");
    }
  }
  view.setModel(model);
  if (roomFromHash()) showConversation();
  else if (transportSelect.value === "ws") ws.connect().catch(() => {});
  if (reachable) idleConnection();
  composer.focus();
}

start();

// A small hook for tests and for debugging in the console (read-only views of the state).
window.rtaiChat = {
  get state() {
    return JSON.parse(JSON.stringify(store.state));
  },
  get busy() {
    return busy();
  },
  get connection() {
    return view.connection;
  },
  get me() {
    return me;
  },
  get room() {
    return room.id ? { id: room.id, members: [...room.members].sort(), busy: room.busy } : null;
  },
  get ws() {
    return ws.state;
  },
  get voice() {
    const c = voice.client;
    return {
      state: voice.state,
      latencyMs: voice.lastLatencyMs,
      sessionId: c ? c.sessionId : null,
      lastEventId: c ? c.lastEventId : null,
      resumes: c ? c.resumes : 0,
      sampleRate: voice.audio ? voice.audio.sampleRate : 0,
    };
  },
};
