"""Questions the lessons ask of a trace: heartbeat timing, polling batches, HTTP requests, silences.

Everything here only reads Records (a ``Trace`` or any iterable of them) and returns plain
values: measured ping intervals, the time from the last pong to a close, the packets one
long-polling response carried, the HTTP requests around the WebSocket upgrade. Two small
helpers for notebooks sit at the end: ``wait_until`` (wait for a kernel-side condition)
and ``self_check`` (a kind verdict on a learner's answer).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

from .record import Record, is_heartbeat
from .recorder import parse_query

Records = Iterable[Record]


# ------------------------------------------------------------------ selecting records
def _of(records: Records, client: str | None) -> list[Record]:
    return [r for r in records if client is None or r.client == client]


def is_heartbeat_ping(record: Record) -> bool:
    """A server PING of the heartbeat (``2``), not the upgrade's ``2probe``; only relayed packets."""
    return is_heartbeat(record) and record.eio == "ping" and record.dir == "s2c"


def is_heartbeat_pong(record: Record, delivered: bool = True) -> bool:
    """A client PONG (``3``). ``delivered=False`` also counts pongs the tap dropped (kind 'fault')."""
    kinds = ("packet",) if delivered else ("packet", "fault")
    return record.kind in kinds and record.eio == "pong" and record.raw == "3" and record.dir == "c2s"


def query(item: Record | str | None) -> dict[str, str]:
    """The query parameters of an HTTP record's path (or of a path/URL string); {} if there is none."""
    if isinstance(item, Record):
        item = (item.http or {}).get("path")
    if not item:
        return {}
    return parse_query(urlsplit(item).query)  # the first value of each, as the servers read them


# ------------------------------------------------------------------ HTTP requests and polling batches
@dataclass(frozen=True)
class HttpRequest:
    """One request a client made through the tap: a polling GET or POST, or a WebSocket upgrade request."""

    t: float
    method: str
    transport: str | None
    path: str
    client: str | None
    packets: tuple[Record, ...] = ()  # what a POST carried (dropped ones included, as kind 'fault')
    websocket: bool = False

    @property
    def query(self) -> dict[str, str]:
        return query(self.path)

    @property
    def sid(self) -> str | None:
        return self.query.get("sid")

    def __str__(self) -> str:
        what = "WebSocket upgrade" if self.websocket else f"{self.method} {self.transport}"
        body = " + ".join(p.raw or "" for p in self.packets)
        return f"{self.t:8.3f}  {(self.client or '-'):<8} {what:<18} {self.path}" + (f"   body: {body}" if body else "")


def requests(records: Records, client: str | None = None) -> list[HttpRequest]:
    """Every HTTP request (polling GET/POST, WebSocket upgrade request) in wire order.

    A POST's packets are recorded one record each with the POST's ``http``; they are gathered
    back into one HttpRequest here (consecutive records with the same path and time).
    """
    out: list[HttpRequest] = []
    post_key: tuple | None = None  # the POST the last HttpRequest came from
    for r in _of(records, client):
        http = r.http or {}
        if r.dir != "c2s" or not http or http.get("status") is not None:
            continue
        if r.kind in ("http", "ws"):
            out.append(HttpRequest(r.t, http.get("method") or "", r.transport, http.get("path") or "", r.client,
                               websocket=r.kind == "ws"))
            post_key = None
        elif r.kind in ("packet", "fault") and http.get("method") == "POST":
            key = (r.client, http.get("path"), r.t)
            if key == post_key:
                last = out[-1]
                out[-1] = HttpRequest(last.t, last.method, last.transport, last.path, last.client,
                                  last.packets + (r,))
            else:
                out.append(HttpRequest(r.t, "POST", r.transport, http.get("path") or "", r.client, (r,)))
                post_key = key
    return out


@dataclass(frozen=True)
class Upgrade:
    """The client's HTTP requests before and after its WebSocket upgrade request."""

    before: tuple[HttpRequest, ...]
    upgrade: HttpRequest | None
    after: tuple[HttpRequest, ...]

    @property
    def polling_after(self) -> tuple[HttpRequest, ...]:
        return tuple(r for r in self.after if not r.websocket)


def around_upgrade(records: Records, client: str) -> Upgrade:
    """Split one client's requests at its first WebSocket upgrade request (``upgrade`` None if there was none)."""
    reqs = requests(records, client)
    for i, req in enumerate(reqs):
        if req.websocket:
            return Upgrade(tuple(reqs[:i]), req, tuple(reqs[i + 1:]))
    return Upgrade(tuple(reqs), None, ())


def batches(records: Records, client: str | None = None, dir: str = "s2c") -> list[tuple[Record, ...]]:
    """The polling packets grouped by the HTTP message that carried them (one tuple per response body).

    The tap gives every packet of one polling body the same ``http`` (method, path, status) and
    the same time, and records them one after another; WebSocket frames are never batched.
    """
    out: list[tuple[Record, ...]] = []
    last_key: tuple | None = None
    for r in _of(records, client):
        if r.kind not in ("packet", "fault") or r.dir != dir or r.transport != "polling" or not r.http \
                or r.eio is None:
            continue  # records in between (e.g. a delay notice) do not split a body
        key = (r.client, r.http.get("method"), r.http.get("path"), r.http.get("status"), r.t)
        if key == last_key:
            out[-1] = out[-1] + (r,)
        else:
            out.append((r,))
            last_key = key
    return out


# ------------------------------------------------------------------ heartbeat
@dataclass(frozen=True)
class Heartbeat:
    """One server PING and the client's PONG to it (None if none came; ``dropped`` if the tap ate it)."""

    ping: Record
    pong: Record | None
    dropped: bool = False

    @property
    def round_trip(self) -> float | None:
        return None if self.pong is None or self.dropped else self.pong.t - self.ping.t


def heartbeats(records: Records, client: str | None = None) -> list[Heartbeat]:
    """Each heartbeat PING paired with the first PONG of the same session that follows it."""
    recs = _of(records, client)
    out = []
    for i, r in enumerate(recs):
        if not is_heartbeat_ping(r):
            continue
        pong, dropped = None, False
        for later in recs[i + 1:]:
            if later.sid != r.sid:
                continue
            if is_heartbeat_ping(later):
                break
            if is_heartbeat_pong(later, delivered=False):
                pong, dropped = later, later.kind == "fault"
                break
        out.append(Heartbeat(r, pong, dropped))
    return out


def ping_intervals(records: Records, client: str | None = None, *, from_open: bool = False) -> list[float]:
    """Seconds between consecutive server PINGs of the same session (in order).

    With ``from_open=True`` each session's first interval is measured from its open packet,
    since the server sends the first PING one pingInterval after the handshake.
    """
    last: dict[str | None, float] = {}
    out = []
    for r in _of(records, client):
        if from_open and r.kind == "packet" and r.eio == "open" and r.dir == "s2c":
            last[r.sid] = r.t
        elif is_heartbeat_ping(r):
            if r.sid in last:
                out.append(r.t - last[r.sid])
            last[r.sid] = r.t
    return out


def last_pong(records: Records, client: str | None = None, before: float | None = None) -> Record | None:
    """The last PONG that reached the server (not one the tap dropped), optionally before a time."""
    found = None
    for r in _of(records, client):
        if before is not None and r.t > before:
            break
        if is_heartbeat_pong(r):
            found = r
    return found


def time_since_last_pong(records: Records, t: float, client: str | None = None) -> float:
    """Seconds from the last delivered PONG (or, if none, the handshake) to ``t``: e.g. to a ping-timeout close.

    python-engineio sends the next PING one pingInterval after a PONG and gives up pingTimeout
    after that PING, so a ping-timeout close comes about pingInterval + pingTimeout after the last PONG.
    """
    recs = _of(records, client)
    pong = last_pong(recs, before=t)
    if pong is not None:
        return t - pong.t
    opened = next((r for r in recs if r.kind == "packet" and r.eio == "open" and r.t <= t), None)
    if opened is None:
        raise ValueError("no PONG and no open packet before that time")
    return t - opened.t


# ------------------------------------------------------------------ silences and order
@dataclass(frozen=True)
class Gap:
    """A stretch with no record at all: ``after`` is None when the trace ended in silence."""

    before: Record
    after: Record | None
    seconds: float


def gaps(records: Records, at_least: float, *, until: float | None = None) -> list[Gap]:
    """Silences of at least ``at_least`` seconds between consecutive records (and up to ``until``, if given)."""
    recs = list(records)
    out = [Gap(a, b, b.t - a.t) for a, b in zip(recs, recs[1:]) if b.t - a.t >= at_least]
    if until is not None and recs and until - recs[-1].t >= at_least:
        out.append(Gap(recs[-1], None, until - recs[-1].t))
    return out


def in_order(items: Sequence[Any], expected: Sequence[Any]) -> bool:
    """True if ``expected`` appears in ``items`` in that order (other items may come in between)."""
    it = iter(items)
    return all(any(x == want for x in it) for want in expected)


# ------------------------------------------------------------------ notebook helpers
async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01,
                     what: str = "the condition") -> float:
    """Wait (without blocking the loop) until ``predicate()`` is true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


__all__ = ["query", "HttpRequest", "requests", "Upgrade", "around_upgrade", "batches", "Heartbeat", "heartbeats",
           "ping_intervals", "last_pong", "time_since_last_pong", "Gap", "gaps", "in_order",
           "is_heartbeat_ping", "is_heartbeat_pong", "wait_until"]
