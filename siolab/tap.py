"""The tap: a recording reverse proxy between Socket.IO clients and any server.

It relays HTTP long-polling and WebSocket traffic as the bytes came (bodies, query strings, headers
including Host, cookies and CORS; every frame both ways; close codes) and hands a copy of what went
through to the recorder (recorder.py), which makes the Records. The sockets are relay.py's; a WebSocket
is relayed by ws_relay.py. The tap rewrites only what a fault switch or its own bookkeeping needs.
Clients may name themselves with an ``X-Siolab-Client`` header or a ``siolab_client`` query parameter;
the tap strips both before relaying. Fault switches (refuse the WebSocket, drop or delay matching
packets, pause a client) are recorded too (faults.py).
"""
from __future__ import annotations

import asyncio
import base64
import logging
import os
from typing import Any, Callable
from urllib.parse import urlsplit

from . import notes, protocol, relay, wire
from .faults import Fault, Faults
from .recorder import CLIENT_HEADER, CLIENT_PARAM, MAX_RECORDED_BODY, Exchange, Recorder, parse_query, strip_client
from .record import Record
from .text import body_text
from .trace import Trace
from .ws_relay import WebSocketRelay

log = logging.getLogger("siolab.tap")

# Offered WebSocket extensions are not passed on: with permessage-deflate the frames could not be read.
_DROP_UPGRADE = ("Sec-WebSocket-Extensions",)
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# A tap in its own process records a request right after writing it to the server. On a machine with few
# cores the scheduler often woke the server on the tap's core, where it waited until the tap had recorded;
# yielding the CPU first lets the server work meanwhile (docs/benchmarks.md, "sched_yield").
_yield_cpu = getattr(os, "sched_yield", lambda: None)
__all__ = ["Tap", "IncomingRequest", "CLIENT_HEADER", "CLIENT_PARAM", "upstream_of"]


class IncomingRequest:
    """What the tap reads of one HTTP request (the shape a balancing tap's ``upstream_for`` sees)."""

    __slots__ = ("head", "method", "path", "query_string", "query", "headers")

    def __init__(self, head: wire.Request) -> None:
        self.head = head
        self.method = head.method
        self.path = head.path
        self.query_string = head.query_string
        self.query = parse_query(self.query_string)
        self.headers = head  # .get(name, default), case-insensitive


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
        # How traffic nobody can change is read, once it is relayed: right away (a tap in its own process, the
        # CLI: it reads while the server works on what it just relayed), or in batches (``Trace.defer``: the lab,
        # where server, clients and tap share one loop). docs/architecture.md says why, with the numbers.
        self.batch = batch
        self.faults = Faults(self.trace)
        self.recorder = Recorder(layer)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()  # one per client connection
        self._websockets: set[WebSocketRelay] = set()

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
    def upstream_for(self, request: IncomingRequest, sid: str | None) -> str:
        """The server this request goes to (``sid``: its Engine.IO session, None for a handshake)."""
        return self.upstream

    def server_name(self, upstream: str) -> str | None:
        """How records name the server an exchange went to (None: this tap has one server)."""
        return None

    @property
    def names(self) -> dict[str, str]:
        """Engine.IO sid -> client name, as the recorder learned them."""
        return self.recorder.names

    def _append(self, records: list[Record]) -> None:
        for rec in records:
            self.trace.append(rec)

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
                    self.trace.add(kind="http", dir="c2s", raw=body_text(came, MAX_RECORDED_BODY),
                                   error=f"not an HTTP/1.1 request: {exc}",
                                   note="the tap answered 400 and closed the connection (nothing was relayed)")
                    down.write(relay.response_bytes(400, f"siolab tap: not an HTTP/1.1 request: {exc}",
                                                    headers={"Connection": "close"}))
                    return
                except ConnectionError:
                    return
                if msg is None:
                    return
                request = IncomingRequest(msg.head)
                if (msg.head.get("Upgrade") or "").lower() == "websocket":
                    if not await self._handle_websocket(down, msg, request):
                        return
                elif not await self._handle_http(down, msg, request, pool):
                    return
        finally:
            for up in pool.values():
                up.close()
            if down.on_data is None:  # a WebSocket's connection is closed by its relay
                down.close()

    async def _forward(self, pool: dict[str, relay.Conn] | None, upstream: str, data: bytes,
                        method: str, sent: Callable[[], None] | None = None) -> tuple[relay.HttpMessage, relay.Conn]:
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
    def _passive(self, client: str | None) -> bool:
        """True when no fault can change or hold this client's traffic now."""
        return not self.faults.rules and not self.faults.paused(client)

    async def _handle_http(self, down: relay.Conn, msg: relay.HttpMessage, request: IncomingRequest,
                           pool: dict[str, relay.Conn]) -> bool:
        """Relay one request and its answer, recording both; False when the connection should end.

        While no fault can change them, the request and the answer go on first and are recorded after
        (in the lab's batches); otherwise each is recorded, judged by the faults, then relayed."""
        if not self.record:
            return await self._relay_http(down, msg, request, pool)
        recorder = self.recorder
        sid = request.query.get("sid")
        if sid is not None and not recorder.knows(sid):
            self.trace.settle()  # records left for later may teach the recorder this session (its client)
        upstream = self.upstream_for(request, sid)
        exchange = recorder.exchange(t=self.trace.now(), method=request.method, path=request.path,
                              query_string=request.query_string, query=request.query,
                              client_header=request.headers.get(CLIENT_HEADER), body=msg.body,
                              server=self.server_name(upstream), key=id(msg))
        recorded = False

        def sent() -> None:
            """The request is on its way (or will never be): record it, once."""
            nonlocal recorded
            if not recorded:
                recorded = True
                if self.batch:
                    self.trace.defer(self._record_request, exchange, size=len(exchange.body))
                else:
                    _yield_cpu()  # the server just woken may be waiting for this core: let it run first
                    self._record_request(exchange)

        body = msg.body
        if not self._passive(exchange.client):
            recorded = True
            body = await self._request_with_faults(exchange, down)
            if body is None:
                return True
            await self._hold(exchange.client, "this request", exchange.where)
        recorder.poll_started(exchange)
        try:
            answer, up = await self._forward(pool, upstream, _outgoing(msg, exchange.query, body), request.method,
                                              sent=sent)
        except (ConnectionError, OSError, wire.WireError) as exc:
            sent()
            pool.pop(upstream, None)
            what = exc.__class__.__name__
            text = f"siolab tap: upstream {upstream} unreachable: {what}: {exc}"
            error = f"upstream server unreachable ({what})"
            if isinstance(exc, wire.WireError):
                text = f"siolab tap: upstream {upstream} answered something that is not HTTP/1.1: {exc}"
                error = f"upstream server's answer is not HTTP: {exc}"
            self.trace.add(kind="http", dir="s2c", http=exchange.http(502), raw=None, error=error, note=text,
                           **exchange.where)
            down.write(relay.response_bytes(502, text))
            return True
        except asyncio.CancelledError:  # the client went away (or the tap is closing) while we waited
            sent()
            self.trace.add(kind="http", dir="s2c", http=exchange.http(None), raw=None,
                           note="the request was abandoned before the server answered (the client closed the "
                                "connection, or the tap is closing)", **exchange.where)
            raise
        finally:
            recorder.poll_ended(exchange)

        if self._passive(exchange.client):
            down.write(answer.raw)
            if self.batch:
                self.trace.defer(self._record_response, exchange, answer, self.trace.now(), size=len(answer.raw))
            else:
                self._record_response(exchange, answer, self.trace.now())
        else:
            out = await self._response_with_faults(exchange, answer)
            await self._hold(exchange.client, "this response", exchange.where)
            down.write(out)
        return _keep_alive(msg.head, answer.head, answer, up, pool, upstream)

    def _record_request(self, exchange: Exchange) -> None:
        """Record a request that went on unchanged."""
        self._append(self.recorder.request(exchange)[0])

    def _response(self, exchange: Exchange, answer: relay.HttpMessage, t: float,
                  held: bool = False) -> tuple[list[Record], bool, bytes]:
        head: wire.Response = answer.head
        return self.recorder.response(exchange, status=head.status, content_type=head.get("Content-Type"),
                                      content_encoding=head.get("Content-Encoding"), body=answer.body, t=t,
                                      held=held)

    def _record_response(self, exchange: Exchange, answer: relay.HttpMessage, t: float) -> None:
        """Record an answer that went on unchanged."""
        self._append(self._response(exchange, answer, t)[0])
        self._append(self.recorder.exchange_ended(exchange, answer.head.status))

    async def _request_with_faults(self, exchange: Exchange, down: relay.Conn) -> bytes | None:
        """Record a request, let the faults judge its packets; the body to relay, or None if the tap
        answered it itself (every packet dropped)."""
        records, packets = self.recorder.request(exchange, held=self.faults.paused(exchange.client))
        if not packets:
            self._append(records)
            return exchange.body
        body = await self._apply_faults(records, exchange.body, "c2s")
        if body is None:  # every packet dropped: answer as the server would, without relaying
            self.trace.add(kind="http", dir="s2c", http=exchange.http(200), raw="ok",
                           note="answered by the tap: every packet of this POST was dropped", **exchange.where)
            down.write(relay.response_bytes(200, "ok"))
        return body

    async def _response_with_faults(self, exchange: Exchange, answer: relay.HttpMessage) -> bytes:
        """Record an answer, let the faults judge its packets; the bytes to relay."""
        held = self.faults.paused(exchange.client)
        records, packets, plain = self._response(exchange, answer, self.trace.now(), held=held)
        if not packets:
            self._append(records)
            self._append(self.recorder.exchange_ended(exchange, answer.head.status))
            return answer.raw
        resp_http = records[0].http
        new_body = await self._apply_faults(records, plain, "s2c")
        if new_body is None:
            new_body = b"6"
            self.trace.add(kind="fault", dir="s2c", http=resp_http, raw="6", eio="noop",
                           note="every packet of this response was dropped; the tap answered 6 (noop)",
                           **exchange.where)
        if new_body is plain:
            return answer.raw
        return answer.head.with_changes(drop=("Content-Encoding", "Transfer-Encoding"),
                                        set={"Content-Length": str(len(new_body))}).encode() + new_body

    async def _relay_http(self, down: relay.Conn, msg: relay.HttpMessage, request: IncomingRequest,
                          pool: dict[str, relay.Conn]) -> bool:
        """Relay one HTTP request unchanged, recording nothing (``record=False``)."""
        upstream = self.upstream_for(request, request.query.get("sid"))
        try:
            answer, up = await self._forward(pool, upstream, _outgoing(msg, strip_client(request.query_string),
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

    async def _apply_faults(self, records: list[Record], body: bytes | str, dir: str) -> bytes | str | None:
        """Record packets, apply drop/delay faults; returns the (possibly rebuilt) body or None if all dropped."""
        kept, dropped, delay = self.faults.judge(records, dir, self.trace.now())
        self._append(kept)
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
    async def _handle_websocket(self, down: relay.Conn, msg: relay.HttpMessage, request: IncomingRequest) -> bool:
        """Relay an upgrade request; on 101 the two connections carry frames until one closes.
        Returns True if the client's connection stays HTTP (the upgrade was refused)."""
        self.trace.settle()
        client, sid = self.recorder.client_of(request.headers.get(CLIENT_HEADER), request.query)
        target = self.upstream_for(request, sid)
        query = strip_client(request.query_string)
        path = request.path + (f"?{query}" if query else "")
        is_eio = "EIO" in request.query
        where = dict(transport="websocket", sid=sid, client=client, server=self.server_name(target))
        req_http = {"method": "GET", "path": path, "status": None}
        if self.record:
            held = self.faults.paused(client)
            self.trace.add(kind="ws", dir="c2s", http=req_http, note="WebSocket upgrade request" + (
                "; " + notes.HELD if held else ""), **where)
            await self._hold(client, "this WebSocket upgrade request", where)
            if self.faults.websocket_refused:
                self.trace.add(kind="fault", dir="s2c", http={**req_http, "status": 403},
                               note="the tap refused the WebSocket (fault switch: like a proxy without WebSocket "
                                    "support); the client has to stay on long-polling", **where)
                down.write(relay.response_bytes(403, "WebSocket refused by the siolab tap (fault switch)"))
                return True
        conns: dict[str, relay.Conn] = {}  # the server connection, until it belongs to the WebSocket
        try:
            answer, up = await self._forward(conns, target, _outgoing(msg, query, msg.body, _DROP_UPGRADE), "GET")
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
                text = body_text(protocol.decompress(answer.body, rhead.get("Content-Encoding")), MAX_RECORDED_BODY)
                error = None
                if is_eio:
                    html = notes.is_html(rhead.get("Content-Type") or "", text)
                    error = notes.html_answer(rhead.status) if html else protocol.explain_refusal(rhead.status, text)
                self.trace.add(kind="http", dir="s2c", http={**req_http, "status": rhead.status}, raw=text,
                               error=error, note="the server refused the WebSocket", **where)
            up.close()
            down.write(answer.raw)
            return not answer.until_close and (rhead.get("Connection") or "").lower() != "close"
        if self.record:
            self.trace.add(kind="ws", dir="s2c", http={**req_http, "status": 101}, note="WebSocket open", **where)
        ws = WebSocketRelay(down, up, stream=self.recorder.websocket(sid, client, where["server"]),
                            recorder=self.recorder, trace=self.trace, faults=self.faults, record=self.record,
                            batch=self.batch)
        self._websockets.add(ws)
        down.write(answer.raw)
        try:
            ws.start(down.take_buffer(), up.take_buffer())
            await ws.done
        finally:
            self._websockets.discard(ws)
        return False


def _outgoing(msg: relay.HttpMessage, query: str, body: bytes, drop: tuple[str, ...] = ()) -> bytes:
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


def _keep_alive(req: wire.Request, resp: wire.Response, answer: relay.HttpMessage, up: relay.Conn,
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


def upstream_of(url: str) -> str:
    """Normalise a server URL given on the command line (scheme, host and port only)."""
    parts = urlsplit(url if "://" in url else "http://" + url)
    return f"{parts.scheme}://{parts.netloc}"
