// siolab browser client: the official socket.io-client, running in this page, connected to the lab's tap
// through jupyter-server-proxy. The connection belongs to the model (initialize: once per page); views only
// show its state. Wire text is shown with textContent only.

// one import per page and version, shared by every widget (anywidget may load this file more than once)
const LIBRARIES = (globalThis.__siolabSocketIO ??= new Map());
const CLIENTS = new Map();   // "<tap port>/<name>" -> the model's client, for its views (emit, sent packets)
const KEEP = 100;            // received events kept (as in browser_client.py)

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

// anywidget loads this file as a blob module, so it cannot import a file of the package by a relative path:
// the kernel sends the bundle's text, and it is imported from a Blob URL of its own.
function library(model) {
  const version = model.get("library_version");
  if (!LIBRARIES.has(version)) {
    const url = URL.createObjectURL(new Blob([model.get("library")], { type: "text/javascript" }));
    LIBRARIES.set(version, import(/* webpackIgnore: true */ url).finally(() => URL.revokeObjectURL(url)));
  }
  return LIBRARIES.get(version);
}

// JupyterLab, Notebook 7 and Binder put the server's base URL (e.g. "/" or "/user/<name>/...") in this element;
// document.baseURI is the page's URL, not the server's.
function jupyterBaseUrl() {
  const el = document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    const base = JSON.parse(el.textContent || "{}").baseUrl;
    if (typeof base !== "string" || !base.startsWith("/")) return null;
    return base.endsWith("/") ? base : base + "/";
  } catch (e) {
    return null;
  }
}

// what the kernel can hold: binary attachments (ArrayBuffer, Blob, typed arrays) become a short description
function plain(value, depth = 0) {
  if (value instanceof ArrayBuffer) return `<${value.byteLength} bytes>`;
  if (ArrayBuffer.isView(value)) return `<${value.byteLength} bytes>`;
  if (typeof Blob !== "undefined" && value instanceof Blob) return `<${value.size} bytes>`;
  if (depth > 20 || value === null || typeof value !== "object") return value === undefined ? null : value;
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v, depth + 1)]));
}

function short(value, limit = 160) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (e) {
    text = String(value);
  }
  if (text === undefined) text = String(value);
  return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
}

// why a connection attempt failed, from what jupyter-server-proxy or the lab answered
function explainFailure(err, port) {
  const status = typeof err?.description === "number" ? err.description : null;
  let body = typeof err?.context?.responseText === "string" ? err.context.responseText.trim() : "";
  try {
    if (body.startsWith('"')) body = JSON.parse(body); // python-engineio answers with a JSON string
  } catch (e) {
    // not JSON: shown as it came
  }
  const what = (err?.message || "connection failed") + (status ? ` (HTTP ${status})` : "");
  if (status === 404) {
    return `${what}: the Jupyter server has no /proxy/ route. jupyter-server-proxy must be installed where the ` +
      `Jupyter server runs (pip install jupyter-server-proxy), and the server restarted.`;
  }
  if (status === 403 || status === 401) {
    return `${what}: the Jupyter server refused the proxied request (not logged in, or the host is not allowed).`;
  }
  if (status === 400 && /origin/i.test(body)) {
    return `${what}: the lab's server does not accept this page's origin (${location.origin}): CORS. ` +
      `See the trace: the request carried Origin and the server answered 400 "${body}".`;
  }
  if (status && status >= 500) {
    return `${what}: the Jupyter server could not reach the lab's tap on port ${port}. Is the lab still open ` +
      `(re-run the cell with siolab.start)? Does the kernel run on the same machine as the Jupyter server?`;
  }
  return what + (status === 400 && body ? `: ${body}` : "");
}

export default {
  initialize({ model }) {
    const state = { socket: null, stopped: false, closed: false };
    const key = `${model.get("port")}/${model.get("name")}`;
    // The page's view of its client: kept here for this page's panels and sent to the kernel as custom
    // messages. Not as synced traitlets: ipywidgets sends a model's next state update only after the kernel
    // reports "idle" for the previous one, and ipykernel 7 handles comm messages during a running cell
    // without reporting busy/idle, so every update after the first would wait forever.
    const client = {
      state: { status: "starting", reason: "", sid: null, eio_sid: null, transport: null, upgraded: false,
               page: {}, received: [] },
      changed: new Set(),  // views' update functions
      sent: new Set(),     // views' "sent" lines
      emit: null,
    };
    CLIENTS.set(key, client);
    // Every report carries the whole state and a sequence number, and the last ones are sent again half a
    // second later: ipykernel 7 handles widget messages that arrive while a cell runs at once, but one that
    // arrives between two cells waits for the next cell to end, so a later copy may overtake it. The kernel
    // keeps the newest state and each received event once.
    const run = Math.random().toString(36).slice(2);  // this page's client (a reloaded page starts a new one)
    let seq = 0;
    let count = 0;      // events received so far
    const recent = [];  // the last few received events, with their numbers, for the copy
    let resendTimer = null;
    const send = (message) => {
      if (state.closed) return;
      try {
        model.send(message);
      } catch (e) {
        // no kernel to tell (a restored panel): the panel shows the state anyway
      }
    };
    const sendState = () => {
      const { received, ...whole } = client.state;
      send({ type: "state", run, seq: ++seq, state: whole });
    };
    const sendAgainSoon = () => {
      clearTimeout(resendTimer);
      resendTimer = setTimeout(() => {
        sendState();
        for (const [n, item] of recent) send({ type: "received", run, n, item });
      }, 500);
    };
    const report = (patch) => {
      Object.assign(client.state, patch);
      for (const listener of client.changed) listener();
      sendState();
      sendAgainSoon();
    };

    function stop(reason) {
      if (state.stopped) return;
      const before = client.state.reason;
      state.stopped = true;
      if (state.socket) {
        state.socket.io.reconnection(false);
        state.socket.disconnect();
      }
      report({ status: "stopped", reason: reason + (before ? `. Before that: ${before}` : "") });
    }

    async function start() {
      const name = model.get("name");
      const port = model.get("port");
      const base = jupyterBaseUrl();
      if (model.get("library_error")) {
        report({ status: "cannot connect", reason: model.get("library_error") });
        return;
      }
      if (!model.get("library")) {  // a panel restored from a saved notebook: its kernel-side client is gone
        report({ status: "not running", reason: "This panel was saved with the notebook. Run its cell to start " +
          "the client." });
        return;
      }
      if (base === null) {
        report({
          status: "cannot connect",
          reason: "This page was not served by a Jupyter server (it has no jupyter-config-data), so there is no " +
            "jupyter-server-proxy path from it to the lab's tap. Open the notebook in JupyterLab or Notebook 7 " +
            "(locally: make lab) or on Binder.",
        });
        return;
      }
      let io;
      try {
        ({ io } = await library(model));
      } catch (e) {
        report({ status: "cannot connect", reason: `could not load socket.io-client: ${e}` });
        return;
      }
      if (state.stopped) return;
      // a path, not a URL: io("/proxy/…") would read the path as a namespace
      const path = `${base}proxy/${port}/socket.io/`;
      report({ page: { base_url: base, path, origin: location.origin }, status: "connecting" });
      const socket = io({ ...model.get("options"), path, query: { siolab_client: name } });
      state.socket = socket;
      const engineState = () => {
        const engine = socket.io.engine;
        return { eio_sid: engine?.id ?? null, transport: engine?.transport?.name ?? null };
      };
      socket.io.on("open", () => {
        report({ ...engineState(), upgraded: false });
        socket.io.engine.on("upgrade", (transport) => report({ transport: transport.name, upgraded: true }));
      });
      socket.io.on("reconnect_attempt", (n) => report({ status: `reconnecting (attempt ${n})` }));
      socket.on("connect", () => report({ status: "connected", reason: "", sid: socket.id, ...engineState() }));
      // why the last transport failed (e.g. a POST refused with 400), for the disconnect that follows
      let failure = "";
      socket.io.on("error", (err) => {
        failure = explainFailure(err, port);
      });
      socket.on("disconnect", (why) => {
        if (state.stopped) return;
        report({ status: "disconnected", reason: why + (failure ? ` (${failure})` : ""), sid: null, transport: null });
        failure = "";
      });
      socket.on("connect_error", (err) => {
        if (!state.stopped) report({ status: "connect error", reason: explainFailure(err, port) });
      });
      socket.onAny((event, ...args) => {
        const item = { event: String(event), args: plain(args) };
        const received = client.state.received;
        received.push(item);
        if (received.length > KEEP) received.splice(0, received.length - KEEP);
        for (const listener of client.changed) listener();
        recent.push([++count, item]);
        if (recent.length > 10) recent.shift();
        send({ type: "received", run, n: count, item });
        sendAgainSoon();
      });
    }

    client.reconnect = () => {
      if (!state.socket || state.stopped) return;
      state.socket.disconnect();  // 41, then a new session: the whole sequence again, for DevTools
      state.socket.connect();
    };
    client.emit = (event, args) => {
      if (!state.socket || state.stopped) return;
      state.socket.emit(event, ...args);
      for (const listener of client.sent) listener(event, args);
    };

    function onMessage(msg) {
      if (!msg || typeof msg !== "object") return;
      const socket = state.socket;
      if (msg.type === "stop") stop(String(msg.reason || "stopped by the kernel"));
      else if (!socket || state.stopped) return;
      else if (msg.type === "emit" && typeof msg.event === "string") {
        client.emit(msg.event, Array.isArray(msg.args) ? msg.args : []);
      } else if (msg.type === "disconnect") socket.disconnect();
      else if (msg.type === "connect") socket.connect();
      else if (msg.type === "reconnect") client.reconnect();
    }
    model.on("msg:custom", onMessage);
    start();
    return () => {
      model.off("msg:custom", onMessage);
      if (CLIENTS.get(key) === client) CLIENTS.delete(key);
      state.stopped = state.closed = true;  // the model is gone: nothing more to tell the kernel
      clearTimeout(resendTimer);
      if (state.socket) {
        state.socket.io.reconnection(false);
        state.socket.disconnect();
      }
    };
  },

  render({ model, el }) {
    const key = `${model.get("port")}/${model.get("name")}`;
    const client = CLIENTS.get(key);
    const root = h("div", "siolab-root siolab-bc");
    el.appendChild(root);
    const head = h("div", "siolab-bc-head");
    const name = h("span", "siolab-bc-name", `${model.get("name")} (your browser)`);
    const dot = h("span", "siolab-bc-dot");
    const status = h("span", "siolab-bc-status");
    const lib = h("span", "siolab-bc-lib", `socket.io-client ${model.get("library_version")}`);
    const again = h("button", "siolab-bc-reconnect", "↻ Reconnect");
    again.type = "button";
    again.title = "disconnect, then connect again: a new handshake and upgrade (open DevTools' Network tab first)";
    again.addEventListener("click", () => client?.reconnect());
    head.append(name, dot, status, lib, again);
    const reason = h("div", "siolab-bc-reason");
    const facts = h("div", "siolab-bc-facts");
    const form = h("form", "siolab-bc-form");
    const event = document.createElement("input");
    event.type = "text";
    event.className = "siolab-bc-event";
    event.value = "message";
    event.placeholder = "event";
    event.title = "event name";
    const data = document.createElement("input");
    data.type = "text";
    data.className = "siolab-bc-data";
    data.placeholder = 'data: JSON ({"message": "hi"}) or text';
    data.autocomplete = "off";
    const button = h("button", "siolab-bc-emit", "Emit");
    button.type = "submit";
    form.append(event, data, button);
    const preview = h("div", "siolab-bc-preview");
    const sent = h("div", "siolab-bc-sent");
    const listHead = h("div", "siolab-bc-listhead", "↓ received");
    const list = h("ul", "siolab-bc-list");
    root.append(head, reason, facts, form, preview, sent, listHead, list);

    function args() {
      const text = data.value;
      if (!text.trim()) return [];
      try {
        return [JSON.parse(text)];
      } catch (e) {
        return [text];
      }
    }
    // what socket.io-client writes: 4 (message) 2 (event), then the JSON array (default namespace, no ack)
    function packet(ev, a) {
      return "42" + JSON.stringify([ev, ...a]);
    }
    function showPreview() {
      preview.textContent = event.value ? `will emit: ${packet(event.value, args())}` : "";
    }
    event.addEventListener("input", showPreview);
    data.addEventListener("input", showPreview);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (event.value) client?.emit(event.value, args());  // the same path as the kernel's browser.emit()
    });
    const onSent = (ev, a) => {
      sent.textContent = `↑ sent ${packet(ev, a)}`;
    };

    function fact(label, value) {
      const row = h("div", "siolab-bc-fact");
      row.append(h("span", "siolab-bc-label", label), h("code", "siolab-bc-value", value ?? "–"));
      return row;
    }
    function update() {
      const s = client ? client.state : { status: "not running in this page", received: [] };
      const st = s.status || "";
      status.textContent = st;
      dot.className = "siolab-bc-dot " + (st === "connected" ? "siolab-bc-up" :
        /starting|connecting|reconnecting/.test(st) ? "siolab-bc-wait" : "siolab-bc-down");
      root.classList.toggle("siolab-bc-offline", st !== "connected");
      root.dataset.status = st;
      again.disabled = !client || /stopped|cannot connect|not running/.test(st);
      reason.textContent = s.reason || "";
      reason.hidden = !s.reason;
      const transport = s.transport;
      facts.replaceChildren(
        fact("transport", transport ? transport + (s.upgraded ? " (upgraded from polling)" :
          transport === "polling" ? " (not upgraded yet)" : "") : null),
        fact("socket.id", s.sid), fact("engine id", s.eio_sid), fact("path", (s.page || {}).path));
      const rows = s.received.slice(-50).map((item) => {
        const li = h("li", "siolab-bc-item");
        li.append(h("span", "siolab-bc-ev", item.event), h("code", "siolab-bc-args", short(item.args)));
        li.title = short(item.args, 2000);
        return li;
      });
      if (!rows.length) rows.push(h("li", "siolab-bc-empty", "no events yet"));
      const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
      list.replaceChildren(...rows);
      if (atBottom) list.scrollTop = list.scrollHeight;
    }
    client?.changed.add(update);
    client?.sent.add(onSent);
    update();
    showPreview();
    return () => {
      client?.changed.delete(update);
      client?.sent.delete(onSent);
    };
  },
};
