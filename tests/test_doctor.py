"""The doctor names what went wrong from the records alone: live failures made on purpose, and a healthy lab."""
import asyncio

import aiohttp
import pytest
import socketio

import siolab
from siolab.doctor import CODES, diagnose
from siolab.record import Record


@pytest.fixture
async def lab():
    lab = await siolab.start(ping_interval=0.5, ping_timeout=0.5, max_http_buffer_size=1000)

    @lab.server.on("echo")
    async def echo(sid, data):
        return data
    yield lab
    await lab.close()


def codes(trace) -> list[str]:
    return [f.code for f in diagnose(trace).failures]


async def test_a_healthy_chat_gets_no_failure_findings(lab):
    @lab.server.on("chat")
    async def chat(sid, text):
        await lab.server.emit("chat", text)
    alice = await lab.client("alice")
    bob = await lab.client("bob", transports=["polling"])
    await alice.emit("chat", "hi")
    assert await bob.call("echo", "x", timeout=5) == "x"
    await lab.trace.wait_for(client="bob", dir="s2c", event="chat", timeout=5)
    await asyncio.sleep(1.2)  # heartbeats both ways
    found = diagnose(lab.trace)
    assert found.failures == [], str(found)
    assert "nothing wrong" in str(diagnose([]))


async def test_an_unknown_sid_and_an_old_protocol_are_named(lab):
    async with aiohttp.ClientSession() as http:
        async with http.get(lab.url + "/socket.io/?EIO=4&transport=polling&sid=nosuchsid") as r:
            assert r.status == 400
        async with http.get(lab.url + "/socket.io/?EIO=3&transport=polling") as r:
            assert r.status == 400
    await lab.trace.wait_for(kind="http", dir="s2c", where=lambda r: "EIO=3" in r.http["path"])
    found = diagnose(lab.trace)
    assert {"unknown-session", "protocol-mismatch"} <= set(found.codes())
    unknown = next(f for f in found if f.code == "unknown-session")
    assert unknown.records[0].http["status"] == 400 and "sticky" in unknown.fix_node
    assert unknown.lesson == "13_several_servers" and "Session ID unknown" in str(unknown)


async def test_a_refused_namespace_a_server_disconnect_and_a_refused_websocket(lab):
    client = socketio.AsyncClient(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(lab.url, namespaces=["/nope"], transports=["polling"],
                             headers={"X-Siolab-Client": "lost"}, wait_timeout=3)
    lab.tap.refuse_websocket()
    carol = await lab.client("carol")
    await lab.trace.wait_for(client="carol", kind="fault", dir="s2c")
    sid = lab.trace.expect(client="carol", eio="open").sid
    await lab.server.disconnect(lab.server.manager.sid_from_eio_sid(sid, "/"))
    await lab.trace.wait_for(client="carol", sio="disconnect", dir="s2c")
    assert carol is not None
    got = codes(lab.trace)
    assert {"namespace-refused", "server-disconnect", "websocket-refused"} <= set(got), got


async def test_dropped_pongs_end_in_a_ping_timeout_finding(lab):
    lab.tap.drop(dir="c2s", eio="pong")
    await lab.client("dave", transports=["websocket"])
    await lab.trace.wait_for(kind="log", where=lambda r: "ended" in (r.note or ""), timeout=10)
    found = diagnose(lab.trace)
    assert "ping-timeout" in found.codes(), (str(found), [str(r) for r in lab.trace.find(kind="log")])
    # a trace read back from JSON Lines gives the same finding: it needs the records only
    again = siolab.Trace.from_jsonl(lab.trace.to_jsonl())
    assert "ping-timeout" in diagnose(again).codes()


async def test_a_post_over_max_payload_and_a_broken_packet_are_named(lab):
    bob = await lab.client("bob", transports=["polling"])
    sid = lab.trace.expect(client="bob", eio="open").sid
    async with aiohttp.ClientSession() as http:
        url = lab.url + f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        async with http.post(url, data=b'42["echo","' + b"x" * 2000 + b'"]') as r:
            assert r.status == 400
        ws = await http.ws_connect(lab.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
        await ws.receive()  # the open packet
        await ws.send_str('42["x"')
        await lab.trace.wait_for(dir="c2s", raw='42["x"')
        await ws.close()
    assert bob is not None
    got = codes(lab.trace)
    assert {"payload-too-large", "bad-packet"} <= set(got), got


async def test_two_sessions_of_one_client_back_to_back_are_a_double_connect(lab):
    pages = []
    for _ in range(2):  # one page, one name, two io() calls (an effect without cleanup)
        page = socketio.AsyncClient(reconnection=False)
        await page.connect(lab.url, headers={"X-Siolab-Client": "page"}, transports=["websocket"], wait_timeout=3)
        pages.append(page)
    found = diagnose(lab.trace)
    for page in pages:
        await page.disconnect()
    assert "double-connect" in found.codes() and "StrictMode" in next(f for f in found if f.code == "double-connect"
                                                                       ).explanation


def rec(t, **kw):
    return Record(t=t, **kw)


def test_a_missing_ack_a_reconnect_storm_and_an_idle_timeout_from_records():
    records = [rec(0.0, dir="c2s", raw='421["save",1]', eio="message", sio="event", event="save", ack=1, sid="s",
                   nsp="/")]
    for i in range(7):
        records.append(rec(1 + i, kind="http", dir="c2s", client="c", note="handshake: open a session",
                           http={"method": "GET", "path": "/socket.io/?EIO=4&transport=polling", "status": None}))
    for sid, start in (("a", 10.0), ("b", 20.0)):
        records.append(rec(start, kind="ws", dir="s2c", sid=sid, note="WebSocket open"))
        records.append(rec(start + 60.0, kind="ws", dir="s2c", sid=sid,
                           note="WebSocket closed by the server, code 1006 (abnormal closure)"))
    found = diagnose(records)
    assert {"ack-missing", "reconnect-storm", "transport-close"} <= set(found.codes())
    idle = next(f for f in found if f.code == "transport-close")
    assert "idle timeout" in idle.explanation and "60.0 s" in idle.explanation
    page = found._repr_html_()
    assert "<code>ack-missing</code>" in page and "<script" not in page
    assert set(found.codes()) <= set(CODES)


def test_wire_text_in_a_finding_is_escaped_in_html():
    records = [rec(0.0, kind="packet", dir="s2c", eio="message", sio="connect_error", nsp="/x",
                   raw='44/x,{"message":"<script>alert(1)</script>"}', note="refused <script>", args=None)]
    page = diagnose(records)._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
