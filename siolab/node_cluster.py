"""Several official Node.js servers running the learner's JavaScript, on one broker, behind the balancing tap.

``lab = await siolab.start(node=JS, servers=2)`` is the scaling story as a NestJS or Node.js app lives it:
N ``lab_server.js`` processes (A, B, ...), each ``new Server()`` with the official ``@socket.io/redis-adapter``
on the lab's Redis-compatible broker (``siolab.broker``), so ``io.emit`` and ``io.to(room).emit`` reach the
clients of every server; the same ``BalancingTap`` as the python cluster in front (sticky by default,
``lab.tap.balance("round-robin")`` breaks long-polling the way a balancer without sticky sessions does).
What each server's JavaScript logs or throws names its server in the trace.
"""
from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from .base import BaseLab
from .broker import Broker
from .cluster import BalancingTap, _policy, server_table, wait_for_subscribers
from .node_config import node_options, origins
from .node_lab import HINT, LAB_SCRIPT, NodeServer, record_exit, record_message
from .node_process import NodeProcess
from .process import ServerProcess
from .tap import Tap
from .trace import DEFAULT_LIMIT, Trace

ADAPTER_KEY = "socket.io"  # the Redis adapter's default channel prefix: socket.io#/# for the main namespace


class NodeCluster(BaseLab):
    """``servers`` Node.js servers running ``code`` with the Redis adapter, behind a balancing tap.

    ``lab.nodes["A"]`` is server A's process (``stop()``, ``start()``, ``restart()``, as ``lab.node`` of a
    node lab); ``lab.node`` is server A's. ``lab.where(client)`` names the server that holds a client's
    session; ``lab.table()`` puts the server in front of every record.
    """

    def __init__(self, code: str, *, servers: int = 2, broker: Any = None, policy: str = "sticky",
                 ping_interval: float = 5, ping_timeout: float = 5, host: str = "127.0.0.1",
                 trace_limit: int | None = DEFAULT_LIMIT, cors_allowed_origins: Any = None,
                 start_timeout: float = 20, **server_options: Any) -> None:
        if not isinstance(code, str):
            raise TypeError(f"node={code!r}: the server's JavaScript, as a string")
        if not isinstance(servers, int) or isinstance(servers, bool) or not 1 <= servers <= 26:
            raise ValueError(f"servers={servers!r}: a whole number from 1 to 26")
        super().__init__(ping_interval=ping_interval, ping_timeout=ping_timeout, host=host, trace_limit=trace_limit,
                         cors_allowed_origins=cors_allowed_origins)
        self.code, self.policy, self._count, self._start_timeout = code, _policy(policy), servers, start_timeout
        self.node_options = node_options(ping_interval=ping_interval, ping_timeout=ping_timeout,
                                         cors_allowed_origins=cors_allowed_origins, **server_options)
        self._origins = origins(cors_allowed_origins)
        path = self.node_options.get("path")
        if isinstance(path, str) and path.strip("/"):
            self.socketio_path = path.strip("/")
        self._own_broker = not isinstance(broker, Broker)  # a Broker passed in is the caller's to stop
        self.broker = broker if isinstance(broker, Broker) else Broker(broker, host=self.host, trace=self.trace)
        self.nodes: dict[str, NodeServer] = {}

    @property
    def server(self) -> Any:
        raise AttributeError(f"this lab's servers are Node.js: their handlers are in the JavaScript you gave "
                             f"siolab.start(node=..., servers=...), not python objects. lab.nodes['A'] is server "
                             f"A's process; {HINT}")

    @property
    def node(self) -> NodeServer:
        """Server A's process."""
        return next(iter(self.nodes.values()))

    @property
    def server_url(self) -> str:
        """Server A, bypassing the tap."""
        return self.node.url

    @property
    def server_urls(self) -> dict[str, str]:
        return {name: node.url for name, node in self.nodes.items()}

    # ------------------------------------------------------------ BaseLab
    def _processes(self) -> list[ServerProcess]:
        return []  # no python-socketio server

    async def _start_servers(self) -> None:
        """The broker, then the servers (started side by side), each subscribed before the tap starts."""
        await self.broker.start()
        config = {"code": self.code, "options": self.node_options, "origins": self._origins,
                  "adapter": {"url": self.broker.url, "key": ADAPTER_KEY}}
        for i in range(self._count):
            name = chr(ord("A") + i)
            process = NodeProcess(LAB_SCRIPT, input=json.dumps(config), on_message=partial(self._on_message, name),
                                  on_exit=partial(self._on_exit, name), start_timeout=self._start_timeout)
            self.nodes[name] = NodeServer(self, process, name)
        await asyncio.gather(*(node.process.start() for node in self.nodes.values()))
        await self.wait_subscribed()

    def _make_tap(self) -> Tap:
        return BalancingTap(self.server_urls, self.trace, host=self.host, policy=self.policy, batch=True)

    async def _end_sessions(self, sessions: list) -> None:
        await self._close_nodes()  # io.close() on each: every session closed, pending long-polls answered

    async def _stop_servers(self) -> None:
        await self._close_nodes()

    async def _close_nodes(self) -> None:
        await asyncio.gather(*(node.close() for node in self.nodes.values()), return_exceptions=True)

    async def close(self) -> None:
        """Clients, servers (and their adapters' connections), the tap, then the broker."""
        try:
            await super().close()
        finally:
            if self._own_broker:
                await self.broker.stop()

    async def wait_subscribed(self, timeout: float = 5.0) -> int:
        """Wait until every running server's adapter listens on the broker; returns how many do. (Each
        subscribes to the main namespace's request channel; its broadcasts come on a pattern, which
        PUBSUB NUMPAT counts once for all servers.)"""
        want = sum(1 for node in self.nodes.values() if node.running)
        try:
            return await wait_for_subscribers(self.broker, f"{ADAPTER_KEY}-request#/#", want, timeout)
        except AssertionError as exc:
            raise AssertionError(f"Redis adapters not all subscribed: {exc}") from None

    # ------------------------------------------------------------ one server at a time
    def _pick(self, name: str | None) -> list[NodeServer]:
        if name is None:
            return list(self.nodes.values())
        if name not in self.nodes:
            raise KeyError(f"no server {name!r}: the servers are {', '.join(self.nodes)}")
        return [self.nodes[name]]

    async def start_server(self, name: str | None = None) -> None:
        """Start a stopped server again, on the same port (every stopped one if ``name`` is None)."""
        for node in self._pick(name):
            await node.start()
        await self.wait_subscribed()

    async def stop_server(self, name: str | None = None) -> None:
        """Kill a server (every server if ``name`` is None), as if its process died."""
        for node in self._pick(name):
            await node.stop()

    async def restart_server(self, name: str | None = None) -> None:
        await self.stop_server(name)
        await self.start_server(name)

    def where(self, client: Any) -> str | None:
        """The server that holds this client's Engine.IO session (its handshake went there)."""
        client = self.clients.get(client) if isinstance(client, str) else client
        sid = getattr(getattr(client, "eio", None), "sid", None)
        tap = self.tap
        return tap.routes.get(sid) if sid and isinstance(tap, BalancingTap) else None

    def table(self, trace: Trace | None = None, hide_heartbeats: bool = True, limit: int | None = 200) -> str:
        """The trace as text with a first column naming the server of each record."""
        return server_table(trace if trace is not None else self.trace, hide_heartbeats, limit)

    # ------------------------------------------------------------ what the JavaScript reports
    def _on_message(self, name: str, message: dict) -> None:
        record_message(self.trace, message, self._name_of(message.get("sid")), server=name)

    def _on_exit(self, name: str, returncode: int | None) -> None:
        record_exit(self.trace, returncode, self.nodes[name].stderr, f"lab.start_server({name!r})", server=name)

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.url if self.tap is not None else "not started"
        return f"<NodeCluster {state}: {len(self.nodes)} Node.js servers {', '.join(self.nodes)}>"


__all__ = ["NodeCluster", "ADAPTER_KEY"]
