"""The lab's Socket.IO server: python-socketio's AsyncServer, corrected where it departs from the spec.

Two fixes, both small and both taught in the lessons:

- python-engineio advertises ``int(pingInterval) * 1000`` in the open packet, so a 0.3 s interval
  is announced as 0 ms and official clients drop the connection. The open packet is still waiting
  in the new session's queue when Engine.IO's ``connect`` event fires; the lab writes the real
  interval into it there (the heartbeat itself already runs on the float).
- With ``always_connect=False`` (the default), packets a ``connect`` handler emits to the connecting
  client reach the wire before the ``40{"sid":...}`` that tells the client it is connected. The lab
  holds them until that CONNECT has been sent (and drops them if the connection is refused).
"""
from __future__ import annotations

from typing import Any

import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet


class SpecEngineIOServer(engineio.AsyncServer):
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


class SpecServer(socketio.AsyncServer):
    """python-socketio's AsyncServer whose connect-handler emits follow the CONNECT they belong to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held: dict[str, list] = {}  # eio sid -> packets held while a connect handler runs
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
