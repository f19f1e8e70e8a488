"""Real clients through the tap to the lab's server, over loopback: the recorded sequences."""
import asyncio

import aiohttp
import pytest
from timing import LoopLag, eventually


def sequence(trace, client, kinds=("packet",)):
    return [(r.dir, r.transport, r.raw) for r in trace if r.client == client and r.kind in kinds]


async def test_default_client_handshake_upgrade_events_heartbeat(lab):
    @lab.server.on("chat")
    async def chat(sid, data):
        await lab.server.emit("chat", data)

    alice = await lab.client("alice")
    await lab.trace.wait_for(client="alice", raw="5")
    await alice.emit("chat", "hi")
    await lab.trace.wait_for(client="alice", dir="s2c", event="chat")
    await lab.trace.wait_for(client="alice", dir="c2s", eio="pong", transport="websocket", timeout=3)

    first = lab.trace.first(client="alice")
    assert first.kind == "http" and first.http["method"] == "GET"
    assert "EIO=4" in first.http["path"] and "transport=polling" in first.http["path"] and "t=" in first.http["path"]
    opened = lab.trace.expect(client="alice", eio="open")
    assert opened.transport == "polling" and opened.http["status"] == 200
    assert opened.data["upgrades"] == ["websocket"] and opened.data["pingInterval"] == 1000
    assert opened.data["pingTimeout"] == 1000 and opened.data["maxPayload"] > 0
    assert opened.sid == opened.data["sid"]
    ws = [raw for d, tr, raw in sequence(lab.trace, "alice") if tr == "websocket"]
    assert ws[:3] == ["2probe", "3probe", "5"]
    connect = next(i for i, raw in enumerate(ws) if raw.startswith("40"))
    assert connect > ws.index("5")  # the python client sends CONNECT over the new WebSocket
    assert '42["chat","hi"]' in ws
    ping = lab.trace.expect(client="alice", dir="s2c", raw="2", transport="websocket")
    pong = lab.trace.expect(client="alice", dir="c2s", raw="3", transport="websocket")
    assert pong.t >= ping.t
    assert all(r.error is None for r in lab.trace)
    assert {r.sid for r in lab.trace.packets(client="alice")} == {opened.sid}


async def test_polling_only_batches_replies_ok_and_disconnects(lab):
    @lab.server.on("burst")
    async def burst(sid):
        for i in range(3):
            await lab.server.emit("n", i, to=sid)

    bob = await lab.client("bob", transports=["polling"])
    await bob.emit("burst")
    await lab.trace.wait_for(client="bob", event="n", where=lambda r: r.args == [2])
    got = lab.trace.find(client="bob", event="n")
    assert [r.args for r in got] == [[0], [1], [2]]
    assert all(r.transport == "polling" and r.http["method"] == "GET" for r in got)
    # at least two of them came in the same response body (batched with \x1e)
    assert len({r.t for r in got}) < 3
    ok = lab.trace.expect(client="bob", kind="http", dir="s2c", where=lambda r: r.http["method"] == "POST")
    assert ok.raw in ("ok", "OK") and ok.eio is None and ok.error is None
    assert not lab.trace.find(transport="websocket", client="bob")
    await asyncio.wait_for(bob.disconnect(), 3)
    assert lab.trace.raws(client="bob", dir="c2s")[-2:] == ["41", "1"]


async def test_websocket_only_client(lab):
    await lab.client("carol", transports=["websocket"])
    await lab.trace.wait_for(client="carol", sio="connect", dir="s2c")
    assert not lab.trace.find(client="carol", transport="polling")
    opened = lab.trace.expect(client="carol", eio="open")
    assert opened.transport == "websocket" and opened.data["upgrades"] == []


async def test_ack_pairs_ids(lab):
    @lab.server.on("add")
    async def add(sid, a, b):
        return a + b

    alice = await lab.client("alice")
    assert await alice.call("add", (2, 3)) == 5
    req = lab.trace.expect(client="alice", dir="c2s", event="add")
    ack = lab.trace.expect(client="alice", dir="s2c", sio="ack")
    assert req.raw.startswith("42" + str(req.ack)) and req.ack is not None
    assert ack.ack == req.ack and ack.args == [5] and ack.raw == f"43{req.ack}[5]"


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_binary_event(lab, transports):
    got = asyncio.get_running_loop().create_future()

    @lab.server.on("blob")
    async def blob(sid, data):
        got.set_result(data)

    c = await lab.client("alice", transports=transports)
    await c.emit("blob", b"\x01\x02\x03\x04")
    assert await asyncio.wait_for(got, 3) == b"\x01\x02\x03\x04"
    head = await lab.trace.wait_for(client="alice", sio="binary_event")
    assert head.attachments == 1 and head.args == ["<4 bytes>"] and head.error is None
    assert head.raw == '451-["blob",{"_placeholder":true,"num":0}]'
    att = lab.trace.expect(client="alice", binary=True)
    assert att.raw == "AQIDBA==" and att.transport == transports[0] and att.t >= head.t


async def test_two_namespaces_share_one_connection(lab):
    @lab.server.on("connect", namespace="/chat")
    async def on_chat(sid, environ, auth=None):
        pass

    await lab.client("alice", namespaces=["/", "/chat"])
    await lab.trace.wait_for(client="alice", dir="s2c", sio="connect", nsp="/chat")
    connects = lab.trace.find(client="alice", dir="s2c", sio="connect")
    assert {r.nsp for r in connects} == {"/", "/chat"}
    assert len({r.sid for r in connects}) == 1
    assert any(r.raw.startswith("40/chat,") for r in lab.trace.find(client="alice", dir="c2s", sio="connect"))


async def test_refused_upgrade_stays_on_polling_and_works(lab):
    lab.tap.refuse_websocket()

    @lab.server.on("echo")
    async def echo(sid, data):
        return data

    alice = await lab.client("alice")
    assert await alice.call("echo", "still here", timeout=3) == "still here"
    assert alice.transport() == "polling"
    refusal = lab.trace.expect(kind="fault", client="alice", where=lambda r: (r.http or {}).get("status") == 403)
    assert "refused the WebSocket" in refusal.note
    assert not lab.trace.find(client="alice", transport="websocket", kind="packet")
    assert lab.trace.find(kind="log", client="alice", where=lambda r: "upgrade" in r.note.lower())


async def test_dropped_pongs_end_in_ping_timeout(lab):
    reasons = {}

    @lab.server.on("disconnect")
    async def gone(sid, reason):
        reasons[sid] = (reason, lab.trace.now())

    lab.tap.drop(dir="c2s", eio="pong")
    async with LoopLag() as lag:
        await lab.client("alice", transports=["websocket"])
        start = lab.trace.expect(client="alice", eio="open").t
        await eventually(lambda: reasons, timeout=10)
    (reason, when), = reasons.values()
    assert reason == lab.server.reason.PING_TIMEOUT
    dropped = lab.trace.find(kind="fault", client="alice", eio="pong")
    assert dropped and "dropped by the tap" in dropped[0].note
    # the server waits pingInterval, pings, then gives up pingTimeout later
    assert 1.6 < when - start < 3.2 + lag.worst, (when - start, lag.worst)


async def test_handler_exception_is_recorded_with_traceback(lab):
    @lab.server.on("boom")
    async def boom(sid):
        raise RuntimeError("handler broke")

    @lab.server.on("fine")
    async def fine(sid):
        return "ok"

    alice = await lab.client("alice")
    await alice.emit("boom")
    err = await lab.trace.wait_for(kind="error")
    assert "RuntimeError: handler broke" in err.note and "Traceback" in err.note
    assert "handler broke" in err.error
    assert await alice.call("fine") == "ok"  # the lab keeps running


async def test_client_handler_exception_is_recorded(lab):
    alice = await lab.client("alice", connect=False)

    @alice.on("poke")
    async def poke(data):
        raise ValueError("client handler broke")

    await lab.connect(alice)
    await lab.server.emit("poke", 1)
    err = await lab.trace.wait_for(kind="error", client="alice")
    assert "ValueError: client handler broke" in err.note


async def test_unknown_sid_is_refused_with_reason(lab):
    async with aiohttp.ClientSession() as http:
        async with http.get(lab.url + "/socket.io/?EIO=4&transport=polling&sid=nope") as resp:
            assert resp.status == 400
            assert "Invalid session" in await resp.text()
    rec = lab.trace.expect(kind="http", dir="s2c", where=lambda r: r.http["status"] == 400)
    assert "Invalid session nope" in rec.error and "Session ID unknown" in rec.error


async def test_non_socketio_http_is_recorded_and_said(lab):
    async with aiohttp.ClientSession() as http:
        async with http.get(lab.url + "/socket.io/?EIO=4&transport=polling&sid=x", headers={}) as resp:
            await resp.read()
        async with http.get(lab.url + "/index.html") as resp:
            assert resp.status == 404
    page = lab.trace.expect(kind="http", dir="s2c", where=lambda r: r.http["path"] == "/index.html")
    assert page.http["status"] == 404 and page.error is None
    asked = lab.trace.expect(kind="http", dir="c2s", where=lambda r: r.http["path"] == "/index.html")
    assert "not an Engine.IO request" in asked.note


async def test_tap_strips_its_client_name_and_keeps_host(lab):
    seen = {}

    @lab.server.on("connect")
    async def connect(sid, environ, auth=None):
        seen["query"] = environ.get("QUERY_STRING")
        seen["name"] = environ.get("HTTP_X_SIOLAB_CLIENT")
        seen["host"] = environ.get("HTTP_HOST")

    await lab.client("alice", transports=["polling"])
    assert seen["name"] is None and "siolab_client" not in seen["query"]
    assert seen["host"] == lab.url.split("//")[1]


async def test_delay_preserves_order(lab):
    lab.tap.delay(0.2)
    alice = await lab.client("alice", transports=["websocket"])
    for i in range(5):
        await alice.emit("n", i)
    await lab.trace.wait_for(client="alice", event="n", where=lambda r: r.args == [4])
    assert [r.args[0] for r in lab.trace.find(client="alice", event="n")] == [0, 1, 2, 3, 4]
    assert lab.trace.find(kind="fault", where=lambda r: (r.note or "").startswith("delayed 0.2"))
