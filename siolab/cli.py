"""``python -m siolab trace URL`` runs the tap in front of any server; ``demo`` runs the seed's chat."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import IO

from . import jsonl as jsonl_format, protocol
from .record import Record
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
        if records:
            if self.jsonl is not None:  # the file first: a line on the terminal is in the file already
                self._write_jsonl(records)
            self.out.write("\n".join([str(r) for r in records]) + "\n")
        self.out.flush()

    def _write_jsonl(self, records: list[Record]) -> None:
        try:
            self.jsonl.write("".join([jsonl_format.dump_line(r) for r in records]))
            self.jsonl.flush()
        except (OSError, ValueError) as exc:  # a full disk, a closed file: say so, count, go on
            self.unwritten += len(records)
            sys.stderr.write(f"siolab tap: {len(records)} records could not be written to the JSON Lines file "
                             f"({exc}); {self.unwritten} in all\n")


async def trace_command(args: argparse.Namespace, out: IO[str] = sys.stdout) -> int:
    from .tap import Tap, upstream_of
    upstream = upstream_of(args.url)
    layer = "engine.io" if args.engineio else "socket.io"
    trace = Trace(limit=args.limit)
    jsonl = open(args.jsonl, "a", encoding="utf-8") if args.jsonl else None  # noqa: ASYNC230 - once, before serving
    printer = _Printer(out, jsonl)
    trace.subscribe(printer)
    tap = Tap(upstream, trace, host=args.host, port=args.listen or 0, layer=layer)
    await tap.start()
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
        printer.flush()
        if jsonl is not None:
            jsonl.close()
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
