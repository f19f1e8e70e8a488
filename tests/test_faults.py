"""Faults: a server killed and restarted, a frozen link, a slow link, exceptions in user code. Each time the
lab keeps running, the trace explains what happened, and no record is lost."""
import asyncio

import pytest
import socketio

import siolab
from timing import LoopLag

# python-socketio adds randomization_factor * (2 * random() - 1) seconds (not a fraction) to each delay
FAST_RECONNECT = dict(reconnection_delay=0.2, reconnection_delay_max=0.5, randomization_factor=0.1)


@pytest.fixture
async def lab():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    counted = []
    lab.trace.subscribe(counted.append)
    lab.counted = counted

    @lab.server.on("echo")
    async def echo(sid, data):
        return data

    try:
        yield lab
    finally:
        await lab.close()
    # every record reached the listener, and the trace kept them all
    assert lab.trace.dropped == 0 and len(counted) == len(lab.trace)
    assert counted == list(lab.trace)


async def until(predicate, timeout=5.0, step=0.05):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(step)


def notes(trace, client=None, kind="log"):
    return [r for r in trace if r.kind == kind and (client is None or r.client == client)]


async def test_server_killed_and_restarted_clients_reconnect(lab):
    reasons = []

    @lab.server.on("disconnect")
    async def gone(sid, reason):
        reasons.append(reason)

    alice = await lab.client("alice", **FAST_RECONNECT)
    bob = await lab.client("bob", transports=["polling"], **FAST_RECONNECT)
    await lab.trace.wait_for(client="alice", raw="5")
    assert await alice.call("echo", "before") == "before" and await bob.call("echo", "before") == "before"
    old = {name: lab.trace.expect(client=name, eio="open").sid for name in ("alice", "bob")}

    mark = lab.trace.now()
    async with LoopLag() as lag:
        await lab.stop_server()
        await asyncio.sleep(1.0)  # the server is down: clients keep trying
        restarted = lab.trace.now()
        await lab.start_server()
        await until(lambda: alice.connected and bob.connected and alice.transport() == "websocket")
    assert await alice.call("echo", "after", timeout=3) == "after"
    assert await bob.call("echo", "after", timeout=3) == "after"

    after = lab.trace.since(mark)
    assert reasons == [lab.server.reason.TRANSPORT_CLOSE] * 2
    for name in ("alice", "bob"):
        # the server side: the session ended because its connection closed
        ended = after.expect(kind="log", client=name, sid=old[name], where=lambda r: r.note.startswith("server:"))
        assert "ended: transport close" in ended.note
        # the client side: why it dropped, then every attempt with its delay
        assert after.expect(kind="log", client=name, where=lambda r: "the session ended: transport error" in r.note)
        waits = after.find(kind="log", client=name, where=lambda r: "Connection failed, new attempt in" in r.note)
        assert len(waits) >= 2, after.tail(20)
        attempts = after.find(kind="http", dir="c2s", client=name, where=lambda r: r.note.startswith("handshake"))
        refused = after.find(kind="http", dir="s2c", client=name, where=lambda r: r.http["status"] == 502)
        assert len(refused) >= 1 and all("upstream server unreachable" in r.error for r in refused)
        assert all(r.t < restarted for r in refused)
        # each attempt starts the announced delay after its log line
        for wait in waits:
            delay = float(wait.note.split("new attempt in ")[1].split()[0])
            nxt = next(r for r in attempts if r.t >= wait.t)
            # never early; late by at most what the loop was late in this run
            assert -0.05 < nxt.t - wait.t - delay < 0.2 + lag.worst, (wait, nxt, lag.worst)
        assert after.expect(kind="log", client=name, where=lambda r: "Reconnection successful" in r.note).t >= restarted
        new = after.expect(client=name, eio="open").sid
        assert new != old[name]
        assert after.expect(client=name, dir="s2c", sio="ack", sid=new).args == ["after"]
    closed = after.expect(kind="ws", client="alice", where=lambda r: "closed" in r.note)
    assert "code 1006" in closed.note and "abnormal closure" in closed.note
    assert after.expect(kind="log", where=lambda r: "stopped" in r.note and "server on port" in r.note)


async def test_tap_paused_longer_than_the_heartbeat_both_sides_notice(lab):
    server_reasons, client_reasons = {}, []

    @lab.server.on("disconnect")
    async def gone(sid, reason):
        server_reasons[sid] = reason

    alice = await lab.client("alice", connect=False, **FAST_RECONNECT)

    @alice.on("disconnect")
    async def dropped(reason=None):
        client_reasons.append(reason)

    await lab.connect(alice)
    bob = await lab.client("bob", transports=["polling"], **FAST_RECONNECT)
    await lab.trace.wait_for(client="alice", raw="5")
    sids = {name: lab.trace.expect(client=name, eio="open").sid for name in ("alice", "bob")}

    mark = lab.trace.now()
    async with LoopLag() as lag:
        lab.tap.pause()
        # pingInterval + pingTimeout = 2 s; the server pings at +1 s and gives up at +2 s
        await until(lambda: len(server_reasons) == 2 and client_reasons, timeout=10)
        detected = lab.trace.now() - mark
    lab.tap.resume()
    assert 1.5 < detected < 3.5 + lag.worst, (detected, lag.worst)
    assert set(server_reasons.values()) == {lab.server.reason.PING_TIMEOUT}
    assert client_reasons == [alice.reason.TRANSPORT_ERROR]

    t = lab.trace.since(mark)
    for name in ("alice", "bob"):
        ended = t.expect(kind="log", client=name, where=lambda r: r.note.startswith("server: the session"))
        assert "ended: ping timeout" in ended.note and ended.sid == sids[name]
        assert t.expect(kind="log", client=name, where=lambda r: "Client is gone" in r.note)
        ping = t.expect(client=name, dir="s2c", eio="ping", raw="2")
        assert "held by the tap: relaying is paused" in ping.note
    # alice (WebSocket) notices on her side too: no ping within pingInterval + pingTimeout
    assert t.expect(kind="log", client="alice", where=lambda r: "Server has stopped communicating" in r.note)
    assert t.expect(kind="log", client="alice", where=lambda r: "client alice: the session ended: transport error"
                    in r.note)
    assert t.expect(kind="fault", client="alice", where=lambda r: "never relayed" in r.note)
    # bob (polling) learns it at resume: python-engineio's long-poll waits max(interval, timeout) + 5 s
    await until(lambda: alice.connected and bob.connected and alice.transport() == "websocket", timeout=5)
    assert await alice.call("echo", 1, timeout=3) == 1 and await bob.call("echo", 2, timeout=3) == 2
    t = lab.trace.since(mark)
    refused = t.find(kind="http", dir="s2c", client="bob", where=lambda r: r.http["status"] == 400)
    assert refused and ("no session with this sid" in refused[0].error or "this session is over" in refused[0].error)
    assert t.expect(kind="fault", where=lambda r: "relaying resumed" in r.note)


async def test_slow_link_keeps_working_and_keeps_order(lab):
    got = {"alice": [], "bob": []}

    @lab.server.on("n")
    async def n(sid, i):
        got[(await lab.server.get_session(sid))["name"]].append(i)
        await lab.server.emit("back", i, to=sid)
        return i

    @lab.server.on("connect")
    async def connect(sid, environ, auth=None):
        await lab.server.save_session(sid, {"name": auth["name"]})

    lab.tap.delay(0.2)
    clients = {}
    back = {"alice": [], "bob": []}
    for name, transports in (("alice", None), ("bob", ["polling"])):
        c = await lab.client(name, connect=False, transports=transports, auth={"name": name})

        def on_back(i, name=name):
            back[name].append(i)
        c.on("back", on_back)
        await lab.connect(c)
        clients[name] = c
    await until(lambda: clients["alice"].transport() == "websocket")
    acks = await asyncio.gather(*(clients[name].call("n", i, timeout=10) for name in clients for i in range(5)))
    assert acks == list(range(5)) * 2
    await until(lambda: len(back["alice"]) == len(back["bob"]) == 5)
    assert got == back == {"alice": list(range(5)), "bob": list(range(5))}
    for name in clients:
        for dir_, event in (("c2s", "n"), ("s2c", "back")):
            seen = [r.args[0] for r in lab.trace.find(client=name, dir=dir_, event=event)]
            assert seen == list(range(5)), (name, dir_, seen)
        records = lab.trace.find(client=name)
        late = [(a, b) for a, b in zip(records, records[1:]) if b.t < a.t]
        assert not late, late
    assert len(lab.trace.find(kind="fault", where=lambda r: r.note.startswith("delayed 0.2 s by the tap"))) >= 10
    assert not [r for r in lab.trace if r.error]


# ------------------------------------------------------------ exceptions in user code


async def test_exception_in_a_connect_handler_is_recorded_and_the_lab_goes_on(lab):
    @lab.server.on("connect", namespace="/broken")
    async def broken(sid, environ, auth=None):
        raise RuntimeError("connect handler broke")

    with pytest.raises(socketio.exceptions.ConnectionError):
        await lab.client("eve", namespaces=["/broken"], wait_timeout=1)
    err = await lab.trace.wait_for(kind="error", where=lambda r: "connect handler broke" in r.note)
    assert "Traceback" in err.note and "RuntimeError: connect handler broke" in err.note
    assert "RuntimeError: connect handler broke" in err.error
    alice = await lab.client("alice")
    assert await alice.call("echo", "fine") == "fine"


async def test_exception_in_a_client_ack_callback_is_recorded(lab):
    alice = await lab.client("alice")

    def callback(*args):
        raise KeyError("callback broke")

    await alice.emit("echo", 1, callback=callback)
    err = await lab.trace.wait_for(kind="error", client="alice")
    assert "KeyError: 'callback broke'" in err.note and "Traceback" in err.note
    assert await alice.call("echo", 2) == 2


async def test_exception_in_a_disconnect_handler_is_recorded(lab):
    @lab.server.on("disconnect")
    async def gone(sid, reason):
        raise ValueError("disconnect handler broke")

    alice = await lab.client("alice")
    await alice.disconnect()
    err = await lab.trace.wait_for(kind="error", where=lambda r: "disconnect handler broke" in r.note)
    assert "Traceback" in err.note
    bob = await lab.client("bob")
    assert await bob.call("echo", "still up") == "still up"
