"""Two implementations, one protocol: the official Node.js server and plain python-socketio next to the lab's.

``reference_server()`` runs the official ``socket.io`` package (``siolab/node/sio_server.js``, versions
pinned in ``siolab/node/package-lock.json``, installed there by ``npm ci``) as a child process;
``plain_server()`` runs python-socketio's ``AsyncServer`` exactly as pip installs it (the lab's server
corrects two of its deviations, see ``siolab.server``). ``compare()`` puts the same python client,
through a tap of its own, in front of each server and lines the traces up step by step; ``check_all()``
runs the conformance checker on each.

    ok, why = reference_available()
    async with reference_server(ping_interval=0.5, ping_timeout=1) as url:
        comparison = await compare(lab=lab, node=url)
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import re
import shlex
import shutil
import weakref
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable

import socketio

from .instrument import Instruments
from .node_env import MIN_NODE, NODE_DIR, node_version
from .node_process import NodeProcess
from .process import ServerProcess
from .server import TracedServer
from .tap import CLIENT_HEADER, Tap
from .trace import Record, Trace

SERVER_SCRIPT = NODE_DIR / "sio_server.js"


def install_hint() -> str:
    """How to install the pinned npm packages (in a checkout ``make node-deps`` does the same)."""
    return f"cd {shlex.quote(str(NODE_DIR))} && npm ci"


# ---------------------------------------------------------------- is the reference there?


_node_version = node_version


def _package_version(name: str) -> str | None:
    try:
        return json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def reference_available() -> tuple[bool, str]:
    """Whether the official Node.js server can run here; the text says what runs, or why not and the fix."""
    node = shutil.which("node")
    if node is None:
        return False, (f"Node.js is not installed (no `node` on PATH), so the official server cannot run here. "
                       f"Install Node.js >= {MIN_NODE}, then `{install_hint()}`.")
    version = _node_version(node)
    if version is None:
        return False, f"`{node} --version` did not answer; install Node.js >= {MIN_NODE}."
    if version[0] < MIN_NODE:
        return False, f"Node.js {version[1]} is too old: the fixtures need Node.js >= {MIN_NODE}."
    if not SERVER_SCRIPT.is_file():
        return False, (f"{SERVER_SCRIPT} is missing: it is part of the siolab package (siolab/node); "
                       f"reinstall siolab.")
    socket_io = _package_version("socket.io")
    if socket_io is None:
        return False, (f"the pinned npm packages are not installed: run `{install_hint()}` "
                       f"(needs the npm registry).")
    return True, f"Node.js {version[1]} with socket.io {socket_io} (pinned in siolab/node)."


# ---------------------------------------------------------------- the servers

_running: "weakref.WeakSet[Any]" = weakref.WeakSet()
_current: dict[str, Any] = {}  # kind -> the server the last start_*() call opened


def running() -> list:
    """The servers this module started that are still running (a notebook's last check: none)."""
    return [s for s in _running if not s.closed]


async def close_all() -> None:
    """Stop every server this module started."""
    for server in running():
        await server.close()


class ReferenceServer:
    """The official Node.js Socket.IO server as a child process on 127.0.0.1 (``siolab.node_process``: it
    exits when its stdin closes, and with the kernel)."""

    name = "node"

    def __init__(self, *, ping_interval: float = 25, ping_timeout: float = 20, path: str = "/socket.io/",
                 start_timeout: float = 20) -> None:
        self.ping_interval, self.ping_timeout, self.path = ping_interval, ping_timeout, path
        self.start_timeout = start_timeout
        self.closed = False
        ms = [str(round(s * 1000)) for s in (self.ping_interval, self.ping_timeout)]
        self.node = NodeProcess(SERVER_SCRIPT, ["--ping-interval", ms[0], "--ping-timeout", ms[1], "--path", path],
                                node_dir=NODE_DIR, start_timeout=start_timeout)

    @property
    def port(self) -> int | None:
        return self.node.port

    @port.setter
    def port(self, port: int | None) -> None:  # where it listens next (a free one: None)
        self.node.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def _proc(self) -> asyncio.subprocess.Process | None:
        return self.node.process

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr (the last lines)."""
        return self.node.stderr

    async def start(self) -> "ReferenceServer":
        ok, why = reference_available()
        if not ok:
            raise RuntimeError(why)
        _running.add(self)
        try:
            await self.node.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def close(self) -> None:
        """Stop the server: close its stdin (it exits by itself), terminate it if it does not."""
        if self.closed:
            return
        self.closed = True
        await self.node.stop()
        _running.discard(self)

    async def __aenter__(self) -> "ReferenceServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.url if self.port else "not started"
        return f"<ReferenceServer socket.io (Node.js) {state}>"


class PlainServer:
    """python-socketio's AsyncServer on aiohttp at 127.0.0.1 exactly as pip installs it (no siolab fixes).

    ``server`` is the AsyncServer (register handlers on it); its warnings and errors go to ``trace``.
    """

    name = "plain"

    def __init__(self, *, ping_interval: float = 25, ping_timeout: float = 20, **server_options: Any) -> None:
        self.trace = Trace()
        # the lab's log-to-trace and task bookkeeping; no siolab fix, and no record of each session's end
        instruments = Instruments(self.trace, "server", logger_name="siolab.plain", sessions=False)
        self.server = TracedServer(async_mode="aiohttp", ping_interval=ping_interval, ping_timeout=ping_timeout,
                                   instruments=instruments, **server_options)
        self.process = ServerProcess(self.server, self.trace, host="127.0.0.1")
        self.closed = False

    @property
    def url(self) -> str:
        return self.process.url

    server_url = url

    @property
    def app(self):
        """The aiohttp app the server runs in (once started)."""
        return self.process.app

    @property
    def port(self) -> int | None:
        return self.process.port

    @port.setter
    def port(self, port: int | None) -> None:  # where it listens next (a free one: None)
        self.process.port = port

    async def start(self) -> "PlainServer":
        await self.process.start()
        _running.add(self)
        return self

    async def close(self) -> None:
        """Close every session, stop the server and cancel what python-engineio leaves running."""
        if self.closed:
            return
        self.closed = True
        await self.process.stop()
        _running.discard(self)

    async def __aenter__(self) -> "PlainServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.url if self.port else "not started"
        return f"<PlainServer python-socketio {socketio.__version__} {state}>"


@contextlib.asynccontextmanager
async def reference_server(*, ping_interval: float = 25, ping_timeout: float = 20,
                           path: str = "/socket.io/") -> AsyncIterator[str]:
    """Run the official Node.js server (intervals in seconds, like ``siolab.start``); yields its URL."""
    async with ReferenceServer(ping_interval=ping_interval, ping_timeout=ping_timeout, path=path) as server:
        yield server.url


@contextlib.asynccontextmanager
async def plain_server(*, ping_interval: float = 25, ping_timeout: float = 20,
                       **server_options: Any) -> AsyncIterator[PlainServer]:
    """Run plain python-socketio (register handlers on ``.server``); yields the PlainServer."""
    async with PlainServer(ping_interval=ping_interval, ping_timeout=ping_timeout, **server_options) as server:
        yield server


async def _replace(kind: str, server):
    previous = _current.pop(kind, None)
    if previous is not None:
        await previous.close()
    await server.start()
    _current[kind] = server
    return server


async def start_reference(*, ping_interval: float = 25, ping_timeout: float = 20) -> ReferenceServer:
    """Start the official server for a notebook; the one the previous call started is stopped first."""
    return await _replace("node", ReferenceServer(ping_interval=ping_interval, ping_timeout=ping_timeout))


async def start_plain(*, ping_interval: float = 25, ping_timeout: float = 20, **server_options: Any) -> PlainServer:
    """Start plain python-socketio for a notebook; the one the previous call started is stopped first."""
    return await _replace("plain", PlainServer(ping_interval=ping_interval, ping_timeout=ping_timeout,
                                               **server_options))


def serve_like_reference(server: socketio.AsyncServer) -> socketio.AsyncServer:
    """Give a python-socketio server the handlers of ``siolab/node/sio_server.js``.

    ``echo`` (on "/" and "/admin") acknowledges with its arguments, then emits ``echo`` back with them;
    ``message`` on "/" is broadcast to every client. The echo is sent from a background task so that, as
    in Node, the ACK leaves first.
    """
    def echo_on(namespace: str):
        async def echo(sid, *args):
            server.start_background_task(server.emit, "echo", args, to=sid, namespace=namespace)
            return args
        server.on("echo", echo, namespace=namespace)

    async def message(sid, *args):
        await server.emit("message", args)

    echo_on("/")
    echo_on("/admin")
    server.on("message", message)
    return server


# ---------------------------------------------------------------- one scenario, any server

def url_of(target: Any) -> str:
    """The server's own URL: a string, or ``.server_url`` (a Lab, a PlainServer) or ``.url`` (a ReferenceServer)."""
    if isinstance(target, str):
        return target.rstrip("/")
    for attr in ("server_url", "url"):
        value = getattr(target, attr, None)
        if isinstance(value, str):
            return value.rstrip("/")
    raise TypeError(f"not a server: {target!r} (give a URL, a Lab, a PlainServer or a ReferenceServer)")


def _name_of(target: Any, index: int) -> str:
    if isinstance(target, str):
        return target
    kind = type(target).__name__
    return {"Lab": "lab", "PlainServer": "plain", "ReferenceServer": "node"}.get(kind, f"server {index + 1}")


STEPS = {
    "open": "handshake: the open packet",
    "upgrade": "upgrade to WebSocket",
    "connect": "CONNECT to /",
    "ack": "event with an ack",
    "binary_ack": "binary event with an ack",
    "post_reply": "answer to a POST",
    "refused": "CONNECT to an unknown namespace",
}
UNKNOWN_NAMESPACE = "/nope"
BLOB = b"\x01\x02\x03"


@dataclass
class Run:
    """One server's run of the scenario: its trace (from a tap of its own) and what the client's calls returned."""

    name: str
    url: str
    trace: Trace
    results: dict = field(default_factory=dict)

    def errors(self) -> list[Record]:
        return [r for r in self.trace if r.error]


async def _disconnect(client: socketio.AsyncClient, timeout: float) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), timeout)
    except (asyncio.TimeoutError, Exception):
        pass
    http = getattr(client.eio, "http", None)
    if http is not None and not http.closed:
        await http.close()


async def run_scenario(target: Any, name: str = "server", *, steps: Iterable[str] = tuple(STEPS),
                       timeout: float = 5.0, settle: float = 0.05) -> Run:
    """Run the python client scenario against one server, through a fresh tap; returns the Run.

    Client ``py`` (polling, then the upgrade) connects to "/", calls ``echo`` with "hi" and with 3 bytes
    and waits for the binary ``echo`` back; client ``poller`` (polling only) asks for the namespace
    ``/nope`` and is refused. Steps not asked for are skipped.
    """
    steps = set(steps)
    trace = Trace()
    run = Run(name, url_of(target), trace)
    clients: list[socketio.AsyncClient] = []
    async with Tap(run.url, trace) as tap:
        try:
            if steps & {"open", "upgrade", "connect", "ack", "binary_ack"}:
                py = socketio.AsyncClient()
                clients.append(py)
                await py.connect(tap.url, headers={CLIENT_HEADER: "py"}, wait_timeout=timeout)
                await asyncio.sleep(settle)  # what a connect handler emits arrives before the first event
                if "ack" in steps:
                    run.results["ack"] = await py.call("echo", "hi", timeout=timeout)
                if "binary_ack" in steps:
                    run.results["binary_ack"] = await py.call("echo", BLOB, timeout=timeout)
                    # the tap records a binary event once its attachments are in, so they are there too
                    await trace.wait_for(timeout, client="py", dir="s2c", sio="binary_event", event="echo")
            if steps & {"post_reply", "refused"}:
                poller = socketio.AsyncClient()
                clients.append(poller)
                try:
                    await poller.connect(tap.url, headers={CLIENT_HEADER: "poller"}, transports=["polling"],
                                         namespaces=[UNKNOWN_NAMESPACE], wait_timeout=timeout)
                    run.results["refused"] = None
                except socketio.exceptions.ConnectionError as exc:
                    run.results["refused"] = str(exc)
                await trace.wait_for(timeout, client="poller", kind="http", dir="s2c",
                                     where=lambda r: (r.http or {}).get("method") == "POST")
        finally:
            await asyncio.gather(*(_disconnect(c, 2.0) for c in clients))
    return run


# ---------------------------------------------------------------- lining the runs up

_SID = re.compile(r'"sid":"[^"]*"')
ARROW = {"c2s": "→", "s2c": "←"}


def _show(record: Record) -> str:
    if record.binary:
        return f"{ARROW.get(record.dir, '')}<{len(base64.b64decode(record.raw or ''))} bytes>"
    return ARROW.get(record.dir, "") + _SID.sub('"sid":"…"', record.raw or "")


def _open_step(t: Trace) -> str:
    rec = t.first(client="py", eio="open")
    if rec is None or not isinstance(rec.data, dict):
        return "(no open packet)"
    data = rec.data
    keys = ["upgrades", "pingInterval", "pingTimeout", "maxPayload"]
    keys += sorted(k for k in data if k not in keys and k != "sid")
    return " ".join(f"{k}={json.dumps(data.get(k), separators=(',', ':'))}" for k in keys)


def _upgrade_step(t: Trace) -> str:
    recs = t.packets(client="py", transport="websocket", eio=("ping", "pong", "upgrade", "noop"),
                     where=lambda r: r.raw not in ("2", "3"))
    return " ".join(_show(r) for r in recs) or "(no upgrade)"


def _connect_step(t: Trace) -> str:
    sent = t.first(kind="packet", client="py", dir="c2s", sio="connect")
    if sent is None:
        return "(no CONNECT)"
    first_event = t.first(kind="packet", client="py", dir="c2s", where=lambda r: r.t >= sent.t and r.sio in (
        "event", "binary_event"))
    end = first_event.t if first_event else float("inf")
    answers = t.packets(client="py", dir="s2c", eio="message",
                        where=lambda r: sent.t <= r.t <= end and r is not first_event and r.event != "echo")
    return " ".join(_show(r) for r in [sent, *answers])


def _ack_step(t: Trace, binary: bool) -> str:
    kind, answer = ("binary_event", "binary_ack") if binary else ("event", "ack")
    sent = t.first(kind="packet", client="py", dir="c2s", sio=kind, event="echo", where=lambda r: r.ack is not None)
    if sent is None:
        return "(not sent)"
    got = t.first(kind="packet", client="py", dir="s2c", sio=("ack", "binary_ack"), ack=sent.ack)
    parts = [sent]
    if binary:
        parts += t.packets(client="py", dir="c2s", binary=True, where=lambda r: r.t >= sent.t)[:sent.attachments]
    if got is None:
        return " ".join(_show(r) for r in parts) + " (no ACK)"
    parts.append(got)
    if got.attachments:
        parts += t.packets(client="py", dir="s2c", binary=True, where=lambda r: r.t >= got.t)[:got.attachments]
    return " ".join(_show(r) for r in parts)


def _post_reply_step(t: Trace) -> str:
    post = t.first(client="poller", dir="c2s", kind="packet", where=lambda r: (r.http or {}).get("method") == "POST")
    reply = t.first(client="poller", dir="s2c", kind="http", where=lambda r: (r.http or {}).get("method") == "POST")
    if reply is None:
        return "(no POST answered)"
    return f"POST {post.raw if post else '?'} → {reply.http['status']} {reply.raw}"


def _refused_step(t: Trace) -> str:
    sent = t.first(kind="packet", client="poller", dir="c2s", sio="connect", nsp=UNKNOWN_NAMESPACE)
    got = t.first(kind="packet", client="poller", dir="s2c", nsp=UNKNOWN_NAMESPACE)
    return " ".join(_show(r) for r in (sent, got) if r is not None) or "(not tried)"


_EXTRACT = {
    "open": _open_step,
    "upgrade": _upgrade_step,
    "connect": _connect_step,
    "ack": lambda t: _ack_step(t, binary=False),
    "binary_ack": lambda t: _ack_step(t, binary=True),
    "post_reply": _post_reply_step,
    "refused": _refused_step,
}


@dataclass(frozen=True)
class Row:
    """One step of the scenario as each server played it (sids shown as …)."""

    step: str
    title: str
    cells: dict

    @property
    def same(self) -> bool:
        return len(set(self.cells.values())) <= 1


@dataclass(repr=False)
class Comparison:
    """The runs of one scenario against several servers, lined up step by step; shows as a table."""

    runs: dict[str, Run]
    rows: list[Row]

    @property
    def differences(self) -> list[str]:
        """The steps where the servers' wire traffic differs."""
        return [row.step for row in self.rows if not row.same]

    def __getitem__(self, step: str) -> Row:
        for row in self.rows:
            if row.step == step:
                return row
        raise KeyError(f"no step {step!r}; steps: {', '.join(r.step for r in self.rows)}")

    def table(self) -> str:
        width = max(len(n) for n in self.runs) if self.runs else 4
        lines = []
        for row in self.rows:
            lines.append(f"{row.title}{'' if row.same else '   ≠ differs'}")
            lines += [f"  {name:<{width}}  {text}" for name, text in row.cells.items()]
        return "\n".join(lines)

    __str__ = __repr__ = table

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<th>{esc(name)}</th>" for name in self.runs)
        body = []
        for row in self.rows:
            style = "" if row.same else " style='background:#fff3e0'"
            mark = "" if row.same else " <b style='color:#e65100'>≠</b>"
            cells = "".join(f"<td style='text-align:left'><code>{esc(text)}</code></td>"
                            for text in row.cells.values())
            body.append(f"<tr{style}><td style='text-align:left'>{esc(row.title)}{mark}</td>{cells}</tr>")
        return (f"<table><thead><tr><th>step</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
                f"<p><small>→ client to server, ← server to client; sids shown as …; rows marked ≠ differ."
                f"</small></p>")


def line_up(runs: dict[str, Run], steps: Iterable[str] = tuple(STEPS)) -> Comparison:
    """Line finished runs up step by step."""
    rows = [Row(step, STEPS[step], {name: _EXTRACT[step](run.trace) for name, run in runs.items()})
            for step in steps]
    return Comparison(runs, rows)


async def compare(*targets: Any, steps: Iterable[str] = tuple(STEPS), timeout: float = 5.0,
                  **named: Any) -> Comparison:
    """Run the same python client scenario against each server (concurrently) and line the traces up.

    ``await compare(lab=lab, node=ref)``; a target is a URL, a Lab, a PlainServer or a ReferenceServer.
    """
    steps = tuple(steps)
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown steps {unknown}; choose from {list(STEPS)}")
    all_targets = {_name_of(t, i): t for i, t in enumerate(targets)}
    all_targets.update(named)
    if not all_targets:
        raise ValueError("give at least one server")
    runs = await asyncio.gather(*(run_scenario(t, name, steps=steps, timeout=timeout)
                                  for name, t in all_targets.items()))
    return line_up({run.name: run for run in runs}, steps)


async def check_all(*targets: Any, max_wait: float = 5.0, **named: Any) -> dict:
    """Run the conformance checker on each server at once; returns {name: Report}."""
    from .conformance import check

    all_targets = {_name_of(t, i): t for i, t in enumerate(targets)}
    all_targets.update(named)
    reports = await asyncio.gather(*(check(url_of(t), max_wait=max_wait) for t in all_targets.values()))
    return dict(zip(all_targets, reports))


# ---------------------------------------------------------------- the lesson's self-check

def check_answers(answers: Any):
    """Self-check for lesson 11's "Try it" (a kind Feedback; unanswered questions are 'not answered yet')."""
    from .exercises import check, equals, one_of

    def exact_ok(answer: Any) -> tuple[bool, str]:
        if isinstance(answer, str) and answer.strip() == "ok":
            return True, "Right: Node answers `ok`, python-engineio `OK`; clients only look at the 200."
        if isinstance(answer, str) and answer.strip().lower() == "ok":
            return False, "Almost: look at the letter case in the 'answer to a POST' row."
        return False, "Not quite: look at the 'answer to a POST' row of the Node.js column."

    return check(answers, {
        "plain_ping_interval_ms": equals(
            1000, why="python-engineio truncates the seconds before multiplying: int(1.7) * 1000.",
            hint="The open packet carries int(ping_interval) * 1000 ms."),
        "node_post_body": exact_ok,
        "empty_err_message_against": one_of(
            ["python"], why="its 44 payload is a bare string, so packet.data.message is undefined.",
            hint="Which server's 44 payload has no message field?"),
    }, title="Self-check: two implementations")
