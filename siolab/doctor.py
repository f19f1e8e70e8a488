"""The doctor: ``diagnose(trace)`` names what went wrong on the wire, with the records that show it and the fix.

It reads records only (a live trace, a JSON Lines file or a HAR give the same findings) and does no I/O.
Each finding has a stable ``code`` (the list is ``CODES``), a severity (``error``, ``warning``, ``info``), a
title, what the wire shows, the records that show it, the fix for a Node.js/NestJS server and for
python-socketio where they differ, and the lesson that teaches it. A healthy session gets no ``error`` or
``warning`` finding.
"""
from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from .record import Record
from .text import cut

SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found."""

    code: str  # stable: one of CODES
    severity: str  # error, warning or info
    title: str
    explanation: str  # what the wire shows, in plain English
    records: tuple[Record, ...]  # the evidence, in wire order
    fix_node: str  # for a Node.js / NestJS server and the JS client
    fix_python: str  # for python-socketio, where it differs (else the same advice)
    lesson: str  # the notebook that teaches it

    def __str__(self) -> str:
        lines = [f"[{self.severity}] {self.code}: {self.title}", f"  {self.explanation}"]
        lines += [f"    {cut(str(r), 160)}" for r in self.records[:5]]
        if len(self.records) > 5:
            lines.append(f"    ... and {len(self.records) - 5} more records")
        lines.append(f"  fix (Node.js / NestJS): {self.fix_node}")
        if self.fix_python != self.fix_node:
            lines.append(f"  fix (python-socketio): {self.fix_python}")
        lines.append(f"  lesson: {self.lesson}")
        return "\n".join(lines)


class Diagnosis(tuple):
    """The findings, worst first; prints as text, shows as HTML in a notebook."""

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self if f.severity in ("error", "warning")]

    def codes(self) -> list[str]:
        return [f.code for f in self]

    def __str__(self) -> str:
        if not self:
            return "The doctor found nothing wrong on the wire."
        return "\n\n".join(str(f) for f in self)

    def _repr_html_(self) -> str:
        if not self:
            return "<p>The doctor found nothing wrong on the wire.</p>"
        colour = {"error": "#c62828", "warning": "#b26a00", "info": "#4f5bd5"}
        parts = []
        for f in self:
            rows = "".join(f"<li><code>{html.escape(cut(str(r), 160))}</code></li>" for r in f.records[:5])
            python = (f"<p><b>Fix (python-socketio):</b> {html.escape(f.fix_python)}</p>"
                      if f.fix_python != f.fix_node else "")
            parts.append(
                f"<div style='border-left:4px solid {colour[f.severity]};padding-left:8px;margin:8px 0'>"
                f"<p><b>{html.escape(f.severity)} · <code>{html.escape(f.code)}</code> · {html.escape(f.title)}"
                f"</b></p><p>{html.escape(f.explanation)}</p><ul>{rows}</ul>"
                f"<p><b>Fix (Node.js / NestJS):</b> {html.escape(f.fix_node)}</p>{python}"
                f"<p>Lesson: <code>{html.escape(f.lesson)}</code></p></div>")
        return "".join(parts)


def diagnose(records: Iterable[Record]) -> Diagnosis:
    """Every finding the records show, errors first, then in the order they happened."""
    recs = list(records)
    found: list[Finding] = []
    for check in _CHECKS:
        found.extend(check(recs))
    order = {s: i for i, s in enumerate(SEVERITIES)}
    found.sort(key=lambda f: (order[f.severity], f.records[0].t if f.records else 0.0))
    return Diagnosis(found)


# ---------------------------------------------------------------- helpers
def _refusals(recs: list[Record]) -> list[Record]:
    return [r for r in recs if r.kind == "http" and r.dir == "s2c" and ((r.http or {}).get("status") or 0) >= 400]


def _text(r: Record) -> str:
    return f"{r.raw or ''} {r.error or ''} {r.note or ''}".lower()


def _query(r: Record) -> str:
    return ((r.http or {}).get("path") or "").partition("?")[2]


def _unique(records: list[Record]) -> list[Record]:
    """Each record once (records hold dicts, so by identity), in time order."""
    return sorted({id(r): r for r in records}.values(), key=lambda r: r.t)


def _opens(recs: list[Record]) -> list[Record]:
    return [r for r in recs if r.kind == "packet" and r.eio == "open" and r.dir == "s2c"]


# ---------------------------------------------------------------- the checks
def _unknown_session(recs: list[Record]) -> list[Finding]:
    hits = [r for r in _refusals(recs) if re.search(r"session id unknown|invalid session|unknown sid", _text(r))]
    if not hits:
        return []
    issued = {r.sid: r.server for r in _opens(recs)}
    elsewhere = [r for r in hits if r.sid in issued and r.server and issued[r.sid] and r.server != issued[r.sid]]
    where = ""
    if elsewhere:
        r = elsewhere[0]
        where = (f" The sid {r.sid} was issued by server {issued[r.sid]} but this request went to server {r.server}: "
                 f"the load balancer does not keep a session on one server.")
    return [Finding(
        "unknown-session", "error", "The server does not know this session (sid)",
        f"{len(hits)} request(s) carried a sid the server answered 400 for ('Session ID unknown').{where}",
        tuple(hits), "With several Node.js processes, make the balancer sticky (nginx: ip_hash or a cookie; "
        "Kubernetes: sessionAffinity) and share events with an adapter (@socket.io/redis-adapter); or connect "
        "with transports: ['websocket'] only, which needs no stickiness.",
        "With several python-socketio processes, make the balancer sticky and use a client manager "
        "(socketio.AsyncRedisManager); or let clients use the WebSocket only.", "13_several_servers")]


def _protocol_mismatch(recs: list[Record]) -> list[Finding]:
    old = [r for r in recs if r.kind in ("http", "ws") and r.dir == "c2s" and re.search(r"(^|&)EIO=[23](&|$)",
                                                                                         _query(r))]
    refused = [r for r in _refusals(recs) if "protocol version" in _text(r)]
    v3 = [r for r in recs if r.kind in ("http", "packet") and r.dir == "s2c" and r.raw and
          re.match(r"^\d+:[0-9]", r.raw) and r.error]
    hits = _unique(old + refused + v3)
    if not hits:
        return []
    return [Finding(
        "protocol-mismatch", "error", "Client and server speak different Engine.IO versions",
        "The client asked for an older Engine.IO protocol (EIO=3 is socket.io-client v2, EIO=4 is v3 and v4), "
        "or the answer uses v3 framing ('2:40'); the server refuses it ('Unsupported protocol version').",
        tuple(hits), "Upgrade the client to socket.io-client v4 (npm install socket.io-client@4); for a "
        "transition, new Server(httpServer, { allowEIO3: true }) accepts v2 clients.",
        "Upgrade the client; python-socketio 5 speaks EIO=4 only (it has no allowEIO3).", "11_two_implementations")]


def _cors_refused(recs: list[Record]) -> list[Finding]:
    hits = [r for r in _refusals(recs) if "origin" in _text(r)]
    if not hits:
        return []
    return [Finding(
        "cors-refused", "error", "The server refused the page's origin (CORS)",
        "The handshake was answered with an error about the Origin header: the page's origin is not one the "
        "server accepts. A Node.js server answers but without Access-Control-Allow-Origin, so the browser "
        "blocks it ('blocked by CORS policy', then connect_error 'xhr poll error').",
        tuple(hits), "new Server(httpServer, { cors: { origin: 'http://localhost:5173' } }) or, in NestJS, "
        "@WebSocketGateway({ cors: { origin: [...] } }). Node does not apply CORS to the WebSocket upgrade.",
        "socketio.AsyncServer(cors_allowed_origins=['http://localhost:5173']); python-engineio answers 400 "
        "'Not an accepted origin.' itself.", "04_browser_on_the_wire")]


def _websocket_refused(recs: list[Record]) -> list[Finding]:
    out = []
    upgrades = [r for r in recs if r.kind == "ws" and r.dir == "c2s" and "upgrade request" in (r.note or "")]
    refused = [r for r in recs if r.transport == "websocket" and r.dir == "s2c" and r.kind in ("http", "fault")
               and (r.http or {}).get("status") not in (None, 101)]
    if refused:
        out.append(Finding(
            "websocket-refused", "error", "The WebSocket upgrade was refused",
            f"{len(refused)} WebSocket request(s) were answered with HTTP "
            f"{(refused[0].http or {}).get('status')} instead of 101: something between the client and the "
            f"server (a proxy, an ingress) does not pass WebSockets, so the clients stay on long-polling.",
            tuple(sorted(upgrades + refused, key=lambda r: r.t)),
            "Pass the upgrade through the proxy: nginx needs proxy_http_version 1.1; proxy_set_header Upgrade "
            "$http_upgrade; proxy_set_header Connection \"upgrade\"; and a proxy_read_timeout above the ping "
            "interval.", "The same proxy settings; python-socketio serves the WebSocket itself on aiohttp.",
            "03_transports_and_upgrade"))
        return out
    # stuck on polling: the server offered websocket, the session polled on and never asked to upgrade
    for opened in _opens(recs):
        data = opened.data if isinstance(opened.data, dict) else {}
        if "websocket" not in (data.get("upgrades") or []) or not opened.sid:
            continue
        session = [r for r in recs if r.sid == opened.sid]
        polls = [r for r in session if r.transport == "polling" and r.kind == "http" and r.dir == "c2s"]
        tried = [r for r in recs if r.kind == "ws" and r.sid == opened.sid]
        if len(polls) >= 6 and not tried:
            out.append(Finding(
                "websocket-refused", "info", "This session stayed on long-polling",
                f"The server offered the WebSocket in its open packet, but session {opened.sid} made "
                f"{len(polls)} polling requests and never tried it: a client configured with transports: "
                f"['polling'], or one whose WebSocket is blocked before it reaches the server.",
                (opened, *polls[:4]), "If the WebSocket should work, check the client's transports option and "
                "the proxy's Upgrade/Connection headers.", "Check the client's transports=['polling'] option.",
                "03_transports_and_upgrade"))
    return out


def _ping_timeout(recs: list[Record]) -> list[Finding]:
    logs = [r for r in recs if r.kind == "log" and "ping timeout" in (r.note or "")]
    silent = []
    by_sid: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        if r.sid and r.kind == "packet":
            by_sid[r.sid].append(r)
    for opened in _opens(recs):
        data = opened.data if isinstance(opened.data, dict) else {}
        timeout = (data.get("pingTimeout") or 20000) / 1000
        packets = by_sid.get(opened.sid or "", [])
        end = recs[-1].t if recs else 0.0
        for ping in (p for p in packets if p.eio == "ping" and p.raw == "2" and p.dir == "s2c"):
            answered = any(q.eio == "pong" and q.dir == "c2s" and q.t >= ping.t for q in packets)
            if not answered and end >= ping.t + timeout:  # the pong had its time and never came
                silent.append(ping)
                break
    hits = _unique(logs + silent)
    if not hits:
        return []
    return [Finding(
        "ping-timeout", "error", "A session ended in a ping timeout",
        "The server's PING got no PONG within pingTimeout (or a client heard no PING within pingInterval + "
        "pingTimeout): the other side was gone, its event loop was blocked, or a proxy held the packets.",
        tuple(hits), "Keep the event loop free (no long synchronous work in a handler); behind a proxy, keep its "
        "read timeout above pingInterval + pingTimeout; the JS client reports disconnect reason 'ping timeout' "
        "and reconnects.", "Never time.sleep in a handler (await asyncio.sleep); the same proxy advice.",
        "09_heartbeat_and_disconnects")]


def _transport_close(recs: list[Record]) -> list[Finding]:
    closes = [r for r in recs if r.kind == "ws" and "closed by" in (r.note or "") and
              re.search(r"code (1006|1001|1011)", r.note or "")]
    if not closes:
        return []
    opened_at = {r.sid: r.t for r in recs if r.kind == "ws" and "WebSocket open" in (r.note or "") and r.sid}
    lives = [c.t - opened_at[c.sid] for c in closes if c.sid in opened_at]
    idle = ""
    if len(lives) >= 2 and max(lives) - min(lives) < 0.05 * max(lives) + 0.2:
        idle = (f" They all lasted about {sum(lives) / len(lives):.1f} s: a fixed interval like that is an idle "
                f"timeout (a proxy's or a load balancer's), not the application.")
    first = closes[0]
    who = "the client" if first.dir == "c2s" else "the server" if first.dir == "s2c" else "the tap"
    return [Finding(
        "transport-close", "warning", "The connection closed without a clean goodbye",
        f"{len(closes)} WebSocket(s) closed abnormally; the first was closed by {who} ({cut(first.note, 90)}).{idle}",
        tuple(closes), "The JS client reports 'transport close' and reconnects. For an idle timeout, raise the "
        "proxy's timeout (nginx proxy_read_timeout) above pingInterval, or lower pingInterval below it.",
        "The same; python-socketio's ping_interval is in seconds.", "09_heartbeat_and_disconnects")]


def _payload_too_large(recs: list[Record]) -> list[Finding]:
    hits = [r for r in recs if (r.kind == "http" and (r.http or {}).get("status") == 413) or
            "maxpayload" in (r.error or "").lower() or re.search(r"code 1009", r.note or "")]
    if not hits:
        return []
    return [Finding(
        "payload-too-large", "error", "A message was larger than the server accepts",
        "A POST body or a WebSocket frame was over the maxPayload the server announced in its open packet: the "
        "server refused it (Node.js answers 413 or closes the WebSocket with 1009; python-engineio answers 400 "
        "and closes the session).", tuple(hits),
        "Raise maxHttpBufferSize (new Server(httpServer, { maxHttpBufferSize: 5e6 })) or send big data in "
        "pieces or over HTTP.", "Raise max_http_buffer_size (socketio.AsyncServer(max_http_buffer_size=...)).",
        "06_acks_and_binary")]


def _namespace_refused(recs: list[Record]) -> list[Finding]:
    hits = [r for r in recs if r.kind == "packet" and r.sio == "connect_error"]
    if not hits:
        return []
    messages = {str((r.args or [None])[0]) if r.args else (r.note or "") for r in hits}
    invalid = any("invalid namespace" in (r.note or "").lower() or "invalid namespace" in (r.raw or "").lower()
                  for r in hits)
    why = ("the namespace does not exist on the server ('Invalid namespace')" if invalid else
           "a middleware or connect handler refused the connection")
    return [Finding(
        "namespace-refused", "error", "The server refused to connect a namespace",
        f"The server answered CONNECT with CONNECT_ERROR (44): {why}. The client's connect_error gets the "
        f"message: {cut('; '.join(sorted(messages)), 120)}.", tuple(hits),
        "For 'Invalid namespace', define it (io.of('/chat')) or fix the client's URL; for a middleware "
        "(io.use((socket, next) => next(new Error('...')))), send the auth it expects: io(url, { auth: { token } }).",
        "Register a connect handler for the namespace; a handler that returns False or raises "
        "ConnectionRefusedError('...') refuses with that message.", "07_namespaces_and_rooms")]


def _ack_missing(recs: list[Record]) -> list[Finding]:
    asked: dict[tuple, Record] = {}
    answered: set[tuple] = set()
    for r in recs:
        if r.kind != "packet" or r.ack is None:
            continue
        if r.sio in ("event", "binary_event"):
            asked[(r.dir, r.sid, r.nsp, r.ack)] = r
        elif r.sio in ("ack", "binary_ack"):
            answered.add(("c2s" if r.dir == "s2c" else "s2c", r.sid, r.nsp, r.ack))
    end = recs[-1].t if recs else 0.0
    hits = [r for k, r in asked.items() if k not in answered and end - r.t > 1.0]
    if not hits:
        return []
    return [Finding(
        "ack-missing", "warning", "An acknowledgement never came",
        f"{len(hits)} event(s) asked for an ack (the id after the packet type, e.g. 421[...]) and no ACK with "
        f"that id came back: the handler did not call the callback (Node) or return a value (python).",
        tuple(sorted(hits, key=lambda r: r.t)),
        "Call the callback in the handler: socket.on('x', (data, ack) => ack(result)); on the client, "
        "socket.timeout(5000).emitWithAck('x', data) rejects instead of waiting forever. In NestJS, a "
        "@SubscribeMessage handler's return value is the ack.",
        "Return the value from the handler; on the client, await sio.call('x', data, timeout=5).",
        "06_acks_and_binary")]


def _server_disconnect(recs: list[Record]) -> list[Finding]:
    hits = [r for r in recs if r.kind == "packet" and r.sio == "disconnect" and r.dir == "s2c"]
    if not hits:
        return []
    return [Finding(
        "server-disconnect", "warning", "The server disconnected a client on purpose",
        "The server sent DISCONNECT (41): the JS client reports 'io server disconnect' and does NOT reconnect "
        "by itself (it does after a lost connection).", tuple(hits),
        "If the client should come back, call socket.connect() in its 'disconnect' handler when the reason is "
        "'io server disconnect'; on the server, socket.disconnect() is what sends it.",
        "python-socketio's client reports 'server disconnect' and does not reconnect either; sio.disconnect(sid) "
        "sends it.", "10_reconnection_and_buffering")]


def _double_connect(recs: list[Record]) -> list[Finding]:
    by_client: dict[object, list[Record]] = defaultdict(list)
    for r in _opens(recs):
        by_client[r.client].append(r)
    hits = []
    for client, opens in by_client.items():
        for a, b in zip(opens, opens[1:]):
            lost = any(r.client == client and r.error and a.t < r.t < b.t for r in recs)
            if b.t - a.t < 1.0 and not lost:  # (a reconnection follows a failure)
                hits += [a, b]
    if not hits:
        return []
    return [Finding(
        "double-connect", "warning", "One client opened two sessions back to back",
        "Two handshakes from the same client within a second: typically a React component that calls io() in "
        "an effect without cleanup, run twice by StrictMode in development, or on every render.",
        tuple(_unique(hits)),
        "Create the socket once (module scope or a context), or return () => socket.disconnect() from the "
        "useEffect that connects.", "Connect once per client; do not call connect() again while connected.",
        "08_widget_chat")]


def _reconnect_storm(recs: list[Record]) -> list[Finding]:
    starts = [r for r in recs if r.kind == "http" and r.dir == "c2s" and (r.note or "").startswith("handshake")]
    by_client: dict[object, list[Record]] = defaultdict(list)
    for r in starts:
        by_client[r.client].append(r)
    hits: list[Record] = []
    for tries in by_client.values():
        for i in range(len(tries) - 5):
            if tries[i + 5].t - tries[i].t < 10.0:
                hits = tries
                break
    if not hits:
        return []
    return [Finding(
        "reconnect-storm", "warning", "Many handshakes in a short time",
        f"{len(hits)} handshakes from one client, six of them within 10 s: the client keeps reconnecting "
        f"(the server refuses or drops it), or many clients reconnect at once after a restart.", tuple(hits),
        "Find why each attempt fails (the records before each one); keep randomizationFactor (0.5 by default) "
        "so that clients spread out, and raise reconnectionDelayMax.",
        "python-socketio's client: reconnection_delay, reconnection_delay_max, randomization_factor.",
        "10_reconnection_and_buffering")]


_COVERED = ("maxpayload", "session", "protocol", "origin")


def _bad_packet(recs: list[Record]) -> list[Finding]:
    hits = [r for r in recs if r.kind == "packet" and r.error and not any(w in r.error.lower() for w in _COVERED)]
    if not hits:
        return []
    return [Finding(
        "bad-packet", "error", "Packets that break the protocol",
        f"{len(hits)} packet(s) are not valid Engine.IO / Socket.IO: {cut(hits[0].error, 120)}.", tuple(hits),
        "Send what the protocol allows: JSON-serialisable arguments (no undefined, functions or cycles) through "
        "the library's emit, never hand-written frames.", "The same: emit() with JSON-serialisable data.",
        "05_packet_numbers")]


_CHECKS = (_unknown_session, _protocol_mismatch, _cors_refused, _websocket_refused, _ping_timeout,
           _transport_close, _payload_too_large, _namespace_refused, _ack_missing, _server_disconnect,
           _double_connect, _reconnect_storm, _bad_packet)
CODES = ("unknown-session", "protocol-mismatch", "cors-refused", "websocket-refused", "ping-timeout",
         "transport-close", "payload-too-large", "namespace-refused", "ack-missing", "server-disconnect",
         "double-connect", "reconnect-storm", "bad-packet")
