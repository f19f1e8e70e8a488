"""The recorder: what was observed on the wire in, Records out (sans-IO, in the h11/wsproto manner).

It is fed what a source saw: an HTTP request and its answer (bytes, status, headers, times), a WebSocket
message with its direction and opcode, a close. It returns the Records that say what they were, and owns
what that takes across calls: Engine.IO sessions (sid <-> client name, maxPayload, pending long-polls,
close packets), the pairing of binary events with their attachments, and the explanatory notes. It does
no I/O and reads no clock: ``t``, ``client`` and ``server`` are arguments. The live tap (tap.py,
ws_relay.py) feeds it, and so can a file of recorded traffic.

Whether the tap reads a message before relaying it (a fault switch may act) or after (nothing can change
it) changes *when* it calls the recorder, never *which* method: ``request``, ``response`` and ``message``
each take the usual packet's short cut themselves when they can (tests compare it with the general path).
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Hashable
from urllib.parse import unquote_plus

from . import notes, protocol
from .record import Record, lazy_http, lazy_packet, new_record, with_fields
from .text import body_text

CLIENT_HEADER = "X-Siolab-Client"
CLIENT_PARAM = "siolab_client"
MAX_SESSIONS = 10_000  # Engine.IO sessions remembered (for maxPayload, overlapping polls, close)
MAX_RECORDED_BODY = 4096  # non-Engine.IO bodies are recorded up to this many characters


def parse_query(query_string: str) -> dict[str, str]:
    """The query's parameters, the first value of each (as python-engineio and Node.js read them)."""
    out: dict[str, str] = {}
    plain = "%" not in query_string and "+" not in query_string  # nothing to unquote (the usual case)
    for part in query_string.split("&"):
        if part:
            key, _, value = part.partition("=")
            if plain:
                out.setdefault(key, value)
            else:
                out.setdefault(unquote_plus(key), unquote_plus(value))
    return out


def strip_client(query_string: str) -> str:
    """The query string without siolab's own ``siolab_client`` parameter (with a value or without), otherwise
    byte for byte."""
    if CLIENT_PARAM not in query_string:
        return query_string
    return "&".join(p for p in query_string.split("&") if p.partition("=")[0] != CLIENT_PARAM)


@dataclass
class Session:
    """What the recorder learned about one Engine.IO session (by sid), to explain what goes wrong later."""

    max_payload: int | None = None  # from the open packet
    polls: int = 0  # long-poll GETs now pending
    closed: set = field(default_factory=set)  # directions that sent the close packet (1)


class Exchange:
    """One HTTP exchange as recorded: what was true when the request came (its answer is recorded later)."""

    __slots__ = ("t", "client", "sid", "query", "is_eio", "transport", "method", "body", "req_http", "key",
                 "session", "long_poll", "overlap", "body_error", "body_packets", "body_record", "server",
                 "given_transport")

    def __init__(self, t: float, client: str | None, sid: str | None, query: str, is_eio: bool,
                 transport: str | None, method: str, body: bytes, req_http: dict, key: Hashable,
                 session: Session | None, server: str | None) -> None:
        self.t, self.client, self.sid, self.query, self.is_eio = t, client, sid, query, is_eio
        self.transport, self.method, self.body, self.req_http, self.key = transport, method, body, req_http, key
        self.session, self.server = session, server
        self.long_poll = session is not None and method == "GET"
        self.overlap = session is not None and self.long_poll and session.polls > 0
        self.body_error: str | None = None
        self.body_packets = 0
        self.body_record: Record | None = None  # the usual POST's one packet (a LazyRecord: valid when read)
        self.given_transport: str | None = None  # the query's transport parameter as it came

    @property
    def where(self) -> dict:
        """The fields every record of this exchange shares."""
        return {"transport": self.transport, "sid": self.sid, "client": self.client, "server": self.server}

    def http(self, status: int | None) -> dict:
        return {**self.req_http, "status": status}


class Stream:
    """One WebSocket as recorded (its session may be learned from the open packet that comes over it)."""

    __slots__ = ("key", "sid", "client", "server")

    def __init__(self, sid: str | None, client: str | None, server: str | None) -> None:
        self.key = ("ws", id(self))
        self.sid, self.client, self.server = sid, client, server

    @property
    def where(self) -> dict:
        return {"transport": "websocket", "sid": self.sid, "client": self.client, "server": self.server}


class Recorder:
    """Turns observed traffic into Records (``layer="engine.io"`` stops decoding at Engine.IO).

    ``short_cuts=False`` takes the general path for every packet: the records are the same (tests compare the
    two, field for field); ``short_cuts_taken`` counts the packets that took the short cut."""

    def __init__(self, layer: str = "socket.io", *, short_cuts: bool = True,
                 max_inflate: int = protocol.MAX_INFLATE) -> None:
        self.layer = layer
        self.max_inflate = max_inflate  # bytes a compressed answer may inflate to (more: not decoded)
        self.short_cuts = short_cuts
        self.short_cuts_taken = 0
        self.names: dict[str, str] = {}  # Engine.IO sid -> client name
        self._sessions: dict[str, Session] = {}
        self._reassemblers: dict[tuple, protocol.Reassembler] = {}  # (exchange or stream key, dir) -> pairing

    # ------------------------------------------------------------ sessions and names
    def knows(self, sid: str) -> bool:
        return sid in self._sessions

    def session(self, sid: str | None) -> Session | None:
        """The session with this sid, remembered from now on (None for no sid)."""
        if sid is None:
            return None
        session = self._sessions.get(sid)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:  # a client inventing sids must not grow memory forever
                del self._sessions[next(iter(self._sessions))]
            session = self._sessions[sid] = Session()
        return session

    def client_of(self, header: str | None, query: dict[str, str]) -> tuple[str | None, str | None]:
        """The client's name (its header, its query parameter, or what its session's open packet taught) and
        its sid."""
        name = header or query.get(CLIENT_PARAM) or None
        sid = query.get("sid")
        if name is None and sid is not None:
            name = self.names.get(sid)
        return name, sid

    # ------------------------------------------------------------ HTTP
    def exchange(self, *, t: float, method: str, path: str, query_string: str, query: dict[str, str],
                 client_header: str | None, body: bytes, server: str | None, key: Hashable) -> Exchange:
        """A request came: what the exchange's records will say (``key`` tells exchanges without a sid
        apart)."""
        client, sid = self.client_of(client_header, query)
        stripped = strip_client(query_string)
        is_eio = "EIO" in query
        transport = query.get("transport") if is_eio else None
        transport = transport if transport in ("polling", "websocket") else ("polling" if is_eio else None)
        req_http = {"method": method, "path": path + (f"?{stripped}" if stripped else ""), "status": None}
        session = self.session(sid) if is_eio else None
        exchange = Exchange(t, client, sid, stripped, is_eio, transport, method, body, req_http, sid or key, session,
                            server)
        exchange.given_transport = query.get("transport")
        return exchange

    def request(self, exchange: Exchange, held: bool = False) -> tuple[list[Record], bool]:
        """A request's records: its packets (True), or one HTTP record that explains it (False).
        ``held``: a pause holds it."""
        t, body, where = exchange.t, exchange.body, exchange.where
        if exchange.is_eio and exchange.method == "POST" and body:
            rec = self._usual(body, "c2s", exchange.transport, exchange.req_http, exchange.sid, exchange.client,
                              exchange.server, exchange.key, t) \
                if not held and b"\x1e" not in body else None
            if rec is not None:
                exchange.body_packets = 1
                exchange.body_record = rec  # whether it is valid is known when it is read (the answer's note says)
                return [rec], True
            packets, perr = protocol.decode_payload(body)
            exchange.body_error, exchange.body_packets = perr, len(packets)
            if packets:
                records = self._packets(packets, "c2s", exchange.req_http, exchange.key, t, **where)
                exchange.body_error = perr or next((r.error for r in records if r.error), None)
                return _held(records) if held else records, True
            return [new_record(t=t, kind="http", dir="c2s", http=exchange.req_http,
                               raw=body_text(body, MAX_RECORDED_BODY), error=f"invalid polling body: {perr}",
                               note=notes.HELD if held else None, **where)], False
        note = error = None
        if exchange.is_eio and exchange.method == "GET":
            note = "handshake: open a session" if exchange.sid is None else "long-poll: wait for the server's packets"
            if exchange.overlap:
                error = notes.overlapping_poll()
        elif not exchange.is_eio:
            note = "not an Engine.IO request (no EIO in the query)"
        given = exchange.given_transport
        if exchange.is_eio and given not in ("polling", "websocket"):
            note = ((note + "; ") if note else "") + (
                "no transport parameter (python-engineio then assumes polling; the Node.js server refuses)"
                if given is None else f"transport={given!r} is not a transport (polling or websocket)")
        if held:
            note = ((note + "; ") if note else "") + notes.HELD
        return [new_record(t=t, kind="http", dir="c2s", http=exchange.req_http,
                           raw=body_text(body, MAX_RECORDED_BODY) if body else None, note=note, error=error,
                           **where)], False

    def poll_started(self, exchange: Exchange) -> None:
        """The request goes to the server now (a long-poll is pending from here)."""
        if exchange.long_poll and exchange.session is not None:
            exchange.session.polls += 1

    def poll_ended(self, exchange: Exchange) -> None:
        if exchange.long_poll and exchange.session is not None:
            exchange.session.polls -= 1

    def response(self, exchange: Exchange, *, status: int, content_type: str | None, content_encoding: str | None,
                 body: bytes, t: float, held: bool = False) -> tuple[list[Record], bool, bytes]:
        """An answer's records: its packets (True), or one HTTP record that explains it (False); and the body
        as plain bytes (decompressed)."""
        where = exchange.where
        resp_http = exchange.http(status)
        limit = self.max_inflate
        if exchange.session is not None and exchange.session.max_payload:
            limit = max(limit, exchange.session.max_payload)
        plain, unread = protocol.inflate(body, content_encoding, limit)
        ctype = content_type or ""
        if unread is not None and plain is body:  # not decoded: one record that says why, with the sizes
            return [new_record(t=t, kind="http", dir="s2c", http=resp_http, raw=body_text(plain[:256], 256),
                               error=unread if exchange.is_eio else None,
                               note=None if exchange.is_eio else unread, **where)], False, plain
        if exchange.is_eio and status == 200 and exchange.method == "GET" \
                and ctype.startswith(("text/plain", "application/octet")):
            rec = self._usual(plain, "s2c", exchange.transport, resp_http, exchange.sid, exchange.client,
                              exchange.server, exchange.key, t) \
                if not held and b"\x1e" not in plain else None
            if rec is not None:
                return [rec], True, plain
            packets, perr = protocol.decode_payload(plain)
            if packets:
                records = self._packets(packets, "s2c", resp_http, exchange.key, t, **where)
                return _held(records) if held else records, True, plain
            return [new_record(t=t, kind="http", dir="s2c", http=resp_http,
                               raw=body_text(plain, MAX_RECORDED_BODY), error=f"invalid polling body: {perr}",
                               note=notes.HELD if held else None, **where)], False, plain
        text = body_text(plain, MAX_RECORDED_BODY)
        error = note = None
        if exchange.is_eio and notes.is_html(ctype, text):
            error = notes.html_answer(status)
        elif exchange.is_eio and status >= 400:
            error = protocol.explain_refusal(status, text)
            if exchange.overlap:
                error += " - this long-poll overlapped another one for the same session"
            limit = exchange.session.max_payload if exchange.session is not None else None
            if exchange.method == "POST" and limit is not None and len(exchange.body or b"") > limit:
                error += notes.too_big_post(len(exchange.body), limit)
        elif exchange.is_eio and status == 200 and exchange.method == "POST":
            packet = exchange.body_record
            if packet is not None and not held:  # the note waits until somebody reads it (LazyRecord)
                return [lazy_http(lambda _: {"note": notes.post_ok(packet.error, 1)}, t=t, dir="s2c",
                                  http=resp_http, raw=text, **where)], False, plain
            note = notes.post_ok(exchange.body_error or (packet.error if packet is not None else None),
                                 exchange.body_packets)
        elif exchange.is_eio:
            error = f"not an Engine.IO response: HTTP {status} {ctype or 'without a Content-Type'}"
        elif status >= 400:
            note = f"HTTP {status} {ctype}"
        if held:
            note = ((note + "; ") if note else "") + notes.HELD
        return [new_record(t=t, kind="http", dir="s2c", http=resp_http, raw=text, error=error, note=note,
                           **where)], False, plain

    def unread(self, exchange: Exchange, *, status: int | None, t: float, note: str,
               error: str | None = None) -> list[Record]:
        """An answer whose body the source does not have (a HAR that leaves bodies out, or a request that got
        no answer): one HTTP record that says so, instead of packets guessed from nothing."""
        return [new_record(t=t, kind="http", dir="s2c", http=exchange.http(status), note=note, error=error,
                           **exchange.where)]

    def exchange_ended(self, exchange: Exchange, status: int) -> list[Record]:
        """The answer went on: a refused polling session ends its binary pairing (what waited is recorded)."""
        if exchange.transport == "polling" and status >= 400 and exchange.sid:
            return self.flush(exchange.sid, "the session was refused", **exchange.where)
        return []

    # ------------------------------------------------------------ WebSocket
    def websocket(self, sid: str | None, client: str | None, server: str | None) -> Stream:
        return Stream(sid, client, server)

    def message(self, stream: Stream, dir: str, opcode: int, payload: bytes, t: float, *, held: bool = False,
                gone: bool = False) -> list[Record]:
        """The records of one whole WebSocket message (opcode 1 text, 2 binary). ``held``: a pause holds it;
        ``gone``: the receiver's side is closed already, so it is not relayed."""
        session = self._sessions.get(stream.sid) if stream.sid else None
        too_big = session is not None and session.max_payload is not None and len(payload) > session.max_payload
        if opcode == 1 and not (held or gone or too_big):
            rec = self._usual(payload, dir, "websocket", None, stream.sid, stream.client, stream.server,
                              stream.key, t)
            if rec is not None:
                return [rec]
        error = None
        if opcode == 1:
            try:
                data: str | bytes = payload.decode("utf-8")
            except UnicodeDecodeError:
                data = payload.decode("utf-8", errors="backslashreplace")
                error = notes.NOT_UTF8
        else:
            data = payload
        records = self._packets([protocol.decode_eio(data)], dir, None, stream.key, t, **stream.where)
        for rec in records:
            if rec.sid and stream.sid is None:  # the open packet came over this WebSocket
                stream.sid = rec.sid
                stream.client = stream.client or self.names.get(rec.sid)
        if error:
            records = [_with_error(rec, error) for rec in records]
        session = self._sessions.get(stream.sid) if stream.sid else None
        if session is not None and session.max_payload is not None and len(payload) > session.max_payload:
            records = [_with_error(rec, notes.too_big_frame(len(payload), session.max_payload)) for rec in records]
        if held:
            records = _held(records)
        elif gone:
            records = [with_fields(rec, note=notes.NOT_RELAYED) for rec in records]
        return records

    def frame_error(self, stream: Stream, dir: str, error: str, t: float) -> Record:
        """Something about the frames themselves (not a frame, a lone continuation, a bad close frame)."""
        return new_record(t=t, kind="ws", dir=dir, error=error, **stream.where)

    def closed(self, stream: Stream, dir: str | None, code: int, t: float, by: str | None = None) -> list[Record]:
        """The WebSocket closed (the first close frame, from ``dir``; or its connection dropped; or ``by``
        someone else, e.g. the tap): attachments still awaited, then the close record."""
        closer = by or ("client" if dir == "c2s" else "server")
        out = self.flush(stream.key, "the WebSocket closed", **stream.where)
        note, error = notes.close_note(closer, code)
        out.append(new_record(t=t, kind="ws", dir=dir if by is None else None, note=note, error=error,
                              **stream.where))
        return out

    def ended(self, stream: Stream, t: float, note: str) -> list[Record]:
        """The WebSocket ended without a close the source saw (a HAR keeps no close frames): attachments still
        awaited, then a ``ws`` record with ``note`` (no close code is made up)."""
        out = self.flush(stream.key, "the WebSocket ended", **stream.where)
        out.append(new_record(t=t, kind="ws", note=note, **stream.where))
        return out

    # ------------------------------------------------------------ decoding
    def flush(self, key: Hashable, why: str, **where: Any) -> list[Record]:
        """The binary packets left waiting for attachments when their connection ends (at their own times)."""
        out = []
        for dir in ("c2s", "s2c"):
            reassembler = self._reassemblers.pop((key, dir), None)
            if reassembler is not None:
                for when, d in reassembler.flush(why):
                    out.append(self._record(d, when, dir, where.get("transport"), None, where.get("sid"),
                                            where.get("client"), where.get("server")))
        return out

    def _packets(self, packets: list[protocol.EioPacket], dir: str, http: dict | None, key: Hashable, t: float, *,
                 transport: str | None, sid: str | None, client: str | None, server: str | None) -> list[Record]:
        """Decode packets into records, pairing binary events with their attachments."""
        if self.layer != "socket.io":
            decoded = [(t, protocol.Decoded(eio=p, error=p.error)) for p in packets]
        else:
            reassembler = self._reassemblers.get((key, dir))
            if reassembler is None:
                reassembler = self._reassemblers[(key, dir)] = protocol.Reassembler()
            decoded = []
            for p in packets:
                decoded.extend(reassembler.feed(p, t))
        return [self._record(d, when, dir, transport, http, sid, client, server) for when, d in decoded]

    def _usual(self, payload: bytes, dir: str, transport: str | None, http: dict | None, sid: str | None,
               client: str | None, server: str | None, key: Hashable, t: float) -> Record | None:
        """The short cut for the usual packet: one Socket.IO packet without attachments, in a session the
        recorder knows, with nothing to explain about its session or framing. None leaves it to the general
        path (``_packets``), which explains everything else and gives the same record (tests check). A
        CONNECT, DISCONNECT, EVENT or ACK is a LazyRecord; the others come from python-socketio's parse."""
        if payload[:1] != b"4" or not payload[1:2].isdigit() or sid is None or self.layer != "socket.io" \
                or not self.short_cuts:
            return None
        session = self._sessions.get(sid)
        if session is not None and dir in session.closed:
            return None
        reassembler = self._reassemblers.get((key, dir))
        if reassembler is not None and reassembler.pending is not None:
            return None
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if payload[1] < 0x34:  # CONNECT, DISCONNECT, EVENT, ACK: its JSON is read when a field is (LazyRecord)
            self.short_cuts_taken += 1
            return lazy_packet(t=t, dir=dir, transport=transport, http=http, raw=text, sid=sid, client=client,
                               server=server)
        sio = protocol.decode_sio(text[1:])
        if sio.error is not None or sio.attachments or sio.type == "connect_error":
            return None
        self.short_cuts_taken += 1
        return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=text, eio="message",
                          sio=sio.type, nsp=sio.nsp, ack=sio.ack, event=sio.event, args=sio.args, sid=sid,
                          client=client, server=server)

    def _record(self, d: protocol.Decoded, t: float, dir: str, transport: str | None, http: dict | None,
                sid: str | None, client: str | None, server: str | None) -> Record:
        pkt = d.eio
        error, note = d.error, None
        if pkt.type == "open" and isinstance(pkt.data, dict) and isinstance(pkt.data.get("sid"), str):
            sid = pkt.data["sid"]
            if client:
                self.names[sid] = client
            max_payload = pkt.data.get("maxPayload")
            session = self.session(sid)
            if isinstance(max_payload, int) and not isinstance(max_payload, bool) and session is not None:
                session.max_payload = max_payload
        session = self._sessions.get(sid) if sid else None
        if session is not None:
            if dir in session.closed and error is None:
                error = notes.after_close(dir)
            elif pkt.type == "close":
                session.closed.add(dir)
        if pkt.binary:
            raw = base64.b64encode(pkt.data or b"").decode("ascii")
            note = f"attachment {d.attachment_of}" if d.attachment_of is not None else None
            return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, binary=True,
                              eio="message", error=error, note=note, sid=sid, client=client, server=server)
        sio = d.sio
        raw = pkt.raw if isinstance(pkt.raw, str) else repr(pkt.raw)
        if sio is None:
            return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, eio=pkt.type,
                              args=d.args, error=error, sid=sid, client=client, server=server)
        if sio.type == "connect_error" and error is None:
            note = notes.connect_error(sio.nsp, sio.data)
        return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, eio=pkt.type,
                          sio=sio.type, nsp=sio.nsp if sio.type else None, ack=sio.ack, event=sio.event,
                          args=d.args, attachments=sio.attachments, error=error, note=note, sid=sid, client=client,
                          server=server)


def _held(records: list[Record]) -> list[Record]:
    return [with_fields(rec, note=f"{rec.note}; {notes.HELD}" if rec.note else notes.HELD) for rec in records]


def _with_error(rec: Record, error: str) -> Record:
    return with_fields(rec, error=f"{rec.error}; {error}" if rec.error else error)
