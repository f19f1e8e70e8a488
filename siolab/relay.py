"""The tap's sockets: bytes relayed as they came, with a copy parsed on the way.

asyncio Protocols rather than streams or an HTTP framework: a frame that nobody holds back is written
to the other socket inside ``data_received``, with no task switch and no re-encoding, so the tap costs
little more than a byte relay (docs/benchmarks.md). The HTTP and WebSocket parsing is ``wire``'s; what
the bytes mean is for the recorder to say.
"""
from __future__ import annotations

import asyncio
import collections
import ssl as _ssl
from dataclasses import dataclass
from typing import Awaitable, Callable
from urllib.parse import urlsplit

from . import wire

READ_LIMIT = 256 * 1024 * 1024  # the largest HTTP body the tap takes in (the server decides what it accepts)
HIGH_WATER = 4 * 1024 * 1024  # bytes queued in a held lane before the tap stops reading its source


@dataclass(frozen=True, slots=True)
class HttpMessage:
    """One HTTP request or response: its parsed head, its body (de-chunked) and the bytes as they came."""

    head: wire.Request | wire.Response
    body: bytes
    raw: bytes  # head and body exactly as on the wire
    chunked: bool = False
    until_close: bool = False  # a response whose body ran to the end of the connection


class Conn(asyncio.Protocol):
    """One TCP connection (client side or server side): an input buffer read by coroutines while it
    carries HTTP, and a callback per chunk once it carries WebSocket frames."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.eof = False
        self.lost = False
        self.received = 0  # bytes read so far (a request may be sent again only if nothing came back)
        self.on_data: Callable[[bytes], None] | None = None  # set when the connection becomes a WebSocket
        self.on_lost: Callable[[], None] | None = None
        self.peer: "Conn | None" = None  # whose reading to pause while this side cannot write fast enough
        self.on_made: Callable[["Conn"], None] | None = None
        self.task: asyncio.Task | None = None  # what serves this connection while it carries HTTP
        self._waiter: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future = self._loop.create_future()

    # ---------------------------------------------------------------- asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.on_data is not None:
            self.on_data(data)
            return
        self.buf += data
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close our side too: neither clients nor servers half-close Engine.IO connections

    def connection_lost(self, exc) -> None:
        self.eof = self.lost = True
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()
        elif self.on_data is None and self.task is not None and not self.task.done():
            self.task.cancel()  # the client left while its request was being answered

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None and not self.peer.lost:
            self.peer.transport.resume_reading()

    # ---------------------------------------------------------------- writing
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    @property
    def closing(self) -> bool:
        return self.lost or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # ---------------------------------------------------------------- reading HTTP
    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _more(self) -> asyncio.Future:
        """A future that is done when more bytes (or the end) arrive: ``await self._more()``.
        ConnectionError at the end of the connection."""
        if self.eof:
            raise ConnectionResetError("the connection closed")
        waiter = self._waiter = self._loop.create_future()
        return waiter

    async def _head(self, at_start: bool) -> bytes | None:
        buf = self.buf
        while True:
            end = wire.head_end(buf) if buf else -1
            if end >= 0:
                head = bytes(buf[:end])
                del buf[:end]
                return head
            if self.eof:
                if at_start and not buf.strip():
                    return None  # closed between messages: a normal end
                raise ConnectionResetError("the connection closed in the middle of an HTTP head")
            await self._more()

    async def _body(self, framing: tuple[str, int]) -> tuple[bytes, bytes]:
        """(body, raw body) for a framing from ``wire.request_body``/``wire.response_body``."""
        kind, n = framing
        if kind == "length":
            if n > READ_LIMIT:
                raise wire.WireError(f"a body of {n} bytes is more than the tap takes in ({READ_LIMIT} bytes)")
            while len(self.buf) < n:
                if self.eof:
                    raise ConnectionResetError(f"the connection closed after {len(self.buf)} of {n} body bytes")
                await self._more()
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return body, body
        if kind == "chunked":
            reader = wire.ChunkedReader()
            raw = bytearray()
            while True:
                used = reader.feed(self.buf)
                raw += self.buf[:used]
                del self.buf[:used]
                if reader.done:
                    return reader.body, bytes(raw)
                if len(raw) > READ_LIMIT:
                    raise wire.WireError(f"a chunked body of more than {READ_LIMIT} bytes")
                if self.eof:
                    raise ConnectionResetError("the connection closed in the middle of a chunked body")
                await self._more()
        while not self.eof:  # "close": the body runs to the end of the connection
            await self._more()
        body = bytes(self.buf)
        self.buf.clear()
        return body, body

    async def read_request(self, on_expect: Callable[[], None] | None = None) -> HttpMessage | None:
        """The next request (None when the client closed the connection between requests)."""
        head = await self._head(at_start=True)
        if head is None:
            return None
        try:
            req = wire.parse_request(head)
            framing = wire.request_body(req)
        except wire.WireError as exc:
            exc.head = head  # for the record: what came instead of a request
            raise
        if (on_expect is not None and framing != ("length", 0)
                and (req.get("Expect") or "").lower() == "100-continue" and not self.buf):
            on_expect()
        body = self._ready_body(framing)
        if body is not None:
            return HttpMessage(req, body, head + body)
        body, raw = await self._body(framing)
        return HttpMessage(req, body, head + raw, chunked=framing[0] == "chunked")

    async def read_response(self, method: str) -> HttpMessage:
        """The response to a request sent with ``method``; interim 1xx answers other than 101 are skipped."""
        while True:
            head = await self._head(at_start=False)
            resp = wire.parse_response(head)
            if 100 <= resp.status < 200 and resp.status != 101:
                continue
            framing = wire.response_body(resp, method) if resp.status != 101 else ("none", 0)
            body = self._ready_body(framing)
            if body is not None:
                return HttpMessage(resp, body, head + body)
            body, raw = await self._body(framing)
            return HttpMessage(resp, body, head + raw, chunked=framing[0] == "chunked",
                           until_close=framing[0] == "close")

    def _ready_body(self, framing: tuple[str, int]) -> bytes | None:
        """The body, if it is framed by length (or absent) and has all arrived: no coroutine needed."""
        kind, n = framing
        if kind == "none" or (kind == "length" and n == 0):
            return b""
        if kind == "length" and len(self.buf) >= n and n <= READ_LIMIT:
            body = bytes(self.buf[:n])
            del self.buf[:n]
            return body
        return None

    def take_buffer(self) -> bytes:
        """What arrived after the last HTTP message (the first WebSocket frames)."""
        data = bytes(self.buf)
        self.buf.clear()
        return data


async def connect(url: str) -> Conn:
    """A fresh connection to the server at ``url`` (http or https, host and port only)."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    loop = asyncio.get_running_loop()
    context = _ssl.create_default_context() if secure else None
    _, conn = await loop.create_connection(Conn, parts.hostname, port, ssl=context,
                                           server_hostname=parts.hostname if secure else None)
    return conn


def response_bytes(status: int, text: str, reason: str = "", headers: dict[str, str] | None = None) -> bytes:
    """An answer the tap writes itself (a refusal, an unreachable server), as plain text."""
    body = text.encode("utf-8")
    lines = [f"HTTP/1.1 {status} {reason or _REASONS.get(status, '')}".rstrip(),
             "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 413: "Payload Too Large", 502: "Bad Gateway"}


class Lane:
    """One direction of a relayed WebSocket: writes in arrival order, holding a frame back when a fault
    says so (until a time, or until a pause ends) and everything behind it with it."""

    def __init__(self, dst: Conn, src: Conn) -> None:
        self.dst, self.src = dst, src
        self.queue: collections.deque = collections.deque()
        self.queued = 0
        self.task: asyncio.Task | None = None
        self.on_idle: Callable[[], None] | None = None

    def send(self, data: bytes, due: float = 0.0, gate: Callable[[], Awaitable[None]] | None = None) -> None:
        if not self.queue and not due and gate is None:
            self.dst.write(data)
            return
        self.queue.append((data, due, gate))
        self.queued += len(data)
        if self.queued > HIGH_WATER and self.src.transport is not None:
            self.src.transport.pause_reading()
        if self.task is None:
            self.task = asyncio.ensure_future(self._drain())

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.queue:
                data, due, gate = self.queue[0]
                if due and due > loop.time():
                    await asyncio.sleep(due - loop.time())
                if gate is not None:
                    await gate()
                self.queue.popleft()
                self.queued -= len(data)
                self.dst.write(data)
                if self.queued <= HIGH_WATER // 2 and self.src.transport is not None and not self.src.lost:
                    self.src.transport.resume_reading()
        finally:
            self.task = None
        if self.on_idle is not None:
            self.on_idle()

    def cancel(self) -> int:
        """Stop relaying; returns how many frames were still waiting."""
        waiting = len(self.queue)
        self.queue.clear()
        self.queued = 0
        if self.task is not None:
            self.task.cancel()
            self.task = None
        return waiting
