"""The bounded Trace: an append-only store of Records with listeners, waiters and filters.

Bounded: past ``limit`` the oldest records are dropped and counted in ``dropped`` (views say how many).
The tap may leave the reading of what it relayed for later (``defer``); deferred records are settled
before anything reads the trace or appends to it, and at most ``SETTLE_AFTER`` after they came
(docs/architecture.md: relay first, read after).
"""
from __future__ import annotations

import asyncio
import io
import os
import time
from collections import deque
from dataclasses import replace
from typing import Any, Callable, Iterable, Iterator

from . import jsonl, render
from .record import FIELDS, KINDS, LazyRecord, Record, is_heartbeat, matches, new_record
from .jsonl import MAX_DEPTH, record_from_json, record_to_json

DEFAULT_LIMIT = 100_000
# In the lab, where server, clients and tap share one loop, framing and decoding a burst in one go took less
# than half the CPU of reading each frame between the server's and clients' work (docs/benchmarks.md).
SETTLE_AFTER = 0.02
SETTLE_CHUNK = 64  # decoded in one go before the loop serves the sockets again (~1-2 ms)
MAX_BACKLOG = 2048
MAX_BACKLOG_BYTES = 4 * 1024 * 1024  # deferred bytes (e.g. big binary frames) before settling at once
JSONL_KEYS = FIELDS  # (the JSON Lines keys are the record's fields, in order)


class Trace:
    """Append-only, bounded store of Records with listeners and JSON Lines export."""

    def __init__(self, limit: int | None = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self._store: deque[Record] = deque(maxlen=limit)
        self.dropped = 0
        self.t0 = time.monotonic()
        self._listeners: tuple[Callable[[Record], None], ...] = ()  # replaced, never changed: safe to iterate
        self.listener_errors = 0
        self._waiters: list[tuple[dict, Callable | None, asyncio.Future]] = []
        self._backlog: list[tuple[Callable[..., None], tuple]] = []
        self._settle_handle: asyncio.Handle | None = None
        self._settling = False
        self._backlog_bytes = 0

    @property
    def _records(self) -> deque[Record]:
        """The records, every deferred one included (see ``defer``)."""
        if self._backlog and not self._settling:
            self.settle()
        return self._store

    # -- writing
    def now(self) -> float:
        """Seconds since the trace started (monotonic)."""
        return time.monotonic() - self.t0

    def append(self, record: Record) -> Record:
        if self._backlog and not self._settling:  # records left for later come first: wire order
            self.settle()
        return self._store_append(record)

    def _store_append(self, record: Record) -> Record:
        store = self._store
        if len(store) == self.limit:  # (never when limit is None)
            self.dropped += 1
        store.append(record)
        if self._listeners:
            for listener in self._listeners:
                try:
                    listener(record)
                except Exception:  # a broken view must not break the tap
                    self.listener_errors += 1
        if self._waiters:
            self._wake(record)
        return record

    def extend(self, records: Iterable[Record]) -> None:
        """Append records in order (a source that is not live: a file, an import)."""
        for record in records:
            self.append(record)

    def add(self, **values: Any) -> Record:
        """Append a record built from keyword values, stamped with ``now()`` unless ``t`` is given."""
        values.setdefault("t", self.now())
        return self.append(new_record(**values))

    def defer(self, produce: Callable[..., None], *args: Any, size: int = 0) -> None:
        """Call ``produce(*args)`` (which appends records) later: before the trace is next read or
        appended to, or SETTLE_AFTER seconds from now, a chunk at a time. The tap decodes the packets
        nobody can change this way; their records keep their arrival time. ``size``: the bytes the call
        holds on to; more than MAX_BACKLOG_BYTES in all are settled at once."""
        self._backlog.append((produce, args))
        self._backlog_bytes += size
        if len(self._backlog) >= MAX_BACKLOG or self._backlog_bytes >= MAX_BACKLOG_BYTES:
            self.settle()
        elif self._settle_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.settle()
                return
            self._settle_handle = loop.call_later(SETTLE_AFTER, self._settle_some)

    def settle(self) -> None:
        """Make every deferred record a record now (reading the trace does this by itself)."""
        if self._settling:
            return
        handle, self._settle_handle = self._settle_handle, None
        if handle is not None:
            handle.cancel()
        while self._backlog:
            items, self._backlog = self._backlog, []
            self._backlog_bytes = 0
            self._produce(items)

    def _settle_some(self) -> None:
        """A chunk of the backlog, then the loop's other work, then the next chunk: no long stall."""
        self._settle_handle = None
        items = self._backlog[:SETTLE_CHUNK]
        del self._backlog[:SETTLE_CHUNK]
        if not self._backlog:
            self._backlog_bytes = 0
        self._produce(items)
        if self._backlog and self._settle_handle is None:
            self._settle_handle = asyncio.get_running_loop().call_soon(self._settle_some)

    def _produce(self, items: list) -> None:
        self._settling = True
        try:
            for produce, args in items:
                try:
                    produce(*args)
                except Exception as exc:  # nothing traced is lost silently
                    self._store_append(new_record(t=self.now(), kind="error",
                                                  note=f"siolab could not decode a packet it relayed: {exc!r}"))
        finally:
            self._settling = False

    def clear(self) -> None:
        """Forget every record (listeners stay; the dropped count resets)."""
        self._records.clear()
        self.dropped = 0

    # -- listening
    def subscribe(self, listener: Callable[[Record], None]) -> Callable[[], None]:
        """Call ``listener(record)`` for each new record; returns a function that unsubscribes."""
        self._listeners += (listener,)

        def unsubscribe() -> None:
            if listener in self._listeners:
                kept = list(self._listeners)
                kept.remove(listener)
                self._listeners = tuple(kept)
        return unsubscribe

    def _wake(self, record: Record) -> None:
        for item in tuple(self._waiters):
            criteria, where, fut = item
            if not fut.done() and matches(record, where, **criteria):
                fut.set_result(record)
            if fut.done():
                self._waiters.remove(item)

    async def wait_for(self, timeout: float = 5.0, where: Callable[[Record], bool] | None = None,
                       **criteria: Any) -> Record:
        """Wait until a record matching the criteria is in the trace (one already there counts)."""
        found = self.first(where=where, **criteria)
        if found is not None:
            return found
        fut = asyncio.get_running_loop().create_future()
        item = (criteria, where, fut)
        self._waiters.append(item)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"no record with {_describe(criteria, where)} within {timeout} s; "
                                 f"last records:\n{self.tail(8)}") from None
        finally:
            if item in self._waiters:
                self._waiters.remove(item)

    # -- reading
    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[Record]:
        return iter(tuple(self._records))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(self._records)[index]
        return self._records[index]

    def filter(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> "Trace":
        """A new (unbounded) Trace with the matching records, in order."""
        out = type(self)(limit=None)
        out.t0 = self.t0
        out._records.extend(r for r in self._records if matches(r, where, **criteria))
        return out

    def find(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> list[Record]:
        """Every matching record, in order."""
        return [r for r in self._records if matches(r, where, **criteria)]

    def first(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Record | None:
        return next((r for r in self._records if matches(r, where, **criteria)), None)

    def expect(self, where: Callable[[Record], bool] | None = None, **criteria: Any) -> Record:
        """The first matching record; an AssertionError that shows the trace's tail if none matches."""
        found = self.first(where=where, **criteria)
        if found is None:
            raise AssertionError(f"no record with {_describe(criteria, where)}; last records:\n{self.tail(8)}")
        return found

    def since(self, mark: float) -> "Trace":
        """The records at or after time ``mark`` (e.g. ``t = lab.trace.now()`` taken before an action)."""
        return self.filter(where=lambda r: r.t >= mark)

    def packets(self, **criteria: Any) -> list[Record]:
        """Only Engine.IO packets (no HTTP-only, WebSocket, fault or error records)."""
        return self.find(kind="packet", **criteria)

    def raws(self, **criteria: Any) -> list[str]:
        """The raw text of the matching packets, in order: handy for asserting a sequence."""
        return [r.raw for r in self.find(kind="packet", **criteria)]

    # -- showing
    def table(self, limit: int | None = 200, hide_heartbeats: bool = False) -> str:
        """The records as a text table (``hide_heartbeats``: leave out the pings and pongs that went through)."""
        return render.table(self._records, limit=limit, hide_heartbeats=hide_heartbeats, dropped=self.dropped,
                            bound=self.limit)

    def tail(self, n: int = 10) -> str:
        return "\n".join(str(r) for r in list(self._records)[-n:])

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return f"<Trace {len(self)} records, {self.dropped} dropped>"

    def _repr_html_(self) -> str:
        records = list(self._records)
        return render.html_table(records, total=len(records), dropped=self.dropped, bound=self.limit)

    # -- JSON Lines (jsonl.py)
    def to_jsonl(self, target: str | os.PathLike | io.TextIOBase | None = None) -> str | None:
        """Write one JSON object per record; returns the text when no target is given."""
        if target is None:
            return jsonl.dumps(self._records)
        if isinstance(target, (str, os.PathLike)):
            with open(target, "w", encoding="utf-8") as fh:
                jsonl.write(self._records, fh)
        else:
            jsonl.write(self._records, target)
        return None

    @classmethod
    def from_jsonl(cls, source: str | os.PathLike | Iterable[str], limit: int | None = None) -> "Trace":
        """Read a JSON Lines trace (untrusted: each line is parsed as JSON and checked, never evaluated)."""
        trace = cls(limit=limit)
        trace.extend(jsonl.read(source))
        return trace

    # -- HAR (har.py)
    @classmethod
    def from_har(cls, source: str | os.PathLike | dict, limit: int | None = None) -> "Trace":
        """Read a HAR file (a path, or its parsed JSON) through the live tap's recorder; the first record (a log)
        says how many entries were read and skipped. Untrusted: a file that is not a HAR raises ValueError."""
        from . import har
        trace = cls(limit=limit)
        trace.extend(har.read(source).records)
        return trace

    def to_har(self, path: str | os.PathLike, *, redact: bool = True, origin: str = "http://localhost") -> str:
        """Write the trace as a HAR file Chrome DevTools imports (WebSocket frames included); tokens in auth
        payloads and query strings are redacted unless ``redact=False``. Returns the note on what was redacted."""
        from . import har_export
        records = list(self._records)
        start = time.time() - (max((r.t for r in records), default=0.0))
        return har_export.write(records, path, redact=redact, origin=origin, start=start)


def _describe(criteria: dict, where: Callable | None) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in criteria.items()) or "any fields"
    return text + (" and a where= condition" if where else "")


__all__ = ["Record", "LazyRecord", "Trace", "matches", "is_heartbeat", "record_from_json", "record_to_json",
           "replace", "new_record", "KINDS", "JSONL_KEYS", "FIELDS", "MAX_DEPTH", "DEFAULT_LIMIT"]
