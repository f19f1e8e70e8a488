// siolab live trace view: appends rows sent by the kernel in small batches.
// Every piece of wire text goes into the page through textContent / title, never innerHTML.

const EIO = ["open", "close", "ping", "pong", "message", "upgrade", "noop"];
const SIO = ["connect", "disconnect", "event", "ack", "connect_error", "binary_event", "binary_ack"];
const KINDS = [["packet", "any packet"], ["http", "HTTP"], ["ws", "WebSocket open/close"],
  ["fault", "fault (tap)"], ["error", "error"], ["log", "log"]];

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function option(value, label) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  return o;
}

// The record separator of polling bodies is invisible: show it as a symbol.
function visible(text) {
  return String(text).replace(/\x1e/g, "\\x1e");
}

function badge(cls, text, title) {
  const b = h("span", "siolab-badge " + cls, text);
  if (title) b.title = title;
  return b;
}

export default {
  render({ model, el }) {
    const root = h("div", "siolab-tv");
    el.appendChild(root);

    // ---------------------------------------------------------------- toolbar
    const bar = h("div", "siolab-tv-bar");
    const title = h("span", "siolab-tv-title", model.get("title") || "Live trace");
    const clientSel = h("select", "siolab-tv-select");
    clientSel.title = "show one client";
    const transportSel = h("select", "siolab-tv-select");
    transportSel.title = "show one transport";
    transportSel.append(option("", "all transports"), option("polling", "polling"), option("websocket", "websocket"));
    const typeSel = h("select", "siolab-tv-select");
    typeSel.title = "show one packet type";
    typeSel.append(option("", "all types"));
    const gE = document.createElement("optgroup");
    gE.label = "Engine.IO";
    EIO.forEach((n, i) => gE.append(option("eio:" + n, `${i} ${n}`)));
    const gS = document.createElement("optgroup");
    gS.label = "Socket.IO (in 4 message)";
    SIO.forEach((n, i) => gS.append(option("sio:" + n, `${i} ${n.toUpperCase()}`)));
    const gK = document.createElement("optgroup");
    gK.label = "Record kind";
    KINDS.forEach(([k, label]) => gK.append(option("kind:" + k, label)));
    typeSel.append(gE, gS, gK);
    const beatLabel = h("label", "siolab-tv-check");
    const beatBox = document.createElement("input");
    beatBox.type = "checkbox";
    beatLabel.append(beatBox, document.createTextNode(" hide heartbeats"));
    const pauseBtn = h("button", "siolab-tv-btn", "Pause");
    pauseBtn.type = "button";
    const clearBtn = h("button", "siolab-tv-btn", "Clear");
    clearBtn.type = "button";
    clearBtn.title = "empty this table (the trace keeps its records)";
    const status = h("span", "siolab-tv-status");
    const dropped = h("span", "siolab-tv-dropped");
    bar.append(title, clientSel, transportSel, typeSel, beatLabel, pauseBtn, clearBtn, status, dropped);

    // ---------------------------------------------------------------- table
    const scroller = h("div", "siolab-tv-scroll");
    const more = h("div", "siolab-tv-more");
    more.hidden = true;
    const table = h("table", "siolab-tv-table");
    const colgroup = document.createElement("colgroup");
    for (const c of ["time", "client", "dir", "transport", "raw", "meaning"]) {
      colgroup.append(h("col", "siolab-tv-col-" + c));
    }
    const thead = document.createElement("thead");
    const headRow = document.createElement("tr");
    for (const [c, label] of [["time", "time s"], ["client", "client"], ["dir", ""], ["transport", "transport"],
      ["raw", "raw packet (click a row for all of it)"], ["meaning", "meaning"]]) {
      headRow.append(h("th", "siolab-tv-" + c, label));
    }
    thead.append(headRow);
    const tbody = document.createElement("tbody");
    table.append(colgroup, thead, tbody);
    const empty = h("div", "siolab-tv-empty", "No records yet: packets appear here as they cross the tap.");
    scroller.append(more, table, empty);
    root.append(bar, scroller);

    // ---------------------------------------------------------------- state
    let col = {};
    const setColumns = () => {
      col = {};
      (model.get("_columns") || []).forEach((name, i) => { col[name] = i; });
    };
    setColumns();
    const shown = [];     // [{tr, detail}] oldest first; bounded by max_rows
    let head = 0;         // index of the oldest row still in the DOM
    let hidden = 0;       // rows removed from the top or never sent (older than the bound)
    const bySeq = new Map();
    let last = { total: 0, dropped: 0, limit: null };

    const get = (row, name) => row[col[name]];

    function meaningCell(row) {
      const td = h("td", "siolab-tv-meaning");
      const kind = get(row, "kind");
      const eio = get(row, "eio");
      const sio = get(row, "sio");
      if (kind === "packet" || (eio && kind === "fault")) {
        if (get(row, "binary")) {
          td.append(badge("siolab-b-binary", "BINARY", "a binary attachment"));
        } else {
          if (eio) {
            const n = EIO.indexOf(eio);
            td.append(badge("siolab-b-eio siolab-b-eio-" + eio, `${n} ${eio}`, "Engine.IO packet type"));
          }
          if (sio) {
            const n = SIO.indexOf(sio);
            td.append(badge("siolab-b-sio siolab-b-sio-" + sio, `${n} ${sio.toUpperCase()}`, "Socket.IO packet type"));
          }
        }
        const raw = get(row, "raw") || "";
        if (raw === "2probe" || raw === "3probe") td.append(badge("siolab-b-upgrade", "probe", "the upgrade check"));
        if (get(row, "beat")) td.append(badge("siolab-b-beat", "♥ heartbeat"));
      }
      if (kind !== "packet") {
        const label = kind === "http" ? "HTTP" : kind === "ws" ? "WS" : kind.toUpperCase();
        td.append(badge("siolab-b-kind siolab-b-kind-" + kind, label));
      }
      const nsp = get(row, "nsp");
      if (nsp && nsp !== "/") td.append(h("span", "siolab-tv-nsp", nsp));
      const event = get(row, "event");
      if (event !== null && event !== undefined) td.append(h("span", "siolab-tv-event", JSON.stringify(event)));
      const ack = get(row, "ack");
      if (ack !== null && ack !== undefined) td.append(h("span", "siolab-tv-ack", "ack " + ack));
      const note = get(row, "note");
      if (note && kind !== "packet") td.append(h("span", "siolab-tv-note", note.split("\n")[0]));
      const error = get(row, "error");
      if (error) {
        const e = h("span", "siolab-tv-error", "⚠ " + error.split("\n")[0]);
        e.title = error;
        td.append(e);
      }
      return td;
    }

    function makeRow(row) {
      const tr = h("tr", "siolab-tv-row");
      const kind = get(row, "kind");
      const eio = get(row, "eio");
      const raw = get(row, "raw");
      tr.classList.add("siolab-tv-kind-" + kind);
      if (get(row, "beat")) tr.classList.add("siolab-tv-beat");
      if (get(row, "error") || kind === "error" || kind === "fault") tr.classList.add("siolab-tv-bad");
      if (eio === "upgrade" || raw === "2probe" || raw === "3probe" || kind === "ws") tr.classList.add("siolab-tv-up");
      const t = get(row, "t");
      tr.append(h("td", "siolab-tv-time", typeof t === "number" ? t.toFixed(3) : ""));
      tr.append(h("td", "siolab-tv-client", get(row, "client") || ""));
      const dir = get(row, "dir");
      const arrow = h("td", "siolab-tv-dir siolab-tv-" + (dir || "none"), dir === "c2s" ? "→" : dir === "s2c" ? "←" : "·");
      arrow.title = dir === "c2s" ? "client → server" : dir === "s2c" ? "server → client" : "";
      tr.append(arrow);
      const tcell = h("td", "siolab-tv-transport");
      const transport = get(row, "transport");
      if (transport) tcell.append(h("span", "siolab-tv-tr-" + transport, transport));
      const http = get(row, "http");
      if (http) tcell.append(h("span", "siolab-tv-http", http));
      tr.append(tcell);
      const rcell = h("td", "siolab-tv-raw");
      if (raw !== null && raw !== undefined) {
        const code = h("code", null, visible(raw));
        const size = get(row, "size");
        code.title = visible(raw) + (size > raw.length ? `… (${size} characters: click for all)` : "");
        rcell.append(code);
      }
      tr.append(rcell);
      tr.append(meaningCell(row));
      tr.addEventListener("click", () => toggle(entry));
      const entry = { tr, detail: null, row };
      bySeq.set(get(row, "seq"), entry);
      return entry;
    }

    function toggle(entry) {
      if (entry.detail) {
        entry.detail.remove();
        entry.detail = null;
        entry.tr.classList.remove("siolab-tv-open");
        return;
      }
      const tr = h("tr", "siolab-tv-detail");
      const td = h("td");
      td.colSpan = 6;
      const pre = h("pre", "siolab-tv-full", visible(get(entry.row, "raw") ?? ""));
      const info = h("div", "siolab-tv-info", "asking the kernel for the whole record…");
      td.append(pre, info);
      tr.append(td);
      entry.tr.after(tr);
      entry.detail = tr;
      entry.tr.classList.add("siolab-tv-open");
      model.send({ type: "detail", seq: get(entry.row, "seq") });
    }

    function fillDetail(msg) {
      const entry = bySeq.get(msg.seq);
      if (!entry || !entry.detail) return;
      const td = entry.detail.firstChild;
      td.replaceChildren();
      if (msg.missing) {
        td.append(h("pre", "siolab-tv-full", visible(get(entry.row, "raw") ?? "")),
          h("div", "siolab-tv-info", "(the kernel no longer keeps this record's details)"));
        return;
      }
      const lines = [];
      lines.push(["meaning", msg.meaning]);
      if (msg.http) lines.push(["http", `${msg.http.method || ""} ${msg.http.path || ""} ${msg.http.status || ""}`]);
      if (msg.sid) lines.push(["engine.io sid", msg.sid]);
      if (msg.server) lines.push(["server", msg.server]);
      if (msg.attachments) lines.push(["attachments", String(msg.attachments)]);
      if (msg.error) lines.push(["error", msg.error]);
      td.append(h("pre", "siolab-tv-full", visible(msg.raw || "") + (msg.truncated ? "\n…(truncated)" : "")));
      const dl = h("dl", "siolab-tv-dl");
      for (const [k, v] of lines) dl.append(h("dt", null, k), h("dd", null, v));
      td.append(dl);
      if (msg.args) td.append(h("div", "siolab-tv-info", "args"), h("pre", "siolab-tv-args", msg.args));
      if (msg.note) td.append(h("div", "siolab-tv-info", "note"), h("pre", "siolab-tv-args", msg.note));
    }

    function trim() {
      const max = model.get("max_rows") || 500;
      while (shown.length - head > max) {
        const old = shown[head];
        shown[head] = undefined;
        head += 1;
        old.tr.remove();
        if (old.detail) old.detail.remove();
        bySeq.delete(get(old.row, "seq"));
        hidden += 1;
      }
      if (head > 1024 && head > shown.length / 2) {  // compact the array now and then
        shown.splice(0, head);
        head = 0;
      }
    }

    function updateStatus() {
      const rows = shown.length - head;
      more.hidden = hidden === 0;
      more.textContent = `▲ ${hidden.toLocaleString()} earlier row${hidden === 1 ? "" : "s"} not shown ` +
        `(this view keeps the newest ${model.get("max_rows")}; filter to narrow it down)`;
      empty.hidden = rows > 0;
      status.textContent = `${rows.toLocaleString()} shown · ${last.total.toLocaleString()} in trace ·`;
      const lost = last.dropped || 0;
      dropped.textContent = lost ? `⚠ ${lost.toLocaleString()} dropped (the trace keeps ${(last.limit || 0).toLocaleString()})`
        : "0 dropped";
      dropped.title = "records the trace forgot: it keeps at most " +
        (last.limit ? last.limit.toLocaleString() : "all") + " records";
      dropped.classList.toggle("siolab-tv-warn", (last.dropped || 0) > 0);
      pauseBtn.textContent = model.get("paused") ? "Resume" : "Pause";
      pauseBtn.classList.toggle("siolab-tv-on", !!model.get("paused"));
    }

    // follow the newest rows until the reader scrolls up
    let follow = true;
    scroller.addEventListener("scroll", () => {
      follow = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 24;
    });
    const toBottom = () => { if (follow) scroller.scrollTop = scroller.scrollHeight; };

    function append(rows) {
      const frag = document.createDocumentFragment();
      for (const row of rows) {
        const entry = makeRow(row);
        shown.push(entry);
        frag.append(entry.tr);
      }
      tbody.append(frag);
      trim();
      toBottom();
      requestAnimationFrame(toBottom);
    }

    function onMessage(msg) {
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "detail") return fillDetail(msg);
      if (msg.type === "reset") {
        tbody.replaceChildren();
        shown.length = 0;
        head = 0;
        hidden = 0;
        bySeq.clear();
      } else if (msg.type !== "rows") {
        return;
      }
      last = msg;
      hidden += msg.skipped || 0;
      append(msg.rows || []);
      updateStatus();
    }

    // ---------------------------------------------------------------- controls <-> model
    function syncClients() {
      const current = model.get("client");
      clientSel.replaceChildren(option("", "all clients"));
      const names = model.get("clients") || [];
      for (const name of names) clientSel.append(option(name, name));
      if (current && !names.includes(current)) clientSel.append(option(current, current));
      clientSel.value = current;
    }
    function syncControls() {
      syncClients();
      transportSel.value = model.get("transport");
      typeSel.value = model.get("packet_type");
      beatBox.checked = model.get("hide_heartbeats");
      title.textContent = model.get("title") || "Live trace";
      updateStatus();
    }
    const set = (name, value) => { model.set(name, value); model.save_changes(); };
    clientSel.addEventListener("change", () => set("client", clientSel.value));
    transportSel.addEventListener("change", () => set("transport", transportSel.value));
    typeSel.addEventListener("change", () => set("packet_type", typeSel.value));
    beatBox.addEventListener("change", () => set("hide_heartbeats", beatBox.checked));
    pauseBtn.addEventListener("click", () => { set("paused", !model.get("paused")); updateStatus(); });
    clearBtn.addEventListener("click", () => model.send({ type: "clear" }));

    const events = ["change:clients", "change:client", "change:transport", "change:packet_type",
      "change:hide_heartbeats", "change:paused", "change:title", "change:max_rows"];
    for (const e of events) model.on(e, syncControls);
    model.on("change:_columns", setColumns);
    model.on("msg:custom", onMessage);
    syncControls();
    model.send({ type: "hello" });  // the kernel answers with the newest rows (one bounded batch)

    return () => {
      for (const e of events) model.off(e, syncControls);
      model.off("change:_columns", setColumns);
      model.off("msg:custom", onMessage);
    };
  },
};
