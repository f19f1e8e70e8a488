// siolab sequence diagram: shows the SVG the kernel built (wire text in it is XML-escaped there).
// The string is parsed as XML (never as HTML) and, as a second line of defence, only known SVG
// elements and attributes are kept: no scripts, no event handlers, no links.

const ELEMENTS = new Set(["svg", "g", "line", "rect", "polygon", "text", "tspan", "title", "style"]);
const ATTRIBUTES = new Set(["class", "x", "y", "x1", "y1", "x2", "y2", "width", "height", "rx", "points",
  "viewBox", "text-anchor", "role", "xmlns"]);

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function clean(node) {
  for (const child of Array.from(node.children)) {
    if (!ELEMENTS.has(child.localName) || child.namespaceURI !== "http://www.w3.org/2000/svg") {
      child.remove();
      continue;
    }
    for (const attr of Array.from(child.attributes)) {
      if (!ATTRIBUTES.has(attr.name)) child.removeAttribute(attr.name);
    }
    clean(child);
  }
}

function parse(text) {
  const doc = new DOMParser().parseFromString(text, "image/svg+xml");
  const svg = doc.documentElement;
  if (!svg || svg.localName !== "svg" || doc.getElementsByTagName("parsererror").length) return null;
  for (const attr of Array.from(svg.attributes)) {
    if (!ATTRIBUTES.has(attr.name)) svg.removeAttribute(attr.name);
  }
  clean(svg);
  return document.importNode(svg, true);
}

export default {
  render({ model, el }) {
    const wrap = h("div", "siolab-seq-wrap");
    const bar = h("div", "siolab-seq-bar");
    const title = h("span", "siolab-seq-title", "Sequence diagram");
    const live = h("span", "siolab-seq-live", "● live");
    const count = h("span", "siolab-seq-count");
    const save = h("button", "siolab-seq-btn", "Download SVG");
    save.type = "button";
    bar.append(title, live, count, save);
    const view = h("div", "siolab-seq-view");
    wrap.append(bar, view);
    el.appendChild(wrap);

    // a live diagram follows the newest arrows until the reader scrolls up
    let follow = true;
    view.addEventListener("scroll", () => {
      follow = view.scrollHeight - view.scrollTop - view.clientHeight < 24;
    });
    function toBottom() {
      if (follow && model.get("live")) view.scrollTop = view.scrollHeight;
    }
    function show() {
      const svg = parse(model.get("svg") || "");
      view.replaceChildren(svg || h("div", "siolab-seq-error", "(the diagram could not be drawn)"));
      live.hidden = !model.get("live");
      const rows = model.get("rows") || 0;
      count.textContent = `${rows} message${rows === 1 ? "" : "s"}`;
      toBottom();
      requestAnimationFrame(toBottom);  // on first render the element is not in the page yet
    }
    save.addEventListener("click", () => {
      const blob = new Blob([model.get("svg") || ""], { type: "image/svg+xml" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = "sequence.svg";
      a.click();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    });
    model.on("change:svg", show);
    model.on("change:live", show);
    show();
    return () => {
      model.off("change:svg", show);
      model.off("change:live", show);
    };
  },
};
