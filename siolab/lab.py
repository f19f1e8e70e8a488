"""The in-kernel lab: a python-socketio server, the tap in front of it, and named clients.

Everything runs on the kernel's own event loop (no threads, no ``asyncio.run``) and
binds 127.0.0.1 on free ports. ``await siolab.start()`` closes the lab the previous
call started, so re-running a cell never leaks a server, a port or a task.
"""
from __future__ import annotations

import asyncio
import logging
import traceback
import weakref
from typing import Any

import socketio
from engineio import packet as eio_packet
from aiohttp import web

from .server import SpecServer
from .tap import CLIENT_HEADER, Tap
from .trace import DEFAULT_LIMIT, Trace

_current: "Lab | None" = None
_open: "weakref.WeakSet[Lab]" = weakref.WeakSet()
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class _TraceLogHandler(logging.Handler):
    """Puts the library's warnings and errors (with tracebacks) into the trace, where learners look."""

    def __init__(self, trace: Trace, client: str | None, side: str, name_of=None) -> None:
        super().__init__(logging.WARNING)
        self.trace, self.client, self.side = trace, client, side
        self.name_of = name_of  # server side: Engine.IO sid -> client name (from the tap)
        self._last: tuple[str, float] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            client, sid = self.client, None
            first = record.args[0] if isinstance(record.args, tuple) and record.args else None
            if self.name_of is not None and isinstance(first, str) and message.startswith(first + ":"):
                sid, client = first, self.name_of(first)  # python-engineio's '<sid>: ...' messages
            if record.exc_info:
                tb = "".join(traceback.format_exception(*record.exc_info))
                self.trace.add(kind="error", client=client, sid=sid,
                               note=f"{self.side}: {message}\n{tb}".rstrip(),
                               error=f"the {self.side} logged an exception ({message}): "
                                     f"{record.exc_info[1].__class__.__name__}: {record.exc_info[1]}")
            else:
                note = f"{self.side} {record.levelname.lower()}: {message}"
                now = self.trace.now()
                if self._last is not None and self._last[0] == note and now - self._last[1] < 0.1:
                    return  # python-engineio logs some things twice in a row (e.g. 'Client is gone')
                self._last = (note, now)
                self.trace.add(kind="log", client=client, sid=sid, note=note)
        except Exception:  # logging must never raise into the library
            pass


# The libraries' INFO messages that explain a lost or refused connection (everything else at INFO is
# one line per packet, which the tap already records).
_INFO_PREFIXES = ("Connection failed, new attempt", "Reconnection successful", "Maximum reconnection attempts",
                  "Reconnect task aborted", "Engine.IO connection dropped", "Connection to namespace",
                  "Read loop: WebSocket connection was closed", "Write loop: WebSocket connection was closed",
                  "Unexpected error receiving packet", "Unexpected error decoding packet")
_INFO_EXACT = {"%s: Client is gone, closing socket", "%s: Failed websocket upgrade, no PING packet",
               "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead."}


class _TraceLogger(logging.Logger):
    """A logger that passes on warnings, errors and the few INFO messages worth a trace record.

    The filter runs before a LogRecord is made, so the per-packet INFO lines cost one string check.
    """

    def info(self, msg, *args, **kwargs):
        if isinstance(msg, str) and (msg.startswith(_INFO_PREFIXES) or msg in _INFO_EXACT):
            super().info(msg, *args, **kwargs)


def _logger(trace: Trace, name: str, client: str | None, side: str, name_of=None) -> logging.Logger:
    # A Logger made directly is not registered globally: nothing outlives the lab.
    logger = _TraceLogger(name, logging.INFO)
    handler = _TraceLogHandler(trace, client, side, name_of)
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def _record_disconnects(eio: Any, trace: Trace, side: str, name_of) -> None:
    """Record why an Engine.IO session ended (ping timeout, transport close...), then run the library's handler."""
    original = eio.handlers.get("disconnect")

    async def disconnect(*args):
        sid = args[0] if len(args) == 2 else None
        reason = args[-1] if args else None
        client = name_of(sid)
        who = f"the session of {client}" if client and side == "server" else "the session"
        trace.add(kind="log", client=client, sid=sid,
                  note=f"{side}: {who} ended: {reason} ({_REASONS.get(reason, 'see the records before')})")
        if original is not None:
            return await original(*args)
    eio.handlers["disconnect"] = disconnect


_REASONS = {
    "ping timeout": "no pong (server side) or no ping (client side) within pingInterval + pingTimeout",
    "transport close": "the connection closed (the other side went away, or the server stopped)",
    "transport error": "the connection failed or went silent (no packet within pingInterval + pingTimeout)",
    "client disconnect": "the client disconnected on purpose",
    "server disconnect": "the server disconnected on purpose",
}


class _Tasks:
    """Remembers the background tasks a library object starts, so close() can cancel leftovers,
    and records the exception of any that fails (python-socketio runs event handlers as such tasks,
    so an exception in a handler would otherwise only reach asyncio's "never retrieved" log).

    python-engineio's ``AsyncServer.shutdown()`` does not cancel its per-session ping tasks.
    """

    def __init__(self, trace: Trace, client: str | None, side: str) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.trace, self.client, self.side = trace, client, side

    def track(self, owner: Any) -> None:
        original = owner.start_background_task

        def start_background_task(target, *args, **kwargs):
            task = original(target, *args, **kwargs)
            self.tasks.add(task)
            task.add_done_callback(self._done)
            return task
        owner.start_background_task = start_background_task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.trace.add(kind="error", client=self.client, note=f"{self.side}: exception in a handler\n{tb}".rstrip(),
                       error=f"exception in a {self.side} handler: {exc.__class__.__name__}: {exc}")

    async def cancel(self) -> None:
        pending = [t for t in self.tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        self.tasks.clear()


class Lab:
    """A Socket.IO server with the recording tap in front and named clients, on the running loop.

    Safe by default: the server and the tap bind 127.0.0.1 (``host="0.0.0.0"`` opens them to other
    machines, and logs a warning). CORS is same-origin (``cors_allowed_origins=None`` means
    ``siolab.server.same_host_origin``): clients that send no Origin header (python, Node.js) and pages
    whose origin names the host the request was sent to (the lab's own URL, or the Jupyter server a page
    reaches the lab through with jupyter-server-proxy, also behind TLS) connect; a browser page from
    anywhere else is refused with 400 "... is not an accepted origin.", which the trace explains. To let a
    page on another origin in, name it: ``siolab.start(cors_allowed_origins=["http://localhost:8888"])``
    (``"*"`` accepts every origin, which is rarely what you want).
    """

    def __init__(self, *, ping_interval: float = 5, ping_timeout: float = 5, host: str = "127.0.0.1",
                 trace_limit: int | None = DEFAULT_LIMIT, cors_allowed_origins: Any = None,
                 **server_options: Any) -> None:
        for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r}: a positive number of seconds, e.g. 1 or 0.5")
        if host not in LOCAL_HOSTS:
            logging.getLogger("siolab").warning("the lab binds %s: it is reachable from other machines", host)
        self.host = host
        self.trace = Trace(limit=trace_limit)
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self._server_options = dict(server_options, ping_interval=self.ping_interval,
                                    ping_timeout=self.ping_timeout, cors_allowed_origins=cors_allowed_origins)
        log = _logger(self.trace, "siolab.server", None, "server", self._name_of)
        self.server = SpecServer(async_mode="aiohttp", logger=log, engineio_logger=log,
                                           **self._server_options)
        self._tasks = _Tasks(self.trace, None, "server")
        self._tasks.track(self.server.eio)
        _record_disconnects(self.server.eio, self.trace, "server", self._name_of)
        self.app = web.Application()
        self.server.attach(self.app)
        self.tap: Tap | None = None
        self.clients: dict[str, socketio.AsyncClient] = {}
        self._runner: web.AppRunner | None = None
        self.server_port: int | None = None
        self.closed = False

    def _name_of(self, sid: str | None) -> str | None:
        """The name of the client whose Engine.IO session this is (the tap learns it from the handshake)."""
        tap = getattr(self, "tap", None)
        if tap is None or not sid:
            return None
        tap.trace.settle()  # the open packet that names it may still be waiting to be decoded
        return tap.names.get(sid)

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """What clients connect to: the tap."""
        return self.tap.url

    @property
    def server_url(self) -> str:
        """The server itself, bypassing the tap (nothing sent there is traced)."""
        return f"http://{self.host}:{self.server_port}"

    async def open(self) -> "Lab":
        await self.start_server()
        self.tap = await Tap(self.server_url, self.trace, host=self.host, batch=True).start()
        _open.add(self)
        return self

    async def start_server(self) -> None:
        """Start (or restart, on the same port) the aiohttp app that runs the Socket.IO server."""
        self._runner = web.AppRunner(self.app, shutdown_timeout=0.5, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.server_port or 0, reuse_address=True)
        restart = self.server_port is not None
        await site.start()
        self.server_port = self._runner.addresses[0][1]
        if restart:
            self.trace.add(kind="log", note=f"server on port {self.server_port} started again")

    async def stop_server(self) -> None:
        """Stop the server abruptly, as if its process died: connections drop, sessions are lost."""
        runner, self._runner = self._runner, None
        if runner is not None:
            # Like a crash: the port stops accepting and every open connection (long-polls, WebSockets)
            # drops at once. Closing the sessions first would let the still-running server answer
            # 400 "Invalid session", and aiohttp's graceful cleanup would hold WebSockets open ~1 s.
            for site in list(runner.sites):
                await site.stop()
            for handler in list(runner.server.connections if runner.server is not None else ()):
                if handler.transport is not None:
                    handler.transport.abort()
            self.trace.add(kind="log", note=f"server on port {self.server_port} stopped")
        eio = self.server.eio
        for sock in list(eio.sockets.values()):
            try:
                await sock.close(wait=False, abort=True, reason=eio.reason.TRANSPORT_CLOSE)
            except Exception:
                pass
        eio.sockets.clear()
        await self._tasks.cancel()
        if runner is not None:
            await runner.cleanup()
        # a fresh app: aiohttp apps cannot be started twice
        self.app = web.Application()
        self.server.attach(self.app)

    async def restart_server(self) -> None:
        """Stop the server (if it runs) and start it again on the same port."""
        if self._runner is not None:
            await self.stop_server()
        await self.start_server()

    async def close(self) -> None:
        """Disconnect the clients, shut the server down, stop the tap; leaves no task, socket or port."""
        global _current
        if self.closed:
            return
        self.closed = True
        _open.discard(self)
        if _current is self:
            _current = None
        clients = list(self.clients.values())
        self.clients.clear()
        sockets = self._server_sockets()
        disconnects = [asyncio.ensure_future(c.disconnect()) for c in clients]
        if disconnects:
            await asyncio.wait(disconnects, timeout=0.2)
        # Sessions still open are closed by the server (instant, unlike a polling client's disconnect),
        # and long-polls still pending after a client's close are ended with a noop.
        for sock in sockets:
            try:
                if not sock.closed:
                    await asyncio.wait_for(sock.close(wait=False), 0.5)
                elif not sock.upgraded:
                    sock.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))
            except Exception:
                pass
        if disconnects:
            await asyncio.wait(disconnects, timeout=1.0)
        for task in disconnects:
            task.cancel()
        for client in clients:
            await client._siolab_tasks.cancel()
            try:
                await asyncio.wait_for(client.eio.http.close(), 0.5) if client.eio.http else None
            except Exception:
                pass
        await self._stop_servers()
        if self.tap is not None:
            await self.tap.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _server_sockets(self) -> list:
        """The Engine.IO sessions open on the lab's server (a cluster has several servers)."""
        return list(self.server.eio.sockets.values())

    async def _stop_servers(self) -> None:
        """Stop the server's background work; close() then stops the tap and the listening socket."""
        try:
            await asyncio.wait_for(self.server.shutdown(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        await self._tasks.cancel()

    async def __aenter__(self) -> "Lab":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------ clients
    def client(self, name: str = "client", *, transports: list[str] | str | None = None,
               namespaces: list[str] | None = None, auth: Any = None, headers: dict | None = None,
               wait_timeout: float = 5, connect: bool = True, **client_options: Any):
        """A python-socketio AsyncClient named ``name`` whose traffic goes through the tap.

        ``await lab.client("alice")`` returns it connected (python-socketio's default transports:
        polling, then the upgrade). With ``connect=False`` it is returned unconnected, so handlers
        can be registered first; then ``await lab.connect(client)``.
        """
        if name in self.clients:
            raise ValueError(f"a client named {name!r} already exists in this lab")
        log = _logger(self.trace, f"siolab.client.{name}", name, f"client {name}")
        client = socketio.AsyncClient(logger=log, engineio_logger=log, **client_options)
        client.siolab_name = name
        client._siolab_tasks = _Tasks(self.trace, name, f"client {name}")
        client._siolab_tasks.track(client.eio)
        _record_disconnects(client.eio, self.trace, f"client {name}", lambda sid: name)
        client._siolab_connect = dict(transports=transports, namespaces=namespaces, auth=auth,
                                      headers={**(headers or {}), CLIENT_HEADER: name}, wait_timeout=wait_timeout)
        self.clients[name] = client
        if not connect:
            return _ready(client)
        return self.connect(client)

    async def connect(self, client: socketio.AsyncClient) -> socketio.AsyncClient:
        """Connect a client made with ``lab.client(name, connect=False)`` through the tap."""
        await client.connect(self.url, **client._siolab_connect)
        return client

    def browser_client(self, name: str = "browser", **options: Any):
        """The official socket.io-client in this page (a widget), connected through the tap as ``name``."""
        from .widgets.browser_client import BrowserClient
        return BrowserClient(self, name, **options)


async def _ready(value):
    return value


async def start(*, replace: bool = True, servers: int | None = None, broker: Any = None, **options: Any) -> Lab:
    """Start a lab on the running loop; by default the lab the previous call started is closed first.

    ``servers=N`` (or ``broker=``) starts a cluster: N servers on a Redis-compatible broker behind a
    load-balancing tap (``siolab.cluster``).
    """
    global _current
    if replace and _current is not None:
        await _current.close()
    if servers is not None or broker is not None:
        from .cluster import Cluster
        lab = await Cluster(servers=2 if servers is None else servers, broker=broker, **options).open()
    else:
        lab = await Lab(**options).open()
    if replace:
        _current = lab
    return lab


def open_labs() -> list[Lab]:
    """Every lab in this process that is open (a notebook's last check: none)."""
    return [lab for lab in _open if not lab.closed]


def current() -> Lab | None:
    """The lab the last ``start()`` opened, if it is still open."""
    return _current
