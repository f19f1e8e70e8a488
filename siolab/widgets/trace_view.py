"""The live trace view: a packet table that grows as records pass through a Trace.

Records arrive through ``trace.subscribe`` (synchronously, one at a time, on the loop).
The view buffers them and flushes at most every ``interval`` seconds, sending only the
new rows to the front end as one small custom message (``{"type": "rows", ...}``): the
work per update is proportional to the new rows, never to the size of the trace. The
page keeps at most ``max_rows`` rows in its DOM.

Wire text (raw packets, event names, namespaces, client names) travels as plain JSON
strings; the front end puts it into the page with ``textContent`` only.
"""
from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from typing import Any

import anywidget
import traitlets

from ..record import is_heartbeat
from ..text import cut
from ..trace import Record, Trace
from ._common import STATIC, css, safe

# One row on the wire to the front end (a JSON array in this order; the front end reads
# the order from the ``_columns`` trait, so the two never disagree).
COLUMNS = ("seq", "t", "client", "dir", "transport", "kind", "eio", "sio", "nsp", "event", "ack",
           "raw", "size", "binary", "http", "error", "note", "beat")
RAW_LIMIT = 240      # characters of a raw packet sent with its row; the rest on expand
TEXT_LIMIT = 200     # characters of an error / note sent with its row
DETAIL_LIMIT = 100_000
TYPE_FIELDS = ("eio", "sio", "kind")


def _cut(text: str | None, limit: int) -> str | None:
    return None if text is None else cut(text, limit)


def _http_label(record: Record) -> str | None:
    if not record.http:
        return None
    return f"{record.http.get('method') or ''} {record.http.get('status') or ''}".strip() or None


class TraceView(anywidget.AnyWidget):
    """A live, filterable packet table of a Trace: ``lab.trace.view()``.

    Filters (``client``, ``transport``, ``packet_type`` like ``"sio:event"``, ``"eio:ping"`` or
    ``"kind:http"``, ``hide_heartbeats``), ``paused`` and ``max_rows`` can be set from Python or
    from the toolbar. ``clear()`` empties the table (not the trace).
    """

    _esm = STATIC / "trace_view.js"
    _css = css("trace_view.css")

    _columns = traitlets.List(traitlets.Unicode(), default_value=list(COLUMNS)).tag(sync=True)
    clients = traitlets.List(traitlets.Unicode()).tag(sync=True)
    client = traitlets.Unicode("").tag(sync=True)
    transport = traitlets.Unicode("").tag(sync=True)
    packet_type = traitlets.Unicode("").tag(sync=True)
    hide_heartbeats = traitlets.Bool(False).tag(sync=True)
    paused = traitlets.Bool(False).tag(sync=True)
    max_rows = traitlets.Int(500).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, trace: Trace, *, interval: float = 0.1, max_rows: int = 500, **options: Any) -> None:
        super().__init__(max_rows=max_rows, **options)
        self.trace = trace
        self.interval = interval
        self.flushes = 0                 # messages with new rows sent so far (for tests and curiosity)
        self._pending: deque[Record] = deque(maxlen=self.max_rows)
        self._skipped = 0                # matching records that overflowed the pending buffer
        self._handle: asyncio.TimerHandle | None = None
        self._seq = 0
        self._sent: OrderedDict[int, Record] = OrderedDict()  # rows the page may still show, for "expand"
        self._since_clear = len(trace)   # how many of the trace's newest records are after the last clear()
        self._ready = False              # a front end said hello: until then nothing is sent
        self._known = {r.client for r in trace if r.client}
        self.clients = sorted(self._known)
        self._compile_filter()
        self._unsubscribe = trace.subscribe(self._on_record)
        self.on_msg(self._on_custom)
        self.observe(self._on_filter, names=["client", "transport", "packet_type", "hide_heartbeats", "max_rows"])
        self.observe(self._on_paused, names=["paused"])

    # ------------------------------------------------------------ filtering
    @traitlets.validate("packet_type")
    def _check_type(self, proposal):
        value = proposal["value"]
        if value and value.partition(":")[0] not in TYPE_FIELDS:
            raise traitlets.TraitError(f"packet_type {value!r}: use 'eio:<type>', 'sio:<type>' or 'kind:<kind>'")
        return value

    @traitlets.validate("max_rows")
    def _check_max_rows(self, proposal):
        return max(10, min(int(proposal["value"]), 20_000))

    def _compile_filter(self) -> None:
        # plain attributes: the per-record check must not go through traitlets
        field, _, name = self.packet_type.partition(":")
        self._filter = (self.client or None, self.transport or None, field or None, name or None,
                        self.hide_heartbeats)
        self._no_filter = self._filter == (None, None, None, None, False)

    def keeps(self, record: Record) -> bool:
        """True when the record passes the view's filters."""
        if self._no_filter:
            return True
        client, transport, field, name, hide = self._filter
        if client is not None and record.client != client:
            return False
        if transport is not None and record.transport != transport:
            return False
        if field is not None and getattr(record, field) != name:
            return False
        return not (hide and is_heartbeat(record))

    def _on_filter(self, change) -> None:
        if change["name"] == "max_rows":
            self._pending = deque(self._pending, maxlen=change["new"])
        self._compile_filter()
        self._reset()

    def _on_paused(self, change) -> None:
        if not change["new"]:
            self.flush()

    # ------------------------------------------------------------ receiving records
    def _on_record(self, record: Record) -> None:
        self._since_clear += 1
        if record.client and record.client not in self._known:
            self._known.add(record.client)
            self.clients = sorted(self._known)
        if not self._ready or not self.keeps(record):
            return
        if len(self._pending) == self._pending.maxlen:
            self._skipped += 1
        self._pending.append(record)
        if self._handle is None and not self.paused:
            self._schedule()

    def _schedule(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain script): show the record at once
            self.flush()
            return
        self._handle = loop.call_later(self.interval, self.flush)

    def flush(self) -> None:
        """Send the buffered rows now (normally the timer does this, at most every ``interval`` s)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if not self._ready or self.paused or not (self._pending or self._skipped):
            return
        rows = [self._row(r) for r in self._pending]
        self._pending.clear()
        self.flushes += 1
        self._post("rows", rows, self._skipped)
        self._skipped = 0

    # ------------------------------------------------------------ sending
    def _row(self, r: Record) -> list:
        seq = self._seq
        self._seq += 1
        self._sent[seq] = r
        if len(self._sent) > 2 * self.max_rows:
            self._sent.popitem(last=False)
        raw = r.raw
        shown = r.shown_raw if r.binary else raw  # a binary frame as it travels, not as base64 text
        return [seq, round(r.t, 3), r.client, r.dir, r.transport, r.kind, r.eio, r.sio, r.nsp,
                safe(_cut(r.event, TEXT_LIMIT)), r.ack, _cut(shown, RAW_LIMIT) if shown is not None else None,
                len(raw) if raw is not None else 0, r.binary, _http_label(r), _cut(r.error, TEXT_LIMIT),
                _cut(r.note, TEXT_LIMIT), is_heartbeat(r)]

    def _post(self, kind: str, rows: list, skipped: int) -> None:
        self.send({"type": kind, "rows": rows, "skipped": skipped, "total": len(self.trace),
                   "dropped": self.trace.dropped, "limit": self.trace.limit})

    def _reset(self) -> None:
        """Send the newest matching records (one bounded batch) to replace what the page shows."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._pending.clear()
        self._skipped = 0
        if not self._ready:
            return
        self._sent.clear()
        recent = self.trace[-self._since_clear:] if self._since_clear else []
        matching = [r for r in recent if self.keeps(r)]
        shown = matching[-self.max_rows:]
        self._post("reset", [self._row(r) for r in shown], len(matching) - len(shown))

    def clear(self) -> None:
        """Empty the table (the trace keeps its records); new records keep coming."""
        self._since_clear = 0
        self._reset()

    def _detail(self, seq: int) -> dict:
        r = self._sent.get(seq)
        if r is None:
            return {"type": "detail", "seq": seq, "missing": True}
        args = None
        if r.args is not None:
            args = safe(json.dumps(r.args, ensure_ascii=False, indent=1, default=repr)[:DETAIL_LIMIT])
        return {"type": "detail", "seq": seq, "raw": (r.raw or "")[:DETAIL_LIMIT],
                "truncated": len(r.raw or "") > DETAIL_LIMIT, "http": r.http and {
                    k: (str(v) if v is not None else None) for k, v in r.http.items()},
                "note": (r.note or "")[:DETAIL_LIMIT] or None, "error": r.error, "args": args, "sid": r.sid,
                "server": getattr(r, "server", None),
                "attachments": r.attachments, "meaning": safe(r.meaning)}

    def _on_custom(self, _widget, content, _buffers) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("type")
        if kind == "hello":
            self._ready = True
            self._reset()
        elif kind == "clear":
            self.clear()
        elif kind == "detail" and isinstance(content.get("seq"), int):
            self.send(self._detail(content["seq"]))

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._unsubscribe()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        super().close()

    def __repr__(self) -> str:
        return f"<TraceView of {self.trace!r}>"
