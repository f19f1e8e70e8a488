"""The sequence diagram: client lanes and a server lane, one arrow per HTTP request or
response and per WebSocket frame, labelled with the decoded meaning.

``render_svg(records)`` is a pure function of the records (and options): the SVG string is
built here, with every piece of wire text XML-escaped, and the widget displays that same
string. ``SequenceDiagram(trace)`` follows a live trace; ``SequenceDiagram(list_of_records)``
(or a ``trace.since(t)`` slice) is a static picture, e.g. of the handshake.
"""
from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Sequence
from xml.sax.saxutils import escape

import anywidget
import traitlets

from ..trace import Record, Trace
from ._common import STATIC, css
from ..record import is_heartbeat
from ..text import cut

# Categories, most telling first: a polling body with several packets takes the first that applies.
CATEGORIES = ("error", "upgrade", "handshake", "connect", "event", "ack", "close", "message", "heartbeat",
              "http", "note")
COLOURS = {
    "error": "#e0413a", "upgrade": "#a24bd6", "handshake": "#2e9d4a", "connect": "#2e9d4a",
    "event": "#4f5bd5", "ack": "#1f9e8f", "close": "#d84343", "message": "#3b7dd8", "heartbeat": "#8a94a6",
    "http": "#8d6e63", "note": "#8a94a6",
}
LEGEND = (("handshake", "handshake / connect"), ("upgrade", "upgrade"), ("heartbeat", "heartbeat"),
          ("event", "event"), ("ack", "ack"), ("close", "close"), ("error", "error / fault"),
          ("http", "plain HTTP"))

# geometry (px)
LEFT = 64        # the time column
CLIENT_GAP = 170  # between client lanes
SERVER_GAP = 430  # between the last client lane and the server: every arrow crosses it, labels need room
LANE_W = 104     # lane name boxes
TOP = 52         # header height
ROW = 28
CHAR_MONO = 6.9  # average advance of 11.5px monospace text
CHAR_UI = 6.6
CHAR_BADGE = 6.3

_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1d\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: Any) -> str:
    """Text safe inside an SVG/XML element or a quoted attribute (escaped; no invalid XML characters)."""
    text = str(value).replace("\x1e", "\\x1e")  # the polling separator, written as the docs write it
    text = _INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x20 else "\ufffd", text)
    return escape(text, {'"': "&quot;", "'": "&#39;"})


def _short(text: str, limit: int) -> str:
    return cut(text, limit)


@dataclass(frozen=True)
class DiagramRow:
    """One row of the diagram: an arrow (HTTP request/response, WebSocket frame) or a note."""

    t: float
    lane: str | None          # the client's lane (None: the server's own note)
    server: str | None        # which server, when a balancing tap spread clients over several (else None)
    dir: str | None
    transport: str | None
    prefix: str               # HTTP method/status ("POST", "200") or "" for a WebSocket frame
    label: str                # the raw packet(s), or a description
    meaning: str
    badge: str | None
    category: str
    arrow: bool
    records: tuple[Record, ...]


def _lane(r: Record) -> str | None:
    if r.client:
        return r.client
    if r.sid:
        return f"sid {r.sid[:6]}"
    return None


def category_of(r: Record) -> str:
    """Which colour a record gets in the diagram."""
    if r.error or r.kind in ("error", "fault"):
        return "error"
    if r.kind == "log":
        return "note"
    if r.kind == "ws":
        return "close" if (r.http or {}).get("status") not in (None, 101) or "close" in (r.note or "") else "upgrade"
    if r.kind == "http":
        return "handshake" if (r.note or "").startswith("handshake") else "http"
    if r.binary:
        return "event"
    if r.eio == "open":
        return "handshake"
    if r.eio == "close":
        return "close"
    if r.eio in ("ping", "pong"):
        return "heartbeat" if is_heartbeat(r) else "upgrade"
    if r.eio in ("upgrade", "noop"):
        return "upgrade"
    return {"connect": "connect", "disconnect": "close", "event": "event", "binary_event": "event",
            "ack": "ack", "binary_ack": "ack", "connect_error": "error"}.get(r.sio or "", "message")


def _badge(r: Record, category: str) -> str | None:
    if r.kind == "ws":
        if (r.http or {}).get("status") == 101:
            return "WS OPEN"
        return "WS CLOSE" if category == "close" else "WS UPGRADE"
    if r.kind == "http":
        return "HANDSHAKE" if category == "handshake" else ("ERROR" if category == "error" else None)
    if r.kind == "fault":
        return "DROPPED" if "dropped" in (r.note or "") else "FAULT"
    if r.binary:
        return "ATTACHMENT"
    if category == "heartbeat":
        return "♥ " + (r.eio or "").upper()
    if r.eio in ("ping", "pong"):
        return "PROBE"
    if r.eio in ("open", "close", "upgrade", "noop"):
        return r.eio.upper()
    if r.sio in ("event", "binary_event"):
        return "EVENT" + (f" {_short(r.event, 18)}" if r.event else "")
    if r.sio in ("ack", "binary_ack"):
        return f"ACK {r.ack}" if r.ack is not None else "ACK"
    if r.sio:
        return r.sio.upper()
    return "ERROR" if category == "error" else None


def _http_prefix(r: Record) -> str:
    http = r.http or {}
    if r.dir == "c2s":
        return str(http.get("method") or "")
    return str(http.get("status") or "")


def _message(group: list[Record]) -> DiagramRow:
    first = group[0]
    cats = [category_of(r) for r in group]
    category = min(cats, key=CATEGORIES.index)
    lead = group[cats.index(category)]
    arrow = first.kind not in ("log", "error") and first.dir is not None and not (
        first.kind == "fault" and first.eio is None)
    if first.kind in ("http",) and first.raw is None:
        label = first.note or ("request" if first.dir == "c2s" else "")
    elif first.kind == "ws":
        label = first.note or "WebSocket"
    elif first.kind == "fault":
        label = (first.note or first.error or "fault").split("\n")[0]
        if first.raw is not None:  # the packet the tap dropped or delayed
            label = f"{first.raw}  ✗ {label}"
    elif first.kind in ("log", "error"):
        label = (first.error or first.note or first.kind).split("\n")[0]
    elif first.binary:
        label = f"<binary, {len(first.raw or '') * 3 // 4} bytes>"
    else:
        label = "\x1e".join((r.raw or "") for r in group)  # the body as sent; drawn as \x1e
    prefix = ""
    if first.transport == "polling" or first.kind == "http" or first.kind == "ws":
        prefix = _http_prefix(first)
    meaning = " + ".join(r.meaning for r in group)
    if first.error:
        meaning += f"  !! {first.error}"
    return DiagramRow(t=first.t, lane=_lane(first), server=getattr(first, "server", None), dir=first.dir,
                   transport=first.transport, prefix=prefix, label=label, meaning=meaning,
                   badge=_badge(lead, category), category=category, arrow=arrow, records=tuple(group))


def messages(records: Iterable[Record], *, hide_heartbeats: bool = False) -> list[DiagramRow]:
    """Group records into diagram rows: the packets of one polling body make one arrow."""
    out: list[DiagramRow] = []
    group: list[Record] = []
    key = None
    for r in records:
        if hide_heartbeats and is_heartbeat(r):
            continue
        body = r.kind == "packet" and r.transport == "polling" and r.http is not None
        k = (r.dir, r.client, r.sid, getattr(r, "server", None), r.t, r.http.get("method"), r.http.get("path"),
             r.http.get("status")) if body else None
        if group and (k is None or k != key):
            out.append(_message(group))
            group = []
        if k is None:
            out.append(_message([r]))
        else:
            group.append(r)
        key = k
    if group:
        out.append(_message(group))
    return out


# ---------------------------------------------------------------- SVG
_STYLE = """
svg.siolab-seq { font-family: var(--jp-ui-font-family, system-ui, -apple-system, sans-serif); font-size: 12px; }
svg.siolab-seq .sq-bg { fill: var(--jp-layout-color0, #ffffff); }
svg.siolab-seq .sq-text { fill: var(--jp-ui-font-color1, #1f1f1f); }
svg.siolab-seq .sq-muted { fill: var(--jp-ui-font-color2, #616161); }
svg.siolab-seq .sq-mono { font-family: var(--jp-code-font-family, Menlo, Consolas, monospace); font-size: 11.5px; }
svg.siolab-seq .sq-small { font-size: 10.5px; }
svg.siolab-seq .sq-title { font-weight: 600; font-size: 13px; }
svg.siolab-seq .sq-halo { paint-order: stroke; stroke: var(--jp-layout-color0, #ffffff); stroke-width: 4px;
  stroke-linejoin: round; }
svg.siolab-seq .sq-life { stroke: var(--jp-border-color1, #bdbdbd); stroke-dasharray: 3 4; }
svg.siolab-seq .sq-lane { fill: var(--jp-layout-color2, #eeeeee); stroke: var(--jp-border-color1, #bdbdbd); }
svg.siolab-seq .sq-server { fill: var(--jp-layout-color3, #bdbdbd); }
svg.siolab-seq .sq-lane-name { font-weight: 600; }
svg.siolab-seq .sq-rule { stroke: var(--jp-border-color3, #eeeeee); }
svg.siolab-seq .sq-line { stroke-width: 1.6px; fill: none; }
svg.siolab-seq .sq-polling { stroke-dasharray: 6 3; }
svg.siolab-seq .sq-heartbeat .sq-line { stroke-width: 1px; }
svg.siolab-seq .sq-badge { fill-opacity: 0.2; stroke-width: 1px; }
svg.siolab-seq .sq-band { fill-opacity: 0.08; }
svg.siolab-seq .sq-note { fill-opacity: 0.12; stroke-width: 1px; }
""" + "".join(
    f"svg.siolab-seq .c-{name} .sq-line, svg.siolab-seq .c-{name}.sq-badge, svg.siolab-seq .c-{name}.sq-note "
    f"{{ stroke: {colour}; }}\nsvg.siolab-seq .c-{name} .sq-head, svg.siolab-seq .c-{name}.sq-badge, "
    f"svg.siolab-seq .c-{name}.sq-band, svg.siolab-seq .c-{name}.sq-note, svg.siolab-seq .c-{name}.sq-key "
    f"{{ fill: {colour}; }}\n" for name, colour in COLOURS.items())


def render_svg(records: Iterable[Record], *, limit: int | None = 200, hide_heartbeats: bool = False,
               title: str | None = None, earlier: int = 0) -> str:
    """The sequence diagram of these records as an SVG document (a pure function: same records, same SVG).

    ``limit`` keeps the newest rows; ``earlier`` says how many older records the caller left out.
    """
    rows = messages(records, hide_heartbeats=hide_heartbeats)
    cut = 0
    if limit is not None and len(rows) > limit:
        cut = len(rows) - limit
        rows = rows[-limit:]
    lanes: list[str] = []
    for m in rows:
        if m.lane is not None and m.lane not in lanes:
            lanes.append(m.lane)
    if not lanes:
        lanes = ["client"]
    servers: list[str | None] = []
    for m in rows:
        if m.arrow and m.server not in servers:
            servers.append(m.server)
    if not servers:
        servers = [None]
    x_of = {name: LEFT + 70 + i * CLIENT_GAP for i, name in enumerate(lanes)}
    first_server = LEFT + 70 + (len(lanes) - 1) * CLIENT_GAP + SERVER_GAP
    server_of = {name: first_server + i * CLIENT_GAP for i, name in enumerate(servers)}
    server_x = max(server_of.values())
    width = server_x + LANE_W // 2 + 24
    notice = []
    if cut or earlier:
        parts = []
        if cut:
            parts.append(f"{cut} earlier message{'s' if cut != 1 else ''}")
        if earlier:
            parts.append(f"{earlier} earlier record{'s' if earlier != 1 else ''}")
        notice.append(" and ".join(parts) + " not shown")
    top = TOP + (18 if title else 0) + (18 if notice else 0)
    body_h = max(len(rows), 1) * ROW
    legend_lines = _legend_items(width)[-1][1] + 1
    height = top + body_h + 16 + 24 + 32 + 20 * legend_lines
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="siolab-seq" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">',
        f"<title>{xml_text(title or 'Socket.IO sequence diagram')}</title>",
        f"<style>{_STYLE}</style>",
        f'<rect class="sq-bg" x="0" y="0" width="{width}" height="{height}"/>',
    ]
    y = 18
    if title:
        out.append(f'<text class="sq-text sq-title" x="12" y="{y}">{xml_text(title)}</text>')
        y += 18
    if notice:
        out.append(f'<text class="sq-muted" x="12" y="{y}">▲ {xml_text(notice[0])}</text>')
        y += 18
    # lanes: a name box on top, the lifeline, and the name again at the bottom (a long diagram
    # scrolled to its newest arrows still says whose lane is whose)
    head_y = top - 36
    foot_y = top + body_h + 6
    boxes = [(x_of[name], name, "sq-lane") for name in lanes] + [
        (x, name or "server", "sq-lane sq-server") for name, x in server_of.items()]
    for x, name, cls in boxes:
        out.append(f'<line class="sq-life" x1="{x}" y1="{head_y + 26}" x2="{x}" y2="{foot_y}"/>')
        for y in (head_y, foot_y):
            out.append(f'<rect class="{cls}" x="{x - LANE_W // 2}" y="{y}" width="{LANE_W}" height="26" rx="4"/>')
            out.append(f'<text class="sq-text sq-lane-name" x="{x}" y="{y + 17}" text-anchor="middle">'
                       f"{xml_text(_short(name, 14))}<title>{xml_text(name)}</title></text>")
    out.append(f'<text class="sq-muted sq-small" x="{LEFT - 8}" y="{head_y + 17}" text-anchor="end">t (s)</text>')
    if not rows:
        out.append(f'<text class="sq-muted" x="{LEFT + 70}" y="{top + 18}">no packets yet</text>')
    for i, m in enumerate(rows):
        out.extend(_row(m, top + i * ROW, x_of, server_of.get(m.server, server_x), server_x, width))
    out.extend(_legend(top + body_h + 38 + 32, width))
    out.append("</svg>")
    return "\n".join(out)


def _row(m: DiagramRow, y0: int, x_of: dict[str, int], server_x: int, right: int, width: int) -> list[str]:
    line_y = y0 + 19
    parts = [f'<g class="sq-msg c-{m.category}{" sq-heartbeat" if m.category == "heartbeat" else ""}">']
    who = m.lane or "server"
    tooltip = f"<title>{xml_text(f't={m.t:.3f} s  {who}  {m.meaning}')}</title>"
    if m.category == "upgrade":
        parts.append(f'<rect class="sq-band c-upgrade" x="2" y="{y0 + 2}" width="{width - 4}" height="{ROW - 2}"/>')
    parts.append(f'<text class="sq-muted sq-mono sq-small" x="{LEFT - 8}" y="{line_y + 4}" '
                 f'text-anchor="end">{m.t:.3f}</text>')
    if not m.arrow or m.lane is None and m.dir is None:
        x = LEFT + 16
        w = right + 40 - x
        text = _short(f"{who} · {m.label}", int((w - 16) / CHAR_UI))
        parts.append(f'<rect class="sq-note c-{m.category}" x="{x}" y="{y0 + 5}" width="{w}" height="{ROW - 8}" '
                     f'rx="3"/>')
        parts.append(f'<text class="sq-text" x="{x + 8}" y="{line_y + 3}">{xml_text(text)}</text>')
        parts.append(tooltip + "</g>")
        return parts
    cx = x_of.get(m.lane, LEFT + 70) if m.lane is not None else LEFT + 70
    x1, x2 = (cx, server_x) if m.dir == "c2s" else (server_x, cx)
    sign = 1 if x2 > x1 else -1
    dash = " sq-polling" if m.transport == "polling" or (m.transport is None and m.records[0].kind == "http") else ""
    if m.badge == "DROPPED":  # it never arrived: the arrow stops halfway, at a cross
        mid = (x1 + x2) // 2
        parts.append(f'<line class="sq-line{dash}" x1="{x1}" y1="{line_y}" x2="{mid}" y2="{line_y}"/>')
        parts.append(f'<line class="sq-line" x1="{mid - 5}" y1="{line_y - 5}" x2="{mid + 5}" y2="{line_y + 5}"/>')
        parts.append(f'<line class="sq-line" x1="{mid - 5}" y1="{line_y + 5}" x2="{mid + 5}" y2="{line_y - 5}"/>')
    else:
        parts.append(f'<line class="sq-line{dash}" x1="{x1}" y1="{line_y}" x2="{x2 - sign * 8}" y2="{line_y}"/>')
        parts.append(f'<polygon class="sq-head" points="{x2},{line_y} {x2 - sign * 9},{line_y - 4.5} '
                     f'{x2 - sign * 9},{line_y + 4.5}"/>')
    # label: [badge] prefix raw, from the client end of the arrow
    x = min(x1, x2) + 10
    room = abs(x2 - x1) - 22
    text_y = line_y - 5
    if m.badge:
        bw = round(len(m.badge) * CHAR_BADGE + 10)
        parts.append(f'<rect class="sq-badge c-{m.category}" x="{x}" y="{text_y - 11}" width="{bw}" height="15" '
                     f'rx="3"/>')
        parts.append(f'<text class="sq-text sq-mono sq-small" x="{x + 5}" y="{text_y}">{xml_text(m.badge)}</text>')
        x += bw + 6
        room -= bw + 6
    if m.prefix:
        parts.append(f'<text class="sq-muted sq-small sq-halo" x="{x}" y="{text_y}">{xml_text(m.prefix)}</text>')
        x += round(len(m.prefix) * CHAR_BADGE + 5)
        room -= round(len(m.prefix) * CHAR_BADGE + 5)
    label = _short(m.label, int(room / CHAR_MONO))
    parts.append(f'<text class="sq-text sq-mono sq-halo" x="{x}" y="{text_y}">{xml_text(label)}</text>')
    parts.append(tooltip + "</g>")
    return parts


def _legend_items(width: int) -> list[tuple[int, int, str, str]]:
    """(x, line, kind, label) of each legend item, wrapped to the diagram's width."""
    items = [("polling", "HTTP long-polling"), ("websocket", "WebSocket frame")] + list(LEGEND)
    out, x, line = [], 12, 0
    for kind, label in items:
        w = (34 if kind in ("polling", "websocket") else 17) + round(len(label) * 7.2) + 18
        if x + w > width - 8 and x > 12:
            x, line = 12, line + 1
        out.append((x, line, kind, label))
        x += w
    return out


def _legend(y: int, width: int) -> list[str]:
    parts = [f'<g class="sq-legend"><line class="sq-rule" x1="8" y1="{y - 14}" x2="{width - 8}" y2="{y - 14}"/>']
    for x, line, kind, label in _legend_items(width):
        ly = y + line * 20
        if kind in ("polling", "websocket"):
            dash = " sq-polling" if kind == "polling" else ""
            parts.append(f'<g class="c-http"><line class="sq-line{dash}" x1="{x}" y1="{ly}" x2="{x + 28}" '
                         f'y2="{ly}"/></g>')
            parts.append(f'<text class="sq-muted" x="{x + 34}" y="{ly + 4}">{xml_text(label)}</text>')
        else:
            parts.append(f'<rect class="sq-badge c-{kind}" x="{x}" y="{ly - 6}" width="12" height="12" rx="2"/>')
            parts.append(f'<text class="sq-muted" x="{x + 17}" y="{ly + 4}">{xml_text(label)}</text>')
    parts.append("</g>")
    return parts


# ---------------------------------------------------------------- widget
class SequenceDiagram(anywidget.AnyWidget):
    """A client/server sequence diagram of a trace (live) or of a list of records (static).

    ``to_svg()`` gives the SVG the widget shows; ``save("x.svg")`` writes it to a file.
    """

    _esm = STATIC / "sequence.js"
    _css = css("sequence.css")

    svg = traitlets.Unicode("").tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)
    rows = traitlets.Int(0).tag(sync=True)

    def __init__(self, source: Trace | Sequence[Record] | Iterable[Record], *, live: bool | None = None,
                 limit: int | None = 200, hide_heartbeats: bool = False, since: float | None = None,
                 clients: Iterable[str] | None = None, title: str | None = None, interval: float = 0.5) -> None:
        super().__init__()
        if isinstance(source, Trace):
            self.trace: Trace | None = source
            self._static: list[Record] | None = None
        else:
            self.trace = None
            self._static = list(source)
        self.limit, self.hide_heartbeats, self.since, self.title = limit, hide_heartbeats, since, title
        self.clients = set(clients) if clients is not None else None
        self.interval = interval
        self._handle: asyncio.TimerHandle | None = None
        self._unsubscribe = None
        self.live = bool(self.trace is not None if live is None else live and self.trace is not None)
        if self.live:
            self._unsubscribe = self.trace.subscribe(self._on_record)
        self.refresh()

    def records(self) -> list[Record]:
        """The records the diagram draws (for a live trace: a window of the newest ones)."""
        return self._window()[0]

    def _window(self) -> tuple[list[Record], int]:
        if self._static is not None:
            source, earlier = self._static, 0
        else:
            n = len(self.trace)
            window = n if self.limit is None else min(n, self.limit * 6)
            source, earlier = (self.trace[-window:] if window else []), n - window
        chosen = [r for r in source if (self.since is None or r.t >= self.since)
                  and (self.clients is None or r.client in self.clients or r.client is None)]
        return chosen, (earlier if self.since is None else 0)

    def to_svg(self) -> str:
        """The diagram as a standalone SVG document (what the widget shows)."""
        records, earlier = self._window()
        return render_svg(records, limit=self.limit, hide_heartbeats=self.hide_heartbeats, title=self.title,
                          earlier=earlier)

    def save(self, path: str | os.PathLike) -> None:
        """Write the SVG to a file (UTF-8)."""
        with open(path, "w", encoding="utf-8") as fh:
            fh.write('<?xml version="1.0" encoding="UTF-8"?>\n' + self.to_svg() + "\n")

    def refresh(self) -> None:
        """Re-render now (a live diagram does this by itself, at most every ``interval`` s)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        svg = self.to_svg()
        self.rows = svg.count('<g class="sq-msg')
        self.svg = svg

    def _on_record(self, record: Record) -> None:
        if self._handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.refresh()
            return
        self._handle = loop.call_later(self.interval, self.refresh)

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        super().close()

    def _repr_svg_(self) -> str:  # e.g. nbconvert to HTML without a live kernel
        return self.to_svg()

    def __repr__(self) -> str:
        return f"<SequenceDiagram of {len(self.records())} records>"
