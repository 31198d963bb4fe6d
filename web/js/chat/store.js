// The private conversation of this tab, kept in sessionStorage (per tab, survives reloads):
//
//   messages: [{role, content, streamId?, ttftMs?, serverTtftMs?, tps?, finish?, error?}]
//   pending:  the reply in flight, saved after every event so a reload resumes right after
//             it: {transport: "sse"|"ws", streamId, eventsUrl?, lastEventId, text, sentAt, ttftMs}
//   ttfts:    the last 20 page-measured TTFTs (the metrics chart)
//   resumes:  how many times a reply was resumed after an interruption

const STORE_KEY = "rtai.chat.v1";

function fresh() {
  return { messages: [], pending: null, ttfts: [], resumes: 0 };
}

export class ConversationStore {
  constructor(storage = globalThis.sessionStorage, key = STORE_KEY) {
    this.storage = storage;
    this.key = key;
    this.state = this._load();
  }

  _load() {
    try {
      const saved = JSON.parse(this.storage.getItem(this.key) || "null");
      if (saved && Array.isArray(saved.messages)) {
        return {
          messages: saved.messages,
          pending: saved.pending || null,
          ttfts: saved.ttfts || [],
          resumes: saved.resumes || 0,
        };
      }
    } catch {
      /* a corrupt entry starts a fresh conversation */
    }
    return fresh();
  }

  save() {
    try {
      this.storage.setItem(this.key, JSON.stringify(this.state));
    } catch {
      /* storage full or disabled: the page still works, only reload-resume is lost */
    }
  }

  /** A new conversation; the metrics history stays. */
  reset() {
    this.state = { ...fresh(), ttfts: this.state.ttfts, resumes: this.state.resumes };
    this.save();
  }

  addTtft(ms) {
    if (Number.isFinite(ms)) this.state.ttfts = [...this.state.ttfts, ms].slice(-20);
  }

  countResume() {
    this.state.resumes += 1;
    this.save();
  }

  /** The conversation as an OpenAI `messages` list (finished turns with text only). */
  requestMessages() {
    return this.state.messages
      .filter((m) => (m.role === "user" || m.role === "assistant") && m.content)
      .map((m) => ({ role: m.role, content: m.content }));
  }

  lastAssistant() {
    return this.state.messages.filter((m) => m.role === "assistant").at(-1);
  }
}
