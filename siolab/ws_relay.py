"""One relayed WebSocket: frames go through as they came; whole messages go to the recorder.

Each direction has its own state (``_Direction``). While no fault switch can change a frame, the tap
writes it on first and reads its copy after: at once, or in the lab's batches (``Trace.defer``; the tap
relays whole chunks then, and frames them later). While a fault may act (a rule, a pause), each message
is read before it goes on, and may be dropped or held back (``relay.Lane`` keeps the order). Switching
between the two loses, cuts or repeats nothing (tests/test_relay.py runs both).
"""
from __future__ import annotations

import asyncio

from . import notes, relay, wire
from .faults import Faults
from .recorder import Recorder, Stream
from .record import Record
from .trace import Trace

#: The largest WebSocket message the tap reads (a frame, or a fragmented message in all). Past it the tap says
#: so and relays the rest of that direction unread: both official servers close the connection (1009) at their
#: maxPayload, 1 MB by default, long before.
MAX_MESSAGE = 16 * 1024 * 1024


class _Fragments:
    """A fragmented message so far: its opcode, its payloads, and the raw frames held back (unless ``sent``:
    they went on as they came)."""

    __slots__ = ("opcode", "payloads", "held", "sent", "size")

    def __init__(self, opcode: int, payload: bytes, sent: bool) -> None:
        self.opcode, self.payloads, self.held, self.sent = opcode, [payload], [], sent
        self.size = len(payload)

    def add(self, payload: bytes) -> None:
        self.payloads.append(payload)
        self.size += len(payload)
        if self.size > MAX_MESSAGE:
            raise wire.WireError(f"a fragmented WebSocket message of more than {MAX_MESSAGE} bytes, more than "
                                 f"the tap reads")


class _Direction:
    """What the relay keeps for one direction (c2s: from the client; s2c: from the server)."""

    __slots__ = ("name", "src", "lane", "reader", "fragments", "parse", "chunks", "skip", "close_code")

    def __init__(self, name: str, src: relay.Conn, dst: relay.Conn, parse: bool) -> None:
        self.name = name
        self.src = src  # where this direction's frames come from
        self.lane = relay.Lane(dst, src)  # where they go (in order, possibly held)
        self.reader = wire.FrameReader(MAX_MESSAGE)
        self.fragments: _Fragments | None = None
        self.parse = parse  # False: relay bytes only
        self.chunks = False  # chunks go on as they came and are framed later (a batching tap, no fault)
        self.skip = 0  # bytes of the reader's partial frame that went on already
        self.close_code: int | None | bool = False  # False: no close frame sent; else its code (None: no code)


class WebSocketRelay:
    """Relays one WebSocket between the client's connection and the server's, recording what it carries."""

    def __init__(self, down: relay.Conn, up: relay.Conn, *, stream: Stream, recorder: Recorder, trace: Trace,
                 faults: Faults, record: bool, batch: bool) -> None:
        self.stream, self.recorder, self.trace, self.faults = stream, recorder, trace, faults
        self.record, self.batch = record, batch
        self.dirs = {"c2s": _Direction("c2s", down, up, record), "s2c": _Direction("s2c", up, down, record)}
        self.recorded_close = False
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def start(self, c2s_early: bytes, s2c_early: bytes) -> None:
        down, up = self.dirs["c2s"].src, self.dirs["s2c"].src
        down.peer, up.peer = up, down  # a side that cannot write fast enough pauses the other's reading
        down.on_data = lambda data: self.received("c2s", data)
        up.on_data = lambda data: self.received("s2c", data)
        down.on_lost = lambda: self.lost("c2s")
        up.on_lost = lambda: self.lost("s2c")
        for name, early in (("c2s", c2s_early), ("s2c", s2c_early)):
            if early:
                self.received(name, early)
        for name in ("c2s", "s2c"):
            if self.dirs[name].src.lost:
                self.lost(name)

    def _append(self, records: list[Record]) -> None:
        for rec in records:
            self.trace.append(rec)

    def _passive(self) -> bool:
        """True when no fault can change a frame now, so it goes on before the tap reads its copy."""
        return not self.faults.rules and not self.faults.paused(self.stream.client)

    # ---------------------------------------------------------------- frames in
    def received(self, name: str, data: bytes) -> None:
        d = self.dirs[name]
        if not d.parse:
            d.lane.send(data)
            return
        if self.batch and self._passive():
            if not d.chunks:
                self._to_chunks(d)
            d.lane.send(data)
            self.trace.defer(self._read_sent, d, data, d.lane.dst.closing, self.trace.now(), size=len(data))
            return
        if d.chunks:  # a fault may act now: frame what went on so far, then read before relaying
            self.trace.settle()
            d.chunks = False
            d.skip = d.reader.buffered
        try:
            frames = d.reader.feed(data)
        except wire.WireError as exc:  # relay on, unread: the receiver will close if it disagrees
            for frame in exc.frames:
                self._frame(d, frame)
            self._stop_reading(d, exc)
            fragments, d.fragments = d.fragments, None
            if fragments is not None and not fragments.sent:  # fragments held back for a fault's decision
                d.lane.send(b"".join(fragments.held))
            d.lane.send(d.reader.pending()[d.skip:])
            d.skip = 0
            return
        for frame in frames:
            self._frame(d, frame)
        if not d.parse:  # a frame made the tap stop reading: what the reader held goes on, unread
            d.lane.send(d.reader.pending()[d.skip:])
            d.skip = 0

    def _stop_reading(self, d: _Direction, exc: wire.WireError) -> None:
        if not d.parse:
            return
        d.parse = False
        self._note(d.name, f"not a WebSocket frame: {exc}; the tap relays the rest of this direction without "
                           f"reading it")

    def _to_chunks(self, d: _Direction) -> None:
        """From reading each frame before it goes on to relaying chunks: what was held goes first."""
        d.chunks = True
        fragments = d.fragments
        if fragments is not None and not fragments.sent:  # fragments held back for a fault's decision
            d.lane.send(b"".join(fragments.held))
            fragments.held.clear()
            fragments.sent = True
        unsent = d.reader.pending()[d.skip:]  # a partial frame not relayed yet
        d.skip = 0
        if unsent:
            d.lane.send(unsent)

    def _read_sent(self, d: _Direction, data: bytes, gone: bool, t: float) -> None:
        """Frame and record a chunk that was relayed already (Trace.defer)."""
        if not d.parse:
            return
        try:
            frames = d.reader.feed(data)
        except wire.WireError as exc:
            for frame in exc.frames:
                self._frame_sent(d, frame, gone, t)
            d.fragments = None
            self._stop_reading(d, exc)
            return
        for frame in frames:
            self._frame_sent(d, frame, gone, t)

    def _frame_sent(self, d: _Direction, frame: wire.Frame, gone: bool, t: float) -> None:
        """Record what a frame that already went on says (messages, fragments, close)."""
        if not d.parse:
            return
        op = frame.opcode
        if op >= 8:
            if op == 8:
                self._close_frame(d, frame)
            return
        if op in (1, 2):
            if frame.fin:
                self._record_message(d, op, frame.payload, gone, t)
            else:
                d.fragments = _Fragments(op, frame.payload, sent=True)
            return
        fragments = d.fragments
        if fragments is None:
            self._note(d.name, notes.LONE_CONTINUATION)
            return
        try:
            fragments.add(frame.payload)
        except wire.WireError as exc:  # (what went on stays relayed; the rest goes unread)
            d.fragments = None
            self._stop_reading(d, exc)
            return
        if frame.fin:
            d.fragments = None
            self._record_message(d, fragments.opcode, b"".join(fragments.payloads), gone, t)

    def _frame(self, d: _Direction, frame: wire.Frame) -> None:
        """A frame read before it goes on."""
        if not d.parse:  # the tap stopped reading this direction (a frame earlier in this chunk)
            d.lane.send(frame.raw)
            return
        if d.skip:  # its beginning went on while the tap relayed chunks: the rest follows, unchanged
            skip, d.skip = d.skip, 0
            d.lane.send(frame.raw[skip:])
            self._frame_sent(d, frame, d.lane.dst.closing, self.trace.now())
            return
        op = frame.opcode
        if op >= 8:
            if op == 8:
                self._close_frame(d, frame)
            d.lane.send(frame.raw)
            return
        if op in (1, 2):
            if frame.fin:
                self._message(d, op, frame.payload, frame.raw)
                return
            passive = self._passive()  # fragments go on as they come unless a fault may hold the message
            if passive:
                d.lane.send(frame.raw)
            d.fragments = fragments = _Fragments(op, frame.payload, sent=passive)
            if not passive:
                fragments.held.append(frame.raw)
            return
        fragments = d.fragments
        if fragments is None:  # a continuation with nothing to continue
            self._note(d.name, notes.LONE_CONTINUATION)
            d.lane.send(frame.raw)
            return
        try:
            fragments.add(frame.payload)
        except wire.WireError as exc:  # what was held goes on with this frame, and the rest unread
            d.fragments = None
            if not fragments.sent:
                d.lane.send(b"".join(fragments.held))
            d.lane.send(frame.raw)
            self._stop_reading(d, exc)
            return
        if fragments.sent:
            d.lane.send(frame.raw)
        else:
            fragments.held.append(frame.raw)
        if frame.fin:
            d.fragments = None
            self._message(d, fragments.opcode, b"".join(fragments.payloads), b"".join(fragments.held),
                          sent=fragments.sent)

    def _message(self, d: _Direction, opcode: int, payload: bytes, raw: bytes, sent: bool = False) -> None:
        """One whole message read before it goes on: relay it and record it, or let a fault drop or hold it.
        ``sent``: its frames were relayed already, as they came."""
        gone = d.lane.dst.closing
        if sent or self._passive():  # nothing can change this message: it goes on now, read a moment later
            if not sent:
                d.lane.send(raw)
            if self.batch:
                self.trace.defer(self._record_message, d, opcode, payload, gone, self.trace.now())
            else:
                self._record_message(d, opcode, payload, gone, self.trace.now())
            return
        self.trace.settle()  # a fault decides on this one: everything before it is recorded first
        faults, client = self.faults, self.stream.client
        paused = faults.paused(client)
        t = self.trace.now()
        records = self.recorder.message(self.stream, d.name, opcode, payload, t, held=paused, gone=gone)
        records, dropped, delay = faults.judge(records, d.name, t)
        self._append(records)
        if dropped:
            return
        due = asyncio.get_running_loop().time() + delay if delay else 0.0
        d.lane.send(raw, due, (lambda: faults.gate(client)) if paused else None)

    def _record_message(self, d: _Direction, opcode: int, payload: bytes, gone: bool, t: float) -> None:
        self._append(self.recorder.message(self.stream, d.name, opcode, payload, t, gone=gone))

    def _close_frame(self, d: _Direction, frame: wire.Frame) -> None:
        try:
            code, _reason = wire.parse_close(frame.payload)
        except wire.WireError as exc:
            code = None
            self._note(d.name, f"a close frame that breaks RFC 6455: {exc}")
        if d.close_code is not False:
            return
        d.close_code = code
        other = self.dirs["s2c" if d.name == "c2s" else "c2s"]
        if other.close_code is False:  # the first close frame: this side closes
            self._record_close(d.name, 1005 if code is None else code)

    def _note(self, name: str, error: str) -> None:
        if self.record:
            self.trace.append(self.recorder.frame_error(self.stream, name, error, self.trace.now()))

    def _record_close(self, name: str | None, code: int, by: str | None = None) -> None:
        if self.recorded_close or not self.record:
            return
        self.trace.settle()  # the messages before the close, and the state they teach the recorder
        self.recorded_close = True
        self._append(self.recorder.closed(self.stream, name, code, self.trace.now(), by=by))

    # ---------------------------------------------------------------- the end
    def lost(self, name: str) -> None:
        """One side's connection ended: record how, let what is queued for the other side go, then close it."""
        self.trace.settle()  # the close frames among what went on
        d = self.dirs[name]
        if not self.recorded_close:
            code = 1006 if d.close_code is False else d.close_code  # no close frame: gone without a goodbye
            self._record_close(name, 1005 if code is None else code)
        other = self.dirs["s2c" if name == "c2s" else "c2s"]
        self._give_up(other.lane, "its receiver's connection closed")  # can never arrive
        if d.lane.busy and not self.faults.paused(self.stream.client):  # what it sent may still be on its way
            d.lane.on_idle = self._finish
        else:
            self._give_up(d.lane, "the connection closed before resume()")
            self._finish()

    def _give_up(self, lane: relay.Lane, why: str) -> None:
        waiting = lane.cancel()
        if waiting and self.record:
            self.trace.add(kind="fault", note=f"{waiting} frame(s) held by the tap were never relayed: {why}",
                           **self.stream.where)

    def _finish(self) -> None:
        for d in self.dirs.values():
            d.src.close()
        if not self.done.done():
            self.done.set_result(None)

    def shutdown(self) -> None:
        """The tap is closing: say goodbye both ways (1001 to the client, 1000 to the server) and end."""
        self.trace.settle()
        for d in self.dirs.values():
            self._give_up(d.lane, "the tap stopped")
        if self.record and not self.recorded_close:
            self._record_close(None, 1001, by="tap (it is closing)")
        c2s, s2c = self.dirs["c2s"], self.dirs["s2c"]
        if s2c.close_code is False:
            c2s.src.write(wire.build_frame(8, wire.close_frame_payload(1001)))
        if c2s.close_code is False:
            s2c.src.write(wire.build_frame(8, wire.close_frame_payload(1000), mask=b"\x00\x00\x00\x00"))
        self._finish()
