"""CPU per WebSocket round trip of the tap's own code, without sockets: an echo call and its ack as the
Node.js client and server frame them, fed through WebSocketRelay as data_received would, with the
writes going nowhere. Measures process CPU time, so the machine's other load disturbs it less than a
throughput figure.

    .venv/bin/python benchmarks/hot_path.py [--n 20000] [--repeats 7]

Prints the tap's loop alone (no records), recording with no listener, recording and shipping the records to a
writer process (the CLI tap), recording and printing in the same process (the printer, for /dev/null), and the
writer process's side of the shipped batches (unpickle, rebuild, decode, format, JSON Lines).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))

from siolab import relay, wire  # noqa: E402
from siolab.faults import Faults  # noqa: E402
from siolab.recorder import Recorder  # noqa: E402
from siolab.trace import Trace  # noqa: E402
from siolab.ws_relay import WebSocketRelay  # noqa: E402

SID = "sidAAAAAAAAAAAAAAAAA"


class NullTransport:
    def write(self, data):
        pass

    def is_closing(self):
        return False

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass

    def close(self):
        pass


def conn() -> relay.Conn:
    c = relay.Conn()
    c.transport = NullTransport()
    return c


async def run(n: int, listener: str, record: bool = True, batches: list | None = None) -> float:
    trace = Trace(limit=1000)
    sink = None
    if listener == "printer":
        from siolab.cli import _Printer
        sink = _Printer(open(os.devnull, "w"), open(os.devnull, "w"))
        trace.subscribe(sink)
    elif listener == "shipper":  # what the CLI tap's _Shipper does: pickle batches of 256, write them to a pipe
        from siolab.cli import _item, _pack

        class Ship:
            def __init__(self):
                self.records, self.fd = [], os.open(os.devnull, os.O_WRONLY)

            def __call__(self, r):
                self.records.append(r)
                if len(self.records) >= 256:
                    self.flush()

            def flush(self):
                records, self.records = self.records, []
                data = _pack([_item(r) for r in records])
                if batches is not None:  # kept, for the writer's side
                    batches.append(data)
                else:
                    os.write(self.fd, data)
        sink = Ship()
        trace.subscribe(sink)
    recorder = Recorder()
    faults = Faults(trace)
    down, up = conn(), conn()
    stream = recorder.websocket(SID, None, None)
    ws = WebSocketRelay(down, up, stream=stream, recorder=recorder, trace=trace, faults=faults, record=record,
                        batch=False)
    ws.start(b"", b"")
    opened = b'0{"sid":"%s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}' % SID.encode()
    up.data_received(wire.build_frame(1, opened))
    calls = [wire.build_frame(1, b'42%d["echo","x"]' % i, mask=os.urandom(4)) for i in range(n)]
    acks = [wire.build_frame(1, b'43%d["x"]' % i) for i in range(n)]
    t = time.process_time()
    for c, a in zip(calls, acks):
        down.data_received(c)
        up.data_received(a)
    if sink is not None:
        sink.flush()
    return (time.process_time() - t) / n * 1e6


def writer_side(batches: list[bytes], out_path: str) -> float:
    """The writer process's work for those batches (unpickle, rebuild, decode, format, JSON Lines), per round
    trip."""
    import pickle
    from siolab.cli import _Printer, _rebuild
    n = 0
    with open(out_path, "w") as out, open(os.devnull, "w") as jsonl:
        printer = _Printer(out, jsonl)
        t = time.process_time()
        for data in batches:
            records = [_rebuild(item) for item in pickle.loads(data[4:])]
            n += len(records)
            printer.write(records)
        return (time.process_time() - t) / (n / 2) * 1e6


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()
    kinds = [("relay only (record=False)", "none", False), ("recording, no listener", "none", True),
             ("recording + shipper (pickled batches)", "shipper", True),
             ("recording + printer (str + JSON Lines)", "printer", True)]
    res = {k[0]: [] for k in kinds}
    for _ in range(args.repeats):
        for name, listener, record in kinds:
            res[name].append(await run(args.n, listener, record))
    for name, vals in res.items():
        print(f"  {name:<40} {statistics.median(vals):6.1f} µs per round trip (min {min(vals):.1f})")
    batches: list[bytes] = []
    await run(args.n, "shipper", True, batches)
    for label, path in (("writer process, stdout /dev/null", os.devnull), ("writer process, stdout a file",
                                                                           "/tmp/siolab-hot-path.txt")):
        vals = [writer_side(batches, path) for _ in range(args.repeats)]
        print(f"  {label:<40} {statistics.median(vals):6.1f} µs per round trip (min {min(vals):.1f})")


if __name__ == "__main__":
    asyncio.run(main())
