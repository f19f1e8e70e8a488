"""The reference implementation from npm through the tap: Node client -> lab, python client -> Node server."""
import asyncio

import socketio

from conftest import needs_node
from node_fixtures import node_client, node_server
from siolab.tap import Tap
from siolab.trace import Trace

pytestmark = needs_node


@needs_node
async def test_official_js_client_through_the_tap_to_the_lab(lab):
    @lab.server.on("echo")
    async def echo(sid, *args):
        return args[0] if len(args) == 1 else args

    result = await node_client(lab.url, "--name", "node")
    assert result.get("connected"), result
    assert result["transport"] == "websocket" and result["ack"] == ["hi"] and result["binary_ack_len"] == 4
    t = lab.trace
    assert [r for r in t if r.error] == []
    assert t.expect(client="node", eio="open", transport="polling").data["upgrades"] == ["websocket"]
    # the JS client connects the namespace over polling before upgrading
    connect = t.expect(client="node", dir="c2s", sio="connect")
    assert connect.transport == "polling" and connect.http["method"] == "POST"
    ws = t.raws(client="node", transport="websocket")
    assert ws[:3] == ["2probe", "3probe", "5"]
    assert t.expect(client="node", dir="s2c", eio="noop", transport="polling")  # ends the pending GET
    assert t.expect(client="node", sio="binary_event").args == ["<4 bytes>"]
    assert t.expect(client="node", sio="binary_ack", dir="s2c").args == ["<4 bytes>"]


@needs_node
async def test_python_client_through_the_tap_to_the_official_server():
    async with node_server("sio_server.js", "--ping-interval", "1000", "--ping-timeout", "1000") as port:
        trace = Trace()
        async with Tap(f"http://127.0.0.1:{port}", trace) as tap:
            client = socketio.AsyncClient()
            await client.connect(tap.url, headers={"X-Siolab-Client": "py"}, wait_timeout=5)
            assert await client.call("echo", "hi", timeout=5) == "hi"
            await client.emit("echo", b"\x01\x02")
            await trace.wait_for(client="py", dir="s2c", sio="binary_event")
            await trace.wait_for(client="py", dir="s2c", eio="ping", raw="2", timeout=3)
            await client.disconnect()
            await asyncio.sleep(0.1)
    assert [r for r in trace if r.error] == []
    opened = trace.expect(client="py", eio="open")
    assert opened.data["pingInterval"] == 1000 and opened.data["maxPayload"] == 1000000
    assert trace.raws(client="py", transport="websocket")[:3] == ["2probe", "3probe", "5"]
    assert trace.expect(client="py", dir="s2c", sio="connect").raw.startswith('40{"sid":')
    assert trace.expect(client="py", dir="s2c", sio="ack").args == ["hi"]


@needs_node
async def test_polling_client_to_the_official_server_ok_reply_is_not_an_error():
    async with node_server("sio_server.js", "--ping-interval", "1000", "--ping-timeout", "1000") as port:
        trace = Trace()
        async with Tap(f"http://127.0.0.1:{port}", trace) as tap:
            client = socketio.AsyncClient()
            await client.connect(tap.url, headers={"X-Siolab-Client": "py"}, transports=["polling"], wait_timeout=5)
            assert await client.call("echo", "hi", timeout=5) == "hi"
            await asyncio.wait_for(client.disconnect(), 5)
    ok = trace.expect(kind="http", dir="s2c", where=lambda r: r.http["method"] == "POST")
    assert ok.raw == "ok" and ok.error is None  # Node sends its "ok" as text/html: still not an HTML page
    assert [r for r in trace if r.error] == []


async def test_tap_with_recording_off_relays_without_packet_records(lab):
    @lab.server.on("echo")
    async def echo(sid, data):
        return data

    quiet = Trace()
    async with Tap(lab.server_url, quiet, record=False) as tap:
        for transports in (["polling"], ["websocket"]):
            client = socketio.AsyncClient()
            await client.connect(tap.url, transports=transports, wait_timeout=5)
            assert await client.call("echo", "hi", timeout=5) == "hi"
            await asyncio.wait_for(client.disconnect(), 5)
    assert quiet.packets() == []
