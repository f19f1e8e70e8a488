"""The lab's server fixes two departures of python-socketio from the spec; the plain server still has them."""
import asyncio

import socketio
from aiohttp import web

import siolab
from conftest import needs_node
from node_fixtures import node_client
from siolab.server import SpecServer
from siolab.tap import Tap
from siolab.trace import Trace
from timing import LoopLag, eventually


async def serve(server_class, **options):
    sio = server_class(async_mode="aiohttp", **options)
    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return sio, runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def connect_and_record(server_class, **options):
    sio, runner, url = await serve(server_class, **options)

    @sio.event
    async def connect(sid, environ, auth=None):
        await sio.emit("welcome", "hi", to=sid)
        if auth == "refuse":
            return False

    trace = Trace()
    async with Tap(url, trace) as tap:
        client = socketio.AsyncClient()
        await client.connect(tap.url, transports=["websocket"])
        await trace.wait_for(event="welcome")
        await client.disconnect()
        refused = socketio.AsyncClient()
        try:
            await refused.connect(tap.url, transports=["websocket"], auth="refuse", wait_timeout=2)
        except socketio.exceptions.ConnectionError:
            pass
        await trace.wait_for(sio="connect_error")
        await asyncio.sleep(0.1)
        await refused.disconnect()
    await sio.shutdown()
    await runner.cleanup()
    return trace


async def test_plain_python_socketio_sends_connect_handler_emits_before_the_connect():
    trace = await connect_and_record(socketio.AsyncServer)
    s2c = [r.raw for r in trace.packets(dir="s2c") if r.eio == "message"]
    assert s2c.index('42["welcome","hi"]') < next(i for i, raw in enumerate(s2c) if raw.startswith('40{"sid"'))


async def test_lab_server_sends_them_after_the_connect_and_drops_them_when_refused():
    trace = await connect_and_record(SpecServer)
    s2c = [r.raw for r in trace.packets(dir="s2c") if r.eio == "message"]
    first_connect = next(i for i, raw in enumerate(s2c) if raw.startswith('40{"sid"'))
    assert s2c.index('42["welcome","hi"]') == first_connect + 1
    assert s2c.count('42["welcome","hi"]') == 1  # the refused connection never saw its welcome
    assert any(raw.startswith("44") for raw in s2c)


async def test_plain_server_advertises_a_truncated_ping_interval():
    sio, runner, url = await serve(socketio.AsyncServer, ping_interval=0.3, ping_timeout=0.2)
    try:
        trace = Trace()
        async with Tap(url, trace) as tap:
            import aiohttp
            async with aiohttp.ClientSession() as http:
                async with http.get(tap.url + "/socket.io/?EIO=4&transport=polling") as r:
                    await r.read()
        assert trace.expect(eio="open").data["pingInterval"] == 0
    finally:
        await sio.shutdown()
        await runner.cleanup()


async def test_lab_advertises_sub_second_intervals_and_keeps_them():
    lab = await siolab.start(ping_interval=0.3, ping_timeout=0.2)
    try:
        async with LoopLag() as lag:
            await lab.client("alice", transports=["websocket"])
            opened = lab.trace.expect(eio="open")
            assert (opened.data["pingInterval"], opened.data["pingTimeout"]) == (300, 200)
            await eventually(lambda: len(lab.trace.find(client="alice", eio="ping", dir="s2c")) >= 3, timeout=10)
        pings = [r.t for r in lab.trace.find(client="alice", eio="ping", dir="s2c")]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        # 0.3 s apart, not 0 s or 1 s (what rounding to whole seconds would give); a ping is never early by more
        # than the tap's own lateness, and late by at most how late the loop ran in this run
        assert all(0.3 - lag.worst - 0.05 < g < 0.3 + lag.worst + 0.1 for g in gaps), (gaps, lag.worst)
    finally:
        await lab.close()


@needs_node
async def test_official_js_client_keeps_a_sub_second_heartbeat_with_the_lab():
    lab = await siolab.start(ping_interval=0.3, ping_timeout=0.2)
    try:
        @lab.server.on("echo")
        async def echo(sid, *args):
            return args[0] if len(args) == 1 else args

        result = await node_client(lab.url, "--name", "node")
        assert result.get("connected") and result["ack"] == ["hi"], result
        assert all(r.error is None for r in lab.trace)
        assert lab.trace.expect(client="node", eio="open").data["pingInterval"] == 300
    finally:
        await lab.close()
