"""siolab.reference: the official Node.js server and plain python-socketio next to the lab's, compared."""
import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest

import siolab
from conftest import needs_node
from siolab import reference
from siolab.reference import (Comparison, PlainServer, ReferenceServer, check_answers, compare, plain_server,
                              reference_available, reference_server, url_of)

# the python-socketio deviations tests/test_check.py asserts (the lab server fixes the other two)
PYTHON_DEVIATIONS = {"refuses missing transport", "refuses bad method", "POST answered ok",
                     "a bad packet closes the session", "unknown namespace refused with 44{message}"}
# the Node.js built-in modules the package's scripts require
NODE_BUILTINS = ("fs", "http", "readline", "path", "util", "vm", "async_hooks", "module")


async def handshake(url: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as r:
            body = await r.text()
    assert body.startswith("0"), body
    return json.loads(body[1:])


@pytest.fixture
async def lab():
    lab = await siolab.start(ping_interval=0.5, ping_timeout=1)
    reference.serve_like_reference(lab.server)
    yield lab
    await lab.close()


@pytest.fixture
async def plain():
    async with plain_server(ping_interval=0.5, ping_timeout=1) as server:
        reference.serve_like_reference(server.server)
        yield server


# ---------------------------------------------------------------- availability

def test_without_node_it_says_why_and_how_to_fix(monkeypatch):
    monkeypatch.setattr(reference.shutil, "which", lambda name: None)
    ok, why = reference_available()
    assert not ok
    assert "Node.js is not installed" in why and f"cd {reference.NODE_DIR} && npm ci" in why


def test_the_official_server_ships_in_the_package():
    node = Path(reference.__file__).resolve().parent / "node"  # found from the installed package
    assert reference.NODE_DIR == node and reference.SERVER_SCRIPT == node / "sio_server.js"
    pinned = json.loads((node / "package.json").read_text())["dependencies"]
    assert json.loads((node / "package-lock.json").read_text())["packages"][""]["dependencies"] == pinned
    assert pinned["socket.io"] == "4.8.4"
    # every require() of the package's scripts is a file next to it, a Node.js built-in or a pinned package
    for script in node.glob("*.js"):
        for name in re.findall(r'require\("([^"]+)"\)', script.read_text()):
            if name.startswith("."):
                assert (node / f"{name}.js").is_file(), (script.name, name)
            else:
                assert name in pinned or name in NODE_BUILTINS, (script.name, name)


def test_without_the_npm_packages_it_says_to_run_npm_ci(monkeypatch, tmp_path):
    (tmp_path / "sio_server.js").write_text("")
    monkeypatch.setattr(reference, "NODE_DIR", tmp_path)
    monkeypatch.setattr(reference, "SERVER_SCRIPT", tmp_path / "sio_server.js")
    monkeypatch.setattr(reference, "_node_version", lambda node: (20, "v20.0.0"))
    monkeypatch.setattr(reference.shutil, "which", lambda name: "/usr/bin/node")
    ok, why = reference_available()
    assert not ok and "npm ci" in why and "not installed" in why


def test_old_node_is_refused(monkeypatch):
    monkeypatch.setattr(reference.shutil, "which", lambda name: "/usr/bin/node")
    monkeypatch.setattr(reference, "_node_version", lambda node: (16, "v16.20.0"))
    ok, why = reference_available()
    assert not ok and "v16.20.0" in why and ">= 18" in why


async def test_starting_without_node_raises_the_reason(monkeypatch):
    monkeypatch.setattr(reference.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm ci"):
        async with reference_server():
            pass
    assert reference.running() == []


@needs_node
def test_with_node_it_names_the_versions():
    ok, why = reference_available()
    assert ok and "socket.io 4.8.4" in why and why.startswith("Node.js v")


# ---------------------------------------------------------------- the servers

@needs_node
async def test_reference_server_runs_on_loopback_with_sub_second_intervals_and_stops():
    async with reference_server(ping_interval=0.5, ping_timeout=0.25) as url:
        assert url.startswith("http://127.0.0.1:")
        data = await handshake(url)
        assert (data["pingInterval"], data["pingTimeout"]) == (500, 250)
        assert len(reference.running()) == 1
        server = reference.running()[0]
        proc = server._proc
    assert proc.returncode is not None and reference.running() == []
    with pytest.raises(aiohttp.ClientConnectionError):
        await handshake(url)


@needs_node
async def test_start_reference_stops_the_previous_one():
    first = await reference.start_reference(ping_interval=1, ping_timeout=1)
    second = await reference.start_reference(ping_interval=1, ping_timeout=1)
    try:
        assert first.closed and not second.closed and reference.running() == [second]
        assert repr(second).startswith("<ReferenceServer socket.io (Node.js) http://127.0.0.1:")
    finally:
        await reference.close_all()
    assert reference.running() == []


async def test_plain_python_socketio_truncates_a_sub_second_ping_interval(plain):
    data = await handshake(plain.url)
    assert (data["pingInterval"], data["pingTimeout"]) == (0, 1000)   # int(0.5) * 1000


async def test_the_lab_advertises_it(lab):
    assert (await handshake(lab.server_url))["pingInterval"] == 500


async def test_start_plain_replaces_and_close_all_stops_everything():
    first = await reference.start_plain(ping_interval=1, ping_timeout=1)
    second = await reference.start_plain(ping_interval=1, ping_timeout=1)
    assert first.closed and reference.running() == [second]
    await reference.close_all()
    assert second.closed and reference.running() == []


async def test_serve_like_reference_acks_before_it_echoes(lab):
    client = await lab.client("c")
    assert await client.call("echo", "hi", timeout=2) == "hi"
    await lab.trace.wait_for(client="c", dir="s2c", sio="event", event="echo")
    assert lab.trace.raws(client="c", dir="s2c", sio=("ack", "event")) == ['431["hi"]', '42["echo","hi"]']
    assert await client.call("echo", timeout=2) is None          # no arguments: 43<id>[]


def test_url_of():
    assert url_of("http://127.0.0.1:1/") == "http://127.0.0.1:1"
    server = PlainServer()
    server.port = 5
    assert url_of(server) == "http://127.0.0.1:5"
    ref = ReferenceServer()
    ref.port = 6
    assert url_of(ref) == "http://127.0.0.1:6"
    with pytest.raises(TypeError, match="not a server"):
        url_of(42)


# ---------------------------------------------------------------- compare

async def test_lab_and_plain_python_socketio_differ_only_in_the_open_packet(lab, plain):
    cmp = await compare(lab, plain)
    assert isinstance(cmp, Comparison) and list(cmp.runs) == ["lab", "plain"]
    assert cmp.differences == ["open"]
    assert cmp["open"].cells == {
        "lab": 'upgrades=["websocket"] pingInterval=500 pingTimeout=1000 maxPayload=1000000',
        "plain": 'upgrades=["websocket"] pingInterval=0 pingTimeout=1000 maxPayload=1000000'}
    assert cmp["upgrade"].cells["lab"] == "→2probe ←3probe →5 ←6"
    assert cmp["connect"].cells["plain"] == '→40{} ←40{"sid":"…"}'
    assert cmp["ack"].cells["lab"] == '→421["echo","hi"] ←431["hi"]'
    assert cmp["binary_ack"].cells["lab"] == ('→451-2["echo",{"_placeholder":true,"num":0}] →<3 bytes> '
                                             '←461-2[{"_placeholder":true,"num":0}] ←<3 bytes>')
    assert cmp["post_reply"].cells["plain"] == "POST 40/nope,{} → 200 OK"
    assert cmp["refused"].cells["lab"] == '→40/nope,{} ←44/nope,"Unable to connect"'
    for run in cmp.runs.values():
        assert run.results == {"ack": "hi", "binary_ack": b"\x01\x02\x03",
                               "refused": "One or more namespaces failed to connect: /nope"}
    text = cmp.table()
    assert "handshake: the open packet   ≠ differs" in text and "  plain  upgrades=" in text
    page = cmp._repr_html_()
    assert page.count("≠</b>") == 1 and "&quot;sid&quot;:&quot;…&quot;" in page


async def test_connect_order_deviation_of_plain_python_socketio(lab, plain):
    for server in (lab.server, plain.server):
        @server.event
        async def connect(sid, environ, auth=None, server=server):
            await server.emit("welcome", "hello", to=sid)
    cmp = await compare(lab=lab, plain=plain, steps=("connect",))
    assert [row.step for row in cmp.rows] == ["connect"]
    assert cmp["connect"].cells == {"lab": '→40{} ←40{"sid":"…"} ←42["welcome","hello"]',
                                    "plain": '→40{} ←42["welcome","hello"] ←40{"sid":"…"}'}
    assert cmp.runs["lab"].trace.find(client="poller") == []       # steps not asked for are skipped


async def test_compare_refuses_unknown_steps_and_no_servers():
    with pytest.raises(ValueError, match="unknown steps"):
        await compare("http://127.0.0.1:9", steps=("handshake",))
    with pytest.raises(ValueError, match="at least one"):
        await compare()


@needs_node
async def test_lab_and_the_official_server_differ_where_the_lesson_says(lab):
    async with ReferenceServer(ping_interval=0.5, ping_timeout=1) as node:
        cmp = await compare(lab, node)
    assert list(cmp.runs) == ["lab", "node"]
    assert cmp.differences == ["upgrade", "post_reply", "refused"]
    assert cmp["upgrade"].cells == {"lab": "→2probe ←3probe →5 ←6", "node": "→2probe ←3probe →5"}
    assert cmp["post_reply"].cells["node"] == "POST 40/nope,{} → 200 ok"
    assert cmp["refused"].cells["node"] == '→40/nope,{} ←44/nope,{"message":"Invalid namespace"}'
    assert cmp.runs["node"].results["ack"] == "hi"


# ---------------------------------------------------------------- conformance

async def test_check_all_runs_the_checker_on_each(lab, plain):
    reports = await reference.check_all(lab=lab, plain=plain)
    assert set(reports) == {"lab", "plain"}
    assert reports["lab"].failed == PYTHON_DEVIATIONS
    assert reports["plain"].failed == PYTHON_DEVIATIONS | {
        "handshake", "heartbeat: ping every pingInterval, close after pingTimeout"}
    assert "advertised pingInterval 0 ms" in reports["plain"]["heartbeat: ping every pingInterval, close after "
                                                              "pingTimeout"].seen


@needs_node
async def test_check_all_the_official_server_passes():
    async with ReferenceServer(ping_interval=0.5, ping_timeout=0.5) as node:
        reports = await reference.check_all(node)
    assert reports["node"].ok, reports["node"].table()


# ---------------------------------------------------------------- the self-check

def test_self_check_is_kind_to_empty_and_wrong_answers():
    empty = check_answers({"plain_ping_interval_ms": None, "node_post_body": None, "empty_err_message_against": None})
    assert empty.todo == 3 and not empty.answered
    wrong = check_answers({"plain_ping_interval_ms": 1700, "node_post_body": "OK", "empty_err_message_against": "node"})
    assert wrong.wrong == 3
    assert any("Almost" in item.text for item in wrong.items)
    right = check_answers({"plain_ping_interval_ms": 1000, "node_post_body": "ok",
                           "empty_err_message_against": "python-socketio"})
    assert right.ok
    assert check_answers("ok").items[0].mark == "note"


async def test_nothing_is_left_running():
    await asyncio.sleep(0)
    assert reference.running() == []
