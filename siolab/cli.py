"""``python -m siolab trace URL`` runs the tap in front of any server; ``demo`` runs the seed's chat."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import operator
import os
import pickle
import signal
import stat
import subprocess
import sys
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from . import jsonl as jsonl_format, protocol
from .record import FIELDS, LAZY_FIELDS, LazyRecord, Record, decode_packet_fields, new_lazy, new_record
from .trace import Trace


# The CLI prints every record (and writes it to --jsonl) as it comes and never reads its trace back, so it keeps
# only the newest (a big store cost the garbage collector time per round trip: docs/benchmarks.md).
CLI_LIMIT = 1_000


class _Printer:
    """A listener printing each record. Records are formatted and written in one go every ``after`` seconds
    (or every ``most`` records), not one by one as they come: formatted between two packets, with cold caches,
    they held up the next packet (docs/benchmarks.md). The terminal is at most ``after`` behind the wire."""

    def __init__(self, out: IO[str], jsonl: IO[str] | None, after: float = 0.05, most: int = 512) -> None:
        self.out, self.jsonl = out, jsonl
        self.after, self.most = after, most
        self.records: list[Record] = []
        self.unwritten = 0  # records the --jsonl file could not take (said on stderr, counted, never silent)
        self._handle: asyncio.TimerHandle | None = None
        self.shown = not _is_devnull(out)  # nobody reads /dev/null: records are not formatted for it

    def __call__(self, record: Record) -> None:
        self.records.append(record)
        if len(self.records) >= self.most:
            self.flush()
        elif self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_later(self.after, self.flush)
            except RuntimeError:  # no loop: print now
                self.flush()

    def flush(self) -> None:
        """Print every record held, now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        records, self.records = self.records, []
        self.write(records)

    def write(self, records: list[Record]) -> None:
        if records:
            text = "\n".join([str(r) for r in records]) + "\n" if self.shown else ""
            if self.jsonl is not None:  # the file first: what the terminal shows is in the file already
                self._write_jsonl(records)
            if text:
                self._show(text)
        if self.shown:
            self._show("")

    def _show(self, text: str) -> None:
        try:
            if text:
                self.out.write(text)
            self.out.flush()
        except (OSError, ValueError) as exc:  # the terminal went away (`| head`): the file goes on
            self.shown = False
            sys.stderr.write(f"siolab tap: stopped printing records ({exc}); the JSON Lines file goes on\n")

    def _write_jsonl(self, records: list[Record]) -> None:
        self._write_lines("".join([jsonl_format.dump_line(r) for r in records]), len(records))

    def _write_lines(self, text: str, count: int) -> None:
        try:
            self.jsonl.write(text)
            self.jsonl.flush()
        except (OSError, ValueError) as exc:  # a full disk, a closed file: say so, count, go on
            self.unwritten += count
            sys.stderr.write(f"siolab tap: {count} records could not be written to the JSON Lines file "
                             f"({exc}); {self.unwritten} in all\n")


def _is_devnull(out: IO[str]) -> bool:
    """Whether ``out`` is /dev/null (``python -m siolab trace ... --jsonl F > /dev/null``)."""
    try:
        st, null = os.fstat(out.fileno()), os.stat(os.devnull)
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev


# ---------------------------------------------------------------- the writer process
# Printing and writing --jsonl was most of the CLI tap's CPU (a LazyRecord is decoded, formatted and encoded
# as JSON: ~25 µs a record), and a batch of it stopped the relaying of every client for milliseconds. So the
# CLI tap hands its records to a writer process (this module, ``_writer_main``) through a pipe: it sends each
# record's fields as they are (a LazyRecord's still undecoded), pickled a batch at a time (~2 µs a record),
# and the writer rebuilds the same records and prints and writes them with the same code (_Printer). The pipe
# is bounded: a writer that falls behind holds the tap up (blocking writes), so memory stays bounded and no
# record is dropped. Measured with benchmarks/bench.py --only scale (Node.js server and clients, side by side
# with the tap printing in its own loop): 50 WebSocket clients 1.04x the round trips and p99 22 -> 15 ms on a
# quiet machine, 1.25-1.37x when other jobs used the cores; the CPU per round trip, writer included, the same.
_NOT_LAZY = tuple(name for name in FIELDS if name not in LAZY_FIELDS)
_get_all = operator.attrgetter(*FIELDS)
_get_not_lazy = operator.attrgetter(*_NOT_LAZY)
_PIPE_BYTES = 1 << 20  # the pipe's capacity asked for (F_SETPIPE_SZ): bursts go on without waiting for the writer
_LAZY, _FULL, _TEXT, _END = 0, 1, 2, 3


def _item(record: Record) -> tuple:
    """What the writer needs to rebuild ``record``: its fields, a packet's LazyRecord's still undecoded."""
    if type(record) is LazyRecord:
        try:
            pending = record._pending
        except AttributeError:  # made by LazyRecord(...): every field is known
            pending = None
        if pending is decode_packet_fields:
            return (_LAZY, _get_not_lazy(record))
    return (_FULL, _get_all(record))


def _rebuilder(make, names: tuple[str, ...], **more):
    """``lambda values: make(name0=values[0], ...)``: a call with the keywords spelt out is twice as fast as
    ``make(**dict(zip(names, values)))``."""
    source = f"lambda v: make({', '.join(f'{n}=v[{i}]' for i, n in enumerate(names))}, **more)"
    return eval(source, {"make": make, "more": more})  # noqa: S307 - built from the record's own field names


_new_lazy_from = _rebuilder(new_lazy, _NOT_LAZY, _pending=decode_packet_fields)
_new_record_from = _rebuilder(new_record, FIELDS)


def _rebuild(item: tuple) -> Record:
    return _new_lazy_from(item[1]) if item[0] == _LAZY else _new_record_from(item[1])


def _pack(items: list) -> bytes:
    data = pickle.dumps(items, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(4, "big") + data


class _Shipper:
    """The CLI tap's listener: sends its records to the writer process in batches (every ``after`` seconds or
    ``most`` records; small batches: pickling them is quick, and the writer starts on them at once). If the
    writer is gone, the tap prints and writes the rest itself (said on stderr)."""

    def __init__(self, writer: subprocess.Popen, fallback: _Printer, after: float = 0.05, most: int = 256) -> None:
        self.writer, self.fallback = writer, fallback
        self.fd = writer.stdin.fileno()
        self.after, self.most = after, most
        self.records: list[Record] = []
        self.broken = False
        self._handle: asyncio.TimerHandle | None = None

    def __call__(self, record: Record) -> None:
        if self.broken:
            self.fallback(record)
            return
        self.records.append(record)
        if len(self.records) >= self.most:
            self.flush()
        elif self._handle is None:
            try:
                self._handle = asyncio.get_running_loop().call_later(self.after, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        records, self.records = self.records, []
        if not records or self.broken:
            self.fallback.write(records)
            return
        items = [_item(r) for r in records]
        try:
            data = _pack(items)
        except Exception:  # noqa: BLE001 - e.g. args nested too deeply to pickle: those are sent as text
            data = _pack([self._safe(r, item) for r, item in zip(records, items)])
        self._send(data, records)

    @staticmethod
    def _safe(record: Record, item: tuple) -> tuple:
        try:
            pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            return item
        except Exception:  # noqa: BLE001
            return (_TEXT, str(record), jsonl_format.dump_line(record))

    def _send(self, data: bytes, records: list[Record]) -> bool:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            return True
        except OSError as exc:
            self.broken = True
            sys.stderr.write(f"siolab tap: the writer process stopped ({exc}); the tap prints the records itself "
                             f"from now on (a batch in the pipe may be lost)\n")
            self.fallback.write(records)
            return False

    def close(self, stopped: str, jsonl_name: str | None) -> None:
        """Send what is left and the last line, and wait until the writer has written everything."""
        self.flush()
        if not self.broken and self._send(_pack([(_END, stopped, jsonl_name)]), []):
            with contextlib.suppress(OSError):
                self.writer.stdin.close()
            self.writer.wait()
            if self.writer.returncode == 0:
                return
            sys.stderr.write(f"siolab tap: the writer process ended with code {self.writer.returncode}\n")
        self.broken = True  # the tap says the last line itself


def _start_writer(out: IO[str], jsonl: IO[str] | None) -> subprocess.Popen | None:
    """The writer process, printing to ``out`` and appending to ``jsonl`` (None: print in this process)."""
    try:
        out_fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return None  # not a file (a test's StringIO)
    if os.name != "posix" or os.environ.get("SIOLAB_CLI_WRITER", "1") == "0":  # 0: print in the tap's process
        return None
    fds = [out_fd] + ([jsonl.fileno()] if jsonl is not None else [])
    jsonl_fd = str(jsonl.fileno()) if jsonl is not None else "-"
    try:
        writer = subprocess.Popen([sys.executable, "-c", "from siolab.cli import _writer_main; _writer_main()",
                                   jsonl_fd], stdin=subprocess.PIPE, stdout=out_fd, pass_fds=fds,
                                  close_fds=True)
    except OSError:
        return None
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(writer.stdin.fileno(), 1031, _PIPE_BYTES)  # F_SETPIPE_SZ (Linux): more room for bursts
    return writer


def _writer_main() -> None:
    """The writer process: reads batches from stdin, prints them to its stdout and appends them to the fd
    given (argv: JSONL_FD or -). Ctrl-C goes to the tap, which sends what it has and closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    jsonl = open(int(sys.argv[1]), "a", encoding="utf-8") if sys.argv[1] != "-" else None
    printer = _Printer(sys.stdout, jsonl)
    inp = sys.stdin.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            break
        items = pickle.loads(inp.read(int.from_bytes(head, "big")))
        records: list[Record] = []
        for item in items:
            if item[0] == _TEXT:  # formatted in the tap already
                printer.write(records)
                records = []
                if printer.shown:
                    printer.out.write(item[1] + "\n")
                if jsonl is not None:
                    printer._write_lines(item[2], 1)
            elif item[0] == _END:
                printer.write(records)
                records = []
                if jsonl is not None:
                    jsonl.close()
                    jsonl = None
                lost = f" ({printer.unwritten} of them not written to {item[2]})" if printer.unwritten else ""
                if item[1] and printer.shown:
                    printer._show(item[1] + lost + "\n")
                return
            else:
                records.append(_rebuild(item))
        printer.write(records)


async def trace_command(args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    from .tap import Tap, upstream_of
    # The libraries' packet modules load on first decode (import siolab stays quick), which took the tap
    # ~0.5 s away from relaying at the first packet: load them before listening.
    protocol.decode_payload(b'0{"sid":"x"}')
    protocol.decode_sio('2["x"]')
    upstream = upstream_of(args.url)
    layer = "engine.io" if args.engineio else "socket.io"
    trace = Trace(limit=args.limit)
    jsonl = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: ASYNC230 - once, before serving
    printer = _Printer(out, jsonl)
    writer = _start_writer(out, jsonl)
    shipper = None
    if writer is not None:
        shipper = _Shipper(writer, printer)
        trace.subscribe(shipper)
    else:
        trace.subscribe(printer)
    tap = Tap(upstream, trace, host=args.host, port=args.listen or 0, layer=layer)
    try:
        await tap.start()
    except BaseException:
        if shipper is not None:
            shipper.close("", None)
        raise
    out.write(f"siolab tap: listening on {tap.url} -> relaying to {upstream} (Ctrl-C to stop)\n")
    out.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await tap.close()
        if shipper is not None:
            shipper.close(f"siolab tap: stopped after {len(trace) + trace.dropped} records", args.jsonl)
        printer.flush()  # (with a writer: what the tap printed itself, if the writer had gone)
        if jsonl is not None:
            jsonl.close()
        if shipper is None or shipper.broken:
            lost = f" ({printer.unwritten} of them not written to {args.jsonl})" if printer.unwritten else ""
            out.write(f"siolab tap: stopped after {len(trace) + trace.dropped} records{lost}\n")
        out.flush()
    return 0



DEMO_NOTES = {
    ("open", None): "handshake: the server opens an Engine.IO session (sid, upgrades, pingInterval, pingTimeout)",
    ("ping", None): "heartbeat: the server pings every pingInterval",
    ("pong", None): "heartbeat: the client answers within pingTimeout",
    ("upgrade", None): "upgrade: from now on this client uses the WebSocket only",
    ("noop", None): "noop: ends the pending long-poll during the upgrade",
    ("message", "connect"): "Socket.IO CONNECT to a namespace (the answer carries the Socket.IO sid)",
    ("message", "event"): "Socket.IO EVENT",
    ("message", "disconnect"): "Socket.IO DISCONNECT",
    ("close", None): "Engine.IO close",
}


async def demo_command(args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    """The seed's chat: connection, newClient -> initialChatList, message -> broadcast, disconnect."""
    from .lab import start
    lab = await start(ping_interval=1, ping_timeout=1)
    try:
        chat: list[dict] = []

        @lab.server.on("newClient")
        async def new_client(sid, data):
            await lab.server.emit("initialChatList", chat, to=sid)

        @lab.server.on("message")
        async def message(sid, data):
            chat.append(data)
            await lab.server.emit("message", chat)

        alice = await lab.client("alice")
        bob = await lab.client("bob", transports=["polling"])
        await alice.emit("newClient", "alice")
        await bob.emit("newClient", "bob")
        await asyncio.sleep(0.3)
        await alice.emit("message", {"name": "alice", "message": "hello"})
        await lab.trace.wait_for(event="message", dir="s2c", client="bob")
        await asyncio.sleep(1.2)  # one heartbeat
        await alice.disconnect()
        await bob.disconnect()
    finally:
        await lab.close()
    out.write("siolab demo: the seed's chat, traced (time, client, direction, transport, HTTP, raw, meaning)\n\n")
    for record in lab.trace:
        out.write(str(record) + "\n")
        note = DEMO_NOTES.get((record.eio, record.sio))
        if record.raw in ("2probe", "3probe"):
            note = "upgrade probe: checks that the new WebSocket works before switching to it"
        if record.kind == "packet" and note:
            out.write(f"{'':10}^ {note}\n")
    out.write("\nexplain('42[\"message\",...]'):\n")
    out.write(str(protocol.explain('42["message",{"name":"alice","message":"hello"}]')) + "\n")
    out.flush()
    return 0


def har_command(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Read a HAR file (DevTools, Firefox, mitmproxy, Playwright) through the tap's recorder: print every record
    as ``trace`` does, then a summary, then the doctor's findings when ``siolab.doctor`` exists."""
    from . import har
    out = out if out is not None else sys.stdout
    try:
        imported = har.read(args.file, layer="engine.io" if args.engineio else "socket.io")
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"siolab har: {exc}\n")
        return 2
    trace = Trace(limit=None)
    trace.extend(imported.records)
    if args.jsonl:
        trace.to_jsonl(args.jsonl)
    for record in trace:
        out.write(str(record) + "\n")
    out.write("\n" + har.summary(trace, imported.parsed) + "\n")
    report = har.doctor_report(trace)  # None: no siolab.doctor in this install
    if report is not None:
        out.write("\nthe doctor:\n" + report + "\n")
    out.flush()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m siolab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("trace", help="run the recording tap in front of any Socket.IO server")
    t.add_argument("url", help="the server, e.g. http://127.0.0.1:3000")
    t.add_argument("--listen", type=int, default=0, help="port to listen on (default: a free port)")
    t.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    t.add_argument("--jsonl", help="also append every record to this JSON Lines file")
    t.add_argument("--limit", type=int, default=CLI_LIMIT,
                   help=f"newest records kept in memory (default {CLI_LIMIT}): each record is printed, and "
                        f"written to --jsonl, as it comes, so the rest are not needed")
    t.add_argument("--engineio", action="store_true", help="decode Engine.IO only (an Engine.IO-only server)")
    sub.add_parser("demo", help="run the seed's chat in-process and print the annotated trace")
    c = sub.add_parser("check", help="probe a live server against the protocol's rules (exit 1 if one fails)")
    c.add_argument("url")
    c.add_argument("--path", default="/socket.io/")
    c.add_argument("--echo-event", default="echo", help="an event the server acknowledges (for the ack rules)")
    c.add_argument("--max-wait", type=float, default=5.0, help="skip rules that take longer (the heartbeat)")
    e = sub.add_parser("explain", help="explain one packet, e.g. '421[\"chat\",\"hi\"]'")
    e.add_argument("packet")
    h = sub.add_parser("har", help="read a HAR file (browser DevTools, mitmproxy, ...) and print its Socket.IO records")
    h.add_argument("file", help="the .har file")
    h.add_argument("--jsonl", help="also write the records to this JSON Lines file")
    h.add_argument("--engineio", action="store_true", help="decode Engine.IO only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "explain":
        print(protocol.explain(args.packet))
        return 0
    if args.command == "har":
        return har_command(args)
    if args.command == "check":
        from .conformance import check
        report = asyncio.run(check(args.url, path=args.path, echo_event=args.echo_event, max_wait=args.max_wait))
        print(report.table())
        return 0 if report.ok else 1
    command = trace_command if args.command == "trace" else demo_command
    try:
        return asyncio.run(command(args))
    except KeyboardInterrupt:
        return 130
