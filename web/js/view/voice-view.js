// The voice controls and their log: the `mic` button, `voice-state`, `voice-latency`, and the
// transcripts of both sides as bubbles in the message log (through ChatView).

const $ = (id) => document.getElementById(id);

export class VoiceView {
  /**
   * @param {object} o
   * @param {import("./chat-view.js").ChatView} o.chatView
   * @param {(on: boolean) => void} o.onToggle
   */
  constructor({ chatView, onToggle }) {
    this.chatView = chatView;
    this.mic = $("mic");
    this.state = $("voice-state");
    this.latency = $("voice-latency");
    this.conn = $("voice-conn");
    this.mic.disabled = false;
    this.mic.title = "Voice: talk with the assistant";
    this.mic.setAttribute("aria-label", "Voice on/off");
    this.mic.addEventListener("click", () => onToggle(this.mic.getAttribute("aria-pressed") !== "true"));
  }

  setOn(on) {
    this.mic.setAttribute("aria-pressed", String(on));
    this.mic.classList.toggle("on", on);
  }

  setState(state) {
    this.state.textContent = state;
    this.state.dataset.state = state;
  }

  setLatency(ms) {
    this.latency.textContent = Number.isFinite(ms) ? `${Math.round(ms)} ms` : "";
    this.latency.title = "Last voice turn: end of your speech (speech_stopped) to the first reply audio played";
  }

  setConnection(state) {
    this.conn.textContent = state === "connected" || state === "closed" || state === "connecting" ? "" : state;
  }

  /** The user's spoken turn: a bubble that fills with its transcript. */
  userTurn() {
    const node = this.chatView.addUser("…");
    node.classList.add("voice");
    const bubble = node.querySelector("[data-testid=user-message]");
    let text = "";
    return {
      append(t) {
        text += t;
        bubble.textContent = text;
      },
      setText(t) {
        text = t;
        bubble.textContent = t || "(voice)";
      },
    };
  }

  /** The assistant's spoken reply: its transcript streams into an assistant bubble. */
  assistantTurn() {
    const reply = this.chatView.addAssistant();
    reply.item.classList.add("voice");
    reply.setStreaming(true);
    let text = "";
    let interrupted = false;
    return {
      responseId: null,
      append(t) {
        text += t;
        reply.setText(text);
      },
      setText(t) {
        text = t;
        reply.setText(text, { now: true });
      },
      end({ interrupted: cut = false, status } = {}) {
        interrupted = interrupted || cut;
        const finish = interrupted ? "interrupted" : status === "cancelled" ? "cancelled" : undefined;
        reply.end({ finish });
      },
    };
  }
}
