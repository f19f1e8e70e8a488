"""The lab with the official Node.js server running the learner's JavaScript, behind the same tap.

``lab = await siolab.start(node=JS)`` runs ``siolab/node/lab_server.js``: the ``socket.io`` package
pinned in ``siolab/node`` (the interop tests' version), with ``JS`` run where ``io`` is the Server. The
clients, the trace, the views and the fault switches are the python lab's; the handlers are in the
JavaScript, so ``lab.server`` has no python object: ``lab.node`` is the process (pid, port, stderr,
``stop()``, ``start()``, ``restart()``). What the JavaScript says (``console.log``) and throws (caught;
the server goes on) lands in the trace next to the wire.
"""
from __future__ import annotations

import json
from typing import Any

from .base import BaseLab
from .instrument import record_session_end
from .node_config import node_options, origins
from .node_env import NODE_DIR, installed
from .node_process import NodeError, NodeProcess, NodeSyntaxError, debug_env, debug_lines
from .process import ServerProcess
from .tap import Tap
from .trace import DEFAULT_LIMIT, Trace

LAB_SCRIPT = NODE_DIR / "lab_server.js"
HINT = "the server runs the JavaScript: lab.node is its process (pid, port, stderr, stop/start/restart)"


class NodeServer:
    """``lab.node``: the Node.js process of a node lab. ``stop()`` kills it as a crash would (every
    connection drops, the sessions are lost), ``start()`` runs the same JavaScript again on the same port
    (its state starts afresh, as a real restart's would), ``restart()`` does both."""

    def __init__(self, lab: BaseLab, process: NodeProcess, name: str | None = None) -> None:
        self._lab, self.process, self.name = lab, process, name  # name: the server's letter in a node cluster

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process.running else None

    @property
    def port(self) -> int | None:
        return self.process.port

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def stderr(self) -> str:
        """What Node.js wrote to stderr (the last lines): warnings, and why it died if it did."""
        return self.process.stderr

    @property
    def debug_lines(self) -> list[str]:
        """What the server's ``debug`` module wrote (``debug=`` on start), as ``DEBUG=socket.io* node app.js``
        prints it; newest last."""
        return debug_lines(self.process.stderr)

    @property
    def version(self) -> str | None:
        """The socket.io version the server runs."""
        modules = installed()
        try:
            return json.loads((modules / "socket.io" / "package.json").read_text())["version"] if modules else None
        except (OSError, ValueError, KeyError):
            return None

    async def start(self) -> None:
        """Start the server again (on the same port) if it is stopped."""
        if self.process.running:
            return
        again = self.process.port is not None
        await self.process.start()
        if again:
            self._lab.trace.add(kind="log", server=self.name,
                                note=f"server on port {self.port} started again (Node.js pid {self.pid})")

    async def stop(self) -> None:
        """Kill the server, as if its process died."""
        if self.process.running:
            await self.process.stop(crash=True)
            self._lab.trace.add(kind="log", server=self.name, note=f"server on port {self.port} stopped")

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        """Shut the server down as it is asked to (its sessions closed), then the process ends."""
        await self.process.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid} on {self.url}" if self.running else "stopped"
        return f"<Node.js socket.io {self.version or '?'} server, {state}>"


class NodeLab(BaseLab):
    """A lab whose server is the official Node.js ``socket.io`` running ``code`` (JavaScript with ``io`` in
    scope), behind the tap. Options are the python lab's (``ping_interval`` in seconds, ``path``,
    ``transports``, ``cors_allowed_origins``, ``connection_state_recovery``...; ``node_options={...}``
    goes to ``new Server()`` as is, last). CORS is same-origin by default, as in the python lab.
    ``debug="socket.io*"`` sets ``DEBUG`` for the server (``lab.node.debug_lines``).
    """

    def __init__(self, code: str, *, ping_interval: float = 5, ping_timeout: float = 5, host: str = "127.0.0.1",
                 trace_limit: int | None = DEFAULT_LIMIT, cors_allowed_origins: Any = None,
                 start_timeout: float = 20, debug: str | None = None, **server_options: Any) -> None:
        if not isinstance(code, str):
            raise TypeError(f"node={code!r}: the server's JavaScript, as a string")
        super().__init__(ping_interval=ping_interval, ping_timeout=ping_timeout, host=host, trace_limit=trace_limit,
                         cors_allowed_origins=cors_allowed_origins)
        self.code = code
        self.node_options = node_options(ping_interval=ping_interval, ping_timeout=ping_timeout,
                                         cors_allowed_origins=cors_allowed_origins, **server_options)
        path = self.node_options.get("path")
        if isinstance(path, str) and path.strip("/"):
            self.socketio_path = path.strip("/")
        config = {"code": code, "options": self.node_options, "origins": origins(cors_allowed_origins)}
        process = NodeProcess(LAB_SCRIPT, input=json.dumps(config), on_message=self._on_message,
                              on_exit=self._on_exit, start_timeout=start_timeout, **debug_env(debug))
        self.node = NodeServer(self, process)

    @property
    def server(self) -> Any:
        raise AttributeError(f"this lab's server is Node.js: its handlers are in the JavaScript you gave "
                             f"siolab.start(node=...), not a python object. {HINT}")

    @property
    def server_url(self) -> str:
        """The server itself, bypassing the tap (nothing sent there is traced)."""
        return self.node.url

    @property
    def server_port(self) -> int | None:
        return self.node.port

    # ------------------------------------------------------------ BaseLab
    def _processes(self) -> list[ServerProcess]:
        return []  # no python-socketio server

    async def _start_servers(self) -> None:
        await self.node.process.start()

    def _make_tap(self) -> Tap:
        return Tap(self.server_url, self.trace, host=self.host, batch=True)

    async def _end_sessions(self, sessions: list) -> None:
        await self.node.close()  # io.close(): every session closed, pending long-polls answered

    async def _stop_servers(self) -> None:
        await self.node.close()

    # ------------------------------------------------------------ the server process, as in the python lab
    async def start_server(self) -> None:
        await self.node.start()

    async def stop_server(self) -> None:
        """Kill the Node.js server, as if its process died: connections drop, sessions are lost."""
        await self.node.stop()

    async def restart_server(self) -> None:
        await self.node.restart()

    # ------------------------------------------------------------ what the JavaScript reports
    def _on_message(self, message: dict) -> None:
        record_message(self.trace, message, self._name_of(message.get("sid")))

    def _on_exit(self, returncode: int | None) -> None:
        record_exit(self.trace, returncode, self.node.stderr, "lab.node.start()")

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.url if self.tap is not None else "not started"
        return f"<NodeLab {state}: {self.node!r}>"


def record_message(trace: Trace, message: dict, client: str | None, server: str | None = None) -> None:
    """What a lab_server.js process said on stdout (console, a caught throw, a session's end, a refusal)
    as a record; ``server`` names the process in a node cluster."""
    kind, sid = message.get("type"), message.get("sid")
    if kind == "log":
        trace.add(kind="log", client=client, sid=sid, server=server,
                  note=f"server console.{message.get('level', 'log')}: {message.get('text', '')}")
    elif kind == "stdout":
        trace.add(kind="log", client=client, sid=sid, server=server, note=f"server stdout: {message.get('text', '')}")
    elif kind == "error":
        name, text, where = message.get("name"), message.get("message"), message.get("where") or "the server"
        trace.add(kind="error", client=client, sid=sid, server=server,
                  note=f"server: exception in {where} (caught; the server goes on)\n{message.get('stack')}",
                  error=f"exception in {where}: {name}: {text}")
    elif kind == "closed":
        record_session_end(trace, "server", sid, message.get("reason"), client=client, server=server)
    elif kind == "refused":
        detail = f": {message['detail']}" if message.get("detail") else ""
        trace.add(kind="log", server=server, note=f"server: engine.io refused a request ({message.get('message')}, "
                                                  f"code {message.get('code')}){detail}")


def record_exit(trace: Trace, returncode: int | None, stderr: str, again: str, server: str | None = None) -> None:
    """A Node.js server that exited without being asked to, with the end of its stderr."""
    tail = stderr.strip()
    trace.add(kind="error", server=server,
              note=f"the Node.js server exited by itself (code {returncode}); {again} starts it again"
                   + (f"\nstderr:\n{tail}" if tail else ""),
              error=f"the Node.js server exited (code {returncode})")


__all__ = ["NodeLab", "NodeServer", "NodeError", "NodeSyntaxError", "LAB_SCRIPT"]
