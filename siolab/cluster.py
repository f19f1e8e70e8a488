"""Several Socket.IO servers on one broker, behind a load-balancing tap.

``await siolab.start(servers=2)`` starts a Redis-compatible broker as a child process
(``siolab.broker``), N python-socketio servers (A, B, ...), each on its own port with its own
``AsyncRedisManager`` on the broker, so emits, rooms and broadcasts cross servers, and a
``BalancingTap`` in front that records like the tap and names in each record the server the
exchange went to. A subscriber on the managers' channel puts every broker message into the same
trace. Each server's own records (its log, its sessions' ends, its handlers' exceptions) name it too.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Callable, Iterator

import socketio

from .base import BaseLab
from .broker import (BROKER_NAMES, Broker, BrokerManager, BrokerWatch, describe_message, find_broker,
                     kill_quietly)
from .process import ServerProcess
from .server import SpecServer
from .tap import Tap
from .record import is_heartbeat
from .trace import Record, Trace

CHANNEL = "socketio"  # python-socketio's default pub/sub channel
POLICIES = ("round-robin", "sticky")

# What a separate process (a worker, a cron job) runs to reach every client: a write-only manager.
EMITTER = """\
import asyncio, json, sys
import socketio

async def main(url, channel, event, data, room):
    manager = socketio.AsyncRedisManager(url, channel=channel, write_only=True)
    await manager.emit(event, data, room=room)    # one PUBLISH on the channel; every server delivers it
    await manager.redis.aclose()

asyncio.run(main(*json.loads(sys.argv[1])))
"""


# ---------------------------------------------------------------- one server, the group


class Member(ServerProcess):
    """One server of the cluster, as if it were its own process: a SpecServer with its own
    BrokerManager, aiohttp app, port and background tasks; its records name it."""

    def __init__(self, lab: "Cluster", name: str) -> None:
        instruments = lab.server_instruments(f"server {name}", logger_name=f"siolab.server.{name}", server=name)
        self.manager = BrokerManager(lab.broker.url, channel=lab.channel, logger=instruments.logger)
        server = SpecServer(async_mode="aiohttp", client_manager=self.manager, instruments=instruments,
                            **lab.server_options)
        super().__init__(server, lab.trace, host=lab.host, name=name)

    def __repr__(self) -> str:
        return f"<server {self.name} {self.url} {len(self.server.eio.sockets)} sessions>"

    async def start(self) -> None:
        """Listen (on the same port again after a stop) and subscribe to the broker."""
        await super().start()
        # python-socketio subscribes on the first connection; the lab does it now, so a broadcast from
        # another server reaches this one from the start.
        self.server.manager_initialized = True
        self.manager.initialize()

    async def end_work(self) -> None:
        """The manager's listener and broker connections too (python-socketio's shutdown leaves them)."""
        await self.manager.close()
        await super().end_work()


class Servers:
    """The cluster's servers. ``on``/``event``/``register_namespace`` register on every server (each
    process of a real deployment runs the same code); anything else (``emit``, ``enter_room``...) is
    server A's. ``servers["B"]`` or ``servers[1]`` is one server."""

    def __init__(self, members: list[Member]) -> None:
        self._members = members

    def __getitem__(self, key: int | str) -> socketio.AsyncServer:
        if isinstance(key, str):
            for m in self._members:
                if m.name == key:
                    return m.server
            raise KeyError(f"no server {key!r}: the servers are {', '.join(m.name for m in self._members)}")
        return self._members[key].server

    def __iter__(self) -> Iterator[socketio.AsyncServer]:
        return iter([m.server for m in self._members])

    def __len__(self) -> int:
        return len(self._members)

    def on(self, event: str, handler: Callable | None = None, namespace: str | None = None):
        def register(handler: Callable) -> Callable:
            for m in self._members:
                m.server.on(event, handler, namespace=namespace)
            return handler
        return register(handler) if handler is not None else register

    def event(self, handler: Callable) -> Callable:
        return self.on(handler.__name__, handler)

    def register_namespace(self, namespace_handler: Any) -> None:
        for m in self._members:
            m.server.register_namespace(namespace_handler)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._members[0].server, name)

    def __repr__(self) -> str:
        return f"<Servers {', '.join(m.name for m in self._members)}>"


# ---------------------------------------------------------------- the balancing tap


class BalancingTap(Tap):
    """The tap in front of several servers. ``round-robin``: every request to the next server, no
    stickiness (what breaks long-polling); ``sticky``: a session's requests go where its handshake
    went (the sid is learned from the open packet, over polling or as the first WebSocket frame)."""

    def __init__(self, upstreams: dict[str, str], trace: Trace | None = None, *, policy: str = "sticky",
                 **options: Any) -> None:
        if not upstreams:
            raise ValueError("a balancing tap needs at least one upstream server")
        super().__init__(next(iter(upstreams.values())), trace, **options)
        self.upstreams = {name: url.rstrip("/") for name, url in upstreams.items()}
        self._by_url = {url: name for name, url in self.upstreams.items()}
        self.routes: dict[str, str] = {}  # Engine.IO sid -> the server its handshake went to
        self.policy = _policy(policy)
        self._turn = 0
        self._unsubscribe = self.trace.subscribe(self._learn)

    def balance(self, policy: str) -> None:
        """Switch the balancing at run time (recorded): ``"round-robin"`` or ``"sticky"``.
        The next new session goes to the first server."""
        self.policy, self._turn = _policy(policy), 0
        what = ("every request goes to the next server, whatever its session" if self.policy == "round-robin"
                else "a session's requests go to the server that answered its handshake (by sid)")
        self.trace.add(kind="log", note=f"load balancer: {self.policy}: {what}")

    def upstream_for(self, request: Any, sid: str | None) -> str:
        name = self.routes.get(sid) if self.policy == "sticky" and sid else None
        if name is None:
            names = list(self.upstreams)
            name = names[self._turn % len(names)]
            self._turn += 1
        return self.upstreams[name]

    def server_name(self, upstream: str) -> str | None:
        return self._by_url.get(upstream, upstream)

    def _learn(self, record: Record) -> None:
        if record.eio == "open" and record.sid and record.server in self.upstreams:
            self.routes[record.sid] = record.server

    async def close(self) -> None:
        self._unsubscribe()
        await super().close()


def _policy(policy: str) -> str:
    if policy not in POLICIES:
        raise ValueError(f"policy={policy!r}: one of {', '.join(POLICIES)}")
    return policy


# ---------------------------------------------------------------- the broker's messages in the trace


# ---------------------------------------------------------------- the cluster


async def wait_for_subscribers(broker: Broker, channel: str, want: int, timeout: float = 5.0) -> int:
    """Wait until ``want`` clients are subscribed to ``channel`` on the broker; returns how many are."""
    deadline = time.monotonic() + timeout
    while True:
        reply = await broker.command("PUBSUB", "NUMSUB", channel)
        count = int(reply[1]) if isinstance(reply, (list, tuple)) and len(reply) > 1 else 0
        if count >= want:
            return count
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} of {want} subscribers on {channel!r} after {timeout} s")
        await asyncio.sleep(0.02)


def server_table(records: Trace, hide_heartbeats: bool = True, limit: int | None = 200) -> str:
    """Records as text with a first column naming the server (or 'broker') of each."""
    shown = [r for r in records if not (hide_heartbeats and is_heartbeat(r))]
    if limit is not None:
        shown = shown[-limit:]
    return "\n".join(f"{(r.server or '-'):<7} {r}" for r in shown)



class Cluster(BaseLab):
    """A lab with N servers (A, B, ...) sharing a broker, behind a balancing tap.

    ``lab.servers`` (``lab.server`` is the same group): handlers registered on it are registered on
    every server; ``lab.servers["B"]`` is one server. The tap is sticky by default;
    ``lab.tap.balance("round-robin")`` switches that off (``policy=`` at start). ``lab.broker`` is the
    broker; ``lab.where(client)`` says which server holds a client's session.
    """

    def __init__(self, *, servers: int = 2, broker: Any = None, channel: str = CHANNEL,
                 policy: str = "sticky", watch_broker: bool = True, **options: Any) -> None:
        if not isinstance(servers, int) or isinstance(servers, bool) or not 1 <= servers <= 26:
            raise ValueError(f"servers={servers!r}: a whole number from 1 to 26")
        super().__init__(**options)
        self.channel, self.policy, self._count, self._watch_broker = channel, _policy(policy), servers, watch_broker
        self._own_broker = not isinstance(broker, Broker)  # a Broker passed in is the caller's to stop
        self.broker = broker if isinstance(broker, Broker) else Broker(broker, host=self.host, trace=self.trace)
        self.members: list[Member] = []
        self.server = self.servers = Servers(self.members)
        self.watch: BrokerWatch | None = None

    def _publishers(self) -> dict[str, str]:
        return {m.manager.host_id: m.name for m in self.members}

    @property
    def server_url(self) -> str:
        """Server A, bypassing the tap."""
        return self.members[0].url

    @property
    def server_urls(self) -> dict[str, str]:
        return {m.name: m.url for m in self.members}

    async def _start_servers(self) -> None:
        """The broker, the watch on its channel, then the servers, each subscribed before the tap starts."""
        await self.broker.start()
        if self._watch_broker:
            self.watch = BrokerWatch(self.broker.url, self.channel, self.trace, self._publishers)
            await self.watch.start()
        for i in range(self._count):
            member = Member(self, chr(ord("A") + i))
            self.members.append(member)
            await member.start()
        await self.wait_subscribed()

    def _make_tap(self) -> Tap:
        return BalancingTap(self.server_urls, self.trace, host=self.host, policy=self.policy, batch=True)

    def _processes(self) -> list[ServerProcess]:
        return list(self.members)

    async def wait_subscribed(self, timeout: float = 5.0) -> int:
        """Wait until every running server (and the watch) is subscribed to the channel; returns the count."""
        want = sum(1 for m in self.members if m.running) + (1 if self.watch is not None else 0)
        return await wait_for_subscribers(self.broker, self.channel, want, timeout)

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no server {name!r}: the servers are {', '.join(m.name for m in self.members)}")

    def where(self, client: socketio.AsyncClient | str) -> str | None:
        """The name of the server that holds this client's Engine.IO session (None if none does)."""
        client = self.clients.get(client) if isinstance(client, str) else client
        sid = getattr(getattr(client, "eio", None), "sid", None)
        return next((m.name for m in self.members if sid and sid in m.server.eio.sockets), None)

    def table(self, trace: Trace | None = None, hide_heartbeats: bool = True, limit: int | None = 200) -> str:
        """The trace as text with a first column naming the server (or 'broker') of each record."""
        return server_table(trace if trace is not None else self.trace, hide_heartbeats, limit)

    async def emit_from_process(self, event: str, data: Any = None, room: str | None = None,
                                timeout: float = 20.0) -> str:
        """Run ``EMITTER`` in a separate Python process: a write-only manager that publishes one emit.
        Returns the process's output; raises if it fails."""
        payload = json.dumps([self.broker.url, self.channel, event, data, room])
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", EMITTER, payload,
                                                    stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:
            kill_quietly(proc)
            await proc.wait()
            raise
        text = out.decode("utf-8", "replace")
        if proc.returncode != 0:
            raise RuntimeError(f"the emitter process failed (exit {proc.returncode}):\n{text}")
        return text

    # ------------------------------------------------------------ one server at a time
    async def start_server(self, name: str | None = None) -> None:
        """Start a stopped server again, on the same port (every stopped one if ``name`` is None)."""
        for m in self.members:
            if (name is None or m.name == name) and not m.running:
                await m.start()
        await self.wait_subscribed()

    async def stop_server(self, name: str | None = None) -> None:
        """Crash a server (every server if ``name`` is None): its connections drop, its sessions are lost."""
        for m in ([self.member(name)] if name is not None else self.members):
            if m.running:
                await m.crash()

    async def restart_server(self, name: str | None = None) -> None:
        await self.stop_server(name)
        await self.start_server(name)

    # ------------------------------------------------------------ closing (BaseLab.close calls this)
    async def _stop_servers(self) -> None:
        await super()._stop_servers()
        if self.watch is not None:
            await self.watch.close()

    async def close(self) -> None:
        """Clients, servers (and their broker connections), the tap, then the broker."""
        try:
            await super().close()
        finally:
            if self._own_broker:
                await self.broker.stop()


# Broker, BrokerManager, BrokerWatch, find_broker and describe_message live in siolab.broker; they are
# named here too, where the lessons and tests import them from.
__all__ = ["Cluster", "Broker", "BalancingTap", "BrokerManager", "BrokerWatch", "Servers", "Member",
           "find_broker", "describe_message", "EMITTER", "CHANNEL", "POLICIES", "BROKER_NAMES"]
