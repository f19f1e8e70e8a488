// siolab chat: one panel per user. Send asks the kernel to emit through that user's real client;
// the lists come back from the server's broadcasts. Wire text is shown with textContent only.

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// JSON as python-socketio writes it: json.dumps(..., separators=(",", ":")), ASCII only.
function pyJson(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function wireLine(cls, label) {
  const line = h("div", "siolab-chat-wire " + cls);
  const tag = h("span", "siolab-chat-wire-label", label);
  const code = h("code", "siolab-chat-wire-raw");
  line.append(tag, code);
  return { line, code };
}

export default {
  render({ model, el }) {
    const root = h("div", "siolab-chat");
    el.appendChild(root);
    const panels = new Map();

    function build(user) {
      const panel = h("div", "siolab-chat-panel");
      panel.dataset.user = user;
      const head = h("div", "siolab-chat-head");
      const name = h("span", "siolab-chat-name", user);
      const dot = h("span", "siolab-chat-dot");
      const state = h("span", "siolab-chat-state");
      head.append(name, dot, state);
      let roomSel = null;
      const rooms = model.get("rooms") || [];
      if (rooms.length) {
        roomSel = h("select", "siolab-chat-room");
        roomSel.title = "room (emits join)";
        for (const r of rooms) {
          const o = document.createElement("option");
          o.value = r;
          o.textContent = "# " + r;
          roomSel.append(o);
        }
        roomSel.addEventListener("change", () => model.send({ type: "room", user, room: roomSel.value }));
        head.append(roomSel);
      }
      const list = h("ul", "siolab-chat-list");
      const more = h("li", "siolab-chat-more");
      const form = h("form", "siolab-chat-form");
      const input = document.createElement("input");
      input.type = "text";
      input.className = "siolab-chat-input";
      input.placeholder = `message as ${user}`;
      input.autocomplete = "off";
      const button = h("button", "siolab-chat-send", "Send");
      button.type = "submit";
      form.append(input, button);
      const preview = wireLine("siolab-chat-preview", "⌨ will emit");
      const sent = wireLine("siolab-chat-sent", "↑ sent");
      const got = wireLine("siolab-chat-got", "↓ got");
      panel.append(head, list, form, preview.line, sent.line, got.line);
      root.append(panel);

      function showPreview() {
        const text = input.value;
        preview.line.hidden = !text;
        preview.code.textContent = text ? `42["message",${pyJson({ message: text, user })}]` : "";
        preview.code.title = preview.code.textContent;
      }
      input.addEventListener("input", showPreview);
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const text = input.value;
        if (!text.trim()) return;
        model.send({ type: "send", user, text });
        input.value = "";
        showPreview();
      });
      showPreview();
      const p = { panel, state, dot, list, more, sent, got, roomSel, count: -1 };
      panels.set(user, p);
      return p;
    }

    function update() {
      const data = model.get("panels") || {};
      for (const user of model.get("users") || []) {
        const p = panels.get(user) || build(user);
        const d = data[user] || {};
        const st = d.state || "not connected";
        p.state.textContent = st + (d.transport ? ` · ${d.transport}` : "");
        p.dot.className = "siolab-chat-dot " + (st === "connected" ? "siolab-chat-up" :
          st === "connecting" ? "siolab-chat-wait" : "siolab-chat-down");
        p.panel.classList.toggle("siolab-chat-offline", st !== "connected");
        if (p.roomSel && d.room && document.activeElement !== p.roomSel) p.roomSel.value = d.room;
        const messages = d.messages || [];
        const atBottom = p.list.scrollHeight - p.list.scrollTop - p.list.clientHeight < 24;
        const items = [];
        if (d.hidden) {
          p.more.textContent = `${d.hidden} earlier messages`;
          items.push(p.more);
        }
        for (const m of messages) {
          const li = h("li", "siolab-chat-msg" + (m.user === user ? " siolab-chat-own" : ""));
          li.append(h("span", "siolab-chat-who", m.user || "?"), h("span", "siolab-chat-text", m.message));
          items.push(li);
        }
        if (!messages.length) items.push(h("li", "siolab-chat-empty", "no messages yet"));
        p.list.replaceChildren(...items);
        if (atBottom || messages.length !== p.count) p.list.scrollTop = p.list.scrollHeight;
        p.count = messages.length;
        for (const [w, raw] of [[p.sent, d.sent], [p.got, d.received]]) {
          w.line.hidden = !raw;
          w.code.textContent = raw ? raw.replace(/\x1e/g, "\\x1e") : "";
          w.code.title = w.code.textContent;
        }
      }
    }
    model.on("change:panels", update);
    update();
    return () => model.off("change:panels", update);
  },
};
