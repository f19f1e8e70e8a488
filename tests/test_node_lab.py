"""``siolab.start(node=JS)``: the official Node.js server running the learner's JavaScript behind the tap,
the options it maps, what the JavaScript reports into the trace, and a Node process that never outlives
its lab or its kernel. The ``%%siolab_node`` cell magic, in a real kernel."""
from __future__ import annotations

import asyncio
import json
import os
import stat
import time

import aiohttp
import pytest
import socketio

import siolab
from conftest import needs_node
from siolab import magic, node_env
from siolab.lab import open_labs
from siolab.node_config import node_options, origins
from siolab.node_lab import NodeLab
from siolab.node_process import NodeError, NodeSyntaxError, startup_error
from test_lifecycle import bindable, other_tasks

# A chat with a token at the door, rooms, an acknowledged call and handlers that throw.
CHAT = """\
io.use((socket, next) => {
  if (socket.handshake.auth.token !== "s3cret") return next(new Error("bad token"));
  next();
});
io.on("connection", (socket) => {
  console.log("hello", socket.handshake.auth.name);
  socket.on("chat", (m) => io.emit("chat", m));
  socket.on("join", (room, ack) => { socket.join(room); ack(`joined ${room}`); });
  socket.on("shout", (room, m) => io.to(room).emit("shout", m));
  socket.on("echo", (...args) => { const ack = args.pop(); ack(...args); });
  socket.on("boom", () => { throw new TypeError("boom!"); });
  socket.on("later", async () => { await null; return null.x; });
});
"""
ECHO = "io.on('connection', (s) => s.on('echo', (...args) => { const ack = args.pop(); ack(...args); }));"
BOOM_LINE = CHAT.splitlines().index('  socket.on("boom", () => { throw new TypeError("boom!"); });') + 1
TOKEN = {"token": "s3cret"}


def gone(pid: int) -> bool:
    """The process has exited (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


async def handshake(url: str, path: str = "/socket.io/", **headers: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}{path}?EIO=4&transport=polling", headers=headers) as resp:
            return resp.status, await resp.text()


@pytest.fixture
async def node_lab():
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    yield lab
    await lab.close()


# ---------------------------------------------------------------- options, errors, the magic's line (unit)

def test_options_are_said_the_way_node_takes_them():
    opts = node_options(ping_interval=0.5, ping_timeout=2, max_http_buffer_size=1000, path="chat",
                        transports=["polling"], allow_eio3=True, connection_state_recovery=True)
    assert opts == {"pingInterval": 500, "pingTimeout": 2000, "maxHttpBufferSize": 1000, "path": "/chat",
                    "transports": ["polling"], "allowEIO3": True, "connectionStateRecovery": {}}
    assert "cors" not in opts and origins(None) is None  # same host, as the python lab: checked in lab_server.js
    assert node_options(ping_interval=1, ping_timeout=1, cors_allowed_origins="*")["cors"] == {
        "origin": True, "credentials": True}
    assert node_options(ping_interval=1, ping_timeout=1, cors_allowed_origins="http://a:1")["cors"]["origin"] == [
        "http://a:1"]
    recovery = node_options(ping_interval=1, ping_timeout=1, connection_state_recovery={
        "max_disconnection_duration": 2, "skip_middlewares": True})["connectionStateRecovery"]
    assert recovery == {"maxDisconnectionDuration": 2000, "skipMiddlewares": True}
    # node_options goes in as is, last
    assert node_options(ping_interval=1, ping_timeout=1, node_options={"pingInterval": 7, "x": [1]}) == {
        "pingInterval": 7, "pingTimeout": 1000, "x": [1]}


def test_options_node_cannot_take_are_refused_with_the_way_out():
    with pytest.raises(TypeError, match="node_options"):
        node_options(ping_interval=1, ping_timeout=1, always_connect=True)
    with pytest.raises(TypeError, match="callable cannot run in Node.js"):
        node_options(ping_interval=1, ping_timeout=1, cors_allowed_origins=lambda origin: True)
    with pytest.raises(ValueError, match="ping_interval"):
        NodeLab("", ping_interval=0)
    with pytest.raises(TypeError, match="JavaScript"):
        NodeLab(None)


def test_the_server_of_a_node_lab_is_the_javascript():
    lab = NodeLab("io.on('connection', () => {})")
    with pytest.raises(AttributeError, match="Node.js.*lab.node"):
        print(lab.server)
    assert not hasattr(lab, "server") and lab.node.pid is None


def test_a_syntax_error_points_at_the_line_of_the_javascript():
    exc = startup_error({"type": "fatal", "kind": "syntax", "name": "SyntaxError", "message": "Unexpected token ')'",
                         "line": 3, "column": 23, "text": '  s.on("chat", (m) => ) ;'})
    assert isinstance(exc, NodeSyntaxError) and isinstance(exc, SyntaxError) and isinstance(exc, NodeError)
    assert (exc.filename, exc.lineno, exc.offset, exc.text) == ("lab.js", 3, 23, '  s.on("chat", (m) => ) ;')
    assert str(exc).splitlines() == ["Unexpected token ')' (lab.js, line 3)", '      s.on("chat", (m) => ) ;',
                                     "    " + " " * 22 + "^"]
    thrown = startup_error({"type": "fatal", "kind": "runtime", "name": "ReferenceError",
                            "message": "x is not defined", "line": 2, "column": 1, "text": "x();",
                            "summary": "ReferenceError: ...\n    at lab.js:2:1"})
    assert type(thrown) is NodeError and "lab.js, line 2: ReferenceError: x is not defined\n    x();" in str(thrown)


def test_the_magic_line_gives_a_name_and_python_literals():
    assert magic.parse_line('lab ping_interval=0.5 transports=["polling", "websocket"] cors_allowed_origins=*') == (
        "lab", {"ping_interval": 0.5, "transports": ["polling", "websocket"], "cors_allowed_origins": "*"})
    assert magic.parse_line("chat node_options={'cors': {'origin': 'http://a b'}}") == (
        "chat", {"node_options": {"cors": {"origin": "http://a b"}}})
    for bad in ("", "ping_interval=1", "1lab", "lab x", "lab x=[1"):
        with pytest.raises(ValueError, match="usage|not closed"):
            magic.parse_line(bad)


def test_the_magic_cell_becomes_one_awaited_call():
    cell = ["%%siolab_node lab ping_interval=1\n", 'io.on("connection", (s) => {\n', "});\n"]
    (line,) = magic.rewrite(cell)
    assert line.startswith("await __import__('siolab.magic'")
    assert "run_cell('lab ping_interval=1', '\\nio.on(\"connection\", (s) => {\\n});\\n')" in line  # cell lines
    assert magic.rewrite(["%%siolab_nodes x\n"]) == ["%%siolab_nodes x\n"]
    assert magic.rewrite(["x = 1\n"]) == ["x = 1\n"]


def test_without_node_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(node_env.shutil, "which", lambda name: None)
    with pytest.raises(siolab.NodeUnavailable, match="Node.js >= 18"):
        node_env.find_node()
    monkeypatch.setattr(node_env.shutil, "which", lambda name: "/usr/bin/node")
    monkeypatch.setattr(node_env, "_versions", {"/usr/bin/node": (16, "v16.20.0")})
    with pytest.raises(siolab.NodeUnavailable, match="v16.20.0.*too old.*>= 18"):
        node_env.find_node()


FAKE_NPM = """#!/bin/sh
# npm ci --prefix DIR ...: what the real one leaves there (and the arguments it got)
while [ $# -gt 0 ]; do [ "$1" = --prefix ] && dir=$2; shift; done
mkdir -p "$dir/node_modules/socket.io" && echo '{"version": "4.8.4"}' > "$dir/node_modules/socket.io/package.json"
"""


async def test_the_packages_are_installed_once_into_a_cache_named_by_the_lock(monkeypatch, tmp_path):
    package = tmp_path / "node"  # a pip-installed siolab: the lock file, no node_modules
    package.mkdir()
    (package / "package.json").write_text('{"dependencies": {"socket.io": "4.8.4"}}')
    (package / "package-lock.json").write_text('{"lockfileVersion": 3}')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM)
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(node_env, "find_node", lambda: "node")
    monkeypatch.setattr(node_env.shutil, "which", lambda name: str(npm) if name == "npm" else None)
    assert node_env.installed(package) is None
    modules = await node_env.ensure_packages(package)
    want = tmp_path / "cache" / "siolab" / f"node-{node_env.lock_hash(package)}" / "node_modules"
    assert modules == want and node_env.installed(package) == want
    assert [p.name for p in want.parent.parent.iterdir()] == [want.parent.name]  # no staging directory left
    npm.write_text("#!/bin/sh\nexit 3\n")  # installed: npm is not run again
    assert await node_env.ensure_packages(package) == want
    (package / "package-lock.json").write_text('{"lockfileVersion": 3, "x": 1}')  # a new lock: a new install
    with pytest.raises(siolab.NodeUnavailable, match="npm ci.*exit 3"):
        await node_env.ensure_packages(package)
    monkeypatch.setattr(node_env.shutil, "which", lambda name: None)
    with pytest.raises(siolab.NodeUnavailable, match="npm is not installed.*Node.js >= 18"):
        await node_env.ensure_packages(package)


# ---------------------------------------------------------------- the lab (Node.js)

@needs_node
async def test_a_wrong_token_is_refused_on_the_wire_and_in_the_exception(node_lab):
    with pytest.raises(socketio.exceptions.ConnectionError, match="the server said: bad token"):
        await node_lab.client("mallory", auth={"token": "nope"})
    refusal = node_lab.trace.expect(client="mallory", dir="s2c", sio="connect_error")
    assert refusal.raw == '44{"message":"bad token"}'
    alice = await node_lab.client("alice", auth=TOKEN)
    assert alice.connected


@needs_node
async def test_an_ack_a_room_broadcast_and_the_nodejs_answer_to_a_post(node_lab):
    alice = await node_lab.client("alice", auth=TOKEN)
    bob = await node_lab.client("bob", auth=TOKEN, transports=["polling"])
    carol = await node_lab.client("carol", auth=TOKEN)
    got: dict[str, list] = {"bob": [], "carol": []}
    bob.on("shout", lambda m: got["bob"].append(m))
    carol.on("shout", lambda m: got["carol"].append(m))
    assert await alice.call("join", "r1", timeout=5) == "joined r1"
    assert await bob.call("join", "r1", timeout=5) == "joined r1"
    await carol.emit("shout", ("r1", "hey room"))
    await node_lab.trace.wait_for(5, client="bob", dir="s2c", event="shout")
    await node_lab.trace.wait_for(5, client="alice", dir="s2c", event="shout")
    await asyncio.sleep(0.2)
    assert got == {"bob": ["hey room"], "carol": []}  # carol is not in the room
    assert node_lab.trace.raws(client="alice", dir="s2c", event="join") == []
    assert node_lab.trace.raws(client="alice", dir="s2c", sio="ack") == ['431["joined r1"]']
    # the POST that carried bob's packets was answered by Node.js, which says "ok" (python-engineio: "OK")
    posts = node_lab.trace.find(client="bob", kind="http", dir="s2c", where=lambda r: r.http["method"] == "POST")
    assert posts and {(r.http["status"], r.raw) for r in posts} == {(200, "ok")}


@needs_node
async def test_a_throw_is_an_error_record_with_the_js_stack_and_the_server_goes_on(node_lab):
    alice = await node_lab.client("alice", auth=TOKEN)
    await alice.emit("boom")
    await alice.emit("later")
    record = await node_lab.trace.wait_for(5, kind="error", where=lambda r: "boom!" in (r.error or ""))
    assert record.client == "alice" and record.sid == alice.eio.sid
    assert record.error == 'exception in the "boom" handler: TypeError: boom!'
    assert f"TypeError: boom!\n    at Socket.<anonymous> (lab.js:{BOOM_LINE}:" in record.note
    assert "node_modules" not in record.note and "lab_server.js" not in record.note
    rejected = await node_lab.trace.wait_for(5, kind="error", where=lambda r: '"later"' in (r.error or ""))
    assert "Cannot read properties of null" in rejected.error and "lab.js:" in rejected.note
    assert await alice.call("echo", "still here", timeout=5) == "still here"
    assert node_lab.node.running


@needs_node
async def test_console_log_is_a_log_record_of_the_client_it_was_for(node_lab):
    await node_lab.client("alice", auth={**TOKEN, "name": "Alice"})
    record = await node_lab.trace.wait_for(5, kind="log", where=lambda r: "console.log" in (r.note or ""))
    assert record.note == "server console.log: hello Alice"
    assert record.client == "alice"


@needs_node
async def test_close_leaves_no_process_port_or_task():
    await asyncio.sleep(0)
    tasks_before = len(other_tasks())
    lab = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    pid, ports = lab.node.pid, [lab.tap.port, lab.server_port]
    await lab.client("alice", auth=TOKEN)
    await lab.client("bob", auth=TOKEN, transports=["polling"])
    assert not gone(pid) and not any(bindable(p) for p in ports)
    began = time.monotonic()
    await lab.close()
    assert time.monotonic() - began < 3
    assert gone(pid) and all(bindable(p) for p in ports)
    await asyncio.sleep(0.05)
    assert len(other_tasks()) == tasks_before, other_tasks()
    assert not open_labs()
    ended = lab.trace.find(kind="log", where=lambda r: "the session of" in (r.note or ""))
    assert {r.client for r in ended} == {"alice", "bob"}  # Node's own word on each session's end


@needs_node
async def test_start_again_closes_the_previous_node_lab():
    first = await siolab.start(node=CHAT, ping_interval=1, ping_timeout=1)
    pid = first.node.pid
    second = await siolab.start(node="io.on('connection', (s) => s.on('echo', (m, ack) => ack(m + 1)))")
    try:
        assert first.closed and gone(pid) and open_labs() == [second] and siolab.current() is second
        c = await second.client("c")
        assert await c.call("echo", 1, timeout=5) == 2
    finally:
        await second.close()


@needs_node
async def test_bad_javascript_raises_with_its_line_and_leaves_nothing():
    with pytest.raises(NodeSyntaxError) as info:
        await siolab.start(node='io.on("connection", (s) => {\n  s.on("chat", (m) => ) ;\n});')
    assert (info.value.lineno, info.value.text) == (2, '  s.on("chat", (m) => ) ;')
    assert "Unexpected token ')'" in str(info.value)
    with pytest.raises(NodeSyntaxError, match="end of input") as info:
        await siolab.start(node='io.on("connection", (s) => {\n  s.on("chat", (m) => {});\n')
    assert info.value.lineno == 2
    with pytest.raises(NodeError, match=r"lab.js, line 2: ReferenceError: nope is not defined\n    nope\(\);"):
        await siolab.start(node="const a = 1;\nnope();")
    with pytest.raises(NodeError, match="exited"):
        await siolab.start(node="process.exit(3)")
    assert not open_labs()


@needs_node
async def test_the_options_reach_the_nodejs_server():
    lab = await siolab.start(node="io.on('connection', (s) => s.on('echo', (m, ack) => ack(m)))", ping_interval=0.5,
                             ping_timeout=0.25, path="/chat/", node_options={"maxHttpBufferSize": 4096})
    try:
        status, body = await handshake(lab.url, "/chat/")
        opened = json.loads(body[1:])
        assert status == 200
        assert (opened["pingInterval"], opened["pingTimeout"], opened["maxPayload"]) == (500, 250, 4096)
        assert (await handshake(lab.server_url))[0] == 404  # not on /socket.io/
        c = await lab.client("c")  # the lab's clients connect on the server's path
        assert await c.call("echo", "x", timeout=5) == "x"
        # CORS: same host as the python lab; a page from elsewhere is refused with the python lab's words
        host = lab.url.split("//")[1]
        assert (await handshake(lab.url, "/chat/", Origin=f"http://{host}"))[0] == 200
        status, body = await handshake(lab.url, "/chat/", Origin="http://elsewhere.example")
        assert status == 403 and json.loads(body)["message"] == "http://elsewhere.example is not an accepted origin."
        assert lab.trace.first(kind="log", where=lambda r: "not an accepted origin" in (r.note or ""))
    finally:
        await lab.close()


# (Origin, Host, X-Forwarded-Host) a page may send, and whether the python lab lets it in
ORIGINS = [(None, None, None, True), ("http://{tap}", None, None, True),
           ("http://elsewhere.example", None, None, False),
           ("https://jupyter.example:8888", "jupyter.example:8888", None, True),  # TLS in front: scheme not compared
           ("https://hub.example", "127.0.0.1:1", "hub.example", True),  # behind a proxy that says so
           ("http://a.example", "a.example:80", None, True), ("http://a.example:81", "a.example", None, False),
           ("null", None, None, False), ("http://{tap}/page", None, None, False), ("ftp://{tap}", None, None, False)]


@needs_node
async def test_same_host_origins_are_let_in_as_the_python_lab_does():
    """cors_allowed_origins=None: lab_server.js's check against siolab.server.same_host_origin, case by case."""
    verdicts = {}
    for kind in ("python", "node"):
        lab = await (siolab.start(ping_interval=1, ping_timeout=1) if kind == "python" else
                     siolab.start(node=ECHO, ping_interval=1, ping_timeout=1))
        tap = lab.url.split("//")[1]
        try:
            for origin, host, forwarded, _ in ORIGINS:
                headers = {name: value.format(tap=tap) for name, value in
                           (("Origin", origin), ("Host", host), ("X-Forwarded-Host", forwarded)) if value}
                status, _body = await handshake(lab.url, **headers)
                verdicts.setdefault(kind, []).append(status == 200)
        finally:
            await lab.close()
    assert verdicts["python"] == [case[-1] for case in ORIGINS]
    assert verdicts["node"] == verdicts["python"]


async def test_without_node_start_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(node_env.shutil, "which", lambda name: None)
    with pytest.raises(siolab.NodeUnavailable, match="Node.js >= 18"):
        await siolab.start(node="io.on('connection', () => {})", replace=False)
    assert not open_labs()


@needs_node
async def test_the_python_lab_s_tools_work_on_a_node_lab(node_lab):
    alice = await node_lab.client("alice", auth=TOKEN)
    bob = await node_lab.client("bob", auth=TOKEN)
    heard: list = []
    bob.on("chat", heard.append)
    fault = node_lab.tap.drop(dir="s2c", event="chat", client="bob")
    await alice.emit("chat", "one")
    await node_lab.trace.wait_for(5, client="alice", dir="s2c", event="chat")
    fault.remove()
    await alice.emit("chat", "two")
    await node_lab.trace.wait_for(5, client="bob", dir="s2c", event="chat", where=lambda r: r.args == ["two"])
    assert node_lab.trace.find(kind="fault", client="bob")
    await asyncio.sleep(0.1)
    assert heard == ["two"]  # "one" was dropped by the tap on its way to bob
    view = node_lab.view()
    assert type(view).__name__ == "TraceView"
    view.close()
    assert await bob.call("echo", 1, timeout=5) == 1


@needs_node
async def test_siolab_check_passes_through_a_node_lab():
    lab = await siolab.start(node=ECHO, ping_interval=1, ping_timeout=1)
    try:
        report = await siolab.check(lab.url, max_wait=2)
    finally:
        await lab.close()
    assert report.ok, report.table()


@needs_node
async def test_stop_start_restart_as_the_python_lab_does(node_lab):
    port, pid = node_lab.server_port, node_lab.node.pid
    alice = await node_lab.client("alice", auth=TOKEN, reconnection=False)
    await node_lab.stop_server()
    assert gone(pid) and node_lab.node.pid is None and not node_lab.node.running
    await node_lab.trace.wait_for(5, kind="log", where=lambda r: r.note == f"server on port {port} stopped")
    for _ in range(50):
        if not alice.connected:
            break
        await asyncio.sleep(0.1)
    assert not alice.connected
    await node_lab.node.start()
    assert node_lab.server_port == port and node_lab.node.pid != pid
    assert node_lab.trace.first(kind="log", where=lambda r: "started again" in (r.note or ""))
    bob = await node_lab.client("bob", auth=TOKEN)
    assert await bob.call("echo", "back", timeout=5) == "back"
    await node_lab.restart_server()
    assert node_lab.node.running and node_lab.server_port == port
    assert "node" in repr(node_lab.node).lower() and str(node_lab.node.pid) in repr(node_lab.node)


@needs_node
async def test_an_exit_of_its_own_is_an_error_record(node_lab):
    alice = await node_lab.client("alice", auth=TOKEN)
    pid = node_lab.node.pid
    os.kill(pid, 9)
    record = await node_lab.trace.wait_for(5, kind="error", where=lambda r: "exited by itself" in (r.note or ""))
    assert record.error == "the Node.js server exited (code -9)"
    assert alice is not None


# ---------------------------------------------------------------- in a real kernel

def execute(kc, code: str, timeout: float = 60) -> tuple[str, str | None]:
    """Run a cell; returns (stdout, the error's text or None). Later cells still run after an error."""
    msg_id = kc.execute(code, stop_on_error=False)
    out, error = [], None
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out), error


@pytest.fixture
def node_kernel():
    jupyter_client = pytest.importorskip("jupyter_client")
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def ok(kc, code: str) -> str:
    out, error = execute(kc, code)
    assert error is None, error
    return out


@needs_node
def test_the_magic_in_a_kernel_and_no_node_process_after_the_kernel_is_gone(node_kernel):
    km, kc = node_kernel
    ok(kc, "%load_ext siolab\nimport siolab, json")
    cell = ('%%siolab_node lab ping_interval=1 ping_timeout=1\n'
            'io.on("connection", (socket) => {\n'
            '  socket.on("echo", (m, ack) => ack(m));\n'
            '});\n')
    ok(kc, cell)
    state = json.loads(ok(kc, "c = await lab.client('c')\n"
                               "print(json.dumps([await c.call('echo', 41), lab.node.pid]))"))
    assert state[0] == 41
    ok(kc, cell.replace("ack(m)", "ack(m + 1)"))  # the same cell edited and run again: the lab is replaced
    again = json.loads(ok(kc, "c = await lab.client('c')\n"
                               "print(json.dumps([await c.call('echo', 41), lab.node.pid, len(siolab.open_labs())]))"))
    assert again[0] == 42 and again[2] == 1 and gone(state[1])
    out, error = execute(kc, '%%siolab_node lab\nio.on("connection", (s) => {\n  s.on("x", (m) => ) ;\n});\n')
    assert error.startswith("NodeSyntaxError: Unexpected token ')' (lab.js, line 3)\n"), error
    assert error.splitlines()[1] == '      s.on("x", (m) => ) ;'
    assert ok(kc, "print(lab.closed, len(siolab.open_labs()))") == "True 0\n"  # closed before the new one failed
    ok(kc, cell)
    # a second lab of another name, next to the first
    ok(kc, '%%siolab_node other\nio.on("connection", () => {});\n')
    pids = json.loads(ok(kc, "print(json.dumps([l.node.pid for l in siolab.open_labs()]))"))
    assert len(pids) == 2 and all(not gone(p) for p in pids)
    # the kernel is shut down with both labs open (abruptly: no cleanup code runs in it)
    kc.stop_channels()
    km.shutdown_kernel(now=True)
    deadline = time.monotonic() + 10
    while not all(gone(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(gone(p) for p in pids)

