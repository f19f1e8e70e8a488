"""The tap in front of a server the learner runs: a lab without a server of its own (``siolab.attach``;
the module is not named ``attach`` so that importing it never hides the function).

``lab = await siolab.attach("http://127.0.0.1:3000")`` starts only the tap (on ``listen=PORT``, else a
free port, at 127.0.0.1), relaying to that server and recording. Clients, the trace, the views and the
fault switches are the lab's; ``close()`` stops the tap and the clients and leaves the server running.
It is the tap ``python -m siolab trace URL`` runs, in the kernel, reading in batches as the lab does.
"""
from __future__ import annotations

from typing import Any

from . import registry
from .base import BaseLab
from .process import ServerProcess
from .tap import Tap, upstream_of
from .trace import DEFAULT_LIMIT


class AttachedLab(BaseLab):
    """The tap and named clients in front of ``upstream``, a server this lab neither started nor stops."""

    def __init__(self, upstream: str, *, listen: int | None = None, host: str = "127.0.0.1",
                 trace_limit: int | None = DEFAULT_LIMIT, socketio_path: str = "socket.io") -> None:
        if listen is not None and (not isinstance(listen, int) or isinstance(listen, bool) or not 0 <= listen < 65536):
            raise ValueError(f"listen={listen!r}: a port number (None: a free port)")
        super().__init__(host=host, trace_limit=trace_limit)
        self.upstream = upstream_of(upstream)
        self.listen = listen
        self.socketio_path = socketio_path.strip("/") or "socket.io"

    @property
    def server(self) -> Any:
        raise AttributeError(f"this lab is attached to a server it did not start ({self.upstream}): its handlers "
                             f"are in that server's own code")

    @property
    def server_url(self) -> str:
        """The server itself, bypassing the tap (nothing sent there is traced)."""
        return self.upstream

    def _processes(self) -> list[ServerProcess]:
        return []

    async def _start_servers(self) -> None:
        pass  # the learner's server runs already

    def _make_tap(self) -> Tap:
        return Tap(self.upstream, self.trace, host=self.host, port=self.listen or 0, batch=True)

    async def _end_sessions(self, sessions: list) -> None:
        pass  # the server is not ours to stop; the clients' own disconnects end their sessions

    async def _stop_servers(self) -> None:
        pass

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.url if self.tap is not None else "not started"
        return f"<AttachedLab {state} -> {self.upstream}>"


async def attach(url: str, listen: int | None = None, *, replace: bool = True, host: str = "127.0.0.1",
                 trace_limit: int | None = DEFAULT_LIMIT, socketio_path: str = "socket.io") -> AttachedLab:
    """Put the recording tap in front of the server at ``url`` (which keeps running when the lab closes).

    As ``siolab.start``, it closes the lab the previous call started (``replace=False`` keeps it), so a
    re-run cell frees ``listen``'s port before it binds it again.
    """
    previous = registry.current()
    if replace and previous is not None:
        await previous.close()
    lab = await AttachedLab(url, listen=listen, host=host, trace_limit=trace_limit,
                            socketio_path=socketio_path).open()
    if replace:
        registry.make_current(lab)
    return lab


__all__ = ["AttachedLab", "attach"]
