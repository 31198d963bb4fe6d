// The page's wiring: builds the clients (transport/), the conversation (chat/) and the views
// (view/), and connects them. No logic of its own beyond choosing what runs.

import { devTokenSource } from "./auth.js";
import { PrivateChat } from "./chat/private-chat.js";
import { ConversationStore } from "./chat/store.js";
import { SseTransport } from "./chat/transports.js";
import { ApiClient, ApiError } from "./transport/http.js";
import { StreamClient } from "./transport/sse-client.js";
import { ChatView } from "./view/chat-view.js";
import { Composer } from "./view/composer.js";
import { MetricsView } from "./view/metrics-view.js";

const API_BASE = document.querySelector('meta[name="rtai-api-base"]')?.content || "";
const DEFAULT_MODEL = "local-model";

// The token source: swap devTokenSource for your identity provider (see js/auth.js).
const getToken = devTokenSource({ baseUrl: API_BASE });
const api = new ApiClient({ baseUrl: API_BASE, getToken });
const transports = { sse: new SseTransport(new StreamClient({ api })) };

const view = new ChatView();
const metrics = new MetricsView();
const store = new ConversationStore();
const transportSelect = document.getElementById("transport");
let model = DEFAULT_MODEL;

function idleConnection() {
  if (chat.busy) return;
  view.setConnection(navigator.onLine ? "connected" : "offline");
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

const composer = new Composer({
  onSubmit: (content) => chat.send(content),
  onStop: () => chat.stop(),
  isBusy: () => chat.busy,
});

window.addEventListener("online", idleConnection);
window.addEventListener("offline", idleConnection);
document.getElementById("new-chat").addEventListener("click", () => chat.newChat());

async function start() {
  chat.render();
  if (!chat.busy) view.setConnection(navigator.onLine ? "connecting" : "offline");
  try {
    const body = await api.request("GET", "/api/v1/models");
    const ids = (body.data || []).map((m) => m.id);
    if (ids.length && !ids.includes(model)) model = ids[0];
    idleConnection();
  } catch (err) {
    if (err instanceof ApiError) {
      // The server answered: we are online, the request itself failed.
      idleConnection();
      view.notify(`Sign-in failed: ${err.message}`);
    } else if (!chat.busy) {
      view.setConnection("offline", "server unreachable");
    }
  }
  view.setModel(model);
  composer.focus();
}

start();

// A small hook for tests and for debugging in the console (read-only view of the state).
window.rtaiChat = {
  get state() {
    return JSON.parse(JSON.stringify(store.state));
  },
  get busy() {
    return chat.busy;
  },
  get connection() {
    return view.connection;
  },
};
