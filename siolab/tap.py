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
import logging
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from . import protocol
from .faults import Fault, Faults
from .trace import Record, Trace, matches

log = logging.getLogger("siolab.tap")

CLIENT_HEADER = "X-Siolab-Client"
CLIENT_PARAM = "siolab_client"
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "content-length", CLIENT_HEADER.lower()}
_WS_HANDSHAKE = {"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                 "sec-websocket-protocol", "sec-websocket-accept"}
MAX_RECORDED_BODY = 4096  # non-Engine.IO bodies are recorded up to this many characters


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


class Tap:
    """Recording reverse proxy; ``await Tap(upstream).start()`` then point clients at ``tap.url``."""

    def __init__(self, upstream: str, trace: Trace | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 layer: str = "socket.io") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("the tap binds %s: it is reachable from other machines", host)
        self.upstream = upstream.rstrip("/")
        self.trace = trace if trace is not None else Trace()
        self.host, self.port = host, port
        self.layer = layer  # "socket.io" decodes messages as Socket.IO; "engine.io" stops at Engine.IO
        self.faults = Faults(self.trace)
        self.names: dict[str, str] = {}  # Engine.IO sid -> client name
        self._conns: dict[tuple, _Conn] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self._upstream_sockets: set[aiohttp.ClientWebSocketResponse] = set()

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> "Tap":
        self._session = aiohttp.ClientSession(
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
        if self._session is not None:
            await self._session.close()
            self._session = None

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

    def _record(self, d: protocol.Decoded, **where: Any) -> Record:
        pkt = d.eio
        if pkt.type == "open" and isinstance(pkt.data, dict) and isinstance(pkt.data.get("sid"), str):
            where["sid"] = pkt.data["sid"]
            if where.get("client"):
                self.names[where["sid"]] = where["client"]
        if pkt.binary:
            raw = base64.b64encode(pkt.data or b"").decode("ascii")
            note = f"attachment {d.attachment_of}" if d.attachment_of is not None else None
            return Record(kind="packet", raw=raw, binary=True, eio="message", error=d.error, note=note,
                          **where)
        sio = d.sio
        return Record(kind="packet", raw=pkt.raw if isinstance(pkt.raw, str) else repr(pkt.raw), eio=pkt.type,
                      sio=sio.type if sio else None, nsp=sio.nsp if sio and sio.type else None,
                      ack=sio.ack if sio else None, event=sio.event if sio else None, args=d.args,
                      attachments=sio.attachments if sio else 0, error=d.error, **where)

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
        client, sid = self._client_of(request)
        query = _strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        transport = request.query.get("transport") if is_eio else None
        transport = transport if transport in ("polling", "websocket") else ("polling" if is_eio else None)
        body = await request.read()
        req_http = {"method": request.method, "path": path, "status": None}
        where = dict(transport=transport, sid=sid, client=client)
        key = sid or id(request)

        await self.faults.gate(client)
        if is_eio and request.method == "POST" and body:
            packets, perr = protocol.decode_payload(body)
            if packets:
                records = self._packet_records(packets, dir="c2s", http=req_http, key=key, **where)
                body = await self._apply_faults(records, body, packets, "c2s")
                if body is None:  # every packet dropped: answer as the server would, without relaying
                    self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 200}, raw="ok",
                                   note="answered by the tap: every packet of this POST was dropped", **where)
                    return web.Response(text="ok", content_type="text/plain")
            else:
                self.trace.add(kind="http", dir="c2s", http=req_http, raw=_body_text(body),
                               error=f"invalid polling body: {perr}", **where)
        else:
            note = None
            if is_eio and request.method == "GET":
                note = "handshake: open a session" if sid is None else "long-poll: wait for the server's packets"
            elif not is_eio:
                note = "not an Engine.IO request (no EIO in the query)"
            self.trace.add(kind="http", dir="c2s", http=req_http, raw=_body_text(body) if body else None,
                           note=note, **where)

        try:
            headers = _forward_headers(request.headers)
            async with self._session.request(request.method, self.upstream + path, headers=headers,
                                             data=body, allow_redirects=False) as up:
                rbody = await up.read()
                status, rheaders = up.status, up.headers
        except (aiohttp.ClientError, OSError) as exc:
            text = f"siolab tap: upstream {self.upstream} unreachable: {exc.__class__.__name__}: {exc}"
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 502}, raw=None,
                           error=f"upstream server unreachable ({exc.__class__.__name__})", note=text, **where)
            return web.Response(status=502, text=text)

        await self.faults.gate(client)
        resp_http = {**req_http, "status": status}
        encoding = rheaders.get("Content-Encoding")
        plain = protocol.decompress(rbody, encoding)
        ctype = rheaders.get("Content-Type", "")
        if is_eio and status == 200 and request.method == "GET" and ctype.startswith(("text/plain", "application/octet")):
            packets, perr = protocol.decode_payload(plain)
            if packets:
                records = self._packet_records(packets, dir="s2c", http=resp_http, key=key, **where)
                new_body = await self._apply_faults(records, plain, packets, "s2c")
                if new_body is None:
                    new_body = b"6"
                    self.trace.add(kind="fault", dir="s2c", http=resp_http, raw="6", eio="noop",
                                   note="every packet of this response was dropped; the tap answered 6 (noop)",
                                   **where)
                if new_body is not plain:
                    rbody, encoding = new_body, None
            else:
                self.trace.add(kind="http", dir="s2c", http=resp_http, raw=_body_text(plain),
                               error=f"invalid polling body: {perr}", **where)
        else:
            text = _body_text(plain)
            error = note = None
            if is_eio and status >= 400:
                error = protocol.explain_refusal(status, text)
            elif is_eio and status == 200 and request.method == "POST":
                note = "the server accepted the POST"
            elif is_eio:
                error = f"not an Engine.IO response: HTTP {status} {ctype or 'without a Content-Type'}"
            elif not is_eio and status >= 400:
                note = f"HTTP {status} {ctype}"
            self.trace.add(kind="http", dir="s2c", http=resp_http, raw=text, error=error, note=note, **where)
            if transport == "polling" and status >= 400 and sid:
                self._flush(sid, "the session was refused", transport=transport, sid=sid, client=client)

        out_headers = _forward_headers(rheaders, {"content-encoding"} if encoding is None else set())
        return web.Response(body=rbody, status=status, headers=out_headers)

    async def _apply_faults(self, records: list[Record], body: bytes | str, packets, dir: str):
        """Record packets, apply drop/delay faults; returns the (possibly rebuilt) body or None if all dropped."""
        dropped, delay = set(), 0.0
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
                self.trace.add(kind="fault", dir=dir, transport=rec.transport, sid=rec.sid, client=rec.client,
                               note=f"delayed {verdict.seconds} s by the tap: {verdict.describe()}")
                delay = max(delay, verdict.seconds)
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
        query = _strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        where = dict(transport="websocket", sid=sid, client=client)
        req_http = {"method": "GET", "path": path, "status": None}
        self.trace.add(kind="ws", dir="c2s", http=req_http, note="WebSocket upgrade request", **where)
        await self.faults.gate(client)
        if self.faults.websocket_refused:
            self.trace.add(kind="fault", dir="s2c", http={**req_http, "status": 403},
                           note="the tap refused the WebSocket (fault switch: like a proxy without WebSocket "
                                "support); the client has to stay on long-polling", **where)
            return web.Response(status=403, text="WebSocket refused by the siolab tap (fault switch)")

        headers = _forward_headers(request.headers, _WS_HANDSHAKE)
        protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        url = self.upstream.replace("http", "ws", 1) + path
        try:
            upstream = await self._session.ws_connect(url, headers=headers, protocols=protocols, autoping=True,
                                                      max_msg_size=0, compress=0)
        except aiohttp.WSServerHandshakeError as exc:
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": exc.status}, raw=exc.message,
                           error=protocol.explain_refusal(exc.status, exc.message or "") if is_eio else None,
                           note="the server refused the WebSocket", **where)
            return web.Response(status=exc.status, text=exc.message or "")
        except (aiohttp.ClientError, OSError) as exc:
            text = f"siolab tap: upstream {self.upstream} unreachable: {exc.__class__.__name__}: {exc}"
            self.trace.add(kind="http", dir="s2c", http={**req_http, "status": 502}, note=text,
                           error=f"upstream server unreachable ({exc.__class__.__name__})", **where)
            return web.Response(status=502, text=text)

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
            self.trace.add(kind="ws", dir="c2s" if closer == "client" else "s2c", transport="websocket",
                           sid=state["sid"], client=state["client"],
                           note=f"WebSocket closed by the {closer}, code {code}")
        finally:
            self._sockets.discard(ws)
            self._upstream_sockets.discard(upstream)
            if not upstream.closed:
                await upstream.close()
        return ws

    async def _pump(self, src, dst, dir: str, state: dict, key: Any) -> None:
        """Relay frames one way, recording each; returns when ``src`` closes."""
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
            await self.faults.gate(state["client"])
            forward = True
            for rec in records:
                verdict = self.faults.check(rec)
                if verdict is None:
                    self.trace.append(rec)
                elif verdict.action == "drop":
                    self.trace.append(Record(**{**_fields(rec), "kind": "fault",
                                                "note": f"dropped by the tap: {verdict.describe()}"}))
                    forward = False
                else:
                    self.trace.append(rec)
                    self.trace.add(kind="fault", dir=dir, transport="websocket", sid=rec.sid, client=rec.client,
                                   note=f"delayed {verdict.seconds} s by the tap: {verdict.describe()}")
                    await asyncio.sleep(verdict.seconds)
            if forward and not dst.closed:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    await dst.send_str(msg.data)
                else:
                    await dst.send_bytes(msg.data)


def _fields(rec: Record) -> dict:
    return {name: getattr(rec, name) for name in rec.__slots__}


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
    text = body.decode("utf-8", errors="replace")
    if len(text) > MAX_RECORDED_BODY:
        return text[:MAX_RECORDED_BODY] + f"… ({len(text)} characters in all)"
    return text


def upstream_of(url: str) -> str:
    """Normalise a server URL given on the command line (scheme, host and port only)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.scheme}://{parts.netloc}"
