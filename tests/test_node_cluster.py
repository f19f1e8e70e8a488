"""``siolab.start(node=JS, servers=2)``: official Node.js servers with the official Redis adapter on the
lab's broker, behind the balancing tap: broadcasts and rooms cross servers, a balancer without sticky
sessions breaks long-polling as it does in production, and closing leaves no process or port."""
from __future__ import annotations

import asyncio

import pytest
import socketio

import siolab
from conftest import needs_node
from siolab.broker import find_broker
from siolab.lab import open_labs
from siolab.node_cluster import NodeCluster
from test_lifecycle import bindable, other_tasks
from test_node_lab import gone

pytestmark = [needs_node, pytest.mark.skipif(find_broker() is None, reason="no Redis-compatible broker")]

ROOMS = """\
io.on("connection", (socket) => {
  console.log("hello from", process.pid);
  socket.on("join", (room, ack) => { socket.join(room); ack(`joined ${room}`); });
  socket.on("say", (room, text) => io.to(room).emit("said", text));
  socket.on("chat", (m) => io.emit("chat", m));
});
"""


async def test_rooms_and_broadcasts_cross_servers_and_records_name_them():
    lab = await siolab.start(node=ROOMS, servers=2, ping_interval=1, ping_timeout=1)
    try:
        assert isinstance(lab, NodeCluster) and list(lab.nodes) == ["A", "B"]
        assert lab.nodes["A"].pid != lab.nodes["B"].pid
        alice, bob, carol = [await lab.client(n) for n in ("alice", "bob", "carol")]
        assert [lab.where(n) for n in ("alice", "bob", "carol")] == ["A", "B", "A"]  # sticky, handshakes in turn
        assert await alice.call("join", "r1", timeout=2) == "joined r1"
        assert await bob.call("join", "r1", timeout=2) == "joined r1"
        await alice.emit("say", ("r1", "hello"))
        said = await lab.trace.wait_for(3, client="bob", dir="s2c", event="said")
        assert said.args == ["hello"] and said.server == "B"  # sent by A, delivered by B through the adapter
        await asyncio.sleep(0.2)
        assert not lab.trace.find(client="carol", event="said")  # not in the room, though on A like alice
        await bob.emit("chat", "hi all")
        for name in ("alice", "bob", "carol"):
            await lab.trace.wait_for(3, client=name, dir="s2c", event="chat")
        logs = lab.trace.find(kind="log", where=lambda r: "console.log: hello from" in (r.note or ""))
        assert {r.server for r in logs} == {"A", "B"} and {r.client for r in logs} == {"alice", "bob", "carol"}
        assert any(line.startswith("B ") and "said" in line for line in lab.table().splitlines())
    finally:
        await lab.close()


async def test_round_robin_without_sticky_sessions_is_session_id_unknown():
    lab = await siolab.start(node=ROOMS, servers=2, policy="round-robin", ping_interval=1, ping_timeout=1)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await lab.client("dave", transports=["polling"])
        refused = await lab.trace.wait_for(3, dir="s2c", where=lambda r: (r.http or {}).get("status") == 400)
        assert "Session ID unknown" in (refused.raw or refused.note or "") and refused.server == "B"
        assert "unknown-session" in {f.code for f in siolab.diagnose(lab.trace)}
    finally:
        await lab.close()


async def test_stop_a_server_then_close_leaves_no_process_port_or_task():
    await asyncio.sleep(0)
    tasks_before = len(other_tasks())
    lab = await siolab.start(node=ROOMS, servers=2, ping_interval=1, ping_timeout=1)
    pids = [node.pid for node in lab.nodes.values()]
    ports = [lab.tap.port] + [node.port for node in lab.nodes.values()]
    broker_pid = lab.broker.pid
    await lab.client("alice")
    bob = await lab.client("bob")
    await lab.stop_server("B")
    assert gone(pids[1]) and not lab.nodes["B"].running and lab.nodes["A"].running
    await lab.trace.wait_for(5, kind="log", server="B", where=lambda r: "stopped" in (r.note or ""))
    for _ in range(100):
        if not bob.connected:
            break
        await asyncio.sleep(0.05)
    assert not bob.connected
    await lab.close()
    assert all(gone(pid) for pid in pids) and gone(broker_pid)
    assert all(bindable(p) for p in ports)
    await asyncio.sleep(0.05)
    assert len(other_tasks()) == tasks_before, other_tasks()
    assert not open_labs()
