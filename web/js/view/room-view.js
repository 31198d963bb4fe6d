// The room bar: the room id field, create / join / leave, the shareable link, members present,
// who is typing, and adding a member. DOM only; it reports intents through callbacks.

const $ = (id) => document.getElementById(id);

export class RoomView {
  /**
   * @param {object} o
   * @param {(id: string) => void} o.onJoin
   * @param {() => void} o.onCreate
   * @param {() => void} o.onLeave
   * @param {(user: string) => void} o.onAddMember
   */
  constructor({ onJoin, onCreate, onLeave, onAddMember }) {
    this.bar = $("room-bar");
    this.field = $("room");
    this.joinForm = $("room-join-form");
    this.create = $("room-create");
    this.leave = $("room-leave");
    this.link = $("room-link");
    this.me = $("room-me");
    this.details = $("room-details");
    this.members = $("room-members");
    this.typing = $("room-typing");
    this.addForm = $("room-add-form");
    this.addInput = $("room-add-member");
    this.addStatus = $("room-add-status");
    this.joinForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const id = this.field.value.trim();
      if (id) onJoin(id);
    });
    this.create.addEventListener("click", () => onCreate());
    this.leave.addEventListener("click", () => onLeave());
    this.addForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const user = this.addInput.value.trim();
      if (user) onAddMember(user);
    });
  }

  setMe(user) {
    this.me.textContent = user ? `you: ${user}` : "";
  }

  /** In a room (its id and shareable link) or not (null). */
  showRoom(id) {
    this.bar.classList.toggle("in-room", Boolean(id));
    this.details.hidden = !id;
    this.leave.hidden = !id;
    this.field.value = id || "";
    if (id) {
      const url = new URL(location.href);
      url.hash = `room=${encodeURIComponent(id)}`;
      this.link.href = url.toString();
      this.link.textContent = "share link";
      this.link.title = url.toString();
    }
    this.setMembers([]);
    this.setTyping([]);
    this.addStatus.textContent = "";
  }

  /** One element per member present, each with data-user. */
  setMembers(users) {
    const items = users.map((user) => {
      const li = document.createElement("li");
      li.dataset.user = user;
      li.textContent = user;
      li.title = user;
      return li;
    });
    this.members.replaceChildren(...items);
  }

  /** The names of the members typing; empty text when none. */
  setTyping(users) {
    if (!users.length) {
      this.typing.textContent = "";
      return;
    }
    const verb = users.length === 1 ? "is" : "are";
    this.typing.textContent = `${users.join(", ")} ${verb} typing…`;
  }

  addMemberDone(user, error) {
    this.addStatus.textContent = error ? `Could not add ${user}: ${error}` : `${user} added`;
    this.addStatus.classList.toggle("bad", Boolean(error));
    if (!error) this.addInput.value = "";
  }

  setBusy(busy) {
    this.create.disabled = busy;
  }
}
