"""Hostile traffic through the tap: each case leaves a clear, explained record in the trace, while a
well-behaved client connected alongside keeps exchanging messages the whole time."""
import asyncio
import json

import aiohttp
import pytest
import socketio
from aiohttp import web

import siolab
from siolab.tap import Tap
from siolab.trace import Trace

MAX_PAYLOAD = 1000
EIO = "/socket.io/?EIO=4"


class Chatter:
    """A well-behaved client that keeps calling ``echo`` in the background; ``check()`` asserts it never stalled."""

    def __init__(self, lab, client):
        self.lab, self.client = lab, client
        self.sent = 0
        self.failures = []
        self.task = asyncio.ensure_future(self._run())

    async def _run(self):
        while True:
            self.sent += 1
            try:
                got = await self.client.call("echo", self.sent, timeout=3)
                if got != self.sent:
                    self.failures.append(f"echo {self.sent} came back as {got!r}")
            except Exception as exc:  # a timeout here means the good client stalled
                self.failures.append(f"echo {self.sent}: {exc!r}")
            await asyncio.sleep(0.03)

    async def check(self):
        """The background exchange went on, and one more round trip works right now."""
        before = self.sent
        assert await self.client.call("echo", "still here", timeout=3) == "still here"
        await asyncio.sleep(0.1)
        assert self.sent > before, "the good client's background exchange stopped"
        assert not self.failures, self.failures
        assert self.client.connected and self.client.transport() == "websocket"

    async def stop(self):
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
async def hostile():
    """A lab with a small maxPayload, an echo handler, a refusing namespace and a good client chatting."""
    lab = await siolab.start(ping_interval=1, ping_timeout=1, max_http_buffer_size=MAX_PAYLOAD)

    @lab.server.on("echo")
    async def echo(sid, data):
        return data

    @lab.server.on("connect", namespace="/private")
    async def private(sid, environ, auth=None):
        return False

    @lab.server.on("connect", namespace="/vip")
    async def vip(sid, environ, auth=None):
        raise socketio.exceptions.ConnectionRefusedError("members only")

    good = await lab.client("good")
    await lab.trace.wait_for(client="good", raw="5")
    chatter = Chatter(lab, good)
    http = aiohttp.ClientSession(headers={"X-Siolab-Client": "evil"})
    lab.http = http
    lab.chatter = chatter
    try:
        yield lab
        await chatter.check()  # and once more at the very end
    finally:
        await chatter.stop()
        await http.close()
        await lab.close()


async def handshake(lab, **query):
    q = "&".join(f"{k}={v}" for k, v in {"transport": "polling", **query}.items())
    async with lab.http.get(f"{lab.url}{EIO}&{q}") as r:
        body = await r.text()
    return json.loads(body[1:])["sid"]


async def post(lab, sid, body):
    async with lab.http.post(f"{lab.url}{EIO}&transport=polling&sid={sid}", data=body) as r:
        return r.status, await r.text()


async def get(lab, query, **kwargs):
    async with lab.http.get(f"{lab.url}/socket.io/?{query}", **kwargs) as r:
        return r.status, await r.text()


def reply_to(lab, method, sid=None, mark=0.0):
    """The tap's record of the server's answer to the evil client's last ``method`` request."""
    found = lab.trace.since(mark).find(kind="http", dir="s2c", client="evil",
                                       where=lambda r: r.http["method"] == method and (sid is None or r.sid == sid))
    assert found, lab.trace.tail(10)
    return found[-1]


async def connected_session(lab):
    """A hand-made polling session connected to the default namespace (sid, plus a pending long-poll reader)."""
    sid = await handshake(lab)
    assert (await post(lab, sid, "40"))[0] == 200
    status, body = await get(lab, f"EIO=4&transport=polling&sid={sid}")
    assert status == 200 and body.startswith("40{")
    return sid


# ------------------------------------------------------------ garbage


@pytest.mark.parametrize("body, words", [
    ("garbage", "unknown Engine.IO packet type 'g'"),
    (b"\xff\xfe\x00", "not UTF-8"),
    ("3:abc", "Engine.IO v3 framing"),
    ("2\x1e\x1e2", "empty packet"),
])
async def test_garbage_post_bodies_are_recorded_and_explained(hostile, body, words):
    lab = hostile
    sid = await handshake(lab)
    mark = lab.trace.now()
    status, _ = await post(lab, sid, body)
    sent = lab.trace.since(mark).first(client="evil", dir="c2s", where=lambda r: r.error is not None)
    assert sent is not None and words in sent.error, lab.trace.tail(6)
    assert sent.http["method"] == "POST"
    reply = reply_to(lab, "POST", sid, mark)
    if status == 200:  # python-engineio answers OK; the trace says that OK does not mean valid
        assert "carried something invalid" in reply.note and reply.error is None
    else:
        assert reply.error.startswith(f"HTTP {status}")
    if isinstance(body, bytes):
        assert "\\xff\\xfe" in sent.raw  # undecodable bytes shown as escapes, not as replacement characters
    await lab.chatter.check()


async def test_invalid_json_after_42_is_explained_and_the_servers_error_has_a_traceback(hostile):
    lab = hostile
    sid = await connected_session(lab)
    mark = lab.trace.now()
    assert (await post(lab, sid, "42[broken"))[0] == 200
    sent = lab.trace.since(mark).expect(client="evil", raw="42[broken")
    assert sent.eio == "message" and sent.sio == "event"
    assert sent.error.startswith("cannot decode EVENT: Expecting value")
    err = await lab.trace.wait_for(kind="error", where=lambda r: r.t >= mark)
    assert "Traceback" in err.note and "JSONDecodeError" in err.note
    assert "carried something invalid" in reply_to(lab, "POST", sid, mark).note
    await lab.chatter.check()


async def test_the_ok_to_a_post_says_whether_its_packet_was_valid_when_read(hostile):
    """The usual POST's packet and the server's OK are recorded without decoding (LazyRecord); reading the OK's
    note decodes the packet, and says what decoding at once would have said."""
    from siolab.trace import LazyRecord, Record, replace
    lab = hostile
    sid = await connected_session(lab)
    for body, valid in (('42["echo","fine"]', True), ('42["echo"]junk', False), ('41', True)):
        mark = lab.trace.now()
        assert (await post(lab, sid, body))[0] == 200
        sent = lab.trace.since(mark).expect(client="evil", raw=body)
        reply = reply_to(lab, "POST", sid, mark)
        assert isinstance(sent, LazyRecord) and isinstance(reply, LazyRecord)
        assert ("accepted the POST" in reply.note) == valid and ("carried something invalid" in reply.note) != valid
        assert (sent.error is None) == valid
        assert reply == Record(**{k: getattr(reply, k) for k in reply.to_json()}) == replace(reply)
    await lab.chatter.check()


# ------------------------------------------------------------ sessions and handshakes


async def test_unknown_sid_is_400_with_the_reason(hostile):
    lab = hostile
    status, body = await get(lab, "EIO=4&transport=polling&sid=nope")
    assert status == 400 and "Invalid session nope" in body
    rec = reply_to(lab, "GET")
    assert rec.http["status"] == 400 and rec.sid == "nope"
    assert "Invalid session nope" in rec.error and "no session with this sid" in rec.error
    await lab.chatter.check()


async def test_expired_sid_is_400_and_says_the_session_is_over(hostile):
    lab = hostile
    sid = await handshake(lab)
    assert await post(lab, sid, "1") == (200, "OK")  # the client closes its session
    status, body = await get(lab, f"EIO=4&transport=polling&sid={sid}")
    assert status == 400 and "Session is disconnected" in body
    rec = reply_to(lab, "GET", sid)
    assert "Session is disconnected" in rec.error and "this session is over" in rec.error
    assert "new handshake" in rec.error
    await lab.chatter.check()


async def test_engineio_v3_is_refused_as_another_protocol_version(hostile):
    lab = hostile
    status, body = await get(lab, "EIO=3&transport=polling")
    assert status == 400 and "unsupported version" in body
    rec = reply_to(lab, "GET")
    assert "another Engine.IO protocol version (v4 is EIO=4)" in rec.error
    await lab.chatter.check()


async def test_missing_and_invalid_transport(hostile):
    lab = hostile
    mark = lab.trace.now()
    status, body = await get(lab, "EIO=4")
    assert status == 200 and body.startswith("0{")  # python-engineio assumes polling
    asked = lab.trace.since(mark).expect(client="evil", kind="http", dir="c2s")
    assert "no transport parameter" in asked.note and "assumes polling" in asked.note
    assert lab.trace.since(mark).expect(client="evil", eio="open").error is None

    mark = lab.trace.now()
    status, body = await get(lab, "EIO=4&transport=carrier-pigeon")
    assert status == 400 and "Invalid transport" in body
    asked = lab.trace.since(mark).expect(client="evil", kind="http", dir="c2s")
    assert "transport='carrier-pigeon' is not a transport" in asked.note
    assert "transport query parameter is missing or not one the server allows" in reply_to(lab, "GET", None, mark).error
    await lab.chatter.check()


# ------------------------------------------------------------ size limits


async def test_polling_body_over_max_payload(hostile):
    lab = hostile
    sid = await connected_session(lab)
    poll = asyncio.ensure_future(get(lab, f"EIO=4&transport=polling&sid={sid}"))  # like a real client
    await asyncio.sleep(0.1)
    mark = lab.trace.now()
    big = '42["echo","' + "x" * 2 * MAX_PAYLOAD + '"]'
    status, _ = await post(lab, sid, big)
    assert status == 400
    assert await asyncio.wait_for(poll, 3) == (200, "1")  # the server closed the session
    rec = reply_to(lab, "POST", sid, mark)
    assert rec.http["status"] == 400
    assert f"more than the maxPayload of {MAX_PAYLOAD} bytes" in rec.error and "closes the session" in rec.error
    assert rec.error.startswith("HTTP 400: Bad Request")
    assert lab.trace.since(mark).expect(client="evil", dir="s2c", eio="close", transport="polling")
    await lab.chatter.check()


async def test_websocket_frame_over_max_payload(hostile):
    lab = hostile
    async with lab.http.ws_connect(lab.url.replace("http", "ws") + EIO + "&transport=websocket") as ws:
        await ws.receive(timeout=3)
        mark = lab.trace.now()
        await ws.send_str('42["echo","' + "x" * 2 * MAX_PAYLOAD + '"]')
        msg = await ws.receive(timeout=3)
        assert msg.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
    frame = lab.trace.since(mark).expect(client="evil", dir="c2s", event="echo")
    assert f"more than the maxPayload of {MAX_PAYLOAD} bytes" in frame.error and "1009" in frame.error
    closed = await lab.trace.wait_for(client="evil", kind="ws", where=lambda r: "closed" in (r.note or ""))
    assert "code 1009" in closed.note and "message too big" in closed.error and closed.dir == "s2c"
    await lab.chatter.check()


# ------------------------------------------------------------ binary attachments


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_placeholder_with_no_attachment(hostile, transport):
    lab = hostile
    mark = lab.trace.now()
    head, nxt = '451-["file",{"_placeholder":true,"num":0}]', '42["after"]'
    if transport == "polling":
        sid = await connected_session(lab)
        assert (await post(lab, sid, head + "\x1e" + nxt))[0] == 200
    else:
        async with lab.http.ws_connect(lab.url.replace("http", "ws") + EIO + "&transport=websocket") as ws:
            await ws.receive(timeout=3)
            await ws.send_str("40")
            await ws.receive(timeout=3)
            await ws.send_str(head)
            await ws.send_str(nxt)
            await lab.trace.wait_for(client="evil", raw=nxt)
    rec = lab.trace.since(mark).expect(client="evil", sio="binary_event")
    assert rec.raw == head and rec.attachments == 1 and rec.transport == transport
    assert rec.error.startswith("placeholder with no attachment: expected 1 attachment(s), got 0")
    assert "python-socketio" in rec.error  # says what this server does with the next packet
    after = lab.trace.since(mark).expect(client="evil", raw=nxt)
    assert after.t >= rec.t and after.event == "after"
    await lab.chatter.check()


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_attachment_with_no_placeholder(hostile, transport):
    lab = hostile
    mark = lab.trace.now()
    if transport == "polling":
        sid = await connected_session(lab)
        assert (await post(lab, sid, "bAQID"))[0] == 200
    else:
        async with lab.http.ws_connect(lab.url.replace("http", "ws") + EIO + "&transport=websocket") as ws:
            await ws.receive(timeout=3)
            await ws.send_str("40")
            await ws.receive(timeout=3)
            await ws.send_bytes(b"\x01\x02\x03")
            await lab.trace.wait_for(client="evil", binary=True)
    rec = lab.trace.since(mark).expect(client="evil", binary=True)
    assert rec.raw == "AQID" and rec.kind == "packet" and rec.transport == transport
    assert rec.error == "binary attachment with no BINARY_EVENT/BINARY_ACK placeholder before it"
    err = await lab.trace.wait_for(kind="error", where=lambda r: r.t >= mark)  # the server's own complaint
    assert "Traceback" in err.note
    await lab.chatter.check()


# ------------------------------------------------------------ namespaces


@pytest.mark.parametrize("nsp, words", [
    ("/nope", "no connect handler is registered for this namespace"),
    ("/private", "connect handler returned False"),
    ("/vip", "members only"),
])
async def test_refused_namespaces_are_explained(hostile, nsp, words):
    lab = hostile
    name = "eve" + nsp.replace("/", "-")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await lab.client(name, namespaces=[nsp], transports=["websocket"], wait_timeout=3)
    rec = await lab.trace.wait_for(client=name, sio="connect_error", dir="s2c")
    assert rec.nsp == nsp and rec.error is None
    assert rec.note.startswith(f"the server refused the namespace {nsp}: ") and words in rec.note
    assert nsp in rec.meaning and "CONNECT_ERROR" in rec.meaning
    await lab.chatter.check()


# ------------------------------------------------------------ misbehaving clients


async def test_websocket_text_after_close(hostile):
    lab = hostile
    async with lab.http.ws_connect(lab.url.replace("http", "ws") + EIO + "&transport=websocket") as ws:
        await ws.receive(timeout=3)
        await ws.send_str("40")
        await ws.receive(timeout=3)
        await ws.send_str("1")
        await ws.send_str('42["echo","after close"]')
        await lab.trace.wait_for(client="evil", event="echo")
    close = lab.trace.expect(client="evil", dir="c2s", eio="close")
    assert close.error is None
    late = lab.trace.expect(client="evil", event="echo")
    assert late.t >= close.t and late.transport == "websocket"
    assert "sent after this side's close packet (1)" in late.error and "client misbehaves" in late.error
    await lab.trace.wait_for(client="evil", kind="ws", where=lambda r: "closed by" in (r.note or ""))
    await lab.chatter.check()


async def test_two_long_polls_at_once(hostile):
    lab = hostile
    sid = await handshake(lab)
    url = f"EIO=4&transport=polling&sid={sid}"
    first = asyncio.ensure_future(get(lab, url))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(get(lab, url))
    results = await asyncio.wait_for(asyncio.gather(first, second), 5)
    # python-engineio: one gets the ping, the other waits pingInterval + pingTimeout, then 400
    assert sorted(status for status, _ in results) == [200, 400]
    asked = lab.trace.find(client="evil", kind="http", dir="c2s", sid=sid)
    assert asked[-1].error.startswith("a second long-poll while another is still pending for this session")
    assert asked[-2].error is None
    refused = lab.trace.expect(client="evil", kind="http", dir="s2c", sid=sid,
                               where=lambda r: r.http["status"] == 400)
    assert "overlapped another one for the same session" in refused.error
    await lab.chatter.check()


# ------------------------------------------------------------ a server that is not Socket.IO


@pytest.mark.loopback  # its own upstream server and tap
async def test_a_server_answering_html_is_recorded_and_said():
    async def not_found(request):
        return web.Response(status=404, text="<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    trace = Trace()
    try:
        async with Tap(upstream, trace) as tap:
            client = socketio.AsyncClient(reconnection=False)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect(tap.url, headers={"X-Siolab-Client": "py"}, wait_timeout=2)
            async with aiohttp.ClientSession() as http:
                async with http.get(tap.url + "/socket.io/?EIO=4&transport=polling&sid=abc") as r:
                    assert r.status == 404
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(tap.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                          headers={"X-Siolab-Client": "ws"})
                assert refused.value.status == 404
    finally:
        await runner.cleanup()
    answers = trace.find(kind="http", dir="s2c", client="py")
    assert answers and all(r.http["status"] == 404 for r in answers)
    assert "not a Socket.IO server's answer: HTTP 404 with an HTML page" in answers[0].error
    assert "/socket.io/" in answers[0].error and "<h1>404 Not Found</h1>" in answers[0].raw
    plain = trace.expect(kind="http", dir="s2c", client=None, where=lambda r: "sid=abc" in r.http["path"])
    assert "HTML page" in plain.error
    ws = trace.expect(client="ws", kind="http", dir="s2c")
    assert ws.http["status"] == 404 and "HTML page" in ws.error and "refused the WebSocket" in ws.note
    assert not trace.find(kind="packet")


async def test_a_burst_from_a_polling_client_over_16_packets_is_lost_and_the_trace_says_why(hostile):
    """python-engineio's client sends its whole queue in one POST; its server refuses more than 16 packets."""
    lab = hostile
    got = []

    @lab.server.on("n")
    async def n(sid, i):
        got.append(i)

    bob = await lab.client("bob", transports=["polling"])
    mark = lab.trace.now()
    await asyncio.gather(*(bob.emit("n", i) for i in range(20)))
    reply = await lab.trace.wait_for(client="bob", kind="http", dir="s2c",
                                     where=lambda r: r.t >= mark and "carried 20 packets" in (r.note or ""))
    sent = lab.trace.since(mark).find(client="bob", dir="c2s", event="n")
    assert len(sent) == 20 and reply.http["status"] == 200
    assert "refuses more than 16" in reply.note and "drops them all" in reply.note
    err = await lab.trace.wait_for(kind="error", where=lambda r: r.t >= mark)
    assert "Too many packets in payload" in err.error
    await asyncio.sleep(0.2)
    assert len(got) < 20  # lost, as the trace says
    await lab.chatter.check()
