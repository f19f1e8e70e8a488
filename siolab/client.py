"""The lab's named client: python-socketio's AsyncClient that reports to the trace through its own methods.

``lab.client("alice")`` makes one. Its traffic is the library's own (the tap records it); what it logs,
why its sessions ended and the exceptions in its handlers become records of client ``alice``.
"""
from __future__ import annotations

from typing import Any

import engineio
import socketio

from .instrument import InstrumentedEngineIO, Instruments, TaskTracker


class LabEngineIOClient(InstrumentedEngineIO, engineio.AsyncClient):
    """python-engineio's AsyncClient that tracks its background tasks (the socketio client's too: they
    start here) and records why each session ended, through ``instruments``."""

    def _ended(self, args: tuple) -> tuple[str | None, Any]:
        return None, args[-1] if args else None  # python-engineio's client disconnect event: (reason,)


class LabClient(socketio.AsyncClient):
    """A python-socketio AsyncClient with a ``name`` whose log, background tasks and session ends go to
    the trace; ``connect_options`` are what ``lab.connect(client)`` passes to ``connect()``."""

    def __init__(self, name: str, instruments: Instruments, *, connect_options: dict | None = None,
                 **client_options: Any) -> None:
        self.name = name
        self.instruments = instruments
        self.connect_options = dict(connect_options or {})
        super().__init__(logger=instruments.logger, engineio_logger=instruments.logger, instruments=instruments,
                         **client_options)  # ``instruments`` reaches the Engine.IO client

    def _engineio_client_class(self):
        return LabEngineIOClient

    @property
    def tasks(self) -> TaskTracker:
        """The background tasks this client's library objects started."""
        return self.instruments.tasks

    @property
    def siolab_name(self) -> str:
        """The client's name (what lessons 4 and 12 read)."""
        return self.name


__all__ = ["LabClient", "LabEngineIOClient"]
