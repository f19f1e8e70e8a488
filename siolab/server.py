"""The lab's Socket.IO server: python-socketio's AsyncServer, corrected where it departs from the spec.

Two fixes, both small and both taught in the lessons, and one safe default:

- python-engineio advertises ``int(pingInterval) * 1000`` in the open packet, so a 0.3 s interval
  is announced as 0 ms and official clients drop the connection. The open packet is still waiting
  in the new session's queue when Engine.IO's ``connect`` event fires; the lab writes the real
  interval into it there (the heartbeat itself already runs on the float).
- With ``always_connect=False`` (the default), packets a ``connect`` handler emits to the connecting
  client reach the wire before the ``40{"sid":...}`` that tells the client it is connected. The lab
  holds them until that CONNECT has been sent (and drops them if the connection is refused).
- CORS: a browser page may connect when it was served from the host the request was sent to
  (``same_host_origin``), like python-engineio's ``cors_allowed_origins=None``, but also when a TLS
  proxy or a Jupyter server with its own certificate sits in front and says nothing of it.

``TracedServer`` is python-socketio's AsyncServer, unchanged on the wire, that reports to the trace through
its own methods (``siolab.instrument``); ``SpecServer`` builds on it.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from .instrument import InstrumentedEngineIO, Instruments


def _host_port(netloc: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit("//" + netloc.strip())
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def same_host_origin(origin: str | None, environ: dict | None = None) -> bool:
    """python-engineio ``cors_allowed_origins`` callable: accept a page whose Origin names the host (and port)
    the request was sent to, by its ``Host`` or, behind a reverse proxy, ``X-Forwarded-Host`` header.

    The scheme is not compared: behind TLS the page is ``https://…`` while the request reaches the lab as
    plain http, and only python-engineio's default looks at ``X-Forwarded-Proto`` (a Jupyter server with
    its own certificate, proxying with jupyter-server-proxy, sends none). Still refused: other hosts,
    other ports, ``null``, and schemes other than http/https. A browser fills in Origin and Host itself,
    so a page elsewhere cannot pass; clients that send no Origin (python, Node.js) are not checked at all.
    """
    if not origin or not environ:
        return False
    page = urlsplit(origin)
    if page.scheme not in ("http", "https") or not page.hostname or page.path not in ("", "/"):
        return False
    try:
        page_port = page.port
    except ValueError:
        return False
    for header in ("HTTP_HOST", "HTTP_X_FORWARDED_HOST"):
        value = environ.get(header)
        asked = _host_port(value.split(",")[0]) if value else None
        if asked is None or asked[0] != page.hostname.lower():
            continue
        # a Host without a port means the default port of the page's own scheme: the Origin then has none
        if asked[1] == page_port or (asked[1] is not None and page_port is None
                                     and asked[1] == {"http": 80, "https": 443}[page.scheme]):
            return True
    return False


class TracedEngineIOServer(InstrumentedEngineIO, engineio.AsyncServer):
    """python-engineio's AsyncServer that tracks its background tasks and records why each session ended,
    through ``instruments`` (None: it is python-engineio as pip installs it)."""

    def _ended(self, args: tuple) -> tuple[str | None, Any]:
        return args[0] if len(args) == 2 else None, args[-1] if args else None  # the server's: (sid, reason)


class TracedServer(socketio.AsyncServer):
    """python-socketio's AsyncServer whose log, background tasks and session ends go to the trace
    (``instruments``, made for the server's side); the wire is untouched."""

    def __init__(self, *args: Any, instruments: Instruments | None = None, **kwargs: Any) -> None:
        self.instruments = instruments
        if instruments is not None:
            kwargs.setdefault("logger", instruments.logger)
            kwargs.setdefault("engineio_logger", instruments.logger)
        super().__init__(*args, instruments=instruments, **kwargs)  # the option reaches the Engine.IO server

    def _engineio_server_class(self):
        return TracedEngineIOServer


class SpecEngineIOServer(TracedEngineIOServer):
    """python-engineio's AsyncServer that advertises sub-second ping intervals correctly."""

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any):
        if event == "connect" and args:
            self._fix_open_packet(args[0])
        return await super()._trigger_event(event, *args, **kwargs)

    def _fix_open_packet(self, sid: str) -> None:
        sock = self.sockets.get(sid)
        queued = getattr(getattr(sock, "queue", None), "_queue", ())
        for pkt in list(queued) + list(getattr(sock, "packet_backlog", ())):
            if pkt.packet_type == eio_packet.OPEN and isinstance(pkt.data, dict) and pkt.encode_cache is None:
                pkt.data["pingInterval"] = round((self.ping_interval + self.ping_interval_grace_period) * 1000)
                pkt.data["pingTimeout"] = round(self.ping_timeout * 1000)


class SpecServer(TracedServer):
    """python-socketio's AsyncServer whose connect-handler emits follow the CONNECT they belong to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held: dict[str, list] = {}  # eio sid -> packets held while a connect handler runs
        if kwargs.get("cors_allowed_origins") is None:
            kwargs["cors_allowed_origins"] = same_host_origin
        super().__init__(*args, **kwargs)

    def _engineio_server_class(self):
        return SpecEngineIOServer

    async def _handle_connect(self, eio_sid, namespace, data):
        if eio_sid in self._held:  # another namespace of this session is connecting: already holding
            return await super()._handle_connect(eio_sid, namespace, data)
        self._held[eio_sid] = []
        try:
            await super()._handle_connect(eio_sid, namespace, data)
        finally:
            held = self._held.pop(eio_sid, [])
            connected = self.manager.sid_from_eio_sid(eio_sid, namespace or "/") is not None
            for kind, pkt in held:
                if not connected and getattr(pkt, "namespace", None) == namespace:
                    continue  # refused: what the handler emitted on this namespace never happened
                if kind == "sio":
                    await super()._send_packet(eio_sid, pkt)
                else:
                    await super()._send_eio_packet(eio_sid, pkt)

    async def _send_packet(self, eio_sid, pkt):
        held = self._held.get(eio_sid)
        if held is not None and pkt.packet_type not in (sio_packet.CONNECT, sio_packet.CONNECT_ERROR):
            held.append(("sio", pkt))
            return
        await super()._send_packet(eio_sid, pkt)

    async def _send_eio_packet(self, eio_sid, eio_pkt):
        held = self._held.get(eio_sid)
        if held is not None:
            held.append(("eio", eio_pkt))
            return
        await super()._send_eio_packet(eio_sid, eio_pkt)
