"""What python-socketio's objects tell the trace: the warnings and errors they log, why a session ended,
and the exception of a background task that failed (where learners look, instead of a console).

Each tool is made for one side ("server", "server B", "client alice") and, in a cluster, one server:
every record it makes names that server itself (``server=``), whatever context it is made in. The
lab's classes report through ``Instruments`` (``siolab.server``, ``siolab.client``).
"""
from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .trace import Trace

NameOf = Callable[[str | None], str | None]  # Engine.IO sid -> the name of the client it belongs to


class TraceLogHandler(logging.Handler):
    """Puts the library's warnings and errors (with tracebacks) into the trace."""

    def __init__(self, trace: Trace, side: str, *, client: str | None = None, server: str | None = None,
                 name_of: NameOf | None = None) -> None:
        super().__init__(logging.WARNING)
        self.trace, self.side, self.client, self.server = trace, side, client, server
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
                self.trace.add(kind="error", client=client, sid=sid, server=self.server,
                               note=f"{self.side}: {message}\n{tb}".rstrip(),
                               error=f"the {self.side} logged an exception ({message}): "
                                     f"{record.exc_info[1].__class__.__name__}: {record.exc_info[1]}")
            else:
                note = f"{self.side} {record.levelname.lower()}: {message}"
                now = self.trace.now()
                if self._last is not None and self._last[0] == note and now - self._last[1] < 0.1:
                    return  # python-engineio logs some things twice in a row (e.g. 'Client is gone')
                self._last = (note, now)
                self.trace.add(kind="log", client=client, sid=sid, server=self.server, note=note)
        except Exception:  # logging must never raise into the library
            pass


# The libraries' INFO messages that explain a lost or refused connection (everything else at INFO is
# one line per packet, which the tap already records).
INFO_PREFIXES = ("Connection failed, new attempt", "Reconnection successful", "Maximum reconnection attempts",
                 "Reconnect task aborted", "Engine.IO connection dropped", "Connection to namespace",
                 "Read loop: WebSocket connection was closed", "Write loop: WebSocket connection was closed",
                 "Unexpected error receiving packet", "Unexpected error decoding packet")
INFO_EXACT = {"%s: Client is gone, closing socket", "%s: Failed websocket upgrade, no PING packet",
              "%s: Failed websocket upgrade, expected UPGRADE packet, received %s instead."}


class TraceLogger(logging.Logger):
    """A logger that passes on warnings, errors and the few INFO messages worth a trace record.

    The filter runs before a LogRecord is made, so the per-packet INFO lines cost one string check.
    """

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        if isinstance(msg, str) and (msg.startswith(INFO_PREFIXES) or msg in INFO_EXACT):
            super().info(msg, *args, **kwargs)


def trace_logger(trace: Trace, name: str, side: str, *, client: str | None = None, server: str | None = None,
                 name_of: NameOf | None = None) -> logging.Logger:
    """A logger for python-socketio's ``logger=`` / ``engineio_logger=`` that writes into ``trace``."""
    # A Logger made directly is not registered globally: nothing outlives the lab.
    logger = TraceLogger(name, logging.INFO)
    handler = TraceLogHandler(trace, side, client=client, server=server, name_of=name_of)
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


REASONS = {
    "ping timeout": "no pong (server side) or no ping (client side) within pingInterval + pingTimeout",
    "transport close": "the connection closed (the other side went away, or the server stopped)",
    "transport error": "the connection failed or went silent (no packet within pingInterval + pingTimeout)",
    "client disconnect": "the client disconnected on purpose",
    "server disconnect": "the server disconnected on purpose",
}


def record_session_end(trace: Trace, side: str, sid: str | None, reason: Any, *, client: str | None = None,
                       server: str | None = None) -> None:
    """Record why an Engine.IO session ended (ping timeout, transport close...) and what that means."""
    who = f"the session of {client}" if client and side == "server" else "the session"
    trace.add(kind="log", client=client, sid=sid, server=server,
              note=f"{side}: {who} ended: {reason} ({REASONS.get(reason, 'see the records before')})")


class TaskTracker:
    """The background tasks a library object started, so a stop can cancel leftovers; records the
    exception of any that fails (python-socketio runs event handlers as such tasks, so an exception in
    a handler would otherwise only reach asyncio's "never retrieved" log).

    python-engineio's ``AsyncServer.shutdown()`` does not cancel its per-session ping tasks.
    """

    def __init__(self, trace: Trace, side: str, *, client: str | None = None, server: str | None = None) -> None:
        self.tasks: set[asyncio.Task] = set()
        self.trace, self.side, self.client, self.server = trace, side, client, server

    def add(self, task: asyncio.Task) -> asyncio.Task:
        """Track a task the library just started; returns it."""
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.trace.add(kind="error", client=self.client, server=self.server,
                       note=f"{self.side}: exception in a handler\n{tb}".rstrip(),
                       error=f"exception in a {self.side} handler: {exc.__class__.__name__}: {exc}")

    async def cancel(self) -> None:
        """Cancel the tasks still running (waiting up to 1 s for them to end)."""
        pending = [t for t in self.tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=1.0)
        self.tasks.clear()


class Instruments:
    """Everything one library object (a server, a client) reports to the trace with: its ``logger``,
    its ``tasks`` and, with ``sessions=True``, why each of its Engine.IO sessions ended.

    ``name_of`` names the client of a session (server side: the tap knows it); a client's own
    instruments name it ``client``.
    """

    def __init__(self, trace: Trace, side: str, *, logger_name: str = "siolab", client: str | None = None,
                 server: str | None = None, name_of: NameOf | None = None, sessions: bool = True) -> None:
        self.trace, self.side, self.client, self.server = trace, side, client, server
        self.sessions = sessions
        self._name_of = name_of
        self.logger = trace_logger(trace, logger_name, side, client=client, server=server, name_of=name_of)
        self.tasks = TaskTracker(trace, side, client=client, server=server)

    def name_of(self, sid: str | None) -> str | None:
        return self._name_of(sid) if self._name_of is not None else self.client

    def session_ended(self, sid: str | None, reason: Any) -> None:
        """Called by the library object when python-engineio reports a session's end."""
        if self.sessions:
            record_session_end(self.trace, self.side, sid, reason, client=self.name_of(sid), server=self.server)


__all__ = ["Instruments", "TaskTracker", "TraceLogHandler", "TraceLogger", "trace_logger", "record_session_end",
           "REASONS"]


class InstrumentedEngineIO:
    """What the lab's python-engineio client and server share (mixed in before the library's class): their
    background tasks are tracked, and why each session ended is recorded, through ``instruments`` (None: the
    library as pip installs it). ``_ended(args)`` says (sid, reason) from the library's disconnect event."""

    instruments: Instruments | None
    handlers: dict

    def __init__(self, *args: Any, instruments: Instruments | None = None, **kwargs: Any) -> None:
        self.instruments = instruments
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]

    def start_background_task(self, target, *args: Any, **kwargs: Any):
        task = super().start_background_task(target, *args, **kwargs)  # type: ignore[misc]
        return self.instruments.tasks.add(task) if self.instruments is not None else task

    def _ended(self, args: tuple) -> tuple[str | None, Any]:
        raise NotImplementedError

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any):
        if event == "disconnect" and self.instruments is not None and event in self.handlers:
            self.instruments.session_ended(*self._ended(args))
        return await super()._trigger_event(event, *args, **kwargs)  # type: ignore[misc]
