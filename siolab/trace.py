"""Records of what crossed the wire, and the bounded Trace that stores them.

A ``Record`` is frozen; a ``Trace`` is append-only (bounded: the oldest records
are dropped past ``limit`` and counted in ``dropped``), filterable, observable by
listeners (the live views) and exportable as JSON Lines.
"""
from __future__ import annotations

import asyncio
import base64
import html
import io
import json
import os
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Iterable, Iterator

from . import protocol
from .frozen import constructor

KINDS = ("packet", "http", "ws", "fault", "error", "log")
JSONL_KEYS = ("t", "kind", "dir", "transport", "http", "raw", "binary", "eio", "sio", "nsp", "ack",
              "event", "args", "attachments", "sid", "client", "error", "note", "server")
ARROWS = {"c2s": "->", "s2c": "<-", None: "  "}
DEFAULT_LIMIT = 100_000
# A tap may leave the reading of what it relayed for later (Trace.defer): in the lab, where server,
# clients and tap share one loop, framing and decoding a burst in one go took less than half the CPU of
# reading each frame between the server's and clients' work (benchmarks/). Deferred records are
# settled before the trace is read or appended to, and at most this long after arrival:
SETTLE_AFTER = 0.02
SETTLE_CHUNK = 64  # decoded in one go before the loop serves the sockets again (~1-2 ms)
MAX_BACKLOG = 2048
MAX_BACKLOG_BYTES = 4 * 1024 * 1024  # deferred bytes (e.g. big binary frames) before settling at once
#: The server of the exchange being recorded. A balancing tap sets it while it handles a request, so every
#: record made meanwhile (packets, HTTP, faults) names the server that request went to (cluster.py).
EXCHANGE_SERVER: ContextVar[str | None] = ContextVar("siolab_exchange_server", default=None)


# (eio, sio) -> the words a record's meaning starts with (the usual pairs, worked out once)
_LINE = "%8.3f  %-8s %s %-9s %-8s %-50s %s"  # time, client, arrow, transport, HTTP, raw, meaning
_TYPE_WORDS = {(eio, sio): " ".join(p.upper() for p in (eio, sio) if p)
               for eio in protocol.EIO_TYPES for sio in (None, *protocol.SIO_TYPES)}


@dataclass(frozen=True, slots=True)
class Record:
    """One thing seen on the wire: a packet, an HTTP exchange, a WebSocket open/close, a fault, an error.

    ``kind`` says which; ``eio``/``sio`` are lowercase type names (``open``...``noop``,
    ``connect``...``binary_ack``) or None; ``error`` is set only for invalid or refused traffic.
    """

    t: float
    kind: str = "packet"
    dir: str | None = None
    transport: str | None = None
    http: dict | None = None
    raw: str | None = None
    binary: bool = False
    eio: str | None = None
    sio: str | None = None
    nsp: str | None = None
    ack: int | None = None
    event: str | None = None
    args: list | None = None
    attachments: int = 0
    sid: str | None = None
    client: str | None = None
    error: str | None = None
    note: str | None = None
    server: str | None = field(default_factory=EXCHANGE_SERVER.get)  # set when a balancing tap chose

    @property
    def data(self) -> Any:
        """The decoded data of the Engine.IO packet (e.g. the open packet's dict)."""
        if self.raw is None or self.binary:
            return None
        return protocol.decode_eio(self.raw).data

    @property
    def meaning(self) -> str:
        """A short plain-English meaning: ``MESSAGE EVENT 'chat' ack 1``."""
        kind, eio = self.kind, self.eio
        if kind == "http" and eio is None:
            http, note = self.http, self.note or self.raw
            status = (http or {}).get("status")
            what = f"HTTP {http.get('method', '')} {status or ''}".strip() if http else "HTTP"
            return f"{what}: {note}".strip(": ") if note else what
        if kind in ("ws", "fault", "error", "log"):
            return f"{kind}: {self.note or ''}"
        if self.binary:
            return "binary attachment"
        sio = self.sio
        text = _TYPE_WORDS.get((eio, sio)) or " ".join([p.upper() for p in (eio, sio) if p])
        nsp, event, ack = self.nsp, self.event, self.ack
        if nsp and nsp != "/":
            text = f"{text} {nsp}" if text else nsp
        if event is not None:
            text = f"{text} {event!r}" if text else repr(event)
        if ack is not None:
            text = f"{text} ack {ack}" if text else f"ack {ack}"
        if eio == "ping" and self.raw == "2probe" or eio == "pong" and self.raw == "3probe":
            text = f"{text} probe"
        return text

    def __str__(self) -> str:
        http = self.http
        method = ""
        if http:
            verb, status = http.get("method") or "", http.get("status") or ""
            method = f"{verb} {status}" if verb and status else f"{verb}{status}"
        raw = self.raw
        if raw is None:
            raw = ""
        else:
            if not raw.isprintable():
                raw = raw.translate(_CONTROL)
            if len(raw) > 48:
                raw = raw[:47] + "…"
        line = _LINE % (self.t, self.client or "-", ARROWS.get(self.dir, "  "), self.transport or "-", method, raw,
                        self.meaning)  # (%-formatting: half the time of the same f-string with format specs)
        error = self.error
        if error:
            line = f"{line}  !! {error}"
        line = line.rstrip()
        # wire text must not drive the terminal (ANSI escapes); printable text has no control characters
        return line if line.isprintable() else line.translate(_CONTROL)

    def to_json(self) -> dict:
        """The JSON Lines object for this record (stable keys; binary raw is base64)."""
        return {k: getattr(self, k) for k in JSONL_KEYS}


new_record = constructor(Record)  # Record(**values), faster: the tap makes one or more per packet
FIELDS = tuple(f.name for f in fields(Record))

# The fields a LazyRecord may work out when first read: a Socket.IO packet's fields come from its JSON, and an
# answer's note may depend on whether the packet it answers was valid.
LAZY_FIELDS = ("sio", "nsp", "ack", "event", "args", "error", "note")
_SLOT = {name: Record.__dict__[name] for name in LAZY_FIELDS}  # Record's own slots, under the properties


class _Worked(Record):
    """What LazyRecord and the record it becomes once its fields are known share: both are Records, equal to,
    hashing like, printing like and copied as the Record with the same fields."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    __hash__ = Record.__hash__

    def __repr__(self) -> str:
        return "Record(" + ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS) + ")"

    def __reduce__(self):  # a copy or a pickle is a plain Record with the worked-out fields
        return (_rebuild, (tuple(getattr(self, name) for name in FIELDS),))


class LazyRecord(_Worked):
    """A record some of whose fields are worked out when one of ``LAZY_FIELDS`` is first read, like a protocol
    analyser that dissects a packet when it is shown. The tap makes one for each CONNECT, DISCONNECT, EVENT or
    ACK packet (decoded from ``raw``) and for the server's OK to a POST of one (whose note says whether that
    packet was valid). While traffic flows the tap only frames and stores them: decoding between two packets,
    with cold caches, was most of what tracing cost. A view, a filter, a waiter, the CLI or an export reads
    the fields and gets exactly what decoding at once would have given (tests/test_relay.py compares them
    field for field). Once worked out, the record is an ordinary one (``_Known``): its fields read as fast.
    """

    __slots__ = ("_pending",)  # a function giving {field: value} for the fields not set yet

    def _resolve(self) -> None:
        produce = self._pending
        if produce is _decode_packet:  # the usual one, without a dict
            try:
                sio = protocol.decode_sio(self.raw[1:])
                values = (sio.type, sio.nsp, sio.ack, sio.event, sio.args, sio.error)
            except Exception as exc:  # nothing traced is lost silently, and reading a record never raises
                values = (None, None, None, None, None, f"siolab could not decode this record: {exc!r}")
            _SET_SIO(self, values[0])
            _SET_NSP(self, values[1])
            _SET_ACK(self, values[2])
            _SET_EVENT(self, values[3])
            _SET_ARGS(self, values[4])
            _SET_ERROR(self, values[5])
        else:
            try:  # new_lazy_http set every lazy field to None: produce overrides some
                for name, value in produce(self).items():
                    _SLOT[name].__set__(self, value)
            except Exception as exc:
                _SET_ERROR(self, f"siolab could not decode this record: {exc!r}")
        object.__setattr__(self, "__class__", _Known)


class _Known(_Worked):
    """A LazyRecord whose fields are known: a Record with the same layout (``_pending`` unused) and no
    properties in the way."""

    __slots__ = ("_pending",)


def _rebuild(values: tuple) -> Record:
    return new_record(**dict(zip(FIELDS, values)))


def _lazy_property(name: str) -> property:
    slot = _SLOT[name]

    def get(self: LazyRecord) -> Any:
        try:
            self._pending
        except AttributeError:  # made by Record's __init__ (LazyRecord(...)): every field was given
            return slot.__get__(self)
        self._resolve()
        return slot.__get__(self)

    def set_(self: LazyRecord, value: Any) -> None:  # Record's __init__ sets each field
        slot.__set__(self, value)
    return property(get, set_, doc=f"{name} (worked out when first read)")


for _name in LAZY_FIELDS:
    setattr(LazyRecord, _name, _lazy_property(_name))
del _name
_SET_SIO, _SET_NSP, _SET_ACK, _SET_EVENT, _SET_ARGS, _SET_ERROR = (_SLOT[n].__set__ for n in LAZY_FIELDS[:6])


def _decode_packet(record: Record) -> dict:
    """The fields of a Socket.IO packet's record ('4' + packet in ``raw``) that come from its JSON."""
    sio = protocol.decode_sio(record.raw[1:])
    return {"sio": sio.type, "nsp": sio.nsp, "ack": sio.ack, "event": sio.event, "args": sio.args,
            "error": sio.error}


# Record's slots and LazyRecord's own, set directly: a frozen Record refuses attribute stores, and going
# through object.__setattr__ for each field took twice as long (the tap makes one per packet).
(_SET_T, _SET_KIND, _SET_DIR, _SET_TRANSPORT, _SET_HTTP, _SET_RAW, _SET_BINARY, _SET_EIO, _SET_ATTACHMENTS, _SET_SID,
 _SET_CLIENT, _SET_NOTE, _SET_SERVER) = (Record.__dict__[n].__set__ for n in (
    "t", "kind", "dir", "transport", "http", "raw", "binary", "eio", "attachments", "sid", "client", "note", "server"))
_SET_PENDING = LazyRecord.__dict__["_pending"].__set__
_new = object.__new__
_server_now = EXCHANGE_SERVER.get


def new_lazy_record(*, t: float, dir: str, transport: str | None, http: dict | None, raw: str, sid: str | None,
                    client: str | None) -> LazyRecord:
    """The record of a Socket.IO CONNECT/DISCONNECT/EVENT/ACK ``raw`` (``'4' + packet``), decoded when read."""
    o = _new(LazyRecord)
    _SET_T(o, t)
    _SET_KIND(o, "packet")
    _SET_DIR(o, dir)
    _SET_TRANSPORT(o, transport)
    _SET_HTTP(o, http)
    _SET_RAW(o, raw)
    _SET_BINARY(o, False)
    _SET_EIO(o, "message")
    _SET_ATTACHMENTS(o, 0)
    _SET_SID(o, sid)
    _SET_CLIENT(o, client)
    _SET_NOTE(o, None)
    _SET_SERVER(o, _server_now())
    _SET_PENDING(o, _decode_packet)  # sio, nsp, ack, event, args and error are set when first read
    return o


def new_lazy_http(produce: Callable[[Record], dict], *, t: float, dir: str, transport: str | None, http: dict,
                  raw: str | None, sid: str | None, client: str | None) -> LazyRecord:
    """An HTTP record whose note (or error) ``produce(record)`` works out when read (the answer to each POST: its
    note says whether the POST's packet was valid, which is known when that packet is read)."""
    o = _new(LazyRecord)
    _SET_T(o, t)
    _SET_KIND(o, "http")
    _SET_DIR(o, dir)
    _SET_TRANSPORT(o, transport)
    _SET_HTTP(o, http)
    _SET_RAW(o, raw)
    _SET_BINARY(o, False)
    _SET_EIO(o, None)
    _SET_ATTACHMENTS(o, 0)
    _SET_SID(o, sid)
    _SET_CLIENT(o, client)
    _SET_SERVER(o, _server_now())
    _SET_SIO(o, None)
    _SET_NSP(o, None)
    _SET_ACK(o, None)
    _SET_EVENT(o, None)
    _SET_ARGS(o, None)
    _SET_ERROR(o, None)
    _SET_NOTE(o, None)
    _SET_PENDING(o, produce)
    return o


# Control characters (but newline and tab) shown as \xNN: the record separator, and escapes a hostile
# peer could send to colour or clear a terminal.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f]}


def _shorten(text: str, limit: int) -> str:
    if not text.isprintable():
        text = text.translate(_CONTROL)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def matches(record: Record, where: Callable[[Record], bool] | None = None, **criteria: Any) -> bool:
    """True when every criterion equals the record's attribute (a tuple/set/list means 'any of')."""
    for key, want in criteria.items():
        have = getattr(record, key)
        if isinstance(want, (tuple, set, frozenset, list)):
            if have not in want:
                return False
        elif have != want:
            return False
    return where is None or bool(where(record))


class Trace:
    """Append-only, bounded store of Records with listeners and JSON Lines export."""

    def __init__(self, limit: int | None = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._store: deque[Record] = deque(maxlen=limit)
        self.dropped = 0
        self.t0 = time.monotonic()
        self._listeners: tuple[Callable[[Record], None], ...] = ()  # replaced, never changed: safe to iterate
        self.listener_errors = 0
        self._waiters: list[tuple[dict, Callable | None, asyncio.Future]] = []
        self._backlog: list[tuple[Callable[..., None], tuple]] = []
        self._settle_handle: asyncio.Handle | None = None
        self._settling = False
        self._backlog_bytes = 0

    @property
    def _records(self) -> deque[Record]:
        """The records, every deferred one included (see ``defer``)."""
        if self._backlog and not self._settling:
            self.settle()
        return self._store

    # -- writing
    def now(self) -> float:
        """Seconds since the trace started (monotonic)."""
        return time.monotonic() - self.t0

    def append(self, record: Record) -> Record:
        if self._backlog and not self._settling:  # records left for later come first: wire order
            self.settle()
        return self._store_append(record)

    def _store_append(self, record: Record) -> Record:
        store = self._store
        if len(store) == self.limit:  # (never when limit is None)
            self.dropped += 1
        store.append(record)
        if self._listeners:
            for listener in self._listeners:
                try:
                    listener(record)
                except Exception:  # a broken view must not break the tap
                    self.listener_errors += 1
        if self._waiters:
            self._wake(record)
        return record

    def add(self, **values: Any) -> Record:
        """Append a record built from keyword values, stamped with ``now()`` unless ``t`` is given."""
        values.setdefault("t", self.now())
        return self.append(new_record(**values))

    def defer(self, produce: Callable[..., None], *args: Any, size: int = 0) -> None:
        """Call ``produce(*args)`` (which appends records) later: before the trace is next read or
        appended to, or SETTLE_AFTER seconds from now, a chunk at a time. The tap decodes the packets
        nobody can change this way; their records keep their arrival time. ``size``: the bytes the call
        holds on to; more than MAX_BACKLOG_BYTES in all are settled at once."""
        self._backlog.append((produce, args))
        self._backlog_bytes += size
        if len(self._backlog) >= MAX_BACKLOG or self._backlog_bytes >= MAX_BACKLOG_BYTES:
            self.settle()
        elif self._settle_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.settle()
                return
            self._settle_handle = loop.call_later(SETTLE_AFTER, self._settle_some)

    def settle(self) -> None:
        """Make every deferred record a record now (reading the trace does this by itself)."""
        if self._settling:
            return
        handle, self._settle_handle = self._settle_handle, None
        if handle is not None:
            handle.cancel()
        while self._backlog:
            items, self._backlog = self._backlog, []
            self._backlog_bytes = 0
            self._produce(items)

    def _settle_some(self) -> None:
        """A chunk of the backlog, then the loop's other work, then the next chunk: no long stall."""
        self._settle_handle = None
        items = self._backlog[:SETTLE_CHUNK]
        del self._backlog[:SETTLE_CHUNK]
        if not self._backlog:
            self._backlog_bytes = 0
        self._produce(items)
        if self._backlog and self._settle_handle is None:
            self._settle_handle = asyncio.get_running_loop().call_soon(self._settle_some)

    def _produce(self, items: list) -> None:
        self._settling = True
        try:
            for produce, args in items:
                try:
                    produce(*args)
                except Exception as exc:  # nothing traced is lost silently
                    self._store_append(Record(t=self.now(), kind="error",
                                              note=f"siolab could not decode a packet it relayed: {exc!r}"))
        finally:
            self._settling = False

    def clear(self) -> None:
        """Forget every record (listeners stay; the dropped count resets)."""
        self._records.clear()
        self.dropped = 0

    # -- listening
    def subscribe(self, listener: Callable[[Record], None]) -> Callable[[], None]:
        """Call ``listener(record)`` for each new record; returns a function that unsubscribes."""
        self._listeners += (listener,)

        def unsubscribe() -> None:
            if listener in self._listeners:
                kept = list(self._listeners)
                kept.remove(listener)
                self._listeners = tuple(kept)
        return unsubscribe

    def _wake(self, record: Record) -> None:
        for item in tuple(self._waiters):
            criteria, where, fut = item
            if not fut.done() and matches(record, where, **criteria):
                fut.set_result(record)
            if fut.done():
                self._waiters.remove(item)

    async def wait_for(self, timeout: float = 5.0, where: Callable[[Record], bool] | None = None,
                       **criteria: Any) -> Record:
        """Wait until a record matching the criteria is in the trace (one already there counts)."""
        found = self.first(where=where, **criteria)
        if found is not None:
            return found
        fut = asyncio.get_running_loop().create_future()
        item = (criteria, where, fut)
        self._waiters.append(item)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no record with {_describe(criteria, where)} within {timeout} s; "
                                 f"last records:\n{self.tail(8)}") from None
        finally:
            if item in self._waiters:
                self._waiters.remove(item)

    # -- reading
    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(tuple(self._records))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._records)[index]
        return self._records[index]

    def filter(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> "Trace":
        """A new (unbounded) Trace with the matching records, in order."""
        out = Trace(limit=None)
        out.t0 = self.t0
        out._records.extend(r for r in self._records if matches(r, where, **criteria))
        return out

    def find(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> list[Record]:
        """Every matching record, in order."""
        return [r for r in self._records if matches(r, where, **criteria)]

    def first(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Record | None:
        return next((r for r in self._records if matches(r, where, **criteria)), None)

    def expect(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Record:
        """The first matching record; an AssertionError that shows the trace's tail if none matches."""
        found = self.first(where=where, **criteria)
        if found is None:
            raise AssertionError(f"no record with {_describe(criteria, where)}; last records:\n{self.tail(8)}")
        return found

    def since(self, mark: float) -> "Trace":
        """The records at or after time ``mark`` (e.g. ``t = lab.trace.now()`` taken before an action)."""
        return self.filter(where=lambda r: r.t >= mark)

    def packets(self, **criteria: Any) -> list[Record]:
        """Only Engine.IO packets (no HTTP-only, WebSocket, fault or error records)."""
        return self.find(kind="packet", **criteria)

    def raws(self, **criteria: Any) -> list[str]:
        """The raw text of the matching packets, in order: handy for asserting a sequence."""
        return [r.raw for r in self.find(kind="packet", **criteria)]

    # -- showing
    def table(self, limit: int | None = 200, hide_heartbeats: bool = False) -> str:
        rows = [r for r in self._records if not (hide_heartbeats and r.eio in ("ping", "pong")
                                                  and r.raw in ("2", "3"))]
        head = f"{'time':>8}  {'client':<8} dir {'transport':<9} {'http':<8} {'raw':<50} meaning"
        lines = [head]
        if self.dropped:
            lines.append(f"({self.dropped} older records were dropped by the trace's limit of {self.limit})")
        if limit is not None and len(rows) > limit:
            lines.append(f"({len(rows) - limit} earlier records not shown)")
            rows = rows[-limit:]
        lines += [str(r) for r in rows]
        return "\n".join(lines)

    def tail(self, n: int = 10) -> str:
        return "\n".join(str(r) for r in list(self._records)[-n:])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<Trace {len(self)} records, {self.dropped} dropped>"

    def _repr_html_(self) -> str:
        def esc(text: str) -> str:
            return html.escape(text.translate(_CONTROL))
        rows = []
        for r in list(self._records)[-200:]:
            err = f"<br><span style='color:#c62828'>{esc(r.error)}</span>" if r.error else ""
            http_ = esc(f"{(r.http or {}).get('method') or ''} {(r.http or {}).get('status') or ''}")
            rows.append(
                f"<tr><td>{r.t:.3f}</td><td>{esc(r.client or '')}</td><td>{esc(ARROWS.get(r.dir, ''))}</td>"
                f"<td>{esc(r.transport or '')}</td><td>{http_}</td>"
                f"<td><code>{esc(_shorten(r.raw or '', 80))}</code></td><td>{esc(r.meaning)}{err}</td></tr>")
        note = ""
        if self.dropped:
            note = f"<p>{self.dropped} older records were dropped by the trace's limit of {self.limit}.</p>"
        if len(self) > 200:
            note += f"<p>Showing the last 200 of {len(self)} records.</p>"
        return (note + "<table><thead><tr><th>time</th><th>client</th><th></th><th>transport</th><th>http</th>"
                "<th>raw</th><th>meaning</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")

    def view(self, **options: Any):
        """The live trace view (a widget that grows as packets pass)."""
        from .widgets import TraceView
        return TraceView(self, **options)

    def sequence(self, **options: Any):
        """A client/server sequence diagram of this trace."""
        from .widgets import SequenceDiagram
        return SequenceDiagram(self, **options)

    # -- JSON Lines
    def to_jsonl(self, target: str | os.PathLike | io.TextIOBase | None = None) -> str | None:
        """Write one JSON object per record; returns the text when no target is given."""
        lines = (_dump_line(r) for r in self._records)
        if target is None:
            return "".join(lines)
        if isinstance(target, (str, os.PathLike)):
            with open(target, "w", encoding="utf-8") as fh:
                fh.writelines(lines)
        else:
            target.writelines(lines)
        return None

    @classmethod
    def from_jsonl(cls, source: str | os.PathLike | Iterable[str], limit: int | None = None) -> "Trace":
        """Read a JSON Lines trace (untrusted: each line is parsed as JSON and checked, never evaluated)."""
        if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
            with open(source, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        elif isinstance(source, str):
            lines = source.splitlines()
        else:
            lines = list(source)
        trace = cls(limit=limit)
        problems = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                trace._records.append(record_from_json(json.loads(line, parse_constant=_no_constant,
                                                                  parse_float=_finite_float)))
            except (ValueError, TypeError) as exc:
                problems.append(f"line {number}: {exc}")
            except RecursionError:
                problems.append(f"line {number}: nested too deeply to be a record")
        if problems:
            raise ValueError("invalid JSON Lines trace:\n" + "\n".join(problems[:20]))
        return trace


MAX_DEPTH = 200  # nesting an imported record may have (arrays and objects in args, http)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (only Python writes it)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:20]}{'…' if len(text) > 20 else ''} is too large (it would be infinite)")
    return value


def _dump_line(record: Record) -> str:
    obj = record_to_json(record)
    try:
        return json.dumps(obj, ensure_ascii=False, default=_json_default, allow_nan=False) + "\n"
    except ValueError:  # NaN or Infinity decoded from the wire (Python's json reads them): write them as text
        return json.dumps(_finite(obj), ensure_ascii=False, default=_json_default, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return repr(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (iterative: hostile input cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return protocol.attachment_marker(value)
    return repr(value)


def record_to_json(record: Record) -> dict:
    return record.to_json()


_TYPES = {f.name: f.type for f in fields(Record)}


def record_from_json(obj: Any) -> Record:
    """Check one JSON object against the record format and build the Record (raises ValueError)."""
    if not isinstance(obj, dict):
        raise ValueError("a record is a JSON object")
    unknown = set(obj) - set(JSONL_KEYS)
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if not isinstance(obj.get("t"), (int, float)) or isinstance(obj.get("t"), bool):
        raise ValueError("'t' must be a number")
    if not -1e12 < obj["t"] < 1e12:
        raise ValueError("'t' must be a number of seconds since the trace started")
    checks = {
        "kind": (str,), "dir": (str, type(None)), "transport": (str, type(None)), "http": (dict, type(None)),
        "raw": (str, type(None)), "binary": (bool,), "eio": (str, type(None)), "sio": (str, type(None)),
        "nsp": (str, type(None)), "ack": (int, type(None)), "event": (str, type(None)),
        "args": (list, type(None)), "attachments": (int,), "sid": (str, type(None)),
        "client": (str, type(None)), "error": (str, type(None)), "note": (str, type(None)),
        "server": (str, type(None)),
    }
    for key, allowed in checks.items():
        if key in obj and not isinstance(obj[key], allowed):
            raise ValueError(f"'{key}' has the wrong type ({type(obj[key]).__name__})")
    for key in ("ack", "attachments"):
        if isinstance(obj.get(key), bool) or (isinstance(obj.get(key), int) and obj[key] < 0):
            raise ValueError(f"'{key}' must be a whole number >= 0")
    http = obj.get("http")
    if http is not None:
        if set(http) - {"method", "path", "status"}:
            raise ValueError(f"'http' has unknown keys {sorted(set(http) - {'method', 'path', 'status'})[:5]}")
        if not all(isinstance(http.get(k), (str, type(None))) for k in ("method", "path")) or \
                not isinstance(http.get("status"), (int, type(None))) or isinstance(http.get("status"), bool):
            raise ValueError("'http' must be {method: text, path: text, status: number or null}")
    if _depth(obj.get("args")) > MAX_DEPTH:
        raise ValueError(f"'args' nests more than {MAX_DEPTH} levels deep")
    if obj.get("kind", "packet") not in KINDS:
        raise ValueError(f"'kind' must be one of {KINDS}")
    if obj.get("dir") not in ("c2s", "s2c", None):
        raise ValueError("'dir' must be 'c2s', 's2c' or null")
    if obj.get("eio") not in protocol.EIO_TYPES + (None,):
        raise ValueError("'eio' must be an Engine.IO type name or null")
    if obj.get("sio") not in protocol.SIO_TYPES + (None,):
        raise ValueError("'sio' must be a Socket.IO type name or null")
    if obj.get("binary") and obj.get("raw") is not None:
        try:
            base64.b64decode(obj["raw"], validate=True)
        except ValueError:
            raise ValueError("binary 'raw' must be base64") from None
    return Record(**obj)


def _describe(criteria: dict, where: Callable | None) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in criteria.items()) or "any fields"
    return text + (" and a where= condition" if where else "")


__all__ = ["Record", "Trace", "matches", "record_from_json", "record_to_json", "replace", "KINDS", "JSONL_KEYS"]
