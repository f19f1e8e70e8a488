"""The Record: one thing seen on the wire, as every source (the live tap, a JSON Lines or HAR file) gives it.

Records are frozen. ``LazyRecord`` is a Record some of whose fields are worked out when first read
(see its docstring and docs/architecture.md); whoever reads it gets exactly the Record that decoding at
once would have made. Nothing here does I/O or knows about time, sockets or widgets.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, fields
from typing import Any, Callable

from . import protocol
from .frozen import constructor
from .text import CONTROL

#: What a record is about (``Record.kind``).
KINDS = ("packet", "http", "ws", "fault", "error", "log")
DIRECTIONS = ("c2s", "s2c")
TRANSPORTS = ("polling", "websocket")
ARROWS = {"c2s": "->", "s2c": "<-", None: "  "}
def binary_label(data: str, shown: int = 8) -> str:
    """``<binary 4 bytes: 01 02 03 04>`` for base64 ``data``: a binary frame is not text."""
    try:
        octets = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return f"<binary, not valid base64: {data[:32]}>"
    hexes = " ".join(f"{b:02x}" for b in octets[:shown]) + (" …" if len(octets) > shown else "")
    unit = "byte" if len(octets) == 1 else "bytes"
    return f"<binary {len(octets)} {unit}: {hexes}>" if octets else "<binary 0 bytes>"


_LINE = "%8.3f  %-8s %s %-9s %-8s %-50s %s"  # time, client, arrow, transport, HTTP, raw, meaning


@dataclass(frozen=True, slots=True)
class Record:
    """One thing seen on the wire: a packet, an HTTP exchange, a WebSocket open/close, a fault, an error.

    Every field is also a key of the JSON Lines format (docs/trace-format.md, same order).
    """

    #: seconds since the trace started (monotonic clock)
    t: float
    #: one of KINDS: ``packet`` (an Engine.IO packet), ``http`` (a request, or an answer carrying no packet),
    #: ``ws`` (WebSocket upgrade, 101, close), ``fault`` (what a fault switch did), ``error``, ``log``
    kind: str = "packet"
    #: ``c2s`` (client to server), ``s2c``, or None
    dir: str | None = None
    #: ``polling`` or ``websocket``, or None
    transport: str | None = None
    #: ``{"method", "path" (with query), "status"}`` for HTTP traffic (status None on the request side);
    #: packets in a polling body carry their request's or response's
    http: dict | None = None
    #: the packet as on the wire (base64 when ``binary``); an HTTP body, cut to a few kB
    raw: str | None = None
    #: a binary attachment (a binary WebSocket frame, or ``b...`` in a polling body)
    binary: bool = False
    #: Engine.IO type name (``open`` ... ``noop``) or None
    eio: str | None = None
    #: Socket.IO type name (``connect`` ... ``binary_ack``) or None
    sio: str | None = None
    #: the Socket.IO namespace
    nsp: str | None = None
    #: the ack id
    ack: int | None = None
    #: the event name
    event: str | None = None
    #: the event's arguments (attachments shown as ``"<4 bytes>"``), or the Engine.IO packet's data
    args: list | None = None
    #: the attachment count of a ``binary_event`` / ``binary_ack``
    attachments: int = 0
    #: the Engine.IO session id
    sid: str | None = None
    #: the client's name, or None
    client: str | None = None
    #: set only when the traffic is invalid or refused, saying what is wrong
    error: str | None = None
    #: plain-English detail (non-packet records, attachments, notes on refusals)
    note: str | None = None
    #: with several servers behind a balancing tap: the server the exchange went to (``A``, ``B``, ...)
    server: str | None = None

    @property
    def data(self) -> Any:
        """The decoded data of the Engine.IO packet (e.g. the open packet's dict)."""
        if self.raw is None or self.binary:
            return None
        return protocol.decode_eio(self.raw).data

    @property
    def shown_raw(self) -> str:
        """``raw`` as it travels, for tables and views: a polling attachment keeps its ``b`` prefix, a
        binary WebSocket frame shows as ``<binary 4 bytes: 01 02 03 04>`` (``raw`` itself, and JSON Lines,
        keep the exact base64)."""
        raw = self.raw
        if raw is None:
            return ""
        if not self.binary:
            return raw
        if self.transport == "polling":
            return "b" + raw
        return binary_label(raw)

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
        """One terminal line: time, client, arrow, transport, HTTP, raw, meaning, error (render.py: tables)."""
        http = self.http
        method = ""
        if http:
            verb, status = http.get("method") or "", http.get("status") or ""
            method = f"{verb} {status}" if verb and status else f"{verb}{status}"
        raw = self.raw
        if raw is None:
            raw = ""
        else:
            if self.binary:
                raw = self.shown_raw
            if not raw.isprintable():
                raw = raw.translate(CONTROL)
            if len(raw) > 48:
                raw = raw[:47] + "…"
        text = _LINE % (self.t, self.client or "-", ARROWS.get(self.dir, "  "), self.transport or "-", method,
                        raw, self.meaning)  # (%-formatting: half the time of an f-string with format specs)
        error = self.error
        if error:
            text = f"{text}  !! {error}"
        text = text.rstrip()
        # wire text must not drive the terminal (ANSI escapes); printable text has no control characters
        return text if text.isprintable() else text.translate(CONTROL)

    def to_json(self) -> dict:
        """The JSON Lines object for this record (every field; binary raw is base64)."""
        return {k: getattr(self, k) for k in FIELDS}


FIELDS = tuple(f.name for f in fields(Record))
# (eio, sio) -> the words a record's meaning starts with (the usual pairs, worked out once)
_TYPE_WORDS: dict[tuple[str | None, str | None], str] = {(eio, sio): " ".join(p.upper() for p in (eio, sio) if p)
               for eio in protocol.EIO_TYPES for sio in (None, *protocol.SIO_TYPES)}

new_record = constructor(Record)  # Record(**values), faster: the tap makes one or more per packet


def is_heartbeat(record: Record) -> bool:
    """A ping or pong of the heartbeat that went through: not the upgrade's ``2probe``/``3probe``, and not one
    the tap dropped (a fault record: hiding heartbeats must not hide a fault)."""
    return record.kind == "packet" and record.eio in ("ping", "pong") and record.raw in ("2", "3")


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


def with_fields(record: Record, **changes: Any) -> Record:
    """A copy of ``record`` with some fields changed (a LazyRecord's are worked out first)."""
    values = {name: getattr(record, name) for name in FIELDS}
    values.update(changes)
    return new_record(**values)


# ---------------------------------------------------------------- lazy decoding
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
    """A record some of whose fields (``LAZY_FIELDS``) are worked out when one of them is first read, like a
    protocol analyser that dissects a packet when it is shown. The recorder makes one for each CONNECT,
    DISCONNECT, EVENT or ACK packet (decoded from ``raw``) and for the server's OK to a POST of one (whose note
    says whether that packet was valid). Decoding between two packets, with cold caches, was most of what
    tracing cost (docs/benchmarks.md). Whoever reads a field gets exactly what decoding at once would have
    given (tests compare them field for field). Once worked out, the record is an ordinary one (``_Known``).
    """

    __slots__ = ("_pending",)  # a function record -> {field: value} for the fields not known yet
    _pending: Callable[[Record], dict]

    def _resolve(self) -> None:
        try:
            values = self._pending(self)
        except Exception as exc:  # nothing traced is lost silently, and reading a record never raises
            values = {"error": f"siolab could not decode this record: {exc!r}"}
        for name, value in values.items():
            _SLOT[name].__set__(self, value)
        object.__setattr__(self, "__class__", _Known)


class _Known(_Worked):
    """A LazyRecord whose fields are known: a Record with the same layout and no properties in the way."""

    __slots__ = ("_pending",)


def _rebuild(values: tuple) -> Record:
    return new_record(**dict(zip(FIELDS, values)))


def _lazy_property(name: str) -> property:
    slot = _SLOT[name]

    def get(self: LazyRecord) -> Any:
        try:
            _ = self._pending
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

new_lazy = constructor(LazyRecord)  # as new_record, plus ``_pending``: the lazy fields' values are placeholders


def decode_packet_fields(record: Record) -> dict:
    """The fields of a Socket.IO packet's record (``'4' + packet`` in ``raw``) that come from its JSON."""
    sio = protocol.decode_sio((record.raw or "")[1:])
    return {"sio": sio.type, "nsp": sio.nsp, "ack": sio.ack, "event": sio.event, "args": sio.args,
            "error": sio.error}


def lazy_packet(*, t: float, dir: str, transport: str | None, http: dict | None, raw: str, sid: str | None,
                client: str | None, server: str | None) -> LazyRecord:
    """The record of a Socket.IO CONNECT/DISCONNECT/EVENT/ACK ``raw`` (``'4' + packet``), decoded when read."""
    return new_lazy(t=t, dir=dir, transport=transport, http=http, raw=raw, eio="message", sid=sid, client=client,
                    server=server, _pending=decode_packet_fields)


def lazy_http(produce: Callable[[Record], dict], *, t: float, dir: str, transport: str | None, http: dict,
              raw: str | None, sid: str | None, client: str | None, server: str | None) -> LazyRecord:
    """An HTTP record whose note (or error) ``produce(record)`` works out when read (the answer to a POST: its
    note says whether the POST's packet was valid, which is known when that packet is read)."""
    return new_lazy(t=t, kind="http", dir=dir, transport=transport, http=http, raw=raw, sid=sid, client=client,
                    server=server, _pending=produce)
