"""The tap: a recording reverse proxy between Socket.IO clients and any server.

It relays HTTP long-polling and WebSocket traffic as the bytes came (bodies, query strings, headers
including Host, cookies and CORS; every frame both ways; close codes) and records every Engine.IO
packet and HTTP exchange into a Trace. The sockets are ``relay.py``'s: the tap parses a copy of what
goes through, and rewrites only what a fault switch or its own bookkeeping needs. Clients may name
themselves with an ``X-Siolab-Client`` header or a ``siolab_client`` query parameter; the tap strips both
before relaying. Fault switches (refuse the WebSocket, drop or delay matching packets, pause a client)
are recorded too.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import unquote_plus, urlsplit

from . import protocol, relay, wire
from .faults import Fault, Faults
from .trace import EXCHANGE_SERVER, FIELDS, Record, Trace, new_lazy_http, new_lazy_record, new_record

log = logging.getLogger("siolab.tap")

CLIENT_HEADER = "X-Siolab-Client"
CLIENT_PARAM = "siolab_client"
# Offered WebSocket extensions are not passed on: with permessage-deflate the frames could not be read.
_DROP_UPGRADE = ("Sec-WebSocket-Extensions",)
MAX_RECORDED_BODY = 4096  # non-Engine.IO bodies are recorded up to this many characters
# What a WebSocket close code means (RFC 6455 section 7.4.1), for the trace's close records.
CLOSE_CODES = {
    1000: "normal closure", 1001: "going away (the endpoint is shutting down)",
    1002: "protocol error", 1003: "unsupported data",
    1005: "no close code was given", 1006: "abnormal closure: the connection dropped without a close frame",
    1007: "invalid frame payload (e.g. text that is not UTF-8)", 1008: "policy violation",
    1009: "message too big: a frame was larger than the receiver accepts (the server's maxPayload)",
    1011: "internal error on the server",
}
MAX_SESSIONS = 10_000  # Engine.IO sessions the tap remembers (for maxPayload, overlapping polls, close)
PYTHON_MAX_DECODE_PACKETS = 16  # engineio.payload.Payload.max_decode_packets: a python server drops bigger bodies
_CLOSE_ERRORS = {1002, 1003, 1007, 1008, 1009, 1011}  # codes that say something was wrong with the traffic
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A tap in its own process records a request right after writing it to the server. On a machine with few
# cores the scheduler often wakes the server on the tap's core, where it waits until the tap has recorded;
# yielding the CPU first let the server work meanwhile: tracing cost 10.4% of polling round trips without,
# 4.1% with (CLI tap, 40 repeats side by side, benchmarks/). (The lab's batches need no such thing.)
_yield_cpu = getattr(os, "sched_yield", lambda: None)


def _strip_client(query_string: str) -> str:
    """The query string without the tap's own ``siolab_client`` parameter, otherwise byte for byte."""
    if CLIENT_PARAM not in query_string:
        return query_string
    return "&".join(p for p in query_string.split("&") if not p.startswith(CLIENT_PARAM + "="))


def _query(query_string: str) -> dict[str, str]:
    """The query's parameters, the first value of each (as a server reads them)."""
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


class Request:
    """What the tap reads of one HTTP request (the shape a balancing tap's ``upstream_for`` sees)."""

    __slots__ = ("head", "method", "path", "query_string", "query", "headers")

    def __init__(self, head: wire.Request) -> None:
        self.head = head
        self.method = head.method
        self.path = head.path
        self.query_string = head.query_string
        self.query = _query(self.query_string)
        self.headers = head  # .get(name, default), case-insensitive


@dataclass
class _Conn:
    """What the tap knows about one direction of one Engine.IO session."""

    reassembler: protocol.Reassembler = field(default_factory=protocol.Reassembler)


@dataclass
class _Session:
    """What the tap learned about one Engine.IO session (by sid), to explain what goes wrong later."""

    max_payload: int | None = None  # from the open packet
    polls: int = 0  # long-poll GETs now pending
    closed: set = field(default_factory=set)  # directions that sent the close packet (1)


class _Exchange:
    """One HTTP exchange as the tap records it: what it knew when the request came (records made
    later, in a batch, must say what was true then)."""

    __slots__ = ("tap", "t", "request", "client", "sid", "query", "is_eio", "transport", "method", "body",
                 "req_http", "where", "key", "session", "long_poll", "overlap", "body_error", "body_packets",
                 "body_record", "server", "recorded")

    def __init__(self, tap: "Tap", msg: relay.Message, request: Request, sid: str | None) -> None:
        self.tap = tap
        self.t = tap.trace.now()
        self.request = request
        self.client, self.sid = tap._client_of(request)
        self.query = _strip_client(request.query_string)
        self.is_eio = "EIO" in request.query
        transport = request.query.get("transport") if self.is_eio else None
        self.transport = transport if transport in ("polling", "websocket") else ("polling" if self.is_eio else None)
        self.method = request.method
        self.body = msg.body
        self.req_http = {"method": request.method, "path": request.path + (f"?{self.query}" if self.query else ""),
                         "status": None}
        self.where = {"transport": self.transport, "sid": sid, "client": self.client}
        self.key = sid or id(msg)
        self.session = tap._session(sid) if self.is_eio else None
        self.long_poll = self.session is not None and request.method == "GET"
        self.overlap = self.long_poll and self.session.polls > 0
        self.body_error: str | None = None
        self.body_packets = 0
        self.body_record: Record | None = None  # the usual POST's one packet, its error not known yet (LazyRecord)
        self.server: str | None = None
        self.recorded = False

    def sent(self) -> None:
        """The request is on its way (or will never be): record it, once."""
        if not self.recorded:
            self.recorded = True
            tap = self.tap
            if tap.batch:
                tap.trace.defer(tap._record_request, self, size=len(self.body))
            else:
                _yield_cpu()  # the server just woken may be waiting for this core: let it run first
                tap._record_request(self)


class Tap:
    """Recording reverse proxy; ``await Tap(upstream).start()`` then point clients at ``tap.url``."""

    def __init__(self, upstream: str, trace: Trace | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 layer: str = "socket.io", record: bool = True, batch: bool = False) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the tap binds %s: it is reachable from other machines", host)
        self.upstream = upstream.rstrip("/")
        self.trace = trace if trace is not None else Trace()
        self.host, self.port = host, port
        self.layer = layer  # "socket.io" decodes messages as Socket.IO; "engine.io" stops at Engine.IO
        self.record = record  # False: relay only (no decoding, no packet records, no faults): a baseline
        # How traffic nobody can change is read, once it is relayed: right away, or in batches (Trace.defer).
        # Right away suits a tap in its own process (the CLI): it reads while the server works on what it just
        # relayed, and batches there cost 5-10% more round trips (a batch holds up every client at once). In
        # the lab, server, clients and tap share one loop, so nothing overlaps; batches run with warm caches
        # and cost half the CPU there. Batched records arrive at most SETTLE_AFTER (20 ms) later.
        self.batch = batch
        self.faults = Faults(self.trace)
        self.names: dict[str, str] = {}  # Engine.IO sid -> client name
        self._conns: dict[tuple, _Conn] = {}
        self._sessions: dict[str, _Session] = {}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()  # one per client connection
        self._websockets: set[_WebSocket] = set()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def addresses(self) -> list[tuple]:
        """The socket addresses the tap listens on."""
        return [s.getsockname() for s in self._server.sockets] if self._server is not None else []

    async def start(self) -> "Tap":
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self) -> relay.Conn:
        conn = relay.Conn()
        conn.on_made = self._serve_soon
        return conn

    def _serve_soon(self, down: relay.Conn) -> None:
        task = asyncio.ensure_future(self._serve(down))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        down.task = task

    async def close(self) -> None:
        """Close every relayed WebSocket, the listening socket and the connections both ways."""
        if self._server is not None:
            self._server.close()
        for ws in list(self._websockets):
            ws.shutdown()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self.trace.settle()

    async def __aenter__(self) -> "Tap":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------ fault switches (see faults.py)
    def refuse_websocket(self, refuse: bool = True) -> None:
        """Answer WebSocket upgrade requests with 403, like a proxy that does not allow WebSockets."""
        self.faults.refuse_websocket(refuse)

    def drop(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Fault:
        """Drop the packets that match (e.g. ``dir="c2s", eio="pong"``); returns the fault, ``.remove()`` ends it."""
        return self.faults.add("drop", where=where, criteria=criteria)

    def delay(self, seconds: float, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Fault:
        """Hold the matching packets (all packets if no criteria) for ``seconds`` before relaying."""
        return self.faults.add("delay", where=where, criteria=criteria, seconds=seconds)

    def pause(self, client: str | None = None) -> None:
        """Stop relaying a client's traffic (every client's if None) until ``resume``."""
        self.faults.pause(client)

    def resume(self, client: str | None = None) -> None:
        self.faults.resume(client)

    def clear_faults(self) -> None:
        self.faults.clear()

    # ------------------------------------------------------------ routing (a balancing tap overrides these)
    def upstream_for(self, request: Request, sid: str | None) -> str:
        """The server this request goes to (``sid``: its Engine.IO session, None for a handshake)."""
        return self.upstream

    def server_name(self, upstream: str) -> str | None:
        """How records name the server an exchange went to (None: this tap has one server)."""
        return None

    def _route(self, request: Request, sid: str | None) -> str:
        upstream = self.upstream_for(request, sid)
        EXCHANGE_SERVER.set(self.server_name(upstream))  # every record of this exchange names its server
        return upstream

    # ------------------------------------------------------------ recording
    def _client_of(self, request: Request) -> tuple[str | None, str | None]:
        name = request.headers.get(CLIENT_HEADER) or request.query.get(CLIENT_PARAM)
        sid = request.query.get("sid")
        if name is None and sid is not None:
            name = self.names.get(sid)
        return name, sid

    def _packet_records(self, packets: list[protocol.EioPacket], *, dir: str, transport: str, http: dict | None,
                        sid: str | None, client: str | None, key: Any, t: float | None = None) -> list[Record]:
        """Decode packets into records, pairing binary events with their attachments."""
        if t is None:
            t = self.trace.now()
        if self.layer != "socket.io":
            decoded = [(t, protocol.Decoded(eio=p, error=p.error)) for p in packets]
        else:
            conn = self._conns.get((key, dir))
            if conn is None:
                conn = self._conns[(key, dir)] = _Conn()
            decoded = []
            for p in packets:
                decoded.extend(conn.reassembler.feed(p, t))
        out = []
        for when, d in decoded:
            out.append(self._record(d, when, dir, transport, http, sid, client))
        return out

    def _plain_record(self, payload: bytes, dir: str, transport: str, http: dict | None, sid: str | None,
                      client: str | None, key: Any, t: float) -> Record | None:
        """The record of the usual packet (one Socket.IO packet without attachments, in a session the tap knows,
        with nothing to explain about its session or framing); None to leave it to the general path
        (``_packet_records``), which explains everything else. A CONNECT, DISCONNECT, EVENT or ACK is a
        LazyRecord (its JSON is read when a field is); the others come straight from python-socketio's parse.
        Same record either way (tests/test_relay.py)."""
        if payload[:1] != b"4" or not payload[1:2].isdigit() or sid is None or self.layer != "socket.io":
            return None
        session = self._sessions.get(sid)
        if session is not None and dir in session.closed:
            return None
        conn = self._conns.get((key, dir))
        if conn is not None and conn.reassembler.pending is not None:
            return None
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if payload[1] < 0x34:  # CONNECT, DISCONNECT, EVENT, ACK: its JSON is read when a field is (LazyRecord)
            return new_lazy_record(t=t, dir=dir, transport=transport, http=http, raw=text, sid=sid, client=client)
        sio = protocol.decode_sio(text[1:])
        if sio.error is not None or sio.attachments or sio.type == "connect_error":
            return None
        return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=text, eio="message",
                          sio=sio.type, nsp=sio.nsp, ack=sio.ack, event=sio.event, args=sio.args, sid=sid,
                          client=client)

    def _session(self, sid: str | None) -> _Session | None:
        if sid is None:
            return None
        session = self._sessions.get(sid)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:  # a client inventing sids must not grow the tap forever
                del self._sessions[next(iter(self._sessions))]
            session = self._sessions[sid] = _Session()
        return session

    def _record(self, d: protocol.Decoded, t: float, dir: str, transport: str | None, http: dict | None,
                sid: str | None, client: str | None) -> Record:
        pkt = d.eio
        error, note = d.error, None
        if pkt.type == "open" and isinstance(pkt.data, dict) and isinstance(pkt.data.get("sid"), str):
            sid = pkt.data["sid"]
            if client:
                self.names[sid] = client
            max_payload = pkt.data.get("maxPayload")
            if isinstance(max_payload, int) and not isinstance(max_payload, bool):
                self._session(sid).max_payload = max_payload
        session = self._sessions.get(sid) if sid else None
        if session is not None:
            if dir in session.closed and error is None:
                error = (f"sent after this side's close packet (1): the Engine.IO session is over, "
                         f"so this packet should not exist ({'client' if dir == 'c2s' else 'server'} misbehaves)")
            elif pkt.type == "close":
                session.closed.add(dir)
        if pkt.binary:
            raw = base64.b64encode(pkt.data or b"").decode("ascii")
            note = f"attachment {d.attachment_of}" if d.attachment_of is not None else None
            return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, binary=True,
                              eio="message", error=error, note=note, sid=sid, client=client)
        sio = d.sio
        raw = pkt.raw if isinstance(pkt.raw, str) else repr(pkt.raw)
        if sio is None:
            return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, eio=pkt.type,
                              args=d.args, error=error, sid=sid, client=client)
        if sio.type == "connect_error" and error is None:
            note = _connect_error_note(sio)
        return new_record(t=t, kind="packet", dir=dir, transport=transport, http=http, raw=raw, eio=pkt.type,
                          sio=sio.type, nsp=sio.nsp if sio.type else None, ack=sio.ack, event=sio.event,
                          args=d.args, attachments=sio.attachments, error=error, note=note, sid=sid, client=client)

    def _flush(self, key: Any, why: str, **where: Any) -> None:
        """Record binary packets left waiting for attachments when their connection ends."""
        for dir_ in ("c2s", "s2c"):
            conn = self._conns.pop((key, dir_), None)
            if conn is None:
                continue
            for t, d in conn.reassembler.flush(why):
                self.trace.append(self._record(d, t, dir_, where.get("transport"), None, where.get("sid"),
                                               where.get("client")))

    # ------------------------------------------------------------ one client connection
    async def _serve(self, down: relay.Conn) -> None:
        """Answer the requests of one client connection in turn, until it closes or becomes a WebSocket."""
        pool: dict[str, relay.Conn] = {}  # server URL -> this client's connection to it (kept alive)
        try:
            while True:
                try:
                    msg = await down.read_request(on_expect=lambda: down.write(_CONTINUE))
                except wire.WireError as exc:
                    came = getattr(exc, "head", None) or bytes(down.buf[:MAX_RECORDED_BODY])
                    self.trace.add(kind="http", dir="c2s", raw=_body_text(came),
                                   error=f"not an HTTP/1.1 request: {exc}",
                                   note="the tap answered 400 and closed the connection (nothing was relayed)")
                    down.write(relay.response_bytes(400, f"siolab tap: not an HTTP/1.1 request: {exc}",
                                                    headers={"Connection": "close"}))
                    return
                except ConnectionError:
                    return
                if msg is None:
                    return
                request = Request(msg.head)
                if (msg.head.get("Upgrade") or "").lower() == "websocket":
                    if not await self._handle_websocket(down, msg, request):
                        return
                elif not await self._handle_http(down, msg, request, pool):
                    return
        finally:
            for up in pool.values():
                up.close()
            if down.on_data is None:  # a WebSocket's connection is closed by its _WebSocket
                down.close()

    async def _exchange(self, pool: dict[str, relay.Conn] | None, upstream: str, data: bytes,
                        method: str, sent: Callable[[], None] | None = None) -> tuple[relay.Message, relay.Conn]:
        """Send one request's bytes to ``upstream`` and read the answer (a pooled connection is retried
        once on a fresh one if the server had closed it before answering). ``sent`` is called once the
        bytes are on their way."""
        up = pool.get(upstream) if pool is not None else None
        reused = up is not None and not up.closing
        if not reused:
            up = await relay.connect(upstream)
            if pool is not None:
                pool[upstream] = up
        before = up.received
        up.write(data)
        if sent is not None:
            sent()
        try:
            return await up.read_response(method), up
        except ConnectionError:
            if not reused or up.received != before:  # the server had begun to answer: never send twice
                raise
        up = await relay.connect(upstream)  # the kept-alive connection had gone: once more on a new one
        if pool is not None:
            pool[upstream] = up
        up.write(data)
        return await up.read_response(method), up

    # ------------------------------------------------------------ HTTP (long-polling)
    def _later(self, produce: Callable[..., None], *args: Any, size: int = 0) -> None:
        """Record something that already went on: in a batch (Trace.defer) or right away."""
        if self.batch:
            self.trace.defer(produce, *args, size=size)
        else:
            produce(*args)

    def _passive(self, client: str | None) -> bool:
        """True when no fault can change or hold this client's traffic now."""
        return not self.faults.rules and not self.faults.paused(client)

    async def _handle_http(self, down: relay.Conn, msg: relay.Message, request: Request,
                           pool: dict[str, relay.Conn]) -> bool:
        """Relay one request and its answer, recording both; False when the connection should end.

        While no fault can change them, the request and the answer go on first and are recorded after
        (in the lab's batches); otherwise each is recorded, judged by the faults, then relayed."""
        if not self.record:
            return await self._relay_http(down, msg, request, pool)
        sid = request.query.get("sid")
        if sid is not None and sid not in self._sessions:
            self.trace.settle()  # records left for later may teach the tap this session (its client, server)
        x = _Exchange(self, msg, request, sid)
        upstream = self._route(request, sid)
        x.server = EXCHANGE_SERVER.get()
        body = msg.body
        if self._passive(x.client):
            if x.long_poll:
                x.session.polls += 1
        else:
            body = await self._request_with_faults(x, down)
            if body is None:
                return True
            await self._hold(x.client, "this request", x.where)
            if x.long_poll:
                x.session.polls += 1
        try:
            answer, up = await self._exchange(pool, upstream, _outgoing(msg, x.query, body), request.method,
                                              sent=x.sent)
        except (ConnectionError, OSError, wire.WireError) as exc:
            x.sent()
            pool.pop(upstream, None)
            what = exc.__class__.__name__
            text = f"siolab tap: upstream {upstream} unreachable: {what}: {exc}"
            error = f"upstream server unreachable ({what})"
            if isinstance(exc, wire.WireError):
                text = f"siolab tap: upstream {upstream} answered something that is not HTTP/1.1: {exc}"
                error = f"upstream server's answer is not HTTP: {exc}"
            self.trace.add(kind="http", dir="s2c", http={**x.req_http, "status": 502}, raw=None, error=error,
                           note=text, **x.where)
            down.write(relay.response_bytes(502, text))
            return True
        except asyncio.CancelledError:  # the client went away (or the tap is closing) while we waited
            x.sent()
            self.trace.add(kind="http", dir="s2c", http={**x.req_http, "status": None}, raw=None,
                           note="the request was abandoned before the server answered (the client closed the "
                                "connection, or the tap is closing)", **x.where)
            raise
        finally:
            if x.long_poll:
                x.session.polls -= 1

        if self._passive(x.client):
            down.write(answer.raw)
            self._later(self._record_response, x, answer, self.trace.now(), size=len(answer.raw))
        else:
            out = await self._response_with_faults(x, answer)
            await self._hold(x.client, "this response", x.where)
            down.write(out)
        return _keep_alive(msg.head, answer.head, answer, up, pool, upstream)

    def _record_request(self, x: "_Exchange") -> None:
        """Record a request that went on unchanged."""
        if EXCHANGE_SERVER.get() is not x.server:  # in a batch: say which server the exchange went to
            return _as_server(x.server, self._record_request, x)
        for rec in self._request_records(x, held=False)[0]:
            self.trace.append(rec)

    def _record_response(self, x: "_Exchange", answer: relay.Message, t: float) -> None:
        """Record an answer that went on unchanged."""
        if EXCHANGE_SERVER.get() is not x.server:
            return _as_server(x.server, self._record_response, x, answer, t)
        records, _, _ = self._response_records(x, answer, t, held=False)
        for rec in records:
            self.trace.append(rec)
        self._after_response(x, answer.head.status)

    async def _request_with_faults(self, x: "_Exchange", down: relay.Conn) -> bytes | None:
        """Record a request, let the faults judge its packets; the body to relay, or None if the tap
        answered it itself (every packet dropped)."""
        x.recorded = True
        held = self.faults.paused(x.client)
        records, packets = self._request_records(x, held)
        if not packets:
            for rec in records:
                self.trace.append(rec)
            return x.body
        if held:
            records = [_held(rec) for rec in records]
        body = await self._apply_faults(records, x.body, "c2s")
        if body is None:  # every packet dropped: answer as the server would, without relaying
            self.trace.add(kind="http", dir="s2c", http={**x.req_http, "status": 200}, raw="ok",
                           note="answered by the tap: every packet of this POST was dropped", **x.where)
            down.write(relay.response_bytes(200, "ok"))
        return body

    async def _response_with_faults(self, x: "_Exchange", answer: relay.Message) -> bytes:
        """Record an answer, let the faults judge its packets; the bytes to relay."""
        held = self.faults.paused(x.client)
        records, packets, plain = self._response_records(x, answer, self.trace.now(), held)
        if not packets:
            for rec in records:
                self.trace.append(rec)
            self._after_response(x, answer.head.status)
            return answer.raw
        if held:
            records = [_held(rec) for rec in records]
        resp_http = records[0].http
        new_body = await self._apply_faults(records, plain, "s2c")
        if new_body is None:
            new_body = b"6"
            self.trace.add(kind="fault", dir="s2c", http=resp_http, raw="6", eio="noop",
                           note="every packet of this response was dropped; the tap answered 6 (noop)",
                           **x.where)
        if new_body is plain:
            return answer.raw
        return answer.head.with_changes(drop=("Content-Encoding", "Transfer-Encoding"),
                                        set={"Content-Length": str(len(new_body))}).encode() + new_body

    def _request_records(self, x: "_Exchange", held: bool) -> tuple[list[Record], bool]:
        """A request's records: its packets (True), or one HTTP record that explains it (False)."""
        t, body, where = x.t, x.body, x.where
        if x.is_eio and x.method == "POST" and body:
            rec = self._plain_record(body, "c2s", x.transport, x.req_http, x.sid, x.client, x.key, t) \
                if b"\x1e" not in body else None
            if rec is not None:
                x.body_packets = 1
                x.body_record = rec  # whether it is valid is known when it is read (the answer's note says)
                return [rec], True
            packets, perr = protocol.decode_payload(body)
            x.body_error, x.body_packets = perr, len(packets)
            if packets:
                records = self._packet_records(packets, dir="c2s", http=x.req_http, key=x.key, t=t, **where)
                x.body_error = perr or next((r.error for r in records if r.error), None)
                return records, True
            return [new_record(t=t, kind="http", dir="c2s", http=x.req_http, raw=_body_text(body),
                           error=f"invalid polling body: {perr}", note=_HELD if held else None, **where)], False
        note = error = None
        query = x.request.query
        if x.is_eio and x.method == "GET":
            note = "handshake: open a session" if x.sid is None else "long-poll: wait for the server's packets"
            if x.overlap:
                error = ("a second long-poll while another is still pending for this session: Engine.IO "
                         "allows one GET at a time (the Node.js server refuses it at once and closes the "
                         "session; python-engineio lets both wait and ends one with 400 after "
                         "pingInterval + pingTimeout, closing the session)")
        elif not x.is_eio:
            note = "not an Engine.IO request (no EIO in the query)"
        if x.is_eio and query.get("transport") not in ("polling", "websocket"):
            given = query.get("transport")
            note = ((note + "; ") if note else "") + (
                "no transport parameter (python-engineio then assumes polling; the Node.js server refuses)"
                if given is None else f"transport={given!r} is not a transport (polling or websocket)")
        if held:
            note = ((note + "; ") if note else "") + _HELD
        return [new_record(t=t, kind="http", dir="c2s", http=x.req_http, raw=_body_text(body) if body else None,
                       note=note, error=error, **where)], False

    def _response_records(self, x: "_Exchange", answer: relay.Message, t: float,
                          held: bool) -> tuple[list[Record], bool, bytes]:
        """An answer's records: its packets (True), or one HTTP record that explains it (False); and the
        body as plain bytes."""
        rhead: wire.Response = answer.head
        status, where, body = rhead.status, x.where, x.body
        resp_http = {**x.req_http, "status": status}
        plain = protocol.decompress(answer.body, rhead.get("Content-Encoding"))
        ctype = rhead.get("Content-Type") or ""
        if x.is_eio and status == 200 and x.method == "GET" and ctype.startswith(("text/plain", "application/octet")):
            rec = self._plain_record(plain, "s2c", x.transport, resp_http, x.sid, x.client, x.key, t) \
                if b"\x1e" not in plain else None
            if rec is not None:
                return [rec], True, plain
            packets, perr = protocol.decode_payload(plain)
            if packets:
                return self._packet_records(packets, dir="s2c", http=resp_http, key=x.key, t=t, **where), True, plain
            return [new_record(t=t, kind="http", dir="s2c", http=resp_http, raw=_body_text(plain),
                           error=f"invalid polling body: {perr}", note=_HELD if held else None, **where)], False, plain
        text = _body_text(plain)
        error = note = None
        if x.is_eio and _is_html(ctype, text):
            error = _html_answer(status)
        elif x.is_eio and status >= 400:
            error = protocol.explain_refusal(status, text)
            if x.overlap:
                error += " - this long-poll overlapped another one for the same session"
            limit = x.session.max_payload if x.session is not None else None
            if x.method == "POST" and limit is not None and len(body or b"") > limit:
                error += (f" - the POST body was {len(body)} bytes, more than the maxPayload of {limit} bytes "
                          f"the server announced in its open packet (python-engineio answers 400 and closes "
                          f"the session; the Node.js server answers 413)")
        elif x.is_eio and status == 200 and x.method == "POST":
            packet = x.body_record
            if packet is not None and not held:  # the note waits until somebody reads it (LazyRecord)
                return [new_lazy_http(lambda _: {"note": _post_ok_note(packet.error, 1)}, t=t, dir="s2c",
                                      http=resp_http, raw=text, **where)], False, plain
            note = _post_ok_note(x.body_error or (packet.error if packet is not None else None), x.body_packets)
        elif x.is_eio:
            error = f"not an Engine.IO response: HTTP {status} {ctype or 'without a Content-Type'}"
        elif not x.is_eio and status >= 400:
            note = f"HTTP {status} {ctype}"
        if held:
            note = ((note + "; ") if note else "") + _HELD
        return [new_record(t=t, kind="http", dir="s2c", http=resp_http, raw=text, error=error, note=note,
                       **where)], False, plain

    def _after_response(self, x: "_Exchange", status: int) -> None:
        if x.transport == "polling" and status >= 400 and x.sid:
            self._flush(x.sid, "the session was refused", transport=x.transport, sid=x.sid, client=x.client)

    async def _relay_http(self, down: relay.Conn, msg: relay.Message, request: Request,
                          pool: dict[str, relay.Conn]) -> bool:
        """Relay one HTTP request unchanged, recording nothing (``record=False``)."""
        upstream = self.upstream_for(request, request.query.get("sid"))
        try:
            answer, up = await self._exchange(pool, upstream, _outgoing(msg, _strip_client(request.query_string),
                                                                        msg.body), request.method)
        except (ConnectionError, OSError, wire.WireError) as exc:
            pool.pop(upstream, None)
            down.write(relay.response_bytes(502, f"siolab tap: upstream {upstream} unreachable: {exc}"))
            return True
        down.write(answer.raw)
        return _keep_alive(msg.head, answer.head, answer, up, pool, upstream)

    async def _hold(self, client: str | None, what: str, where: dict) -> None:
        """Wait while the client is paused; if the wait is cut short, say that what was held never went on."""
        if not self.faults.paused(client):
            return
        try:
            await self.faults.gate(client)
        except asyncio.CancelledError:
            self.trace.add(kind="fault", dir=None, note=f"{what} was held by the pause and never relayed: the "
                           f"connection closed (or the tap stopped) before resume()", **where)
            raise

    def _record_with_faults(self, records: list[Record], dir: str) -> tuple[set, float]:
        """Append the records of one body or frame, marking dropped ones; returns (ids dropped, delay in s).

        The packets go in first, in wire order, then one record for a delay: a trace stays sorted by time.
        """
        if not self.faults.rules:
            for rec in records:
                self.trace.append(rec)
            return set(), 0.0
        dropped, delay, delayed, rule = set(), 0.0, 0, None
        for rec in records:
            verdict = self.faults.check(rec)
            if verdict is None:
                self.trace.append(rec)
            elif verdict.action == "drop":
                self.trace.append(Record(**{**_fields(rec), "kind": "fault",
                                            "note": f"dropped by the tap: {verdict.describe()}"}))
                dropped.add(id(rec))
            else:
                self.trace.append(rec)
                delayed += 1
                if verdict.seconds >= delay:
                    delay, rule = verdict.seconds, verdict
        if delayed:
            rec = records[-1]
            self.trace.add(kind="fault", dir=dir, transport=rec.transport, sid=rec.sid, client=rec.client,
                           note=f"delayed {delay} s by the tap: {rule.describe()}"
                                + (f" ({delayed} packets)" if delayed > 1 else ""))
        return dropped, delay

    async def _apply_faults(self, records: list[Record], body: bytes | str, dir: str):
        """Record packets, apply drop/delay faults; returns the (possibly rebuilt) body or None if all dropped."""
        dropped, delay = self._record_with_faults(records, dir)
        if delay:
            await asyncio.sleep(delay)
        if not dropped:
            return body
        if len(dropped) == len(records):
            return None
        # rebuild the body from the packets that are left (records and parts share wire order)
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        parts = protocol.split_body(text)
        keep = [p for p, r in zip(parts, _align(records, parts)) if r is None or id(r) not in dropped]
        return protocol.join_body(keep).encode("utf-8")

    # ------------------------------------------------------------ WebSocket
    async def _handle_websocket(self, down: relay.Conn, msg: relay.Message, request: Request) -> bool:
        """Relay an upgrade request; on 101 the two connections carry frames until one closes.
        Returns True if the client's connection stays HTTP (the upgrade was refused)."""
        self.trace.settle()
        client, sid = self._client_of(request)
        target = self._route(request, sid)
        query = _strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        where = dict(transport="websocket", sid=sid, client=client)
        req_http = {"method": "GET", "path": path, "status": None}
        if self.record:
            held = self.faults.paused(client)
            self.trace.add(kind="ws", dir="c2s", http=req_http, note="WebSocket upgrade request" + (
                "; " + _HELD if held else ""), **where)
            await self._hold(client, "this WebSocket upgrade request", where)
            if self.faults.websocket_refused:
                self.trace.add(kind="fault", dir="s2c", http={**req_http, "status": 403},
                               note="the tap refused the WebSocket (fault switch: like a proxy without WebSocket "
                                    "support); the client has to stay on long-polling", **where)
                down.write(relay.response_bytes(403, "WebSocket refused by the siolab tap (fault switch)"))
                return True
        conns: dict[str, relay.Conn] = {}  # the server connection, until it belongs to the WebSocket
        try:
            answer, up = await self._exchange(conns, target, _outgoing(msg, query, msg.body, _DROP_UPGRADE), "GET")
        except asyncio.CancelledError:
            for conn in conns.values():
                conn.close()
            raise
        except (ConnectionError, OSError, wire.WireError) as exc:
            text = f"siolab tap: upstream {target} unreachable: {exc.__class__.__name__}: {exc}"
            if self.record:
                self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 502}, note=text,
                               error=f"upstream server unreachable ({exc.__class__.__name__})", **where)
            down.write(relay.response_bytes(502, text))
            return True
        rhead: wire.Response = answer.head
        if rhead.status != 101:
            # the server's own answer, relayed as it was and explained
            if self.record:
                text = _body_text(protocol.decompress(answer.body, rhead.get("Content-Encoding")))
                error = None
                if is_eio:
                    html = _is_html(rhead.get("Content-Type") or "", text)
                    error = _html_answer(rhead.status) if html else protocol.explain_refusal(rhead.status, text)
                self.trace.add(kind="http", dir="s2c", http={**req_http, "status": rhead.status}, raw=text,
                               error=error, note="the server refused the WebSocket", **where)
            up.close()
            down.write(answer.raw)
            return not answer.until_close and (rhead.get("Connection") or "").lower() != "close"
        if self.record:
            self.trace.add(kind="ws", dir="s2c", http={**req_http, "status": 101}, note="WebSocket open", **where)
        ws = _WebSocket(self, down, up, sid=sid, client=client, server=EXCHANGE_SERVER.get())
        self._websockets.add(ws)
        down.write(answer.raw)
        try:
            ws.start(down.take_buffer(), up.take_buffer())
            await ws.done
        finally:
            self._websockets.discard(ws)
        return False


class _WebSocket:
    """One relayed WebSocket: frames go through as they came; complete messages are decoded and recorded.
    A fault may drop a message or hold it back (``relay.Lane`` keeps the order)."""

    def __init__(self, tap: Tap, down: relay.Conn, up: relay.Conn, *, sid: str | None, client: str | None,
                 server: str | None) -> None:
        self.tap = tap
        self.conns = {"c2s": down, "s2c": up}  # where each direction's frames come from
        self.lanes = {"c2s": relay.Lane(up, down), "s2c": relay.Lane(down, up)}
        self.readers = {"c2s": wire.FrameReader(), "s2c": wire.FrameReader()}
        self.partial: dict[str, list | None] = {"c2s": None, "s2c": None}  # a fragmented message so far
        self.parse = {"c2s": tap.record, "s2c": tap.record}  # False: relay bytes only
        # A batching tap relays whole chunks while no fault can change them, and frames them later:
        self.lazy = {"c2s": False, "s2c": False}  # chunks go on as they came; framing is deferred
        self.skip = {"c2s": 0, "s2c": 0}  # bytes of the reader's partial frame that went on already
        self.state = {"sid": sid, "client": client}
        self.server = server
        self.key = ("ws", id(self))
        self.close_frames: dict[str, int | None] = {}  # direction -> the code of the close frame it sent
        self.recorded_close = False
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def start(self, c2s_early: bytes, s2c_early: bytes) -> None:
        down, up = self.conns["c2s"], self.conns["s2c"]
        down.peer, up.peer = up, down  # a side that cannot write fast enough pauses the other's reading
        down.on_data = lambda data: self.received("c2s", data)
        up.on_data = lambda data: self.received("s2c", data)
        down.on_lost = lambda: self.lost("c2s")
        up.on_lost = lambda: self.lost("s2c")
        for dir_, early in (("c2s", c2s_early), ("s2c", s2c_early)):
            if early:
                self.received(dir_, early)
        for dir_ in ("c2s", "s2c"):
            if self.conns[dir_].lost:
                self.lost(dir_)

    # ---------------------------------------------------------------- frames in
    def received(self, dir: str, data: bytes) -> None:
        if not self.parse[dir]:
            self.lanes[dir].send(data)
            return
        tap, reader, lane = self.tap, self.readers[dir], self.lanes[dir]
        if tap.batch and self._passive():
            if not self.lazy[dir]:
                self._go_lazy(dir)
            lane.send(data)
            tap.trace.defer(self._frame_later, dir, data, lane.dst.closing, tap.trace.now(), size=len(data))
            return
        if self.lazy[dir]:  # a fault may act now: frame what went on so far, then read before relaying
            tap.trace.settle()
            self.lazy[dir] = False
            self.skip[dir] = reader.buffered
        EXCHANGE_SERVER.set(self.server)
        try:
            frames = reader.feed(data)
        except wire.WireError as exc:  # relay on, unread: the receiver will close if it disagrees
            for frame in exc.frames:
                self.frame(dir, frame)
            self.parse[dir] = False
            self._note(dir, error=f"not a WebSocket frame: {exc}; the tap relays the rest of this direction "
                                  f"without reading it")
            partial, self.partial[dir] = self.partial[dir], None
            if partial is not None and not partial[3]:  # fragments held back for a fault's decision
                lane.send(b"".join(partial[2]))
            lane.send(reader.pending()[self.skip[dir]:])
            self.skip[dir] = 0
            return
        for frame in frames:
            self.frame(dir, frame)

    def _go_lazy(self, dir: str) -> None:
        """From reading each frame before it goes on to relaying chunks: what was held goes first."""
        self.lazy[dir] = True
        partial = self.partial[dir]
        if partial is not None and not partial[3]:  # fragments held back for a fault's decision
            self.lanes[dir].send(b"".join(partial[2]))
            partial[2].clear()
            partial[3] = True
        unsent = self.readers[dir].pending()[self.skip[dir]:]  # a partial frame not relayed yet
        self.skip[dir] = 0
        if unsent:
            self.lanes[dir].send(unsent)

    def _frame_later(self, dir: str, data: bytes, gone: bool, t: float) -> None:
        """Frame and record a chunk that was relayed already (Trace.defer)."""
        if not self.parse[dir]:
            return
        token = EXCHANGE_SERVER.set(self.server)  # reset after: settle() may run in anybody's context
        try:
            try:
                frames = self.readers[dir].feed(data)
            except wire.WireError as exc:
                for frame in exc.frames:
                    self._frame_sent(dir, frame, gone, t)
                self.parse[dir] = False
                self.partial[dir] = None
                self._note(dir, error=f"not a WebSocket frame: {exc}; the tap relays the rest of this direction "
                                      f"without reading it")
                return
            for frame in frames:
                self._frame_sent(dir, frame, gone, t)
        finally:
            EXCHANGE_SERVER.reset(token)

    def _frame_sent(self, dir: str, frame: wire.Frame, gone: bool, t: float) -> None:
        """Record what a frame that already went on says (messages, fragments, close)."""
        op = frame.opcode
        if op >= 8:
            if op == 8:
                self._close_frame(dir, frame)
            return
        if op in (1, 2):
            if frame.fin:
                self._record_message(dir, op, frame.payload, gone, t)
            else:
                self.partial[dir] = [op, [frame.payload], [], True]
            return
        partial = self.partial[dir]
        if partial is None:
            self._note(dir, error="a continuation frame without a first frame (RFC 6455 5.4): the receiver "
                                  "should close the WebSocket with 1002")
            return
        partial[1].append(frame.payload)
        if frame.fin:
            self.partial[dir] = None
            self._record_message(dir, partial[0], b"".join(partial[1]), gone, t)

    def _passive(self) -> bool:
        """True when no fault can change a frame now, so it goes on before the tap reads its copy."""
        faults = self.tap.faults
        return not faults.rules and not faults.paused(self.state["client"])

    def frame(self, dir: str, frame: wire.Frame) -> None:
        skip = self.skip[dir]
        if skip:  # its beginning went on while the tap relayed chunks: the rest follows, unchanged
            self.skip[dir] = 0
            self.lanes[dir].send(frame.raw[skip:])
            self._frame_sent(dir, frame, self.lanes[dir].dst.closing, self.tap.trace.now())
            return
        op = frame.opcode
        if op >= 8:
            if op == 8:
                self._close_frame(dir, frame)
            self.lanes[dir].send(frame.raw)
            return
        partial = self.partial[dir]
        if op in (1, 2):
            if frame.fin:
                self.message(dir, op, frame.payload, frame.raw)
                return
            passive = self._passive()  # fragments go on as they come unless a fault may hold the message
            if passive:
                self.lanes[dir].send(frame.raw)
            self.partial[dir] = [op, [frame.payload], [frame.raw], passive]
            return
        if partial is None:  # a continuation with nothing to continue
            self._note(dir, error="a continuation frame without a first frame (RFC 6455 5.4): the receiver "
                                  "should close the WebSocket with 1002")
            self.lanes[dir].send(frame.raw)
            return
        partial[1].append(frame.payload)
        if partial[3]:
            self.lanes[dir].send(frame.raw)
        else:
            partial[2].append(frame.raw)
        if frame.fin:
            self.partial[dir] = None
            self.message(dir, partial[0], b"".join(partial[1]), b"".join(partial[2]), sent=partial[3])

    def message(self, dir: str, opcode: int, payload: bytes, raw: bytes, sent: bool = False) -> None:
        """One whole message: relay it, decode it, record it (a fault may drop it or hold it first).
        ``sent``: its frames were relayed already, as they came."""
        tap = self.tap
        lane = self.lanes[dir]
        gone = lane.dst.closing
        if sent or self._passive():
            # nothing can change this message: it goes on now, and the tap reads its copy a moment later
            if not sent:
                lane.send(raw)
            if tap.batch:
                tap.trace.defer(self._record_message, dir, opcode, payload, gone, tap.trace.now())
            else:
                self._record_message(dir, opcode, payload, gone, tap.trace.now())
            return
        tap.trace.settle()  # a fault decides on this one: everything before it is recorded first
        faults = tap.faults
        paused = faults.paused(self.state["client"])
        records = self._decode(dir, opcode, payload, gone, paused, tap.trace.now())
        dropped, delay = tap._record_with_faults(records, dir)
        if dropped:
            return
        due = asyncio.get_running_loop().time() + delay if delay else 0.0
        client = self.state["client"]
        lane.send(raw, due, (lambda: faults.gate(client)) if paused else None)

    def _record_message(self, dir: str, opcode: int, payload: bytes, gone: bool, t: float) -> None:
        if EXCHANGE_SERVER.get() is not self.server:  # (_frame_later set it already for its whole chunk)
            token = EXCHANGE_SERVER.set(self.server)
            try:
                self._record_message(dir, opcode, payload, gone, t)
            finally:
                EXCHANGE_SERVER.reset(token)
            return
        if opcode == 1 and not gone and self._record_plain(dir, payload, t):
            return
        for rec in self._decode(dir, opcode, payload, gone, False, t):
            self.tap.trace.append(rec)

    def _record_plain(self, dir: str, payload: bytes, t: float) -> bool:
        """Record the usual message through ``Tap._plain_record``; False to leave it to ``_decode``."""
        state, tap = self.state, self.tap
        session = tap._sessions.get(state["sid"]) if state["sid"] else None
        if session is not None and session.max_payload is not None and len(payload) > session.max_payload:
            return False  # _decode explains it
        rec = tap._plain_record(payload, dir, "websocket", None, state["sid"], state["client"], self.key, t)
        if rec is None:
            return False
        tap.trace.append(rec)
        return True

    def _decode(self, dir: str, opcode: int, payload: bytes, gone: bool, paused: bool, t: float) -> list[Record]:
        """The records of one message, with what the tap knows about it (its session, a pause)."""
        tap, state = self.tap, self.state
        error = None
        if opcode == 1:
            try:
                data: str | bytes = payload.decode("utf-8")
            except UnicodeDecodeError:
                data = payload.decode("utf-8", errors="backslashreplace")
                error = "a text frame that is not UTF-8: the receiver should close the WebSocket with 1007"
        else:
            data = payload
        records = tap._packet_records([protocol.decode_eio(data)], dir=dir, transport="websocket", http=None,
                                      sid=state["sid"], client=state["client"], key=self.key, t=t)
        for rec in records:
            if rec.sid and state["sid"] is None:
                state["sid"] = rec.sid
                state["client"] = state["client"] or tap.names.get(rec.sid)
        if error:
            records = [_with_error(rec, error) for rec in records]
        session = tap._sessions.get(state["sid"]) if state["sid"] else None
        if session is not None and session.max_payload is not None and len(payload) > session.max_payload:
            records = [_with_error(rec, f"this frame is {len(payload)} bytes, more than the maxPayload of "
                                        f"{session.max_payload} bytes announced in the open packet: the "
                                        f"receiver may close the WebSocket (code 1009)") for rec in records]
        if paused:
            records = [_held(rec) for rec in records]
        elif gone:
            records = [Record(**{**_fields(rec), "note": "not relayed: the other side's WebSocket is already "
                                                         "closed"}) for rec in records]
        return records

    def _close_frame(self, dir: str, frame: wire.Frame) -> None:
        try:
            code, _reason = wire.parse_close(frame.payload)
        except wire.WireError as exc:
            code = None
            self._note(dir, error=f"a close frame that breaks RFC 6455: {exc}")
        if dir in self.close_frames:
            return
        self.close_frames[dir] = code
        if not self.close_frames.keys() - {dir}:  # the first close frame: this side closes
            self._record_close(dir, 1005 if code is None else code)

    def _note(self, dir: str, error: str) -> None:
        if self.tap.record:
            self.tap.trace.add(kind="ws", dir=dir, transport="websocket", sid=self.state["sid"],
                               client=self.state["client"], error=error)

    def _record_close(self, dir: str, code: int, by: str | None = None) -> None:
        if self.recorded_close or not self.tap.record:
            return
        self.tap.trace.settle()  # the messages before the close, and the state they teach the tap
        self.recorded_close = True
        closer = by or ("client" if dir == "c2s" else "server")
        self.tap._flush(self.key, "the WebSocket closed", transport="websocket", sid=self.state["sid"],
                        client=self.state["client"])
        meaning = CLOSE_CODES.get(code, "")
        self.tap.trace.add(kind="ws", dir=dir if by is None else None, transport="websocket",
                           sid=self.state["sid"], client=self.state["client"],
                           note=f"WebSocket closed by the {closer}, code {code}" + (f" ({meaning})" if meaning else ""),
                           error=(f"the {closer} closed the WebSocket with code {code}: {meaning}"
                                  if code in _CLOSE_ERRORS else None))

    # ---------------------------------------------------------------- the end
    def lost(self, dir: str) -> None:
        """One side's connection ended: record how, let what is queued for the other side go, then close it."""
        self.tap.trace.settle()  # the close frames among what went on
        EXCHANGE_SERVER.set(self.server)
        if not self.recorded_close:
            code = self.close_frames.get(dir, 1006)  # no close frame: gone without a goodbye
            self._record_close(dir, 1005 if code is None else code)
        other = "s2c" if dir == "c2s" else "c2s"
        self._give_up(self.lanes[other], "its receiver's connection closed")  # can never arrive
        lane = self.lanes[dir]  # what this side sent before it went may still be on its way
        if lane.busy and not self.tap.faults.paused(self.state["client"]):
            lane.on_idle = self._finish
        else:
            self._give_up(lane, "the connection closed before resume()")
            self._finish()

    def _give_up(self, lane: relay.Lane, why: str) -> None:
        waiting = lane.cancel()
        if waiting and self.tap.record:
            self.tap.trace.add(kind="fault", dir=None, transport="websocket", sid=self.state["sid"],
                               client=self.state["client"],
                               note=f"{waiting} frame(s) held by the tap were never relayed: {why}")

    def _finish(self) -> None:
        for conn in self.conns.values():
            conn.close()
        if not self.done.done():
            self.done.set_result(None)

    def shutdown(self) -> None:
        """The tap is closing: say goodbye both ways (1001 to the client, 1000 to the server) and end."""
        self.tap.trace.settle()
        token = EXCHANGE_SERVER.set(self.server)  # shutdown runs in the context of whoever closes the tap
        try:
            for lane in self.lanes.values():
                self._give_up(lane, "the tap stopped")
            if self.tap.record and not self.recorded_close:
                self._record_close("s2c", 1001, by="tap (it is closing)")
        finally:
            EXCHANGE_SERVER.reset(token)
        down, up = self.conns["c2s"], self.conns["s2c"]
        if "s2c" not in self.close_frames:
            down.write(wire.build_frame(8, wire.close_frame_payload(1001)))
        if "c2s" not in self.close_frames:
            up.write(wire.build_frame(8, wire.close_frame_payload(1000), mask=b"\x00\x00\x00\x00"))
        self._finish()


def _outgoing(msg: relay.Message, query: str, body: bytes, drop: tuple[str, ...] = ()) -> bytes:
    """The bytes to send upstream: the request as it came unless the tap has to change something."""
    head: wire.Request = msg.head
    expect = head.get("Expect") is not None
    named = head.get(CLIENT_HEADER) is not None
    if (not drop and not expect and not named and not msg.chunked and body is msg.body
            and query == head.query_string):
        return msg.raw
    target = head.path + (f"?{query}" if query else "")
    changes: dict[str, str] = {}
    if msg.chunked or body is not msg.body or head.get("Content-Length") is not None:
        changes["Content-Length"] = str(len(body))
    new = head.with_changes(target=target, drop=(CLIENT_HEADER, "Expect", "Transfer-Encoding") + drop, set=changes)
    return new.encode() + body


def _keep_alive(req: wire.Request, resp: wire.Response, answer: relay.Message, up: relay.Conn,
                pool: dict[str, relay.Conn], upstream: str) -> bool:
    """Whether the client's connection goes on after this exchange (and the server's stays in the pool)."""
    closing = (answer.until_close or (resp.get("Connection") or "").lower() == "close"
               or resp.version == "HTTP/1.0" and (resp.get("Connection") or "").lower() != "keep-alive")
    if closing or up.closing:
        pool.pop(upstream, None)
        up.close()
    if answer.until_close:
        return False
    return (req.get("Connection") or "").lower() != "close" and (resp.get("Connection") or "").lower() != "close"


def _as_server(server: str | None, produce: Callable[..., None], *args: Any) -> None:
    """``produce(*args)`` with EXCHANGE_SERVER set to ``server`` (records made later, in a batch, name the
    server their exchange went to; recorded at once, in the exchange's own task, it is set already)."""
    token = EXCHANGE_SERVER.set(server)
    try:
        produce(*args)
    finally:
        EXCHANGE_SERVER.reset(token)


def _fields(rec: Record) -> dict:
    return {name: getattr(rec, name) for name in FIELDS}


_HELD = "held by the tap: relaying is paused (pause()); it goes on at resume()"


def _held(rec: Record) -> Record:
    return Record(**{**_fields(rec), "note": f"{rec.note}; {_HELD}" if rec.note else _HELD})


def _with_error(rec: Record, error: str) -> Record:
    return Record(**{**_fields(rec), "error": f"{rec.error}; {error}" if rec.error else error})


def _post_ok_note(body_error: str | None, packets: int) -> str:
    """What a server's OK to a POST means, given what the POST carried."""
    if packets > PYTHON_MAX_DECODE_PACKETS:
        return (f"the server answered OK, but this body carried {packets} packets: a python-engineio server "
                f"refuses more than {PYTHON_MAX_DECODE_PACKETS} in one body (Payload.max_decode_packets), logs "
                f"'Too many packets in payload' and drops them all while answering OK (the Node.js server takes "
                f"them)")
    if body_error:
        return ("the server answered OK, but this POST carried something invalid (see the error above): OK only "
                "means the body was received. python-engineio/python-socketio log the error and carry on; the "
                "Node.js server answers 400 or closes the session")
    return "the server accepted the POST"


def _connect_error_note(sio: protocol.SioPacket) -> str:
    """Why the server refused a namespace, from a CONNECT_ERROR packet."""
    data = sio.data
    message = data.get("message") if isinstance(data, dict) else data
    note = f"the server refused the namespace {sio.nsp}: {protocol._short(message, 120)}"
    if message == "Unable to connect":
        note += " (python-socketio's answer when no connect handler is registered for this namespace)"
    elif message == "Connection rejected by server":
        note += " (the namespace's connect handler returned False)"
    elif message == "Invalid namespace":
        note += " (the Node.js server has no such namespace)"
    return note


def _html_answer(status: int) -> str:
    return (f"not a Socket.IO server's answer: HTTP {status} with an HTML page. Is the URL right (Socket.IO "
            f"listens at /socket.io/ by default) and is a Socket.IO server running there?")


def _is_html(ctype: str, text: str) -> bool:
    """An HTML page, judged by its body: the Node.js engine.io answers a POST's plain ``ok`` as text/html."""
    head = text.lstrip()[:15].lower()
    return head.startswith(("<!doctype html", "<html")) or (
        ctype.startswith(("text/html", "application/xhtml")) and head.startswith("<"))


def _align(records: list[Record], parts: list[str]) -> list[Record]:
    """Records in the order of the body's parts (one record per part)."""
    if len(records) == len(parts):
        return records
    # a binary event held back would make the lists differ; fall back to matching raw text
    by_raw = {}
    for r in records:
        by_raw.setdefault(r.raw, []).append(r)
    out = []
    for p in parts:
        bucket = by_raw.get(p) or by_raw.get(base64.b64encode(p[1:].encode()).decode() if p.startswith("b") else p)
        out.append(bucket.pop(0) if bucket else None)
    return out


def _body_text(body: bytes) -> str:
    text = body.decode("utf-8", errors="backslashreplace")  # bytes that are not text show as \xff
    if len(text) > MAX_RECORDED_BODY:
        return text[:MAX_RECORDED_BODY] + f"… ({len(text)} characters in all)"
    return text


def upstream_of(url: str) -> str:
    """Normalise a server URL given on the command line (scheme, host and port only)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.scheme}://{parts.netloc}"
