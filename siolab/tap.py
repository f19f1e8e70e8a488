"""The tap: a recording reverse proxy between Socket.IO clients and any server.

It relays HTTP long-polling and WebSocket traffic unchanged (bodies, query strings,
headers including Host, cookies and CORS; every frame both ways; close codes) and
records every Engine.IO packet and HTTP exchange into a Trace. Clients may name
themselves with an ``X-Siolab-Client`` header or a ``siolab_client`` query
parameter; the tap strips both before relaying. Fault switches (refuse the
WebSocket, drop or delay matching packets, pause a client) are recorded too.
"""
from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from . import protocol
from .faults import Fault, Faults
from .trace import EXCHANGE_SERVER, Record, Trace

log = logging.getLogger("siolab.tap")

CLIENT_HEADER = "X-Siolab-Client"
CLIENT_PARAM = "siolab_client"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", CLIENT_HEADER.lower()}
_WS_HANDSHAKE = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-protocol", "sec-websocket-accept"}
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


def _strip_client(query_string: str) -> str:
    """The query string without the tap's own ``siolab_client`` parameter, otherwise byte for byte."""
    if CLIENT_PARAM not in query_string:
        return query_string
    return "&".join(p for p in query_string.split("&") if not p.startswith(CLIENT_PARAM + "="))


def _forward_headers(headers, drop: set[str] = frozenset()) -> CIMultiDict:
    out = CIMultiDict()
    for key, value in headers.items():
        low = key.lower()
        if low not in _HOP_BY_HOP and low not in drop:
            out.add(key, value)
    return out


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


class Tap:
    """Recording reverse proxy; ``await Tap(upstream).start()`` then point clients at ``tap.url``."""

    def __init__(self, upstream: str, trace: Trace | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 layer: str = "socket.io", record: bool = True) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the tap binds %s: it is reachable from other machines", host)
        self.upstream = upstream.rstrip("/")
        self.trace = trace if trace is not None else Trace()
        self.host, self.port = host, port
        self.layer = layer  # "socket.io" decodes messages as Socket.IO; "engine.io" stops at Engine.IO
        self.record = record  # False: relay only (no decoding, no packet records, no faults): a baseline
        self.faults = Faults(self.trace)
        self.names: dict[str, str] = {}  # Engine.IO sid -> client name
        self._conns: dict[tuple, _Conn] = {}
        self._sessions: dict[str, _Session] = {}
        self._runner: web.AppRunner | None = None
        self._session_http: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._upstream_sockets: set[aiohttp.ClientWebSocketResponse] = set()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "Tap":
        trace_config = aiohttp.TraceConfig()
        trace_config.on_request_end.append(_keep_refusal_body)
        self._session_http = aiohttp.ClientSession(
            trace_configs=[trace_config],
            auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        """Close every relayed WebSocket, the listening socket and the upstream connections."""
        for ws in list(self._sockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        for ws in list(self._upstream_sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session_http is not None:
            await self._session_http.close()
            self._session_http = None

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
    def upstream_for(self, request: web.Request, sid: str | None) -> str:
        """The server this request goes to (``sid``: its Engine.IO session, None for a handshake)."""
        return self.upstream

    def server_name(self, upstream: str) -> str | None:
        """How records name the server an exchange went to (None: this tap has one server)."""
        return None

    def _route(self, request: web.Request, sid: str | None) -> str:
        upstream = self.upstream_for(request, sid)
        EXCHANGE_SERVER.set(self.server_name(upstream))  # every record of this exchange names its server
        return upstream

    # ------------------------------------------------------------ recording
    def _client_of(self, request: web.Request) -> tuple[str | None, str | None]:
        name = request.headers.get(CLIENT_HEADER) or request.query.get(CLIENT_PARAM)
        sid = request.query.get("sid")
        if name is None and sid is not None:
            name = self.names.get(sid)
        return name, sid

    def _packet_records(self, packets: list[protocol.EioPacket], *, dir: str, transport: str, http: dict | None,
                        sid: str | None, client: str | None, key: Any) -> list[Record]:
        """Decode packets into records, pairing binary events with their attachments."""
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
            out.append(self._record(d, t=when, dir=dir, transport=transport, http=http, sid=sid, client=client))
        return out

    def _session(self, sid: str | None) -> _Session | None:
        if sid is None:
            return None
        session = self._sessions.get(sid)
        if session is None:
            if len(self._sessions) >= MAX_SESSIONS:  # a client inventing sids must not grow the tap forever
                del self._sessions[next(iter(self._sessions))]
            session = self._sessions[sid] = _Session()
        return session

    def _record(self, d: protocol.Decoded, **where: Any) -> Record:
        pkt = d.eio
        error, note = d.error, None
        if pkt.type == "open" and isinstance(pkt.data, dict) and isinstance(pkt.data.get("sid"), str):
            where["sid"] = pkt.data["sid"]
            if where.get("client"):
                self.names[where["sid"]] = where["client"]
            max_payload = pkt.data.get("maxPayload")
            if isinstance(max_payload, int) and not isinstance(max_payload, bool):
                self._session(where["sid"]).max_payload = max_payload
        session = self._sessions.get(where.get("sid")) if where.get("sid") else None
        if session is not None:
            dir_ = where.get("dir")
            if dir_ in session.closed and error is None:
                error = (f"sent after this side's close packet (1): the Engine.IO session is over, "
                         f"so this packet should not exist ({'client' if dir_ == 'c2s' else 'server'} misbehaves)")
            elif pkt.type == "close":
                session.closed.add(dir_)
        if pkt.binary:
            raw = base64.b64encode(pkt.data or b"").decode("ascii")
            note = f"attachment {d.attachment_of}" if d.attachment_of is not None else None
            return Record(kind="packet", raw=raw, binary=True, eio="message", error=error, note=note,
                          **where)
        sio = d.sio
        if sio is not None and sio.type == "connect_error" and error is None:
            note = _connect_error_note(sio)
        return Record(kind="packet", raw=pkt.raw if isinstance(pkt.raw, str) else repr(pkt.raw), eio=pkt.type,
                      sio=sio.type if sio else None, nsp=sio.nsp if sio and sio.type else None,
                      ack=sio.ack if sio else None, event=sio.event if sio else None, args=d.args,
                      attachments=sio.attachments if sio else 0, error=error, note=note, **where)

    def _flush(self, key: Any, why: str, **where: Any) -> None:
        """Record binary packets left waiting for attachments when their connection ends."""
        for dir_ in ("c2s", "s2c"):
            conn = self._conns.pop((key, dir_), None)
            if conn is None:
                continue
            for t, d in conn.reassembler.flush(why):
                self.trace.append(self._record(d, t=t, dir=dir_, **where))

    # ------------------------------------------------------------ HTTP (long-polling)
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._handle_websocket(request)
        if not self.record:
            return await self._relay_http(request)
        client, sid = self._client_of(request)
        upstream = self._route(request, sid)
        query = _strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        transport = request.query.get("transport") if is_eio else None
        transport = transport if transport in ("polling", "websocket") else ("polling" if is_eio else None)
        body = await request.read()
        req_http = {"method": request.method, "path": path, "status": None}
        where = dict(transport=transport, sid=sid, client=client)
        key = sid or id(request)
        session = self._session(sid) if is_eio else None
        long_poll = session is not None and request.method == "GET"
        overlap = long_poll and session.polls > 0
        body_error, body_packets = None, 0
        held = self.faults.paused(client)

        if is_eio and request.method == "POST" and body:
            packets, perr = protocol.decode_payload(body)
            body_error, body_packets = perr, len(packets)
            if packets:
                records = self._packet_records(packets, dir="c2s", http=req_http, key=key, **where)
                body_error = perr or next((r.error for r in records if r.error), None)
                if held:
                    records = [_held(rec) for rec in records]
                body = await self._apply_faults(records, body, "c2s")
                if body is None:  # every packet dropped: answer as the server would, without relaying
                    self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 200}, raw="ok",
                                   note="answered by the tap: every packet of this POST was dropped", **where)
                    return web.Response(text="ok", content_type="text/plain")
            else:
                self.trace.add(kind="http", dir="c2s", http=req_http, raw=_body_text(body),
                               error=f"invalid polling body: {perr}", note=_HELD if held else None, **where)
        else:
            note = error = None
            if is_eio and request.method == "GET":
                note = "handshake: open a session" if sid is None else "long-poll: wait for the server's packets"
                if overlap:
                    error = ("a second long-poll while another is still pending for this session: Engine.IO "
                             "allows one GET at a time (the Node.js server refuses it at once and closes the "
                             "session; python-engineio lets both wait and ends one with 400 after "
                             "pingInterval + pingTimeout, closing the session)")
            elif not is_eio:
                note = "not an Engine.IO request (no EIO in the query)"
            if is_eio and request.query.get("transport") not in ("polling", "websocket"):
                given = request.query.get("transport")
                note = ((note + "; ") if note else "") + (
                    "no transport parameter (python-engineio then assumes polling; the Node.js server refuses)"
                    if given is None else f"transport={given!r} is not a transport (polling or websocket)")
            if held:
                note = ((note + "; ") if note else "") + _HELD
            self.trace.add(kind="http", dir="c2s", http=req_http, raw=_body_text(body) if body else None,
                           note=note, error=error, **where)

        await self._hold(client, "this request", where)
        if long_poll:
            session.polls += 1
        try:
            headers = _forward_headers(request.headers)
            async with self._session_http.request(request.method, upstream + path, headers=headers,
                                                  data=body, allow_redirects=False) as up:
                rbody = await up.read()
                status, rheaders = up.status, up.headers
        except (aiohttp.ClientError, OSError) as exc:
            text = f"siolab tap: upstream {upstream} unreachable: {exc.__class__.__name__}: {exc}"
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 502}, raw=None,
                           error=f"upstream server unreachable ({exc.__class__.__name__})", note=text, **where)
            return web.Response(status=502, text=text)
        except asyncio.CancelledError:  # the client went away (or the tap is closing) while we waited
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": None}, raw=None,
                           note="the request was abandoned before the server answered (the client closed the "
                                "connection, or the tap is closing)", **where)
            raise
        finally:
            if long_poll:
                session.polls -= 1

        held = self.faults.paused(client)
        resp_http = {**req_http, "status": status}
        encoding = rheaders.get("Content-Encoding")
        plain = protocol.decompress(rbody, encoding)
        ctype = rheaders.get("Content-Type", "")
        if is_eio and status == 200 and request.method == "GET" and ctype.startswith(("text/plain", "application/octet")):
            packets, perr = protocol.decode_payload(plain)
            if packets:
                records = self._packet_records(packets, dir="s2c", http=resp_http, key=key, **where)
                if held:
                    records = [_held(rec) for rec in records]
                new_body = await self._apply_faults(records, plain, "s2c")
                if new_body is None:
                    new_body = b"6"
                    self.trace.add(kind="fault", dir="s2c", http=resp_http, raw="6", eio="noop",
                                   note="every packet of this response was dropped; the tap answered 6 (noop)",
                                   **where)
                if new_body is not plain:
                    rbody, encoding = new_body, None
            else:
                self.trace.add(kind="http", dir="s2c", http=resp_http, raw=_body_text(plain),
                               error=f"invalid polling body: {perr}", note=_HELD if held else None, **where)
        else:
            text = _body_text(plain)
            error = note = None
            if is_eio and _is_html(ctype, text):
                error = _html_answer(status)
            elif is_eio and status >= 400:
                error = protocol.explain_refusal(status, text)
                if overlap:
                    error += " - this long-poll overlapped another one for the same session"
                limit = session.max_payload if session is not None else None
                if request.method == "POST" and limit is not None and len(body or b"") > limit:
                    error += (f" - the POST body was {len(body)} bytes, more than the maxPayload of {limit} bytes "
                              f"the server announced in its open packet (python-engineio answers 400 and closes "
                              f"the session; the Node.js server answers 413)")
            elif is_eio and status == 200 and request.method == "POST":
                note = "the server accepted the POST"
                if body_error:
                    note = ("the server answered OK, but this POST carried something invalid (see the error "
                            "above): OK only means the body was received. python-engineio/python-socketio log "
                            "the error and carry on; the Node.js server answers 400 or closes the session")
                if body_packets > PYTHON_MAX_DECODE_PACKETS:
                    note = (f"the server answered OK, but this body carried {body_packets} packets: a "
                            f"python-engineio server refuses more than {PYTHON_MAX_DECODE_PACKETS} in one body "
                            f"(Payload.max_decode_packets), logs 'Too many packets in payload' and drops them all "
                            f"while answering OK (the Node.js server takes them)")
            elif is_eio:
                error = f"not an Engine.IO response: HTTP {status} {ctype or 'without a Content-Type'}"
            elif not is_eio and status >= 400:
                note = f"HTTP {status} {ctype}"
            if held:
                note = ((note + "; ") if note else "") + _HELD
            self.trace.add(kind="http", dir="s2c", http=resp_http, raw=text, error=error, note=note, **where)
            if transport == "polling" and status >= 400 and sid:
                self._flush(sid, "the session was refused", transport=transport, sid=sid, client=client)

        await self._hold(client, "this response", where)
        out_headers = _forward_headers(rheaders, {"content-encoding"} if encoding is None else set())
        return web.Response(body=rbody, status=status, headers=out_headers)

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
    async def _handle_websocket(self, request: web.Request) -> web.StreamResponse:
        client, sid = self._client_of(request)
        target = self._route(request, sid)
        query = _strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        where = dict(transport="websocket", sid=sid, client=client)
        req_http = {"method": "GET", "path": path, "status": None}
        held = self.faults.paused(client)
        self.trace.add(kind="ws", dir="c2s", http=req_http, note="WebSocket upgrade request" + (
            "; " + _HELD if held else ""), **where)
        await self._hold(client, "this WebSocket upgrade request", where)
        if self.faults.websocket_refused:
            self.trace.add(kind="fault", dir="s2c", http={**req_http, "status": 403},
                           note="the tap refused the WebSocket (fault switch: like a proxy without WebSocket "
                                "support); the client has to stay on long-polling", **where)
            return web.Response(status=403, text="WebSocket refused by the siolab tap (fault switch)")

        headers = _forward_headers(request.headers, _WS_HANDSHAKE)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        url = target.replace("http", "ws", 1) + path
        refusal: dict = {}
        token = _REFUSAL.set(refusal)
        try:
            upstream = await self._session_http.ws_connect(url, headers=headers, protocols=protocols, autoping=True,
                                                           max_msg_size=0, compress=0)
        except aiohttp.WSServerHandshakeError as exc:
            # the server's own answer (kept by _keep_refusal_body), relayed as it was and explained
            body = refusal.get("body", b"")
            text = _body_text(body)
            rheaders = exc.headers or {}
            error = None
            if is_eio:
                html = _is_html(rheaders.get("Content-Type", ""), text)
                error = _html_answer(exc.status) if html else protocol.explain_refusal(exc.status, text)
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": exc.status}, raw=text,
                           error=error, note="the server refused the WebSocket", **where)
            return web.Response(status=exc.status, body=body, headers=_forward_headers(rheaders))
        except (aiohttp.ClientError, OSError) as exc:
            text = f"siolab tap: upstream {target} unreachable: {exc.__class__.__name__}: {exc}"
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 502}, note=text,
                           error=f"upstream server unreachable ({exc.__class__.__name__})", **where)
            return web.Response(status=502, text=text)
        finally:
            _REFUSAL.reset(token)

        ws = web.WebSocketResponse(protocols=protocols, autoping=True, max_msg_size=0, compress=False)
        self._sockets.add(ws)
        self._upstream_sockets.add(upstream)
        try:
            await ws.prepare(request)
            self.trace.add(kind="ws", dir="s2c", http={**req_http, "status": 101}, note="WebSocket open", **where)
            key = ("ws", id(ws))
            state = {"sid": sid, "client": client}
            c2s = asyncio.ensure_future(self._pump(ws, upstream, "c2s", state, key))
            s2c = asyncio.ensure_future(self._pump(upstream, ws, "s2c", state, key))
            done, pending = await asyncio.wait({c2s, s2c}, return_when=asyncio.FIRST_COMPLETED)
            closer = "client" if c2s in done else "server"
            code = (ws.close_code if closer == "client" else upstream.close_code)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self._flush(key, "the WebSocket closed", transport="websocket", sid=state["sid"],
                        client=state["client"])
            await upstream.close(code=code or aiohttp.WSCloseCode.OK)
            await ws.close(code=code or aiohttp.WSCloseCode.OK)
            meaning = CLOSE_CODES.get(code, "")
            self.trace.add(kind="ws", dir="c2s" if closer == "client" else "s2c", transport="websocket",
                           sid=state["sid"], client=state["client"],
                           note=f"WebSocket closed by the {closer}, code {code}" + (f" ({meaning})" if meaning else ""),
                           error=(f"the {closer} closed the WebSocket with code {code}: {meaning}"
                                  if code in _CLOSE_ERRORS else None))
        finally:
            self._sockets.discard(ws)
            self._upstream_sockets.discard(upstream)
            if not upstream.closed:
                await upstream.close()
        return ws

    async def _relay_http(self, request: web.Request) -> web.StreamResponse:
        """Relay one HTTP request unchanged, recording nothing (``record=False``)."""
        query = _strip_client(request.query_string)
        url = self.upstream + request.path + (f"?{query}" if query else "")
        try:
            async with self._session_http.request(request.method, url, headers=_forward_headers(request.headers),
                                                  data=await request.read(), allow_redirects=False) as up:
                body = await up.read()
                return web.Response(body=body, status=up.status, headers=_forward_headers(up.headers))
        except (aiohttp.ClientError, OSError) as exc:
            return web.Response(status=502, text=f"siolab tap: upstream {self.upstream} unreachable: {exc}")

    async def _pump(self, src, dst, dir: str, state: dict, key: Any) -> None:
        """Relay frames one way, recording each; returns when ``src`` closes."""
        if not self.record:
            async for msg in src:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    await dst.send_bytes(msg.data)
            return
        while True:
            msg = await src.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                packets = [protocol.decode_eio(msg.data)]
            elif msg.type == aiohttp.WSMsgType.BINARY:
                packets = [protocol.decode_eio(msg.data)]
            else:  # CLOSE, CLOSING, CLOSED, ERROR
                return
            records = self._packet_records(packets, dir=dir, transport="websocket", http=None,
                                           sid=state["sid"], client=state["client"], key=key)
            for rec in records:
                if rec.sid and state["sid"] is None:
                    state["sid"] = rec.sid
                    state["client"] = state["client"] or self.names.get(rec.sid)
            session = self._sessions.get(state["sid"]) if state["sid"] else None
            if session is not None and session.max_payload is not None and len(msg.data) > session.max_payload:
                records = [_with_error(rec, f"this frame is {len(msg.data)} bytes, more than the maxPayload of "
                                            f"{session.max_payload} bytes announced in the open packet: the "
                                            f"receiver may close the WebSocket (code 1009)") for rec in records]
            if self.faults.paused(state["client"]):
                records = [_held(rec) for rec in records]
            elif dst.closed:
                records = [Record(**{**_fields(rec), "note": "not relayed: the other side's WebSocket is already "
                                                             "closed"}) for rec in records]
            dropped, delay = self._record_with_faults(records, dir)
            forward = not dropped
            if delay:
                await asyncio.sleep(delay)
            await self._hold(state["client"], f"a {dir} frame", dict(transport="websocket", sid=state["sid"],
                                                                      client=state["client"]))
            if forward and not dst.closed:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                else:
                    await dst.send_bytes(msg.data)


# While the tap opens an upstream WebSocket: where to keep the body of a refusal (aiohttp's
# WSServerHandshakeError carries only the status and headers, not why the server said no).
_REFUSAL: contextvars.ContextVar[dict | None] = contextvars.ContextVar("siolab_ws_refusal", default=None)


async def _keep_refusal_body(session, ctx, params) -> None:
    keep = _REFUSAL.get()
    if keep is not None and params.response.status != 101:
        try:
            keep["body"] = await params.response.read()
        except Exception:  # an answer without a readable body: explained from the status alone
            keep["body"] = b""


def _fields(rec: Record) -> dict:
    return {name: getattr(rec, name) for name in rec.__slots__}


_HELD = "held by the tap: relaying is paused (pause()); it goes on at resume()"


def _held(rec: Record) -> Record:
    return Record(**{**_fields(rec), "note": f"{rec.note}; {_HELD}" if rec.note else _HELD})


def _with_error(rec: Record, error: str) -> Record:
    return Record(**{**_fields(rec), "error": f"{rec.error}; {error}" if rec.error else error})


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
