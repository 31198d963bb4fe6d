// The message box: Enter sends, Shift+Enter adds a line, Escape stops the reply, the prompt
// chips of the empty state. It reports intents; it does not know where messages go.

const $ = (id) => document.getElementById(id);

export class Composer {
  /**
   * @param {object} o
   * @param {(content: string) => boolean} o.onSubmit  returns false to keep the text (busy)
   * @param {() => void} o.onStop
   * @param {() => boolean} o.isBusy
   * @param {() => void} [o.onInput]  the user typed (room typing notices)
   * @param {() => void} [o.onBlur]
   */
  constructor({ onSubmit, onStop, isBusy, onInput, onBlur }) {
    this.form = $("composer");
    this.input = $("composer-input");
    this.stopButton = $("stop");
    const submit = () => {
      const content = this.input.value;
      if (!content.trim() || isBusy()) return;
      this.input.value = "";
      this.autosize();
      this.input.focus(); // keep typing while the reply streams; the send button is disabled now
      onSubmit(content);
    };
    this.submit = submit;
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      submit();
    });
    this.input.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        submit();
      }
    });
    this.input.addEventListener("input", () => {
      this.autosize();
      if (onInput && this.input.value) onInput();
    });
    if (onBlur) this.input.addEventListener("blur", onBlur);
    this.stopButton.addEventListener("click", () => onStop());
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && isBusy()) {
        ev.preventDefault();
        onStop();
      }
    });
    for (const chip of document.querySelectorAll("[data-prompt]")) {
      chip.addEventListener("click", () => {
        this.input.value = chip.dataset.prompt;
        submit();
      });
    }
  }

  autosize() {
    this.input.style.height = "auto";
    this.input.style.height = `${Math.min(this.input.scrollHeight, 200)}px`;
  }

  /** Focus the box; `restore` puts a message that could not be sent back into it. */
  focus(restore) {
    if (typeof restore === "string") {
      this.input.value = restore;
      this.autosize();
    }
    this.input.focus();
  }
}
