"""What every lab has, whatever its servers: the trace, the tap in front, named clients, and the order
in which it all closes so that nothing is left behind.

``siolab.lab.Lab`` (one server) and ``siolab.cluster.Cluster`` (several on a broker) build on
``BaseLab``: each says which server processes it runs and which tap stands in front of them.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import socketio
from engineio import packet as eio_packet

from . import registry
from .client import LabClient
from .instrument import Instruments
from .protocol import explain
from .tap import CLIENT_HEADER, Tap
from .trace import DEFAULT_LIMIT, Trace

if TYPE_CHECKING:
    from .process import ServerProcess

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
AnyLab = TypeVar("AnyLab", bound="BaseLab")


class BaseLab:
    """The trace, the tap and the clients of a lab; subclasses start the servers (``_start_servers``),
    list them (``_processes``) and make the tap (``_make_tap``)."""

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
        # what each of the lab's python-socketio servers is made with
        self.server_options = dict(server_options, ping_interval=self.ping_interval,
                                   ping_timeout=self.ping_timeout, cors_allowed_origins=cors_allowed_origins)
        self.tap: Tap | None = None
        self.socketio_path = "socket.io"  # where the lab's clients connect (a lab whose server has a path changes it)
        self.clients: dict[str, LabClient] = {}
        self.js_clients: dict[str, Any] = {}  # name -> JsClient: socket.io-client in Node.js (js_client())
        self.closed = False

    # ------------------------------------------------------------ what a subclass provides
    def _processes(self) -> list[ServerProcess]:
        """The server processes of this lab."""
        raise NotImplementedError

    async def _start_servers(self) -> None:
        raise NotImplementedError

    def _make_tap(self) -> Tap:
        raise NotImplementedError

    def server_instruments(self, side: str, *, logger_name: str, server: str | None = None) -> Instruments:
        """The instruments of one of this lab's servers: records name the client of a session (from the tap)."""
        return Instruments(self.trace, side, logger_name=logger_name, server=server, name_of=self._name_of)

    def _name_of(self, sid: str | None) -> str | None:
        """The name of the client whose Engine.IO session this is (the tap learns it from the handshake)."""
        tap = self.tap
        if tap is None or not sid:
            return None
        tap.trace.settle()  # the open packet that names it may still be waiting to be decoded
        return tap.names.get(sid)

    # ------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """What clients connect to: the tap."""
        return self.tap.url

    async def open(self: AnyLab) -> AnyLab:
        """Start the servers, then the tap in front of them (on failure, close what started)."""
        try:
            await self._start_servers()
            self.tap = await self._make_tap().start()
        except BaseException:
            await self.close()
            raise
        registry.add(self)
        return self

    async def close(self) -> None:
        """Disconnect the clients, shut the servers down, stop the tap; leaves no task, socket or port."""
        if self.closed:
            return
        self.closed = True
        registry.discard(self)
        js_clients = list(self.js_clients.values())
        self.js_clients.clear()
        if js_clients:
            await asyncio.gather(*(c.close() for c in js_clients), return_exceptions=True)
        clients = list(self.clients.values())
        self.clients.clear()
        sessions = self._python_sessions()  # taken now: those the clients' disconnects end are in it too
        disconnects = [asyncio.ensure_future(c.disconnect()) for c in clients]
        if disconnects:
            await asyncio.wait(disconnects, timeout=0.2)
        await self._end_sessions(sessions)
        if disconnects:
            await asyncio.wait(disconnects, timeout=1.0)
        for task in disconnects:
            task.cancel()
        for client in clients:
            await client.tasks.cancel()
            try:
                await asyncio.wait_for(client.eio.http.close(), 0.5) if client.eio.http else None
            except Exception:
                pass
        await self._stop_servers()
        if self.tap is not None:
            await self.tap.close()

    def _python_sessions(self) -> list:
        """The Engine.IO sessions of this lab's python-socketio servers."""
        return [s for p in self._processes() for s in p.server.eio.sockets.values()]

    async def _end_sessions(self, sessions: list) -> None:
        """Sessions still open are closed by the server (instant, unlike a polling client's disconnect),
        and long-polls still pending after a client's close are ended with a noop."""
        for sock in sessions:
            try:
                if not sock.closed:
                    await asyncio.wait_for(sock.close(wait=False), 0.5)
                elif not sock.upgraded:
                    sock.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))
            except Exception:
                pass

    async def _stop_servers(self) -> None:
        """Stop every server process (its sessions, background work and port)."""
        for process in self._processes():
            await process.stop()

    async def __aenter__(self: AnyLab) -> AnyLab:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------ clients
    def client(self, name: str = "client", *, transports: list[str] | str | None = None,
               namespaces: list[str] | None = None, auth: Any = None, headers: dict | None = None,
               wait_timeout: float = 5, connect: bool = True, socketio_path: str | None = None,
               **client_options: Any):
        """A python-socketio AsyncClient (a ``LabClient``) named ``name`` whose traffic goes through the tap.

        ``await lab.client("alice")`` returns it connected (python-socketio's default transports:
        polling, then the upgrade). With ``connect=False`` it is returned unconnected, so handlers
        can be registered first; then ``await lab.connect(client)``.
        """
        if name in self.clients:
            raise ValueError(f"a client named {name!r} already exists in this lab")
        instruments = Instruments(self.trace, f"client {name}", logger_name=f"siolab.client.{name}", client=name)
        client = LabClient(name, instruments, connect_options=dict(
            transports=transports, namespaces=namespaces, auth=auth,
            headers={**(headers or {}), CLIENT_HEADER: name}, wait_timeout=wait_timeout,
            socketio_path=socketio_path or self.socketio_path), **client_options)
        self.clients[name] = client
        if not connect:
            return _ready(client)
        return self.connect(client)

    async def connect(self, client: LabClient) -> LabClient:
        """Connect a client made with ``lab.client(name, connect=False)`` through the tap. If the server
        refuses a namespace, the ConnectionError says what the server's CONNECT_ERROR said."""
        since = self.trace.now()
        try:
            await client.connect(self.url, **client.connect_options)
        except socketio.exceptions.ConnectionError as exc:
            said = self._refusal(client.name, since)
            if said is None:
                raise
            raise socketio.exceptions.ConnectionError(f"{exc} (the server said: {said})") from exc
        return client

    def _refusal(self, name: str, since: float) -> str | None:
        """What the server's last CONNECT_ERROR to this client since ``since`` said (its message)."""
        refusals = self.trace.packets(client=name, dir="s2c", sio="connect_error", where=lambda r: r.t >= since)
        if not refusals:
            return None
        try:
            data = explain(refusals[-1].raw or "").data
        except Exception:
            return None
        if isinstance(data, dict) and "message" in data:
            return str(data["message"])
        return None if data is None else str(data)

    def view(self, **options: Any):
        """The live trace view of this lab (``siolab.widgets.TraceView(trace)`` for any other trace)."""
        from .widgets import TraceView
        return TraceView(self.trace, **options)

    def sequence(self, **options: Any):
        """A live client/server sequence diagram of this lab (``siolab.widgets.SequenceDiagram(trace)``)."""
        from .widgets import SequenceDiagram
        return SequenceDiagram(self.trace, **options)

    async def js_client(self, name: str = "js", *, wait: bool = True, package: str = "socket.io-client",
                        debug: str | None = None, **options: Any):
        """The official socket.io-client in a Node.js process (``siolab.js_client.JsClient``), connected
        through the tap as ``name``; ``options`` are ``io(url, options)``'s, e.g. ``transports=["polling"]``,
        ``reconnectionDelay=200``. Waits for its ``connect`` (or ``connect_error``) unless ``wait=False``.
        ``debug="socket.io-client:*"`` turns on the client's own debug output (``client.debug_lines``),
        what ``localStorage.debug`` does in a browser."""
        from .js_client import JsClient
        old = self.js_clients.pop(name, None)
        if old is not None:
            await old.close()
        if self.socketio_path != "socket.io":
            options.setdefault("path", f"/{self.socketio_path}/")
        client = JsClient(self.trace, self.url, name, options=options, package=package, debug=debug)
        self.js_clients[name] = client
        await client.start()
        if wait:
            first = asyncio.ensure_future(client.wait("connect", 10))
            refused = asyncio.ensure_future(client.wait("connect_error", 10))
            done, pending = await asyncio.wait({first, refused}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            done.pop().result()
        return client

    def browser_client(self, name: str = "browser", **options: Any):
        """The official socket.io-client in this page (a widget), connected through the tap as ``name``."""
        from .widgets.browser_client import BrowserClient
        return BrowserClient(self, name, **options)


async def _ready(value: Any) -> Any:
    return value


__all__ = ["BaseLab", "LOCAL_HOSTS"]
