"""The tap's raw relaying, byte for byte: HTTP/1.1 and WebSocket over plain TCP on both sides.

Every test starts its own upstream: a tiny ``asyncio.start_server`` that keeps exactly the bytes it
received and answers scripted bytes (``Upstream``), a raw WebSocket server built on ``siolab.wire``
(``ws_server``), or an aiohttp application. The client is a raw socket (``Peer``) that writes bytes
by hand and reads what the tap sends back, so nothing between the test and the tap rewrites anything.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import hashlib
import socket

import aiohttp
import pytest
from aiohttp import web

from siolab import wire
from siolab.recorder import Recorder
from siolab.tap import Tap
from siolab.trace import FIELDS, LazyRecord, Trace

T = 3.0  # the longest any single wait in these tests may take
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"
MASK2 = b"\x01\x02\x03\x04"
EIO_POST = "/socket.io/?EIO=4&transport=polling&sid=abc"


# ------------------------------------------------------------------------------------------ plumbing

class Peer:
    """One end of a raw TCP connection. Every byte read is kept in ``received``; HTTP messages and
    WebSocket frames are read off ``buf``, so what follows one message stays for the next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buf = bytearray()
        self.received = bytearray()
        self.eof = False
        self._frames = wire.FrameReader()
        self._pending: collections.deque = collections.deque()
        # set by ws_server on the upstream side
        self.ws_offset = 0
        self.frames_in: list[wire.Frame] = []
        self.arrivals: list[float] = []
        self.ws_error: str | None = None

    async def _fill(self) -> None:
        if self.eof:
            raise EOFError("the connection is closed")
        try:
            data = await self.reader.read(65536)
        except ConnectionError:
            data = b""
        if not data:
            self.eof = True
            raise EOFError("the connection closed")
        self.buf += data
        self.received += data

    async def _head(self) -> bytes:
        while (end := wire.head_end(self.buf)) < 0:
            await self._fill()
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def _rest(self) -> bytes:
        while True:
            try:
                await self._fill()
            except EOFError:
                break
        data = bytes(self.buf)
        self.buf.clear()
        return data

    async def _body(self, framing: tuple[str, int]) -> tuple[bytes, bytes]:
        kind, n = framing
        if kind == "none":
            return b"", b""
        if kind == "length":
            data = await self._exactly(n)
            return data, data
        if kind == "chunked":
            reader, raw = wire.ChunkedReader(), bytearray()
            while True:
                used = reader.feed(self.buf)
                raw += self.buf[:used]
                del self.buf[:used]
                if reader.done:
                    return reader.body, bytes(raw)
                await self._fill()
        data = await self._rest()
        return data, data

    async def request(self) -> tuple[wire.Request, bytes, bytes]:
        """(head, de-chunked body, raw bytes) of the next request."""
        async def read():
            head = await self._head()
            req = wire.parse_request(head)
            body, raw = await self._body(wire.request_body(req))
            return req, body, head + raw
        return await asyncio.wait_for(read(), T)

    async def response(self, method: str = "GET") -> tuple[wire.Response, bytes, bytes]:
        """(head, de-chunked body, raw bytes) of the next response, 1xx included."""
        async def read():
            head = await self._head()
            resp = wire.parse_response(head)
            framing = wire.response_body(resp, method) if resp.status != 101 else ("none", 0)
            body, raw = await self._body(framing)
            return resp, body, head + raw
        return await asyncio.wait_for(read(), T)

    async def until_eof(self, timeout: float = T) -> bytes:
        """Everything still to come, up to the end of the connection (TimeoutError if it stays open)."""
        return await asyncio.wait_for(self._rest(), timeout)

    async def until_received(self, predicate, timeout: float = T) -> None:
        async def wait():
            while not predicate(bytes(self.received)):
                await self._fill()
        await asyncio.wait_for(wait(), timeout)

    async def frame(self) -> wire.Frame:
        """The next WebSocket frame."""
        async def read():
            while not self._pending:
                self._pending.extend(self._frames.feed(bytes(self.buf)))
                self.buf.clear()
                if not self._pending:
                    await self._fill()
            return self._pending.popleft()
        return await asyncio.wait_for(read(), T)

    async def read_forever(self) -> None:
        """Keep reading (into ``received``) until the connection ends."""
        with contextlib.suppress(EOFError):
            while True:
                await self._fill()

    @property
    def ws_bytes(self) -> bytes:
        """What arrived after the upgrade request (upstream side of a WebSocket)."""
        return bytes(self.received[self.ws_offset:])

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), T)

    async def trickle(self, data: bytes) -> None:
        """``data`` one byte per write, letting the loop run between them (each its own TCP segment)."""
        for i in range(len(data)):
            self.writer.write(data[i:i + 1])
            await self.writer.drain()
            await asyncio.sleep(0)


class Upstream:
    """A scripted server: ``handler(peer)`` runs once per accepted connection; ``peers`` in accept order."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.peers: list[Peer] = []
        self.tasks: set[asyncio.Task] = set()
        self.server: asyncio.AbstractServer | None = None
        self.url = ""

    async def start(self) -> "Upstream":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader, writer) -> None:
        peer = Peer(reader, writer)
        self.peers.append(peer)
        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await self.handler(peer)
            await writer.drain()
        except (EOFError, ConnectionError, asyncio.TimeoutError, wire.WireError):
            pass
        finally:
            self.tasks.discard(task)
            writer.close()

    async def close(self) -> None:
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for peer in self.peers:
            peer.writer.close()
        await self.server.wait_closed()


class Net:
    """The servers, taps and client sockets of one test, all closed at its end."""

    def __init__(self, batch: bool = False) -> None:
        self.batch = batch
        self.upstreams: list[Upstream] = []
        self.taps: list[Tap] = []
        self.clients: list[Peer] = []
        self.cleanups: list = []

    async def upstream(self, handler) -> Upstream:
        up = await Upstream(handler).start()
        self.upstreams.append(up)
        return up

    async def tap(self, upstream: "Upstream | str", **options) -> Tap:
        url = upstream if isinstance(upstream, str) else upstream.url
        tap = Tap(url, Trace(), **{"batch": self.batch, **options})
        self.taps.append(tap)
        return await tap.start()

    async def client(self, tap: Tap) -> Peer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", tap.port), T)
        peer = Peer(reader, writer)
        self.clients.append(peer)
        return peer

    async def close(self) -> None:
        for peer in self.clients:
            peer.writer.close()
        for peer in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.writer.wait_closed(), T)
        for tap in self.taps:
            await asyncio.wait_for(tap.close(), T)
        for cleanup in self.cleanups:
            await asyncio.wait_for(cleanup(), T)
        for up in self.upstreams:
            await asyncio.wait_for(up.close(), T)


@pytest.fixture(params=[False, True], ids=["inline", "batched"])
async def net(request):
    """Each test runs against a tap that reads every frame before relaying it and one that relays chunks
    and frames them later (the lab's: Tap(batch=True))."""
    n = Net(batch=request.param)
    try:
        yield n
    finally:
        await n.close()


async def eventually(predicate, timeout: float = T, what: str = "condition") -> None:
    """Wait (polling) until ``predicate()`` is true; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.005)


def answer(body: bytes, status: str = "200 OK", ctype: str = "text/plain; charset=UTF-8", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
            .encode("latin-1") + body)


def answering(*responses: bytes):
    """A handler that answers each request on a connection with the next of ``responses``, then waits."""
    async def handler(peer: Peer) -> None:
        for resp in responses:
            await peer.request()
            peer.write(resp)
        await peer.read_forever()
    return handler


def answering_forever(make):
    """A handler answering every request with ``make(request, n)`` (n counts from 1 per connection)."""
    async def handler(peer: Peer) -> None:
        n = 0
        while True:
            try:
                req, body, raw = await asyncio.wait_for(peer.request(), 30)
            except EOFError:
                return
            n += 1
            peer.write(make(req, n))
    return handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, target: str, headers: list[tuple[str, str]] = (), body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def upgrade_request(target: str = "/socket.io/?EIO=4&transport=websocket", *, extensions: bool = True,
                    extra: str = "") -> bytes:
    return (f"GET {target} HTTP/1.1\r\n"
            f"Host: example.test:3000\r\n"
            f"Upgrade: websocket\r\n"
            f"Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {WS_KEY}\r\n"
            f"Sec-WebSocket-Version: 13\r\n"
            + ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if extensions else "")
            + extra
            + "Origin: http://example.test:3000\r\n"
            "\r\n").encode("latin-1")


def without_line(data: bytes, prefix: bytes) -> bytes:
    """``data`` without the header line that starts with ``prefix``."""
    lines = data.split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith(prefix.lower())]
    assert len(kept) == len(lines) - 1, f"exactly one {prefix!r} line expected in {data!r}"
    return b"\r\n".join(kept)


def switching(req: wire.Request) -> bytes:
    accept = base64.b64encode(hashlib.sha1(req.get("Sec-WebSocket-Key").encode() + WS_GUID).digest())
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\nX-Upstream: raw\r\n\r\n")


def ws_server(early: bytes = b"", then=None, plain: bytes | None = None):
    """A raw WebSocket server: it answers the upgrade with 101 (plus ``early`` bytes in the same write),
    then either runs ``then(peer)`` or reads frames, answering pings with pongs and a close with a close;
    a frame it cannot read gets a close 1002. Frames land in ``peer.frames_in`` (arrival times in
    ``peer.arrivals``). A request that is not an upgrade gets ``plain``."""
    async def handler(peer: Peer) -> None:
        req, _, raw = await peer.request()
        if plain is not None and not req.get("Upgrade"):
            peer.write(plain)
            await peer.read_forever()
            return
        peer.upgrade_raw = raw
        peer.ws_offset = len(peer.received) - len(peer.buf)
        peer.write(switching(req) + early)
        if then is not None:
            await then(peer)
            return
        reader = wire.FrameReader()
        loop = asyncio.get_running_loop()
        data = bytes(peer.buf)
        peer.buf.clear()
        while True:
            try:
                frames = reader.feed(data)
            except wire.WireError as exc:
                peer.ws_error = str(exc)
                peer.write(wire.build_frame(8, wire.close_frame_payload(1002)))
                await peer.read_forever()
                return
            for f in frames:
                peer.frames_in.append(f)
                peer.arrivals.append(loop.time())
                if f.opcode == 9:
                    peer.write(wire.build_frame(10, f.payload))
                elif f.opcode == 8:
                    peer.write(wire.build_frame(8, f.payload))
                    await peer.writer.drain()
                    return
            await peer._fill()
            data = bytes(peer.buf)
            peer.buf.clear()
    return handler


async def ws_open(net: Net, tap: Tap, request: bytes | None = None) -> tuple[Peer, bytes]:
    """A raw client WebSocket through the tap: (the client, the 101 bytes it received)."""
    client = await net.client(tap)
    await client.send(request or upgrade_request())
    resp, _, raw = await client.response()
    assert resp.status == 101, raw
    return client, raw


def text(payload: bytes | str, *, fin: bool = True, opcode: int = 1, mask: bytes = MASK) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return wire.build_frame(opcode, payload, fin=fin, mask=mask)


# ------------------------------------------------------------------------------------------ HTTP

async def test_post_bytes_pass_through_unchanged_both_ways(net):
    body = b'42["chat","hi"]'
    request = (f"POST {EIO_POST} HTTP/1.1\r\n"
               "Host: example.test:8080\r\n"
               "user-agent: raw/1.0\r\n"
               "X-Odd-Spacing:no-space-after-colon\r\n"
               "Cookie: io=abc; lang=en\r\n"
               "Content-Type: text/plain;charset=UTF-8\r\n"
               f"Content-Length: {len(body)}\r\n"
               "\r\n").encode() + body
    response = (b"HTTP/1.1 200 Quite Fine Thanks\r\n"
                b"Content-Type: text/plain; charset=UTF-8\r\n"
                b"x-custom-thing:no-space\r\n"
                b"Set-Cookie: io=abc; Path=/; HttpOnly; SameSite=Lax\r\n"
                b"set-cookie: second=2\r\n"
                b"Access-Control-Allow-Origin: http://example.test:8080\r\n"
                b"Content-Length: 2\r\n"
                b"\r\n"
                b"ok")
    up = await net.upstream(answering(response))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(request)
    _, rbody, raw = await client.response("POST")
    assert raw == response and rbody == b"ok"
    assert len(up.peers) == 1 and bytes(up.peers[0].received) == request  # head and body, exactly
    await asyncio.sleep(0.05)
    assert bytes(client.received) == response  # nothing more came
    pkt = tap.trace.expect(kind="packet", dir="c2s")
    assert (pkt.event, pkt.args, pkt.sid, pkt.transport) == ("chat", ["hi"], "abc", "polling")
    assert pkt.http == {"method": "POST", "path": EIO_POST, "status": None}
    ok = tap.trace.expect(kind="http", dir="s2c")
    assert ok.http["status"] == 200 and ok.raw == "ok" and ok.error is None


@pytest.mark.parametrize("target, header", [
    ("/socket.io/?siolab_client=alice&EIO=4&transport=polling&t=Oa%2Fb~1&flag&empty=&sid=abc", None),
    ("/socket.io/?EIO=4&transport=polling&siolab_client=alice&t=Oa%2Fb~1&flag&empty=&sid=abc", None),
    ("/socket.io/?EIO=4&transport=polling&t=Oa%2Fb~1&flag&empty=&sid=abc&siolab_client=alice", None),
    ("/socket.io/?EIO=4&transport=polling&t=Oa%2Fb~1&flag&empty=&sid=abc", "X-Siolab-Client"),
    ("/socket.io/?EIO=4&transport=polling&t=Oa%2Fb~1&flag&empty=&siolab_client=alice&sid=abc", "x-siolab-client"),
], ids=["param-first", "param-middle", "param-last", "header", "both"])
async def test_client_naming_is_stripped_and_recorded(net, target, header):
    body = b"40"
    headers = [("Host", "example.test"), ("Accept", "*/*")]
    if header:
        headers.append((header, "alice"))
    headers += [("Content-Type", "text/plain;charset=UTF-8"), ("Content-Length", "2")]
    up = await net.upstream(answering(answer(b"ok")))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("POST", target, headers, body))
    resp, _, _ = await client.response("POST")
    assert resp.status == 200
    expected = http("POST", "/socket.io/?EIO=4&transport=polling&t=Oa%2Fb~1&flag&empty=&sid=abc",
                    [h for h in headers if h[0] != header], body)
    got = bytes(up.peers[0].received)
    assert b"siolab" not in got.lower()
    assert got == expected
    records = tap.trace.find(where=lambda r: r.kind in ("packet", "http"))
    assert len(records) == 2 and all(r.client == "alice" for r in records), records
    assert all("siolab_client" not in r.http["path"] for r in records)
    assert tap.trace.expect(kind="packet", dir="c2s").sio == "connect"


async def test_keep_alive_three_requests_one_upstream_connection(net):
    up = await net.upstream(answering_forever(lambda req, n: answer(f"{req.target}#{n}".encode())))
    tap = await net.tap(up)
    client = await net.client(tap)
    requests = [http("GET", f"/r/{i}", [("Host", "h")]) for i in range(3)]
    for i, req in enumerate(requests):  # one at a time
        await client.send(req)
        resp, body, _ = await client.response()
        assert (resp.status, body) == (200, f"/r/{i}#{i + 1}".encode())
    await client.send(b"".join(requests))  # then pipelined in one write: answered in order
    bodies = [(await client.response())[1] for _ in range(3)]
    assert bodies == [f"/r/{i}#{i + 4}".encode() for i in range(3)]
    assert len(up.peers) == 1
    assert bytes(up.peers[0].received) == b"".join(requests) * 2
    statuses = [r.http["status"] for r in tap.trace.find(kind="http", dir="s2c")]
    assert statuses == [200] * 6


async def test_server_closed_pooled_connection_between_requests_gets_a_fresh_one(net):
    async def handler(peer):
        await peer.request()
        peer.write(answer(f"conn{len(up.peers)}".encode()))  # then the server closes this connection
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/a", [("Host", "h")]))
    assert (await client.response())[1] == b"conn1"
    await eventually(lambda: up.peers[0].writer.is_closing(), what="the server closed its connection")
    await asyncio.sleep(0.05)
    await client.send(http("GET", "/b", [("Host", "h")]))
    resp, body, _ = await client.response()
    assert (resp.status, body) == (200, b"conn2")
    assert len(up.peers) == 2
    assert not tap.trace.find(where=lambda r: r.error)


async def test_pooled_connection_closed_unanswered_is_retried_once(net):
    """The server takes the second request on the kept-alive connection and closes it without a byte
    (its idle timeout fired as the request came): the tap sends it again on a new connection."""
    async def handler(peer):
        index = len(up.peers)
        if index == 1:
            await peer.request()
            peer.write(answer(b"first"))
            await peer.request()  # ...and close without answering
        else:
            await peer.request()
            peer.write(answer(b"second"))
            await peer.read_forever()
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    second = http("POST", "/b", [("Host", "h"), ("Content-Length", "3")], b"two")
    await client.send(http("GET", "/a", [("Host", "h")]))
    assert (await client.response())[1] == b"first"
    await client.send(second)
    resp, body, _ = await client.response("POST")
    assert (resp.status, body) == (200, b"second")
    assert len(up.peers) == 2
    assert bytes(up.peers[0].received).endswith(second)  # the first connection took it and closed...
    assert bytes(up.peers[1].received) == second  # ...so it went once more on a new one
    assert not tap.trace.find(where=lambda r: (r.http or {}).get("status") == 502)


async def test_response_begun_then_cut_on_pooled_connection_is_not_replayed(net):
    async def handler(peer):
        if len(up.peers) == 1:
            await peer.request()
            peer.write(answer(b"first"))
            await peer.request()
            peer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\n")
            await peer.writer.drain()  # the head, no body: then the server dies
        else:
            await peer.request()
            peer.write(answer(b"replayed"))
            await peer.read_forever()
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/a", [("Host", "h")]))
    assert (await client.response())[1] == b"first"
    await client.send(http("POST", "/pay", [("Host", "h"), ("Content-Length", "3")], b"$10"))
    resp, body, _ = await client.response("POST")
    assert len(up.peers) == 1, f"the POST went to the server {len(up.peers)} times"
    assert resp.status == 502


async def test_request_trickled_one_byte_at_a_time(net):
    up = await net.upstream(answering(answer(b"ok")))
    tap = await net.tap(up)
    client = await net.client(tap)
    request = http("POST", EIO_POST, [("Host", "h"), ("Content-Type", "text/plain"), ("Content-Length", "12")],
                   b'42["slow",1]')
    await client.trickle(request)
    resp, body, _ = await client.response("POST")
    assert (resp.status, body) == (200, b"ok")
    assert bytes(up.peers[0].received) == request
    assert tap.trace.expect(kind="packet", dir="c2s").event == "slow"


async def test_upstream_unreachable_gives_502(net):
    tap = await net.tap(f"http://127.0.0.1:{free_port()}")
    client = await net.client(tap)
    for _ in range(2):  # and the client's connection stays usable
        await client.send(http("GET", "/socket.io/?EIO=4&transport=polling", [("Host", "h")]))
        resp, body, _ = await client.response()
        assert resp.status == 502 and resp.reason == "Bad Gateway"
        assert b"unreachable" in body
    rec = tap.trace.expect(kind="http", dir="s2c")
    assert rec.http["status"] == 502
    assert rec.error.startswith("upstream server unreachable"), rec.error
    assert len(tap.trace.find(kind="http", dir="s2c")) == 2


async def test_upstream_closing_mid_response_gives_502_and_tap_goes_on(net):
    async def handler(peer):
        await peer.request()
        if len(up.peers) == 1:
            peer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nabc")
            return  # closes with 7 body bytes missing
        peer.write(answer(b"whole"))
        await peer.read_forever()
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/cut", [("Host", "h")]))
    resp, body, raw = await client.response()
    assert resp.status == 502 and b"abc" not in raw  # the cut answer is not passed on
    rec = tap.trace.expect(kind="http", dir="s2c")
    assert rec.http["status"] == 502 and rec.error
    assert "closed after 3 of 10 body bytes" in rec.note, rec.note
    other = await net.client(tap)  # a new connection is served
    await other.send(http("GET", "/whole", [("Host", "h")]))
    resp, body, _ = await other.response()
    assert (resp.status, body) == (200, b"whole")


async def test_upstream_answering_not_http_gives_502(net):
    up = await net.upstream(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/x", [("Host", "h")]))
    resp, body, _ = await client.response()
    assert resp.status == 502 and b"not HTTP/1.1" in body
    rec = tap.trace.expect(kind="http", dir="s2c")
    assert rec.http["status"] == 502 and rec.error.startswith("upstream server's answer is not HTTP")


async def test_chunked_request_body_is_dechunked_for_upstream_and_recorded(net):
    up = await net.upstream(answering(answer(b"ok")))
    tap = await net.tap(up)
    client = await net.client(tap)
    body = '42["a","b"]\x1e3'.encode()
    chunked = b'5\r\n42["a\r\n6;ext=1\r\n","b"]\r\n2\r\n\x1e3\r\n0\r\nX-Trailer: t\r\n\r\n'
    head = [("Host", "h"), ("Transfer-Encoding", "chunked"), ("Content-Type", "text/plain;charset=UTF-8")]
    await client.send(http("POST", EIO_POST, head, chunked))
    resp, rbody, _ = await client.response("POST")
    assert (resp.status, rbody) == (200, b"ok")
    expected = http("POST", EIO_POST, [("Host", "h"), ("Content-Type", "text/plain;charset=UTF-8"),
                                       ("Content-Length", str(len(body)))], body)
    assert bytes(up.peers[0].received) == expected
    packets = tap.trace.find(kind="packet", dir="c2s")
    assert [(p.raw, p.eio) for p in packets] == [('42["a","b"]', "message"), ("3", "pong")]
    assert packets[0].event == "a" and packets[0].args == ["b"]


async def test_chunked_response_is_relayed_as_is_and_recorded(net):
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"2\r\n4h\r\n4;x=y\r\nello\r\n3\r\n\x1e2p\r\n0\r\n\r\n")
    up = await net.upstream(answering(response))
    tap = await net.tap(up, layer="engine.io")
    client = await net.client(tap)
    await client.send(http("GET", EIO_POST, [("Host", "h")]))  # a long-poll
    resp, body, raw = await client.response()
    assert raw == response and body == b"4hello\x1e2p"
    packets = tap.trace.find(kind="packet", dir="s2c")
    assert [(p.raw, p.eio) for p in packets] == [("4hello", "message"), ("2p", "ping")]
    assert all(p.http["status"] == 200 and p.error is None for p in packets)


async def test_fault_on_a_chunked_response_rebuilds_its_framing(net):
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nX-Keep: me\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n4\r\n4hel\r\n4\r\nlo\x1e2\r\n0\r\n\r\n")
    up = await net.upstream(answering(response, answer(b"next")))
    tap = await net.tap(up, layer="engine.io")
    tap.drop(dir="s2c", eio="ping")
    client = await net.client(tap)
    await client.send(http("GET", EIO_POST, [("Host", "h")]))
    resp, body, raw = await client.response()
    assert body == b"4hello"
    assert raw == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nX-Keep: me\r\n"
                   b"Content-Length: 6\r\n\r\n4hello")
    assert tap.trace.expect(kind="fault", dir="s2c", eio="ping").note.startswith("dropped by the tap")
    await client.send(http("GET", "/next", [("Host", "h")]))  # the connection is still in step
    assert (await client.response())[1] == b"next"


async def test_expect_100_continue(net):
    up = await net.upstream(answering(answer(b"ok"), answer(b"ok2")))
    tap = await net.tap(up)
    client = await net.client(tap)
    head = http("POST", EIO_POST, [("Host", "h"), ("Expect", "100-continue"), ("Content-Type", "text/plain"),
                                   ("Content-Length", "2")])
    await client.send(head)
    interim, _, raw = await client.response("POST")
    assert raw == b"HTTP/1.1 100 Continue\r\n\r\n"
    await asyncio.sleep(0.05)
    assert not up.peers or not up.peers[0].received  # nothing went upstream before the body
    await client.send(b"40")
    final, body, _ = await client.response("POST")
    assert (final.status, body) == (200, b"ok")
    assert bytes(up.peers[0].received) == without_line(head, b"Expect:") + b"40"
    # a client that sends the body straight away gets no 100 Continue
    await client.send(head + b"41")
    final, body, raw = await client.response("POST")
    assert (final.status, body) == (200, b"ok2")
    assert bytes(client.received).count(b"100 Continue") == 1
    assert b"Expect" not in bytes(up.peers[0].received)
    assert [p.raw for p in tap.trace.find(kind="packet", dir="c2s")] == ["40", "41"]


@pytest.mark.parametrize("garbage", [
    b"HELLO\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xde\xad\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"GET /x HTTP/1.1\r\nBad Header Line\r\n\r\n",
    b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["word", "binary", "http2", "header", "chunk-size"])
async def test_garbage_instead_of_http_gets_400_and_tap_goes_on(net, garbage):
    up = await net.upstream(answering(answer(b"fine")))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(garbage)
    resp, body, _ = await client.response()
    assert resp.status == 400 and body.startswith(b"siolab tap: not an HTTP/1.1 request: ")
    assert len(body) > len(b"siolab tap: not an HTTP/1.1 request: ") + 10  # and says why
    await client.until_eof()  # the tap closes that connection
    rec = tap.trace.expect(kind="http")
    assert rec.error.startswith("not an HTTP/1.1 request"), rec.error
    assert not up.peers  # nothing was relayed
    other = await net.client(tap)
    await other.send(http("GET", "/ok", [("Host", "h")]))
    resp, body, _ = await other.response()
    assert (resp.status, body) == (200, b"fine")


async def test_garbage_record_shows_the_bytes_received(net):
    tap = await net.tap(f"http://127.0.0.1:{free_port()}")
    client = await net.client(tap)
    await client.send(b"HELLO THERE\r\n\r\n")
    resp, _, _ = await client.response()
    assert resp.status == 400
    rec = tap.trace.expect(kind="http")
    assert "HELLO THERE" in (rec.raw or ""), repr(rec.raw)


async def test_response_until_close_is_relayed_whole_then_client_closed(net):
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"

    async def handler(peer):
        await peer.request()
        peer.write(head + b"part one, ")
        await peer.writer.drain()
        await asyncio.sleep(0.05)
        peer.write(b"part two.")
        await peer.writer.drain()
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/stream", [("Host", "h")]))
    rest = await client.until_eof()
    assert rest == head + b"part one, part two."
    rec = tap.trace.expect(kind="http", dir="s2c")
    assert rec.http["status"] == 200 and rec.raw == "part one, part two."


async def test_bodiless_responses_do_not_hang(net):
    responses = {
        "/head": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n",
        "/204": b"HTTP/1.1 204 No Content\r\nX-Why: nothing\r\n\r\n",
        "/304": b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 50\r\n\r\n",
        "/last": answer(b"last"),
    }
    up = await net.upstream(answering_forever(lambda req, n: responses[req.target]))
    tap = await net.tap(up)
    client = await net.client(tap)
    for target, method in [("/head", "HEAD"), ("/204", "GET"), ("/304", "GET"), ("/last", "GET")]:
        await client.send(http(method, target, [("Host", "h")]))
        _, _, raw = await client.response(method)
        assert raw == responses[target]
    assert bytes(client.received) == b"".join(responses.values())
    assert len(up.peers) == 1  # one kept-alive connection carried all four


async def test_connection_close_from_client_ends_the_connection(net):
    up = await net.upstream(answering(answer(b"bye")))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", "/x", [("Host", "h"), ("Connection", "close")]))
    assert (await client.response())[1] == b"bye"
    assert await client.until_eof() == b""


async def test_large_bodies_pass_unchanged(net):
    body = b"4" + bytes(range(48, 58)) * 30_000
    reply = b"4" + b"y" * 400_000
    up = await net.upstream(answering(answer(reply)))
    tap = await net.tap(up, layer="engine.io")
    client = await net.client(tap)
    request = http("POST", EIO_POST, [("Host", "h"), ("Content-Length", str(len(body)))], body)
    await client.send(request)
    _, rbody, _ = await client.response("POST")
    assert rbody == reply
    assert bytes(up.peers[0].received) == request
    assert tap.trace.expect(kind="packet", dir="c2s").raw == body.decode()


async def test_client_leaving_a_pending_long_poll_closes_the_upstream_connection(net):
    up = await net.upstream(answering())  # never answers
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(http("GET", EIO_POST, [("Host", "h")]))
    await eventually(lambda: up.peers and up.peers[0].received, what="the long-poll reached the server")
    client.writer.close()
    await eventually(lambda: up.peers[0].eof, what="the tap closed its connection to the server")
    rec = await tap.trace.wait_for(timeout=T, kind="http", dir="s2c")
    assert rec.http["status"] is None and "abandoned" in rec.note


# ------------------------------------------------------------------------------------------ WebSocket

async def test_upgrade_drops_offered_extensions_and_relays_101(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    request = upgrade_request()
    client, raw = await ws_open(net, tap, request)
    peer = up.peers[0]
    assert peer.upgrade_raw == without_line(request, b"Sec-WebSocket-Extensions:")
    assert raw == switching(wire.parse_request(request))  # the server's 101, byte for byte
    opened = tap.trace.expect(kind="ws", dir="s2c")
    assert opened.http["status"] == 101 and opened.note == "WebSocket open"
    assert tap.trace.expect(kind="ws", dir="c2s").note.startswith("WebSocket upgrade request")


async def test_aiohttp_websocket_offering_deflate_through_the_tap(net):
    seen = {}

    async def ws_handler(request):
        seen["extensions"] = request.headers.get("Sec-WebSocket-Extensions")
        ws = web.WebSocketResponse(compress=True)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data.replace("ping-me", "pong-you"))
        return ws

    app = web.Application()
    app.router.add_get("/socket.io/", ws_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    net.cleanups.append(runner.cleanup)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    tap = await net.tap(f"http://127.0.0.1:{port}")
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{tap.url}/socket.io/?EIO=4&transport=websocket", compress=15) as ws:
            assert ws.compress == 0  # nothing was negotiated
            await ws.send_str('42["ping-me"]')
            msg = await ws.receive(timeout=T)
            assert msg.data == '42["pong-you"]'
    assert seen["extensions"] is None
    await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: "closed by the client, code 1000" in (r.note or ""))
    assert [(r.dir, r.event) for r in tap.trace.packets()] == [("c2s", "ping-me"), ("s2c", "pong-you")]


async def test_fragmented_message_relayed_as_frames_and_recorded_once(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    sent = text('42["a', fin=False) + text('","b"]', opcode=0, mask=MASK2)
    await client.send(sent)
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 2, what="two frames upstream")
    assert peer.ws_bytes == sent
    assert [(f.fin, f.opcode, f.payload) for f in peer.frames_in] == [(False, 1, b'42["a'), (True, 0, b'","b"]')]
    packets = tap.trace.packets(dir="c2s")
    assert len(packets) == 1
    assert (packets[0].raw, packets[0].event, packets[0].args) == ('42["a","b"]', "a", ["b"])
    assert packets[0].transport == "websocket" and packets[0].error is None


async def test_fragments_and_an_interleaved_ping_keep_their_order(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    peer = up.peers[0]
    first, ping, last = text('42["a', fin=False), text(b"hb", opcode=9), text('","b"]', opcode=0)
    await client.send(first + ping)
    pong = await client.frame()
    assert (pong.opcode, pong.payload) == (10, b"hb")
    await client.send(last)
    await eventually(lambda: len(peer.frames_in) == 3, what="all three frames upstream")
    assert [f.opcode for f in peer.frames_in] == [1, 9, 0]
    assert peer.ws_bytes == first + ping + last


async def test_ping_is_relayed_pong_comes_back_no_packet_record(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    await client.send(text(b"heartbeat", opcode=9))
    pong = await client.frame()
    assert (pong.opcode, pong.payload, pong.masked, pong.fin) == (10, b"heartbeat", False, True)
    assert [(f.opcode, f.payload) for f in up.peers[0].frames_in] == [(9, b"heartbeat")]
    assert not tap.trace.packets()
    assert not tap.trace.find(where=lambda r: r.error)


async def test_frames_trickled_one_byte_at_a_time(net):
    down = text('42["x",1]') + text('42["y",', fin=False) + text("2]", opcode=0) + text(b"hb", opcode=9)
    back = wire.build_frame(1, b'42["z",3]') + wire.build_frame(1, b"2")

    async def then(peer):
        await peer.trickle(back)
        await peer.read_forever()
    up = await net.upstream(ws_server(then=then))
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.trickle(upgrade_request(extensions=False))
    resp, _, _ = await client.response()
    assert resp.status == 101
    await client.trickle(down)
    got = [await client.frame(), await client.frame()]
    assert [(f.opcode, f.payload) for f in got] == [(1, b'42["z",3]'), (1, b"2")]
    peer = up.peers[0]
    await eventually(lambda: peer.ws_bytes == down, what="every trickled byte upstream")
    assert peer.upgrade_raw == upgrade_request(extensions=False)
    assert tap.trace.raws(dir="c2s") == ['42["x",1]', '42["y",2]']
    assert tap.trace.raws(dir="s2c") == ['42["z",3]', "2"]
    assert not tap.trace.find(where=lambda r: r.error)


async def test_text_frame_not_utf8_is_recorded_and_relayed(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    bad, good = text(b'42["\xff\xfe"]'), text('42["fine"]')
    await client.send(bad)
    await client.send(good)
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 2, what="both frames upstream")
    assert peer.ws_bytes == bad + good
    first, second = tap.trace.packets(dir="c2s")
    assert "UTF-8" in first.error and "1007" in first.error
    assert second.raw == '42["fine"]' and second.error is None and second.event == "fine"


async def test_reserved_opcode_is_recorded_and_relayed_unread(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    weird = text(b"xyz", opcode=3)
    after = text('42["unread"]')
    await client.send(weird)
    rec = await tap.trace.wait_for(timeout=T, kind="ws", dir="c2s", where=lambda r: r.error is not None)
    assert rec.error.startswith("not a WebSocket frame"), rec.error
    await client.send(after)
    peer = up.peers[0]
    await eventually(lambda: peer.ws_bytes == weird + after, what="the unread bytes upstream")
    assert peer.ws_error and "reserved WebSocket opcode 3" in peer.ws_error
    close = await client.frame()  # the server's answer comes back
    assert close.opcode == 8 and wire.parse_close(close.payload)[0] == 1002
    assert not tap.trace.packets(dir="c2s")  # nothing after the bad frame was read
    closed = await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: "code 1002" in (r.note or ""))
    assert "closed by the server" in closed.note and closed.error


async def test_bad_frame_after_a_held_fragment_loses_no_bytes(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    fragment, weird = text('42["a', fin=False), text(b"xyz", opcode=3)
    await client.send(fragment)
    await asyncio.sleep(0.05)
    await client.send(weird)
    await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: (r.error or "").startswith("not a WebSocket"))
    peer = up.peers[0]
    await eventually(lambda: peer.ws_bytes.endswith(weird), what="the bad frame upstream")
    assert peer.ws_bytes == fragment + weird


@pytest.mark.parametrize("fragmented", [False, True], ids=["one frame", "fragments"])
@pytest.mark.parametrize("faulty", [False, True], ids=["passive", "fault on"])
async def test_a_message_over_the_tap_s_bound_is_relayed_unread_and_said(net, monkeypatch, fragmented, faulty):
    """Past ws_relay.MAX_MESSAGE the tap does not buffer a message: it says so, and relays that message and
    everything after it in that direction byte for byte, unread (the other direction is still read)."""
    from siolab import ws_relay
    monkeypatch.setattr(ws_relay, "MAX_MESSAGE", 1000)
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    if faulty:
        tap.delay(0.01, dir="s2c")  # a fault switch is on: frames are read before they go on
    client, _ = await ws_open(net, tap)
    big = b'42["' + b"x" * 2000 + b'"]'
    frames = (text(big[:700], fin=False) + text(big[700:1400], fin=False, opcode=0) + text(big[1400:], opcode=0)
              if fragmented else text(big))
    after = text('42["after"]')
    await client.send(text('42["before"]') + frames + after)
    peer = up.peers[0]
    await eventually(lambda: peer.ws_bytes.endswith(after), what="everything upstream")
    assert peer.ws_bytes == text('42["before"]') + frames + after
    said = await tap.trace.wait_for(timeout=T, kind="ws", dir="c2s",
                                    where=lambda r: "relays the rest of this direction" in (r.error or ""))
    assert ("more than the tap reads" if fragmented else "over the 1000-byte limit") in said.error
    assert tap.trace.first(dir="c2s", raw='42["before"]') and not tap.trace.first(dir="c2s", raw='42["after"]')


async def test_good_frame_before_a_bad_one_in_the_same_write_is_recorded(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    good, weird = text('42["seen"]'), text(b"xyz", opcode=3)
    await client.send(good + weird)
    peer = up.peers[0]
    await eventually(lambda: peer.ws_bytes == good + weird, what="both frames upstream")
    await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: (r.error or "").startswith("not a WebSocket"))
    assert tap.trace.raws(dir="c2s") == ['42["seen"]']


async def test_close_by_client_with_1000_is_recorded(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    goodbye = text(wire.close_frame_payload(1000, "bye"), opcode=8)
    await client.send(goodbye)
    echo = await client.frame()
    assert echo.opcode == 8 and wire.parse_close(echo.payload) == (1000, "bye")
    assert await client.until_eof() == b""  # then the connection ends
    assert up.peers[0].ws_bytes == goodbye
    closes = tap.trace.find(kind="ws", where=lambda r: "closed by" in (r.note or ""))
    assert len(closes) == 1
    assert closes[0].note.startswith("WebSocket closed by the client, code 1000") and closes[0].error is None


async def test_server_dropping_tcp_without_close_frame_is_1006(net):
    async def then(peer):
        await asyncio.sleep(0.05)  # then the server's connection just ends
    up = await net.upstream(ws_server(then=then))
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    assert await client.until_eof() == b""  # no close frame is made up for the client
    rec = await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: "closed by" in (r.note or ""))
    assert rec.note.startswith("WebSocket closed by the server, code 1006"), rec.note
    assert rec.dir == "s2c"


async def test_client_dropping_tcp_without_close_frame_is_1006(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    await client.send(text("3"))
    peer = up.peers[0]
    await eventually(lambda: peer.frames_in, what="a frame upstream")
    client.writer.close()
    await eventually(lambda: peer.eof, what="the tap closed its connection to the server")
    assert peer.ws_bytes == text("3")  # no close frame made up for the server either
    rec = await tap.trace.wait_for(timeout=T, kind="ws", where=lambda r: "closed by" in (r.note or ""))
    assert rec.note.startswith("WebSocket closed by the client, code 1006"), rec.note


async def test_websocket_client_naming_is_stripped_and_recorded(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    request = upgrade_request("/socket.io/?EIO=4&siolab_client=bob&transport=websocket&sid=s1",
                              extensions=False, extra="X-Siolab-Client: bob\r\n")
    client, _ = await ws_open(net, tap, request)
    await client.send(text('42["hi"]'))
    rec = await tap.trace.wait_for(timeout=T, kind="packet", dir="c2s")
    assert (rec.client, rec.sid, rec.event) == ("bob", "s1", "hi")
    expected = without_line(request, b"X-Siolab-Client:").replace(b"siolab_client=bob&", b"")
    assert up.peers[0].upgrade_raw == expected
    assert all(r.client == "bob" for r in tap.trace if r.kind in ("ws", "packet"))


async def test_tap_closing_sends_1001_to_the_client(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    await client.send(text("2"))
    await eventually(lambda: up.peers[0].frames_in, what="a frame upstream")
    await asyncio.wait_for(tap.close(), T)
    goodbye = await client.frame()
    assert goodbye.opcode == 8 and not goodbye.masked
    assert wire.parse_close(goodbye.payload)[0] == 1001
    assert await client.until_eof() == b""
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 2, what="the tap's close frame upstream")
    assert peer.frames_in[1].opcode == 8 and wire.parse_close(peer.frames_in[1].payload)[0] == 1000
    rec = tap.trace.expect(kind="ws", where=lambda r: "closed by" in (r.note or ""))
    assert rec.note.startswith("WebSocket closed by the tap (it is closing), code 1001"), rec.note


async def test_early_frames_in_the_same_write_as_the_handshake(net):
    pushed = wire.build_frame(1, b"2")  # the server's first frame rides with its 101
    up = await net.upstream(ws_server(early=pushed))
    tap = await net.tap(up)
    client = await net.client(tap)
    hello = text("40")
    await client.send(upgrade_request() + hello)  # and the client's with its upgrade request
    resp, _, _ = await client.response()
    assert resp.status == 101
    frame = await client.frame()
    assert (frame.opcode, frame.payload) == (1, b"2")
    peer = up.peers[0]
    await eventually(lambda: peer.frames_in, what="the client's first frame upstream")
    assert peer.ws_bytes == hello
    await tap.trace.wait_for(timeout=T, kind="packet", dir="s2c", eio="ping")
    assert tap.trace.expect(kind="packet", dir="c2s").sio == "connect"


async def test_upgrade_refused_by_server_is_relayed_and_connection_stays(net):
    refusal = answer(b'{"code":3,"message":"Bad request"}', "400 Bad Request", "application/json")

    async def handler(peer):
        req, _, _ = await peer.request()
        peer.write(refusal if req.get("Upgrade") else answer(b"plain"))
        await peer.read_forever()
    up = await net.upstream(handler)
    tap = await net.tap(up)
    client = await net.client(tap)
    await client.send(upgrade_request())
    _, _, raw = await client.response()
    assert raw == refusal
    rec = tap.trace.expect(kind="http", dir="s2c")
    assert rec.http["status"] == 400 and rec.note == "the server refused the WebSocket" and rec.error
    await client.send(http("GET", "/after", [("Host", "h")]))
    assert (await client.response())[1] == b"plain"


async def test_large_frame_with_64_bit_length(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up, layer="engine.io")
    client, _ = await ws_open(net, tap)
    big = text("4" + "é" * 70_000)
    await client.send(big)
    peer = up.peers[0]
    await eventually(lambda: peer.frames_in, what="the big frame upstream")
    assert peer.ws_bytes == big
    rec = tap.trace.expect(kind="packet", dir="c2s")
    assert rec.raw == "4" + "é" * 70_000 and rec.error is None


# ------------------------------------------------------------------------------------------ faults

async def test_drop_fault_drops_a_client_frame(net):
    pushed = wire.build_frame(1, b'42["back"]')
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    fault = tap.drop(dir="c2s", eio="message")
    client, _ = await ws_open(net, tap)
    dropped, kept = text('42["secret"]'), text("3")
    await client.send(dropped)
    await client.send(kept)
    peer = up.peers[0]
    await eventually(lambda: peer.frames_in, what="the pong upstream")
    await asyncio.sleep(0.05)
    assert peer.ws_bytes == kept
    rec = tap.trace.expect(kind="fault", dir="c2s")
    assert rec.raw == '42["secret"]' and rec.note.startswith("dropped by the tap"), rec.note
    assert tap.trace.raws(dir="c2s") == ["3"]
    assert fault.hits == 1
    peer.write(pushed)  # the other direction is untouched
    frame = await client.frame()
    assert frame.payload == b'42["back"]'


async def test_delay_fault_holds_frames_and_keeps_their_order(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    tap.delay(0.2)
    client, _ = await ws_open(net, tap)
    loop = asyncio.get_running_loop()
    frames = [text(f'42["n",{i}]') for i in range(3)] + [text(b"hb", opcode=9)]
    start = loop.time()
    for f in frames:
        await client.send(f)
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 4, what="all frames upstream")
    assert peer.ws_bytes == b"".join(frames)  # in order, the ping behind the held messages
    assert peer.arrivals[0] - start >= 0.19, peer.arrivals[0] - start
    assert tap.trace.raws(dir="c2s") == [f'42["n",{i}]' for i in range(3)]
    assert len(tap.trace.find(kind="fault", where=lambda r: (r.note or "").startswith("delayed 0.2 s"))) == 3


# ------------------------------------------------------------------------------------------ record=False

async def test_record_false_relays_bytes_and_records_nothing(net):
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-odd:spacing\r\nContent-Length: 2\r\n\r\nok")

    up = await net.upstream(ws_server(plain=response))
    tap = await net.tap(up, record=False)
    request = http("POST", EIO_POST, [("Host", "h"), ("X-Odd", "1"), ("Content-Length", "4")], b"4\xff\x00x")
    client = await net.client(tap)
    await client.send(request)
    _, _, raw = await client.response("POST")
    assert raw == response
    assert bytes(up.peers[0].received) == request
    ws_client, _ = await ws_open(net, tap, upgrade_request(extensions=False))
    frames = text('42["a"]') + text(b"\xff\xfe") + text(b"hb", opcode=9)
    await ws_client.send(frames)
    pong = await ws_client.frame()
    assert (pong.opcode, pong.payload) == (10, b"hb")
    assert up.peers[1].ws_bytes == frames
    await ws_client.send(text(wire.close_frame_payload(1000), opcode=8))
    await ws_client.until_eof()
    assert len(tap.trace) == 0, tap.trace.tail()


# ------------------------------------------------------------------------------------------ switching modes


async def test_a_fault_switched_on_in_the_middle_of_a_frame_cannot_cut_it(net):
    """Half a frame went on before the fault: the rest follows whole; the next frame obeys the fault."""
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    first, second, third = text('42["half",1]'), text('42["gone"]'), text("3")
    cut = len(first) // 2
    await client.send(first[:cut])
    peer = up.peers[0]
    await asyncio.sleep(0.05)
    fault = tap.drop(dir="c2s", raw='42["gone"]')
    await client.send(first[cut:] + second + third)
    await eventually(lambda: len(peer.frames_in) == 2, what="two frames upstream")
    await asyncio.sleep(0.05)
    assert peer.ws_bytes == first + third
    assert tap.trace.raws(dir="c2s") == ['42["half",1]', "3"]
    assert fault.hits == 1 and tap.trace.expect(kind="fault", raw='42["gone"]')


async def test_a_fault_switched_off_in_the_middle_of_a_frame_loses_nothing(net):
    """Half a frame waited in the tap for a fault's decision; the fault ends; the frame goes on once."""
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    fault = tap.drop(dir="c2s", raw="never")
    first, second = text('42["whole",2]'), text('42["after"]')
    cut = len(first) // 2
    await client.send(first[:cut])
    await asyncio.sleep(0.05)
    fault.remove()
    await client.send(first[cut:] + second)
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 2, what="two frames upstream")
    await asyncio.sleep(0.05)
    assert peer.ws_bytes == first + second
    assert tap.trace.raws(dir="c2s") == ['42["whole",2]', '42["after"]']


async def test_a_fragmented_message_across_a_fault_switch_is_relayed_once_and_recorded_once(net):
    up = await net.upstream(ws_server())
    tap = await net.tap(up)
    client, _ = await ws_open(net, tap)
    part1 = text('42["a",', fin=False)
    part2 = text('"b"]', opcode=0)
    await client.send(part1)
    await asyncio.sleep(0.05)
    fault = tap.delay(0.1, dir="c2s")
    await client.send(part2)
    peer = up.peers[0]
    await eventually(lambda: len(peer.frames_in) == 2, what="both fragments upstream")
    fault.remove()
    await asyncio.sleep(0.05)
    assert peer.ws_bytes == part1 + part2
    assert tap.trace.raws(dir="c2s") == ['42["a","b"]']


PLAIN_CANDIDATES = [
    '42["chat","hi"]', '421["echo",{"a":[1,2,{"b":null}]}]', '431["x"]', "40", '40{"sid":"abc"}', "41",
    '42/admin,["x"]', '42/admin,7["x",1.5]', '44{"message":"no"}', '44"no"', '42["connect"]', "42[]", '42{"a":1}',
    '451-["b",{"_placeholder":true,"num":0}]', '42["x",NaN]', "4" + "2" * 30, '42/admin["x"]', "4", "4x", "2", "3",
    '42["ünïcode ✓"]', '42["x"]garbage', '43["late"]',
]


LAZY = ("0", "1", "2", "3")  # CONNECT, DISCONNECT, EVENT, ACK: a LazyRecord, decoded when a field is read


def same_record(fast, expected, order: tuple[str, ...]) -> None:
    """``fast`` is ``expected`` field for field, whichever field is read first."""
    for name in order:
        assert getattr(fast, name) == getattr(expected, name), name
    assert fast == expected and expected == fast and repr(fast) == repr(expected) and str(fast) == str(expected)
    assert fast.to_json() == expected.to_json()


def recorders(sid: str | None = "abc", client: str | None = "alice"):
    """A recorder that takes the short cuts and one that never does, each with a WebSocket of the same session."""
    fast, general = Recorder(), Recorder(short_cuts=False)
    return (fast, fast.websocket(sid, client, None)), (general, general.websocket(sid, client, None))


@pytest.mark.parametrize("raw", PLAIN_CANDIDATES)
@pytest.mark.parametrize("order", [FIELDS, tuple(reversed(FIELDS))])
def test_the_usual_websocket_message_is_recorded_as_the_general_path_records_it(raw, order):
    """The recorder takes a short cut for the usual Socket.IO packet: its record must be the general path's, field
    for field (a lazy record's too, whichever field is read first), and anything the general path would explain
    about the framing or the session, and any CONNECT_ERROR or binary packet that does not decode cleanly, must be
    left to it."""
    (fast, stream), (general, general_stream) = recorders()
    payload = raw.encode("utf-8")
    expected = general.message(general_stream, "c2s", 1, payload, 2.5)
    got = fast.message(stream, "c2s", 1, payload, 2.5)
    assert general.short_cuts_taken == 0 and len(got) == len(expected)
    took = fast.short_cuts_taken == 1
    if took:
        (record,) = got
        lazy = isinstance(record, LazyRecord)
        assert lazy == (raw[1:2] in LAZY)
        same_record(record, expected[0], order)
        if not lazy:
            assert not (record.error or record.note)
    else:
        assert got == expected
    if raw in ('42["chat","hi"]', '431["x"]', '42/admin,7["x",1.5]', "40", '42["x"]garbage', '42["x",NaN]'):
        assert took  # the usual ones do take it, and so do CONNECT/DISCONNECT/EVENT/ACK with a bad payload


def test_the_short_cut_is_not_taken_where_the_session_says_something():
    recorder = Recorder()
    stream = recorder.websocket(None, None, None)

    def short_cut(dir: str, payload: bytes) -> bool:
        before = recorder.short_cuts_taken
        recorder.message(stream, dir, 1, payload, 1.0)
        return recorder.short_cuts_taken > before
    assert not short_cut("c2s", b'42["x"]')  # no session yet: the general path learns it
    stream.sid = "abc"
    recorder.session("abc").max_payload = 5
    (over,) = recorder.message(stream, "c2s", 1, b'42["long"]', 1.0)
    assert "maxPayload of 5" in over.error  # over maxPayload: the general path says so
    recorder.session("abc").max_payload = None
    recorder.session("abc").closed.add("c2s")
    (late,) = recorder.message(stream, "c2s", 1, b'42["x"]', 1.0)
    assert "close packet" in late.error  # after a close packet: the general path says so
    assert short_cut("s2c", b'42["x"]')
    (bad,) = recorder.message(stream, "s2c", 1, b'42["\xff"]', 1.0)
    assert "not UTF-8" in bad.error
    assert recorder.message(stream, "s2c", 1, b'451-["b",{"_placeholder":true,"num":0}]', 1.0) == []  # waits
    taken = recorder.short_cuts_taken
    first, attachment = recorder.message(stream, "s2c", 1, b'42["x"]', 1.0)
    assert recorder.short_cuts_taken == taken and "attachment" in first.error  # the attachment never came


@pytest.mark.parametrize("raw", PLAIN_CANDIDATES)
def test_the_usual_polling_packet_is_recorded_as_the_general_path_records_it(raw):
    payload = raw.encode("utf-8")
    results = []
    for recorder in (Recorder(), Recorder(short_cuts=False)):
        recorder.session("abc")
        query = {"EIO": "4", "transport": "polling", "sid": "abc"}
        x = recorder.exchange(t=2.0, method="GET", path="/socket.io/", query_string="EIO=4&transport=polling&sid=abc",
                              query=query, client_header="alice", body=b"", server=None, key=1)
        records, packets, _ = recorder.response(x, status=200, content_type="text/plain; charset=UTF-8",
                                                content_encoding=None, body=payload, t=2.5)
        results.append((records, packets, recorder.short_cuts_taken))
    (got, _, took), (expected, _, none) = results
    assert none == 0 and len(got) == len(expected)
    if took:
        assert isinstance(got[0], LazyRecord) or not (got[0].error or got[0].note)
        same_record(got[0], expected[0], FIELDS)
    else:
        assert got == expected
        assert raw not in ('42["chat","hi"]', '431["x"]', "40"), f"{raw} should take the short cut"
