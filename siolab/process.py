"""One Socket.IO server as if it were its own process: its aiohttp app on a port of its own.

The lab's server, each server of a cluster and the plain python-socketio server of lesson 11 run as one of
these. ``start()`` listens (on a free port, or the same port again after a stop), ``stop()`` closes the
sessions and releases the port, and ``crash()`` first drops every connection at once, as a dying process
would, which is what the reconnection lessons watch.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import socketio
from aiohttp import web

if TYPE_CHECKING:
    from .trace import Trace


class ServerProcess:
    """A python-socketio server on an aiohttp app of its own at ``host``; ``name`` is how records name it
    (None: the only server, named by its port). The server's instruments (``server.instruments``, see
    ``siolab.server.TracedServer``) hold the background tasks a stop cancels."""

    def __init__(self, server: socketio.AsyncServer, trace: Trace | None, *, host: str = "127.0.0.1",
                 name: str | None = None) -> None:
        self.server, self.trace, self.host, self.name = server, trace, host, name
        self.app: web.Application | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.runner is not None

    @property
    def addresses(self) -> list:
        """The socket addresses it listens on (none while stopped)."""
        return list(self.runner.addresses) if self.runner is not None else []

    async def start(self) -> None:
        """Listen: on a free port the first time, on the same port again after a stop."""
        self.app = web.Application()  # a fresh app each time: aiohttp apps cannot be started twice
        self.server.attach(self.app)
        self.runner = web.AppRunner(self.app, shutdown_timeout=0.5, handle_signals=False, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port or 0, reuse_address=True)
        restart = self.port is not None
        await site.start()
        self.port = self.runner.addresses[0][1]
        if restart:
            self._note(f"server {self.name} started again: {self.url}" if self.name
                       else f"server on port {self.port} started again")

    async def crash(self) -> None:
        """Stop as if the process died: the port stops accepting and every connection drops at once."""
        await self.stop(crash=True)

    async def stop(self, *, crash: bool = False) -> None:
        """Close the sessions, end the server's background work and release the port (``crash``: drop
        every connection first; the sessions are then lost, not closed)."""
        runner, self.runner = self.runner, None
        eio = self.server.eio
        if crash and runner is not None:
            # Closing the sessions first would let the still-running server answer 400 "Invalid session",
            # and aiohttp's graceful cleanup would hold WebSockets open ~1 s.
            for site in list(runner.sites):
                await site.stop()
            for handler in list(runner.server.connections if runner.server is not None else ()):
                if handler.transport is not None:
                    handler.transport.abort()
            self._note(f"server {self.name} stopped (crashed)" if self.name
                       else f"server on port {self.port} stopped")
        reason = eio.reason.TRANSPORT_CLOSE if crash else eio.reason.SERVER_DISCONNECT
        for sock in list(eio.sockets.values()):
            try:  # bounded: closing right after a WebSocket close can hang
                await asyncio.wait_for(sock.close(wait=False, abort=crash, reason=reason), 0.5)
            except Exception:
                pass
        eio.sockets.clear()
        await self.end_work()
        if runner is not None:
            await runner.cleanup()

    async def end_work(self) -> None:
        """Stop the server's background work: python-socketio's shutdown, then the tasks it leaves."""
        try:
            await asyncio.wait_for(self.server.shutdown(), 1.0)
        except (asyncio.TimeoutError, Exception):
            pass
        instruments = getattr(self.server, "instruments", None)
        if instruments is not None:
            await instruments.tasks.cancel()

    def _note(self, text: str) -> None:
        if self.trace is not None:
            self.trace.add(kind="log", server=self.name, note=text)

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"<ServerProcess {self.name or 'server'} {state} {len(self.server.eio.sockets)} sessions>"


__all__ = ["ServerProcess"]
