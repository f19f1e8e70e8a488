"""Timelines read from a trace: acknowledgements paired with their requests, and reconnection attempts.

Pure functions over recorded ``Record``s (no I/O), except ``wait_for_attempts`` which waits
on a live trace. Everything here measures what crossed the tap, so latencies are round trips
as the tap saw them (they include the time the other side's handler took).

Ack pairing. An EVENT (``421["add",1,2]``) or BINARY_EVENT with an ack id asks for an answer;
the ACK or BINARY_ACK with the same ack id, in the same namespace of the same Engine.IO session,
going the other way (``431[3]``) is that answer. Ack ids are counted per namespace and per
connection, so the key is (session, namespace, ack id, direction).

Reconnection. Each attempt of a client that lost its connection is a fresh handshake: a
polling ``GET`` without ``sid`` (or, for a WebSocket-only client, a WebSocket upgrade request
without ``sid``). While the server is down the tap answers it with HTTP 502; the attempt that
succeeds gets the ``0{...}`` open packet (or a ``101`` for a WebSocket-only client).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Iterable

from .text import cut
from .trace import Record

REQUEST_TYPES = ("event", "binary_event")
ACK_TYPES = ("ack", "binary_ack")
_OTHER = {"c2s": "s2c", "s2c": "c2s"}


# ---------------------------------------------------------------- acknowledgements


@dataclass(frozen=True)
class AckPair:
    """An event that asked for an acknowledgement, and the ACK that answered it (None if none did)."""

    request: Record
    ack: Record | None = None

    @property
    def id(self) -> int:
        return self.request.ack

    @property
    def nsp(self) -> str:
        return self.request.nsp or "/"

    @property
    def client(self) -> str | None:
        return self.request.client

    @property
    def asker(self) -> str:
        """Who asked for the acknowledgement: 'client' (it sent the event) or 'server'."""
        return "client" if self.request.dir == "c2s" else "server"

    @property
    def answered(self) -> bool:
        return self.ack is not None

    @property
    def latency(self) -> float | None:
        """Seconds from the event to its ACK, as the tap saw them (None if unanswered)."""
        return None if self.ack is None else self.ack.t - self.request.t

    def __str__(self) -> str:
        nsp = "" if self.nsp == "/" else f" {self.nsp}"
        head = f"{self.client or '-'}: {self.asker} asked, ack id {self.id}{nsp}, event {self.request.event!r}"
        if self.ack is None:
            return f"{head} -> no ACK"
        return f"{head} -> answered after {self.latency * 1000:.1f} ms with {self.ack.raw}"


def _session(record: Record) -> str | None:
    return record.sid or record.client


def ack_pairs(records: Iterable[Record], *, client: str | None = None, nsp: str | None = None) -> list[AckPair]:
    """Pair every event that carries an ack id with the ACK that answered it, in the order of the events.

    ``records`` is a Trace (or any iterable of records); only ``kind='packet'`` records count
    (a packet the tap dropped never arrived). Optionally keep one client's or one namespace's pairs.
    An event whose ack id is reused before any answer, or that never got one, pairs with None.
    """
    pending: dict[tuple, int] = {}
    pairs: list[AckPair] = []
    for r in records:
        if r.kind != "packet" or r.ack is None or r.dir not in _OTHER:
            continue
        if client is not None and r.client != client:
            continue
        if nsp is not None and (r.nsp or "/") != nsp:
            continue
        if r.sio in REQUEST_TYPES:
            key = (_session(r), r.nsp or "/", r.ack, r.dir)
            pending[key] = len(pairs)  # a reused id leaves the earlier request unanswered
            pairs.append(AckPair(r))
        elif r.sio in ACK_TYPES:
            key = (_session(r), r.nsp or "/", r.ack, _OTHER[r.dir])
            index = pending.pop(key, None)
            if index is not None:
                pairs[index] = AckPair(pairs[index].request, r)
    return pairs


def unanswered(records: Iterable[Record], **filters) -> list[AckPair]:
    """The events that asked for an acknowledgement and got none (yet)."""
    return [p for p in ack_pairs(records, **filters) if not p.answered]


def ack_table(pairs: Iterable[AckPair]) -> str:
    """One line per pair: who asked, namespace, ack id, event, the two raw packets, latency."""
    lines = [f"{'client':<8} {'asker':<6} {'nsp':<8} {'id':>3}  {'request':<34} {'ack':<24} latency"]
    for p in pairs:
        latency = "no ACK" if p.latency is None else f"{p.latency * 1000:.1f} ms"
        lines.append(f"{(p.client or '-'):<8} {p.asker:<6} {p.nsp:<8} {p.id:>3}  {_cut(p.request.raw, 34):<34} "
                     f"{_cut(p.ack.raw if p.ack else '-', 24):<24} {latency}")
    return "\n".join(lines)


def _cut(text: str | None, limit: int) -> str:
    return cut(text, limit)


# ---------------------------------------------------------------- reconnection


@dataclass(frozen=True)
class Attempt:
    """One connection attempt: the handshake request and what came back."""

    request: Record
    response: Record | None = None

    @property
    def t(self) -> float:
        return self.request.t

    @property
    def status(self) -> int | None:
        """The HTTP status of the answer (502 while the server is down, 200 or 101 when it is up)."""
        return (self.response.http or {}).get("status") if self.response is not None else None

    @property
    def ok(self) -> bool:
        """True when the server opened a session (open packet, or 101 for a WebSocket-only client)."""
        return self.response is not None and (self.response.eio == "open" or self.status == 101)

    @property
    def ended(self) -> float:
        """When the attempt was over (its answer, or its request if no answer was recorded)."""
        return self.response.t if self.response is not None else self.request.t


@dataclass(frozen=True)
class ReconnectTimeline:
    """How a client lost its connection and tried again: attempts, the waits between them, the outcome."""

    client: str | None
    lost_at: float | None
    attempts: tuple[Attempt, ...]
    old_sid: str | None = None

    @property
    def waits(self) -> list[float]:
        """Seconds the client waited before each attempt: from the loss (or the previous attempt's end)."""
        out = []
        for i, attempt in enumerate(self.attempts):
            start = self.lost_at if i == 0 else self.attempts[i - 1].ended
            if start is not None:
                out.append(attempt.t - start)
        return out

    @property
    def failed(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.ok]

    @property
    def success(self) -> Attempt | None:
        return next((a for a in self.attempts if a.ok), None)

    @property
    def reconnected_at(self) -> float | None:
        return self.success.response.t if self.success is not None else None

    @property
    def new_sid(self) -> str | None:
        """The Engine.IO sid of the new session (None until an attempt succeeded)."""
        success = self.success
        if success is None:
            return None
        return success.response.sid

    def __str__(self) -> str:
        who = self.client or "client"
        lines = [f"{who} lost its connection at {self.lost_at:.3f} s" if self.lost_at is not None
                 else f"{who}: no connection loss recorded"]
        waits = self.waits
        offset = len(self.attempts) - len(waits)
        for i, a in enumerate(self.attempts):
            wait = waits[i - offset] if i >= offset else None
            waited = f" after waiting {wait:.3f} s" if wait is not None else ""
            outcome = ("session opened" if a.ok else f"HTTP {a.status}" if a.status else "no answer recorded")
            lines.append(f"  attempt {i + 1} at {a.t:.3f} s{waited}: {outcome}")
        if self.success is None:
            lines.append("  not reconnected (yet)")
        return "\n".join(lines)


def _is_handshake(r: Record) -> bool:
    """A request that opens a new Engine.IO session (no sid in the query)."""
    if r.dir != "c2s" or r.sid is not None or not r.http or r.http.get("status") is not None:
        return False
    path = r.http.get("path") or ""
    if "EIO=" not in path or r.http.get("method") != "GET":
        return False
    return (r.kind == "http" and r.transport == "polling") or (r.kind == "ws" and r.transport == "websocket")


def _is_loss(r: Record) -> bool:
    """A record that shows an established session failing: its WebSocket closed, or a request on it failed."""
    if r.kind == "ws" and (r.note or "").startswith("WebSocket closed"):
        return True
    status = (r.http or {}).get("status")
    return r.kind == "http" and r.dir == "s2c" and r.sid is not None and status is not None and status >= 400


def _answers(request: Record, r: Record) -> bool:
    return (r.dir == "s2c" and r.client == request.client and bool(r.http)
            and r.http.get("path") == request.http.get("path") and r.http.get("status") is not None)


def reconnection_timeline(records: Iterable[Record], client: str | None = None, *,
                          since: float = 0.0) -> ReconnectTimeline:
    """The attempts ``client`` made to connect at or after ``since`` (a ``trace.now()`` mark).

    ``lost_at`` is the last sign of the old session failing before the first attempt (a closed
    WebSocket, a failed long-poll); attempts are fresh handshakes, each paired with its answer.
    """
    rows = [r for r in records if r.t >= since and (client is None or r.client == client)]
    attempts: list[Attempt] = []
    for i, r in enumerate(rows):
        if _is_handshake(r):
            response = next((x for x in rows[i + 1:] if _answers(r, x)), None)
            attempts.append(Attempt(r, response))
    first = attempts[0].t if attempts else float("inf")
    losses = [r for r in rows if _is_loss(r) and r.t <= first]
    lost = losses[-1] if losses else None
    return ReconnectTimeline(client=client, lost_at=lost.t if lost else None, attempts=tuple(attempts),
                             old_sid=lost.sid if lost else None)


async def wait_for_attempts(trace, n: int, client: str | None = None, *, since: float = 0.0,
                            timeout: float = 10.0) -> ReconnectTimeline:
    """Wait (on a live trace) until ``client`` has made ``n`` attempts since ``since``; returns the timeline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        timeline = reconnection_timeline(trace, client, since=since)
        if len(timeline.attempts) >= n and all(a.response is not None for a in timeline.attempts[:n]):
            return timeline
        if loop.time() >= deadline:
            raise AssertionError(f"{client or 'the client'} made {len(timeline.attempts)} attempt(s) in "
                                 f"{timeout} s, not {n}; last records:\n{trace.tail(8)}")
        await asyncio.sleep(0.02)


def expected_waits(n: int, delay: float = 1.0, delay_max: float = 5.0,
                   randomization_factor: float = 0.5) -> list[tuple[float, float]]:
    """The (shortest, longest) wait before each of the first ``n`` attempts, by python-socketio's rule.

    python-socketio (``AsyncClient._handle_reconnect``): the base doubles from ``reconnection_delay``
    and is capped at ``reconnection_delay_max``; then ``randomization_factor * (2 * random() - 1)``
    *seconds* are added. So the jitter is absolute, not a fraction, and a wait can exceed the cap.
    """
    out = []
    for k in range(n):
        base = min(delay * 2 ** k, delay_max)
        out.append((max(0.0, base - randomization_factor), base + randomization_factor))
    return out


def js_expected_waits(n: int, delay: float = 1.0, delay_max: float = 5.0,
                      randomization_factor: float = 0.5) -> list[tuple[float, float]]:
    """The same range by the JavaScript client's rule (socket.io-client's ``Backoff``), in seconds.

    There the base ``reconnectionDelay * 2**attempt`` is moved by up to ``randomizationFactor``
    *of itself* (a fraction), and the result is capped at ``reconnectionDelayMax``.
    """
    out = []
    for k in range(n):
        base = delay * 2 ** k
        out.append((min(base * (1 - randomization_factor), delay_max),
                    min(base * (1 + randomization_factor), delay_max)))
    return out


def waits_table(n: int, delay: float = 1.0, delay_max: float = 5.0, randomization_factor: float = 0.5) -> str:
    """python-socketio's and socket.io-client's wait ranges side by side (deterministic text)."""
    py = expected_waits(n, delay, delay_max, randomization_factor)
    js = js_expected_waits(n, delay, delay_max, randomization_factor)
    lines = [f"delay={delay} s, delay_max={delay_max} s, randomization_factor={randomization_factor}",
             f"{'attempt':>7}  {'python-socketio':>17}  {'socket.io-client (JS)':>22}"]
    for i, ((plo, phi), (jlo, jhi)) in enumerate(zip(py, js), 1):
        lines.append(f"{i:>7}  {plo:6.2f} .. {phi:5.2f} s  {jlo:11.2f} .. {jhi:5.2f} s")
    return "\n".join(lines)


__all__ = ["AckPair", "ack_pairs", "unanswered", "ack_table", "Attempt", "ReconnectTimeline",
           "reconnection_timeline", "wait_for_attempts", "expected_waits", "js_expected_waits", "waits_table"]
