"""``siolab.attach(URL)``: the tap and the lab's clients in front of a server the learner runs; closing the lab
stops the tap only."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
import socketio

import siolab
from conftest import needs_node
from siolab.attached import AttachedLab
from siolab.lab import open_labs
from siolab.node_lab import LAB_SCRIPT
from siolab.node_process import NodeProcess
from siolab.reference import PlainServer
from test_lifecycle import bindable
from test_node_lab import CHAT, TOKEN, gone, handshake


@pytest.fixture
async def node_server():
    """The learner's own Node.js server (the CHAT app), started by the test, not by a lab."""
    config = {"code": CHAT, "options": {"pingInterval": 1000, "pingTimeout": 1000}, "origins": None}
    server = NodeProcess(LAB_SCRIPT, input=json.dumps(config))
    await server.start()
    yield server
    await server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_importing_the_module_keeps_siolab_attach_the_function():
    import siolab.attached  # noqa: F401  (a submodule named attach would replace the function on the package)
    assert callable(siolab.attach) and siolab.attach is siolab.attached.attach


def test_an_attached_lab_has_no_server_object():
    lab = AttachedLab("127.0.0.1:3000")
    assert lab.server_url == "http://127.0.0.1:3000"
    with pytest.raises(AttributeError, match="did not start.*http://127.0.0.1:3000"):
        print(lab.server)
    with pytest.raises(ValueError, match="listen"):
        AttachedLab("http://127.0.0.1:3000", listen=-1)


@needs_node
async def test_the_chat_scenarios_through_an_attached_tap(node_server):
    lab = await siolab.attach(node_server.url)
    try:
        assert lab.url.startswith("http://127.0.0.1:") and lab.tap.port != node_server.port
        with pytest.raises(socketio.exceptions.ConnectionError, match="the server said: bad token"):
            await lab.client("mallory", auth={"token": "nope"})
        assert lab.trace.expect(client="mallory", dir="s2c", sio="connect_error").raw == '44{"message":"bad token"}'
        alice = await lab.client("alice", auth=TOKEN)
        bob = await lab.client("bob", auth=TOKEN, transports=["polling"])
        carol = await lab.client("carol", auth=TOKEN)
        shouts: list = []
        bob.on("shout", shouts.append)
        carol.on("shout", shouts.append)
        assert await bob.call("join", "r1", timeout=5) == "joined r1"
        await alice.emit("shout", ("r1", "to the room"))
        await lab.trace.wait_for(5, client="bob", dir="s2c", event="shout")
        await alice.emit("boom")  # the server throws (its own business: nothing of it reaches this trace)
        assert await alice.call("echo", "after the throw", timeout=5) == "after the throw"
        assert shouts == ["to the room"]
        posts = lab.trace.find(client="bob", kind="http", dir="s2c", where=lambda r: r.http["method"] == "POST")
        assert posts and {r.raw for r in posts} == {"ok"}  # Node.js spoke (python-engineio says "OK")
        assert lab.trace.find(kind="error") == []
        fault = lab.tap.drop(dir="c2s", event="echo")
        with pytest.raises(socketio.exceptions.TimeoutError):
            await alice.call("echo", "lost", timeout=0.5)
        fault.remove()
        assert lab.trace.find(kind="fault")
    finally:
        await lab.close()
    # the tap is gone, the learner's server is not
    assert bindable(lab.tap.port)
    assert node_server.running and not gone(node_server.pid)
    assert (await handshake(node_server.url))[0] == 200
    assert not open_labs()


@needs_node
async def test_listen_takes_the_port_and_a_rerun_frees_it_first(node_server):
    port = free_port()
    first = await siolab.attach(node_server.url, listen=port)
    assert first.url == f"http://127.0.0.1:{port}" and siolab.current() is first
    second = await siolab.attach(node_server.url, listen=port)  # a re-run cell: the first is closed
    try:
        assert first.closed and open_labs() == [second]
        c = await second.client("c", auth=TOKEN)
        assert await c.call("echo", 1, timeout=5) == 1
    finally:
        await second.close()
    assert bindable(port) and node_server.running


@pytest.mark.loopback
async def test_attach_to_any_server_and_to_none():
    plain = PlainServer(ping_interval=1, ping_timeout=1)
    await plain.start()

    @plain.server.on("echo")
    async def echo(sid, data):
        return data

    try:
        lab = await siolab.attach(plain.url)
        c = await lab.client("c")
        assert await c.call("echo", "py", timeout=5) == "py"
        await lab.close()
        assert not plain.closed and len(plain.server.eio.sockets) == 0  # the client left; the server stays
    finally:
        await plain.close()
    lab = await siolab.attach(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await lab.client("c", wait_timeout=1)
        assert "unreachable" in lab.trace.expect(kind="http", dir="s2c").error
    finally:
        await lab.close()
    await asyncio.sleep(0)
