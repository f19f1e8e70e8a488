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

    def __init__(self, trace: Trace, client: str | None, side: str) -> None:
        super().__init__(logging.WARNING)
        self.trace, self.client, self.side = trace, client, side

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                tb = "".join(traceback.format_exception(*record.exc_info))
                self.trace.add(kind="error", client=self.client,
                               note=f"{self.side}: {message}\n{tb}".rstrip(),
                               error=f"exception in a {self.side} handler: "
                                     f"{record.exc_info[1].__class__.__name__}: {record.exc_info[1]}")
            else:
                self.trace.add(kind="log", client=self.client, note=f"{self.side} {record.levelname.lower()}: "
                                                                    f"{message}")
        except Exception:  # logging must never raise into the library
            pass


def _logger(trace: Trace, name: str, client: str | None, side: str) -> logging.Logger:
    # A Logger made directly is not registered globally: nothing outlives the lab.
    logger = logging.Logger(name, logging.WARNING)
    logger.addHandler(_TraceLogHandler(trace, client, side))
    return logger


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
    """A Socket.IO server with the recording tap in front and named clients, on the running loop."""

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
        log = _logger(self.trace, "siolab.server", None, "server")
        self.server = SpecServer(async_mode="aiohttp", logger=log, engineio_logger=log,
                                           **self._server_options)
        self._tasks = _Tasks(self.trace, None, "server")
        self._tasks.track(self.server.eio)
        self.app = web.Application()
        self.server.attach(self.app)
        self.tap: Tap | None = None
        self.clients: dict[str, socketio.AsyncClient] = {}
        self._runner: web.AppRunner | None = None
        self.server_port: int | None = None
        self.closed = False

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
        self.tap = await Tap(self.server_url, self.trace, host=self.host).start()
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
        sockets = list(self.server.eio.sockets.values())
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
        try:
            await asyncio.wait_for(self.server.shutdown(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        await self._tasks.cancel()
        if self.tap is not None:
            await self.tap.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

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


async def _ready(value):
    return value


async def start(*, replace: bool = True, **options: Any) -> Lab:
    """Start a lab on the running loop; by default the lab the previous call started is closed first."""
    global _current
    if replace and _current is not None:
        await _current.close()
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
