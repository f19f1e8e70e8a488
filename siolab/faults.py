"""Fault switches the tap applies: refuse the WebSocket, drop or delay packets, pause a client.

Every switch thrown is recorded in the trace, so a learner sees why something happened.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

from .record import Record, matches, new_record, with_fields
from .trace import Trace


@dataclass(eq=False)
class Fault:
    """One active drop/delay rule; ``remove()`` ends it. ``hits`` counts the packets it matched."""

    action: str
    criteria: dict = field(default_factory=dict)
    where: Callable[[Record], bool] | None = None
    seconds: float = 0.0
    hits: int = 0
    _owner: "Faults | None" = None

    def describe(self) -> str:
        text = ", ".join(f"{k}={v!r}" for k, v in self.criteria.items()) or "every packet"
        if self.where is not None:
            text += " (and a where= condition)"
        return f"{self.action}({text})"

    def remove(self) -> None:
        if self._owner is not None:
            self._owner.remove(self)


class Faults:
    """The tap's fault switches; decisions are made per record by ``check``."""

    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.rules: list[Fault] = []
        self.websocket_refused = False
        self._paused: dict[str | None, asyncio.Event] = {}

    def add(self, action: str, *, criteria: dict, where=None, seconds: float = 0.0) -> Fault:
        fault = Fault(action, dict(criteria), where, seconds, _owner=self)
        self.rules.append(fault)
        self.trace.add(kind="fault", note=f"fault switched on: {fault.describe()}")
        return fault

    def remove(self, fault: Fault) -> None:
        if fault in self.rules:
            self.rules.remove(fault)
            self.trace.add(kind="fault", note=f"fault switched off: {fault.describe()} ({fault.hits} packets)")

    def clear(self) -> None:
        for fault in list(self.rules):
            self.remove(fault)
        self.refuse_websocket(False)
        for client in list(self._paused):
            self.resume(client)

    def check(self, record: Record) -> Fault | None:
        """The first rule that matches this packet record, or None to relay it unchanged."""
        for fault in self.rules:
            try:
                hit = matches(record, fault.where, **fault.criteria)
            except Exception as exc:  # a learner's predicate must not break the relay
                self.trace.add(kind="error", note=f"fault predicate raised {exc!r}; fault removed")
                self.remove(fault)
                return None
            if hit:
                fault.hits += 1
                return fault
        return None

    def judge(self, records: list[Record], dir: str, t: float) -> tuple[list[Record], set[int], float]:
        """What the rules make of the records of one body or frame: the records to append (a dropped packet
        becomes a fault record that says so; a delay adds one record after the packets, so a trace stays
        sorted by time), the ids of the dropped records, and the delay in seconds."""
        if not self.rules:
            return records, set(), 0.0
        out, dropped, delay, delayed, rule = [], set(), 0.0, 0, None
        for rec in records:
            verdict = self.check(rec)
            if verdict is None:
                out.append(rec)
            elif verdict.action == "drop":
                out.append(with_fields(rec, kind="fault", note=f"dropped by the tap: {verdict.describe()}"))
                dropped.add(id(rec))
            else:
                out.append(rec)
                delayed += 1
                if verdict.seconds >= delay:
                    delay, rule = verdict.seconds, verdict
        if delayed:
            rec = records[-1]
            out.append(new_record(t=t, kind="fault", dir=dir, transport=rec.transport, sid=rec.sid,
                                  client=rec.client, server=rec.server,
                                  note=f"delayed {delay} s by the tap: {rule.describe()}"
                                       + (f" ({delayed} packets)" if delayed > 1 else "")))
        return out, dropped, delay

    def refuse_websocket(self, refuse: bool = True) -> None:
        if refuse != self.websocket_refused:
            self.websocket_refused = refuse
            state = "on: WebSocket upgrades are answered 403" if refuse else "off: WebSockets are relayed"
            self.trace.add(kind="fault", note=f"refuse_websocket {state}")

    def pause(self, client: str | None = None) -> None:
        event = self._paused.setdefault(client, asyncio.Event())
        event.clear()
        self.trace.add(kind="fault", client=client,
                       note=f"relaying paused for {client or 'every client'}: packets wait in the tap")

    def resume(self, client: str | None = None) -> None:
        event = self._paused.pop(client, None)
        if event is not None:
            event.set()
            self.trace.add(kind="fault", client=client, note=f"relaying resumed for {client or 'every client'}")

    def paused(self, client: str | None) -> bool:
        """True while this client's traffic (or everyone's) is held."""
        return bool(self._paused) and (None in self._paused or client in self._paused)

    async def gate(self, client: str | None) -> None:
        """Wait while this client (or everyone) is paused."""
        if not self._paused:
            return
        for key in (None, client):
            event = self._paused.get(key)
            if event is not None:
                await event.wait()

    @property
    def active(self) -> bool:
        return bool(self.rules or self.websocket_refused or self._paused)
