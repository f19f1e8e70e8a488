"""``lab.js_client(name)``: the official socket.io-client in Node.js, driven from the kernel, through the
tap. What it does differently from python-socketio's client shows on the wire: its upgrade, its buffer
while disconnected, connection state recovery, and the JavaScript reasons."""
from __future__ import annotations

import asyncio

import pytest

import siolab
from conftest import needs_node
from siolab.js_client import JsClientError
from siolab.lab import open_labs
from test_node_lab import gone

pytestmark = needs_node

CHAT = """\
io.use((socket, next) => socket.handshake.auth.token === "s3cret" ? next() : next(new Error("bad token")));
io.on("connection", (socket) => {
  socket.on("chat", (m, ack) => { io.emit("chat", m); if (ack) ack("ok"); });
  socket.on("kick", () => socket.disconnect());
  socket.on("news", (m) => io.emit("news", m));
});
"""
TOKEN = {"token": "s3cret"}


async def test_the_js_upgrade_sends_40_over_polling_and_an_ack_comes_back():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    try:
        @lab.server.on("chat")
        async def chat(sid, m):
            return "OK!"

        carol = await lab.js_client("carol")
        assert carol.connected and carol.sid
        assert await carol.call("chat", "hi") == "OK!"
        connect = lab.trace.expect(client="carol", dir="c2s", sio="connect")
        # socket.io-client sends CONNECT as soon as the session opens, over polling (python's waits for the WebSocket)
        assert connect.transport == "polling" and connect.http["method"] == "POST"
        assert lab.trace.first(client="carol", raw="5").transport == "websocket"
        assert (await carol.wait("connect"))["recovered"] is False
    finally:
        await lab.close()


async def test_a_middleware_refusal_is_connect_error_with_its_message():
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    try:
        dave = await lab.js_client("dave", auth={"token": "wrong"}, reconnection=False)
        refused = await dave.wait("connect_error")
        assert refused["message"] == "bad token" and not dave.connected
        assert lab.trace.first(client="dave", dir="s2c", sio="connect_error").raw == '44{"message":"bad token"}'
        with pytest.raises(JsClientError):
            await dave.call("chat", "anyone?", timeout=0.3)
    finally:
        await lab.close()


async def test_io_server_disconnect_and_the_client_does_not_come_back():
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    try:
        erin = await lab.js_client("erin", auth=TOKEN, reconnectionDelay=100)
        await erin.emit("kick")
        assert (await erin.wait("disconnect"))["reason"] == "io server disconnect"
        await asyncio.sleep(0.5)
        assert not any(e["type"] == "reconnect_attempt" for e in erin.events) and not erin.connected
        assert lab.trace.first(client="erin", dir="s2c", raw="41")
    finally:
        await lab.close()


async def test_what_is_emitted_while_disconnected_is_buffered_and_sent_after_the_reconnection():
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    try:
        frank = await lab.js_client("frank", auth=TOKEN, reconnectionDelay=100, reconnectionDelayMax=200)
        first = frank.sid
        await lab.stop_server()  # killed: the tap closes her WebSocket (close, or error if it breaks first)
        assert (await frank.wait("disconnect"))["reason"] in ("transport close", "transport error")
        await frank.emit("chat", "written while offline")  # python-socketio raises BadNamespaceError here
        mark = lab.trace.now()
        await lab.start_server()
        again = await frank.wait("connect", since=mark)
        assert again["sid"] != first and again["recovered"] is False  # the server restarted: a new session
        sent = await lab.trace.wait_for(3, client="frank", dir="c2s", event="chat")
        connected = lab.trace.since(mark).first(client="frank", dir="s2c", sio="connect")
        assert sent.t > connected.t and sent.args == ["written while offline"]
    finally:
        await lab.close()


async def test_connection_state_recovery_replays_what_was_missed():
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1,
                             connection_state_recovery={"max_disconnection_duration": 10})
    try:
        gina = await lab.js_client("gina", auth=TOKEN, reconnectionDelay=300, reconnectionDelayMax=300)
        hank = await lab.js_client("hank", auth=TOKEN)
        first_sid = gina.sid
        await hank.emit("news", "before")  # a broadcast gives her an offset: the point to recover from
        await gina.wait("event", event="news")
        await gina.eval("socket.io.engine.transport.ws.terminate()")  # the connection drops, no close frame
        assert (await gina.wait("disconnect"))["reason"] == "transport close"  # the server keeps her state
        await hank.emit("news", "while gina was away")
        back = await gina.wait("connect", since=(await gina.wait("disconnect"))["t"])
        assert back["recovered"] is True and back["sid"] == first_sid
        missed = await gina.wait("event", event="news", since=back["t"] - 0.05)
        # the server appends each broadcast's offset as a last argument, and the client's listeners get it too
        text, offset = missed["args"]
        assert text == "while gina was away" and isinstance(offset, str)
        assert lab.trace.first(client="gina", dir="s2c", event="news", where=lambda r: r.t >= back["t"] - 0.05).args \
            == [text, offset]
        # on the wire: her second CONNECT carries the private session id and the last offset she saw
        connects = lab.trace.find(client="gina", dir="c2s", sio="connect")
        assert len(connects) == 2 and '"pid"' in connects[1].raw and '"offset"' in connects[1].raw
    finally:
        await lab.close()


async def test_close_ends_every_js_client_process():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    ivy = await lab.js_client("ivy")
    pid = ivy.process.pid
    assert not gone(pid)
    await lab.close()
    assert gone(pid) and not open_labs() and not lab.js_clients
