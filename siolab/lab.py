"""The in-kernel lab: a python-socketio server, the tap in front of it, and named clients.

Everything runs on the kernel's own event loop (no threads, no ``asyncio.run``) and
binds 127.0.0.1 on free ports. ``await siolab.start()`` closes the lab the previous
call started, so re-running a cell never leaks a server, a port or a task.
"""
from __future__ import annotations

from typing import Any

from aiohttp import web

from . import registry
from .base import LOCAL_HOSTS, BaseLab
from .cluster import Cluster
from .node_cluster import NodeCluster
from .node_lab import NodeLab
from .process import ServerProcess
from .registry import current, open_labs
from .server import SpecServer
from .tap import Tap
from .trace import DEFAULT_LIMIT


class Lab(BaseLab):
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
        super().__init__(ping_interval=ping_interval, ping_timeout=ping_timeout, host=host,
                         trace_limit=trace_limit, cors_allowed_origins=cors_allowed_origins, **server_options)
        self.server = SpecServer(async_mode="aiohttp", **self.server_options,
                                 instruments=self.server_instruments("server", logger_name="siolab.server"))
        self.process = ServerProcess(self.server, self.trace, host=self.host)

    def _processes(self) -> list[ServerProcess]:
        return [self.process]

    async def _start_servers(self) -> None:
        await self.process.start()

    def _make_tap(self) -> Tap:
        return Tap(self.server_url, self.trace, host=self.host, batch=True)

    @property
    def server_url(self) -> str:
        """The server itself, bypassing the tap (nothing sent there is traced)."""
        return self.process.url

    @property
    def server_port(self) -> int | None:
        return self.process.port

    @property
    def app(self) -> web.Application | None:
        """The aiohttp app the server runs in (a fresh one each time it starts)."""
        return self.process.app

    # ------------------------------------------------------------ the server process
    async def start_server(self) -> None:
        """Start (or restart, on the same port) the aiohttp app that runs the Socket.IO server."""
        await self.process.start()

    async def stop_server(self) -> None:
        """Stop the server abruptly, as if its process died: connections drop, sessions are lost."""
        await self.process.crash()

    async def restart_server(self) -> None:
        """Stop the server (if it runs) and start it again on the same port."""
        if self.process.running:
            await self.stop_server()
        await self.start_server()


async def start(*, replace: bool = True, servers: int | None = None, broker: Any = None, node: str | None = None,
                **options: Any) -> BaseLab:
    """Start a lab on the running loop; by default the lab the previous call started is closed first.

    ``servers=N`` (or ``broker=``) starts a cluster: N servers on a Redis-compatible broker behind a
    load-balancing tap (``siolab.cluster``). ``node=JS`` runs the official Node.js server with that
    JavaScript instead of python-socketio (``siolab.node_lab``); with ``servers=N`` too, N Node.js
    servers with the official Redis adapter on the broker (``siolab.node_cluster``).
    """
    previous = registry.current()
    if replace and previous is not None:
        await previous.close()
    if node is not None and (servers is not None or broker is not None):
        lab: BaseLab = await NodeCluster(node, servers=2 if servers is None else servers, broker=broker,
                                         **options).open()
    elif node is not None:
        lab = await NodeLab(node, **options).open()
    elif servers is not None or broker is not None:
        lab = await Cluster(servers=2 if servers is None else servers, broker=broker, **options).open()
    else:
        lab = await Lab(**options).open()
    if replace:
        registry.make_current(lab)
    return lab


__all__ = ["Lab", "start", "current", "open_labs", "LOCAL_HOSTS"]
