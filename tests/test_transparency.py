"""The tap is transparent: protocol probes against the official Node.js engine.io server give the same
results direct and through the tap (refusals, concurrent long-polls, bad packets, close, upgrade, heartbeat)."""
import asyncio
import json
import statistics

import aiohttp
import pytest

from conftest import needs_node
from node_fixtures import node_server
from siolab.tap import Tap
from siolab.trace import Trace

pytestmark = needs_node
PATH = "/engine.io/"


async def handshake(http, base):
    async with http.get(f"{base}{PATH}?EIO=4&transport=polling") as r:
        body = await r.text()
    return json.loads(body[1:])["sid"]


async def probe_refusals(http, base):
    out = []
    for method, query in [("GET", "EIO=3&transport=polling"), ("GET", "EIO=4&transport=foo"),
                          ("GET", "EIO=4"), ("PUT", "EIO=4&transport=polling")]:
        async with http.request(method, f"{base}{PATH}?{query}") as r:
            out.append((method, query, r.status, await r.text()))
    return out


async def probe_concurrent_polls(http, base):
    sid = await handshake(http, base)
    url = f"{base}{PATH}?EIO=4&transport=polling&sid={sid}"

    async def get():
        async with http.get(url) as r:
            return r.status, await r.text()
    first = asyncio.ensure_future(get())
    await asyncio.sleep(0.1)
    second = await get()
    return sorted([second, await asyncio.wait_for(first, 5)])


async def probe_bad_packet(http, base):
    sid = await handshake(http, base)
    url = f"{base}{PATH}?EIO=4&transport=polling&sid={sid}"
    async with http.post(url, data="garbage") as r:
        posted = (r.status, await r.text())
    async with http.get(url) as r:
        after = (r.status, await r.text())
    return posted, after


async def probe_client_close(http, base):
    sid = await handshake(http, base)
    url = f"{base}{PATH}?EIO=4&transport=polling&sid={sid}"
    async with http.post(url, data="1") as r:
        posted = (r.status, await r.text())
    async with http.get(url) as r:
        after = r.status
    return posted, after


async def probe_upgrade(http, base):
    sid = await handshake(http, base)
    ws_url = f"{base.replace('http', 'ws')}{PATH}?EIO=4&transport=websocket&sid={sid}"
    async with http.ws_connect(ws_url) as ws:
        await ws.send_str("2probe")
        probe = (await ws.receive(timeout=5)).data
        await ws.send_str("5")
        await ws.send_str("4hello")
        echo = (await ws.receive(timeout=5)).data
        if echo == "6":  # a noop may come first
            echo = (await ws.receive(timeout=5)).data
    return probe, echo


async def probe_heartbeat(http, base):
    async with http.get(f"{base}{PATH}?EIO=4&transport=polling") as r:
        opened = json.loads((await r.text())[1:])
    url = f"{base}{PATH}?EIO=4&transport=polling&sid={opened['sid']}"
    times = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(3):
        async with http.get(url) as r:
            assert await r.text() == "2"
        times.append(loop.time() - start)
        async with http.post(url, data="3") as r:
            await r.read()
        start = loop.time()
    return opened["pingInterval"], opened["pingTimeout"], statistics.median(times)


PROBES = [probe_refusals, probe_concurrent_polls, probe_bad_packet, probe_client_close, probe_upgrade]


@pytest.mark.parametrize("probe", PROBES, ids=lambda p: p.__name__)
async def test_probe_gives_the_same_result_direct_and_through_the_tap(probe):
    async with node_server("eio_server.js", "--ping-interval", "300", "--ping-timeout", "200") as port:
        base = f"http://127.0.0.1:{port}"
        trace = Trace()
        async with aiohttp.ClientSession() as http, Tap(base, trace, layer="engine.io") as tap:
            direct = await probe(http, base)
            through = await probe(http, tap.url)
        assert through == direct
        assert len(trace) > 0


async def test_heartbeat_timing_is_unchanged_by_the_tap():
    async with node_server("eio_server.js", "--ping-interval", "300", "--ping-timeout", "200") as port:
        base = f"http://127.0.0.1:{port}"
        trace = Trace()
        async with aiohttp.ClientSession() as http, Tap(base, trace, layer="engine.io") as tap:
            direct = await probe_heartbeat(http, base)
            through = await probe_heartbeat(http, tap.url)
    assert direct[:2] == through[:2] == (300, 200)
    assert abs(through[2] - direct[2]) < 0.1, (direct, through)
    pings = trace.find(eio="ping", dir="s2c")
    assert len(pings) == 3 and all(r.error is None for r in trace.find(kind="packet"))


async def test_refusals_are_explained_in_the_trace():
    async with node_server("eio_server.js") as port:
        base = f"http://127.0.0.1:{port}"
        trace = Trace()
        async with aiohttp.ClientSession() as http, Tap(base, trace, layer="engine.io") as tap:
            await probe_refusals(http, tap.url)
    refusals = trace.find(kind="http", dir="s2c", where=lambda r: r.http["status"] == 400)
    assert len(refusals) >= 3
    assert any("protocol version" in r.error for r in refusals)
    assert any("transport" in r.error.lower() for r in refusals)
