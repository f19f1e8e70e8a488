"""Your own app, as lesson 12 runs it: ``node server.js`` started the way a learner starts it, the tap put in
front of it (``attach`` and the CLI), the ``debug`` output of server and client, and the lesson's fallback
without Node.js (a recorded trace, and a quiet stop)."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import socketio

import siolab
from conftest import needs_node
from siolab import lesson_checks as check
from siolab import own_app
from siolab.analysis import wait_until
from siolab.node_process import debug_env
from test_node_lab import gone

RECORDED = Path(__file__).parent.parent / "notebooks" / "data" / "12_node_chat.jsonl"

SERVER_JS = """
const http = require("http");
const { Server } = require("socket.io");
const messageArr = [];
const server = http.createServer();
const io = new Server(server);
io.on("connection", (socket) => {
  socket.on("message", ({ message }) => { messageArr.push(message); io.emit("message", messageArr); });
  socket.on("count", (ack) => ack(messageArr.length));
});
server.listen(process.env.PORT, () => console.log(`listening on ${process.env.PORT}`));
"""

# Lesson 12's first section (the seed post's chat on the Node.js server), also what RECORDED holds.
CHAT_JS = """
const messageArr = [];
io.on("connection", (socket) => {
  socket.on("newClient", () => socket.emit("initialChatList", messageArr));
  socket.on("message", ({ message }) => {
    messageArr.push(`${message}`);
    io.emit("message", messageArr);
  });
  socket.on("disconnect", (reason) => {
    console.log("client disconnected. bye...", reason);
  });
});
"""


async def run_the_chat() -> siolab.Trace:
    """Section 1 of lesson 12 without the page; returns the trace (the lab is closed)."""
    lab = await siolab.start(node=CHAT_JS, replace=False, ping_interval=1, ping_timeout=1)
    try:
        carol = await lab.js_client("carol")
        await carol.emit("newClient")
        history = await carol.wait("event", event="initialChatList")
        bob = await lab.client("bob")
        await bob.emit("message", {"message": "hi from python"})
        await carol.wait("event", event="message")
        await carol.emit("message", {"message": "hi from JavaScript"})
        await wait_until(lambda: len(lab.trace.packets(client="bob", dir="s2c", event="message")) == 2)
        await carol.disconnect()
        await bob.disconnect()
        await wait_until(lambda: len(lab.trace.find(kind="log", where=lambda r: "bye..." in (r.note or ""))) == 2)
        assert history["args"] == [[]]
        return lab.trace
    finally:
        await lab.close()


def _shape(records) -> dict[str, list[tuple]]:
    """Each client's Socket.IO packets in order, without what changes from run to run (sids, times, and how
    the upgrade interleaves with them)."""
    out: dict[str, list[tuple]] = {}
    for r in records:
        if r.kind == "packet" and r.sio is not None:
            out.setdefault(r.client, []).append((r.dir, re.sub(r'"sid":"[^"]+"', '"sid":"SID"', r.raw)))
    return out


@needs_node
async def test_the_recorded_chat_is_what_the_nodejs_server_does_today():
    """The trace a learner without Node.js sees is this lesson's chat as it runs now (SIOLAB_RECORD=1 rewrites it)."""
    trace = await run_the_chat()
    check.node_chat_as_described(trace, {"args": [[]]})
    if os.environ.get("SIOLAB_RECORD") == "1":
        trace.to_jsonl(RECORDED)
    recorded = siolab.Trace.from_jsonl(RECORDED)
    check.node_chat_as_described(recorded, {"args": [[]]})
    assert _shape(recorded) == _shape(trace)


def test_without_node_the_lesson_shows_the_recorded_trace_and_stops_quietly(monkeypatch):
    monkeypatch.setattr(own_app.shutil, "which", lambda name: None)
    with pytest.raises(own_app.StopLesson) as stopped:
        own_app.need_node(recorded=RECORDED)
    text = str(stopped.value)
    assert "Node.js is not installed" in text and "nodejs.org" in text
    assert '42["message",["hi from python","hi from JavaScr' in text  # the recorded trace's table
    assert stopped.value._render_traceback_() == [text]  # IPython prints the text, no traceback
    with pytest.raises(own_app.StopLesson, match="could not be read"):
        own_app.need_node(recorded="no/such/file.jsonl")


@needs_node
def test_with_node_need_node_says_what_runs():
    assert own_app.need_node(recorded=RECORDED).startswith("Node.js ")


@needs_node
async def test_an_app_started_as_a_learner_does_with_the_tap_in_front_of_it():
    app = await own_app.run_node_app(SERVER_JS, debug="socket.io*")
    try:
        assert app.running and app.stdout_lines == [f"listening on {app.port}"]
        lab = await siolab.attach(app.url, replace=False)
        carol = await lab.js_client("carol")
        await carol.emit("message", {"message": "hi"})
        assert await carol.call("count") == 1
        await lab.close()
        assert app.running and await check.answers_handshake(app.url)  # close() left the server alone
        debug = app.stderr_lines
        check.debug_output_as_described(debug)
        assert any('decoded 2["message",{"message":"hi"}]' in line for line in debug)
        assert check.debug_lines_of_first_session(debug)[0].endswith(
            "incoming connection with id " + lab.trace.expect(client="carol", eio="open").data["sid"])
    finally:
        await app.stop()
    assert not app.running and gone(app.pid) and not app.script.parent.exists()
    assert not own_app.running()


@needs_node
async def test_an_app_that_dies_at_once_says_why_and_a_rerun_replaces_the_first():
    with pytest.raises(RuntimeError, match=r"exited with code 1 before it listened(.|\n)*boom"):
        await own_app.run_node_app('throw new Error("boom")')
    assert not own_app.running()
    first = await own_app.run_node_app(SERVER_JS)
    second = await own_app.run_node_app(SERVER_JS)  # the same name: a re-run cell
    assert not first.running and gone(first.pid) and second.running
    assert own_app.running() == [second]
    await own_app.close_all()
    assert not second.running and not own_app.running()


@needs_node
async def test_the_cli_tap_in_front_of_the_app_prints_each_packet_with_the_client_s_name():
    app = await own_app.run_node_app(SERVER_JS)
    cli = await own_app.run_cli("trace", app.url)
    try:
        first = cli.stdout_lines[0]
        assert first.startswith("siolab tap: listening on http://127.0.0.1:") and app.url in first
        erin = socketio.AsyncClient()
        await erin.connect(check.url_in(first), headers={"X-Siolab-Client": "erin"}, transports=["websocket"])
        await erin.emit("message", {"message": "via the cli"})
        down = await cli.wait_for_line(r'erin .*<- websocket .*42\["message"')
        assert "via the cli" in down
        await erin.disconnect()
    finally:
        await own_app.close_all()
    assert not cli.running and not app.running and gone(cli.pid)


@needs_node
async def test_debug_turns_on_the_debug_module_of_the_node_lab_and_of_the_js_client():
    lab = await siolab.start(node='io.on("connection", (s) => s.on("m", (x) => s.emit("m", x)));', replace=False,
                             debug="socket.io:socket")
    try:
        frank = await lab.js_client("frank", debug="socket.io-client:*")
        plain = await lab.js_client("plain")
        await frank.emit("m", 1)
        await frank.wait("event", event="m")
        assert any("socket.io:socket" in line and 'emitting event ["m",1]' in line for line in lab.node.debug_lines)
        assert any("socket.io-client:socket" in line for line in frank.debug_lines)
        assert plain.debug_lines == []
    finally:
        await lab.close()
    with pytest.raises(ValueError, match="namespaces"):
        debug_env("")


def test_the_debug_check_fails_on_transport_lines_and_other_namespaces():
    good = ['2026-12-04T21:00:00.000Z socket.io-parser decoded 0 as {"type":0,"nsp":"/"}',
            '2026-12-04T21:00:00.001Z socket.io-parser decoded 2["message",{"message":"x"}] as {}']
    check.debug_output_as_described(good)
    with pytest.raises(check.CheckFailed, match="transport"):
        check.debug_output_as_described(good + ["2026-12-04T21:00:00.002Z socket.io:socket got 2probe"])
    with pytest.raises(check.CheckFailed, match="namespaces"):
        check.debug_output_as_described(good + ['2026-12-04T21:00:00.002Z engine handshaking client "x"'])


@needs_node
def test_the_bundlers_build_of_the_client_has_no_debug_calls():
    counts = check.client_debug_builds()
    assert counts["socket.io-client"] == 0 and counts["socket.io-client/debug"] > 0


@needs_node
def test_an_app_dies_with_the_kernel(tmp_path):
    """The kernel is killed (no clean-up runs): the app's Node.js process goes with it."""
    script = tmp_path / "kernel.py"
    script.write_text(
        "import asyncio, os, sys\n"
        "from siolab import own_app\n"
        "async def main():\n"
        f"    app = await own_app.run_node_app({SERVER_JS!r})\n"
        "    print(app.pid, flush=True)\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])

    async def wait_gone():
        await wait_until(lambda: gone(pid), timeout=5, what=f"node {pid} gone")
    asyncio.run(wait_gone())
