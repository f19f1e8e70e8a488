// siolab packet explainer: the kernel explains (siolab.explain), this paints each field's span.
// Everything typed is shown with textContent only.

const EXAMPLES = ["2", "3probe", "40", '42["message",{"message":"hi"}]', '421["chat","hi"]', "431[true]",
  '42/admin,7["stats"]', '451-["file",{"_placeholder":true,"num":0}]', '44{"message":"Not authorized"}',
  '2\\x1e42["a"]'];
const FIELD_CLASS = {
  "engine.io type": "eio", "socket.io type": "sio", "attachments": "att", "namespace": "nsp", "ack id": "ack",
  "data": "data", "binary": "bin", "payload": "pay", "v3 framing": "err",
};

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}
const visible = (s) => String(s).replace(/\x1e/g, "\\x1e");

function block(ex, depth) {
  const box = h("div", "siolab-ex-block");
  const raw = ex.raw || "";
  const painted = h("div", "siolab-ex-raw");
  const spans = ex.fields
    .map((f, i) => ({ ...f, i }))
    .filter((f) => f.start !== null && f.start !== undefined && f.end > f.start)
    .sort((a, b) => a.start - b.start);
  const marks = new Map();
  let pos = 0;
  for (const f of spans) {
    if (f.start < pos) continue;  // overlapping spans: keep the first
    if (f.start > pos) painted.append(h("span", "siolab-ex-plain", visible(raw.slice(pos, f.start))));
    const s = h("span", "siolab-ex-span siolab-ex-f-" + (FIELD_CLASS[f.name] || "data"), visible(raw.slice(f.start, f.end)));
    s.title = f.name;
    marks.set(f.i, s);
    painted.append(s);
    pos = f.end;
  }
  if (pos < raw.length) painted.append(h("span", "siolab-ex-plain", visible(raw.slice(pos))));
  if (!raw.length) painted.append(h("span", "siolab-ex-hint", depth ? "(empty)" : "type a packet above"));
  box.append(painted);

  const list = h("div", "siolab-ex-fields");
  ex.fields.forEach((f, i) => {
    const implicit = f.start === null || f.start === undefined;
    const chip = h("span", "siolab-ex-chip siolab-ex-f-" + (FIELD_CLASS[f.name] || "data") +
      (implicit ? " siolab-ex-implicit" : ""), implicit && !f.text ? "(implicit)" : visible(f.text));
    chip.title = implicit ? "not written on the wire" : visible(f.text);
    const name = h("span", "siolab-ex-name", f.name);
    const meaning = h("span", "siolab-ex-meaning", f.meaning);
    const row = h("div", "siolab-ex-field");
    row.append(chip, name, meaning);
    const span = marks.get(i);
    if (span) {
      const on = () => { span.classList.add("siolab-ex-hot"); row.classList.add("siolab-ex-hot"); };
      const off = () => { span.classList.remove("siolab-ex-hot"); row.classList.remove("siolab-ex-hot"); };
      row.addEventListener("mouseenter", on);
      row.addEventListener("mouseleave", off);
      span.addEventListener("mouseenter", on);
      span.addEventListener("mouseleave", off);
    }
    list.append(row);
  });
  box.append(list);
  (ex.packets || []).forEach((sub, i) => {
    const title = h("div", "siolab-ex-sub", `packet ${i + 1} of ${ex.packets.length}`);
    box.append(title, block(sub, depth + 1));
  });
  if (ex.error) box.append(h("div", "siolab-ex-error", "⚠ " + ex.error));
  return box;
}

export default {
  render({ model, el }) {
    const root = h("div", "siolab-ex");
    const top = h("div", "siolab-ex-top");
    const input = document.createElement("input");
    input.type = "text";
    input.className = "siolab-ex-input";
    input.placeholder = 'a packet, e.g. 421["chat","hi"]  (write the polling separator as \\x1e)';
    input.spellcheck = false;
    input.value = model.get("value");
    const layer = document.createElement("select");
    layer.className = "siolab-ex-layer";
    for (const [v, label] of [["engine.io", "Engine.IO packet"], ["socket.io", "Socket.IO packet only"]]) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = label;
      layer.append(o);
    }
    layer.value = model.get("layer");
    top.append(input, layer);
    const examples = h("div", "siolab-ex-examples", "try: ");
    for (const ex of EXAMPLES) {
      const b = h("button", "siolab-ex-example", ex);
      b.type = "button";
      b.addEventListener("click", () => { input.value = ex; push(); });
      examples.append(b);
    }
    const out = h("div", "siolab-ex-out");
    root.append(top, examples, out);
    el.appendChild(root);

    let timer = null;
    function push() {
      clearTimeout(timer);
      model.set("value", input.value);
      model.save_changes();
    }
    input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(push, 120); });
    layer.addEventListener("change", () => { model.set("layer", layer.value); model.save_changes(); });

    function show() {
      const ex = model.get("explanation") || {};
      out.replaceChildren(block({ fields: [], packets: [], ...ex }, 0));
    }
    function fromModel() {
      if (document.activeElement !== input && input.value !== model.get("value")) input.value = model.get("value");
      layer.value = model.get("layer");
    }
    model.on("change:explanation", show);
    model.on("change:value", fromModel);
    model.on("change:layer", fromModel);
    show();
    return () => {
      clearTimeout(timer);
      model.off("change:explanation", show);
      model.off("change:value", fromModel);
      model.off("change:layer", fromModel);
    };
  },
};
