"""siolab.wire against h11 and wsproto, side by side in one run: why wire.py is hand-written.

    .venv/bin/python benchmarks/wire_vs_libs.py [--repeats 25] [--items 1000]

(h11 and wsproto are not siolab's own dependencies, but python-engineio's simple-websocket brings in wsproto,
which brings in h11; ``.venv/bin/pip install h11 wsproto`` if they are missing.)

It times what the tap does with every message it relays:

- an Engine.IO long-polling request head (a python-socketio client's GET) and a server's response head
  (python-socketio on aiohttp answering with one packet): siolab.wire's head_end + parse_request /
  parse_response + request_body / response_body against h11's Connection.receive_data + next_event
  (which finds the end of the head, parses it and decides the body framing too);
- a small masked WebSocket text frame from a client (``42["chat","hi"]``): siolab.wire's FrameReader.feed
  against wsproto's FrameProtocol (the frame layer) and wsproto's post-handshake Connection (events).

Every head is distinct (the client's ``t=`` timestamp, the server's Content-Length change), as on the wire,
so wire.py's cache of recently parsed heads never answers; a separate line shows a repeated head, which it
does answer. Each h11 connection and each wsproto object is made before the clock starts. Each repeat
times every case once, forwards then backwards in turn (the cases compared run back to back and neither
always goes first), ``--items`` items per case;
the figures are the best and the median over the repeats, in µs per item. The clock is the process's CPU
time (``time.process_time``): on a shared machine, time spent waiting for a core is not the parser's;
``--clock wall`` uses timeit's default clock instead.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from siolab import wire  # noqa: E402

try:
    import h11
    import wsproto
    from wsproto.connection import Connection as WsConnection, ConnectionType
    from wsproto.events import TextMessage
    from wsproto.frame_protocol import FrameProtocol
except ImportError as exc:  # pragma: no cover - a hint, not a test
    raise SystemExit(f"{exc}: this benchmark needs h11 and wsproto (.venv/bin/pip install h11 wsproto)")

# As captured between python-socketio's AsyncClient and AsyncServer (aiohttp), polling, 2026-12.
REQUEST = ("GET /socket.io/?transport=polling&EIO=4&sid=K0Jz-W2c4dK6zUlCAAAA&t=1796352582.{i:07d} HTTP/1.1\r\n"
           "Host: 127.0.0.1:41463\r\n"
           "Accept: */*\r\n"
           "Accept-Encoding: gzip, deflate\r\n"
           "User-Agent: Python/3.11 aiohttp/3.14.5\r\n"
           "\r\n")
RESPONSE = ("HTTP/1.1 200 OK\r\n"
            "Content-Type: text/plain; charset=UTF-8\r\n"
            "Access-Control-Allow-Credentials: true\r\n"
            "Content-Length: {n}\r\n"
            "Date: Fri, 04 Dec 2026 02:49:42 GMT\r\n"
            "Server: Python/3.11 aiohttp/3.14.5\r\n"
            "\r\n")
PAYLOAD = '42["chat","hi"]'.encode()


def heads(items: int) -> tuple[list[bytes], list[bytes]]:
    requests = [REQUEST.format(i=i).encode() for i in range(items)]
    responses = [RESPONSE.format(n=15 + i).encode() for i in range(items)]
    return requests, responses


def frames(items: int) -> list[bytes]:
    return [wire.build_frame(1, PAYLOAD, mask=os.urandom(4)) for _ in range(items)]


# ------------------------------------------------------------------ the cases: (prepare, run) pairs
# prepare() is called before the clock starts and returns what run() consumes; run() handles every item.

def wire_requests(items: list[bytes]):
    def run(data):
        for buf in data:
            end = wire.head_end(buf)
            req = wire.parse_request(buf[:end])
            wire.request_body(req)
    return (lambda: items), run


def wire_responses(items: list[bytes]):
    def run(data):
        for buf in data:
            end = wire.head_end(buf)
            resp = wire.parse_response(buf[:end])
            wire.response_body(resp, "GET")
    return (lambda: items), run


def h11_requests(items: list[bytes]):
    def prepare():
        return [(h11.Connection(h11.SERVER), buf) for buf in items]

    def run(data):
        for conn, buf in data:
            conn.receive_data(buf)
            conn.next_event()
    return prepare, run


def h11_responses(items: list[bytes]):
    def prepare():
        out = []
        for buf in items:
            conn = h11.Connection(h11.CLIENT)
            conn.send(h11.Request(method="GET", target="/socket.io/?transport=polling&EIO=4",
                                  headers=[("Host", "127.0.0.1")]))
            conn.send(h11.EndOfMessage())
            out.append((conn, buf))
        return out

    def run(data):
        for conn, buf in data:
            conn.receive_data(buf)
            conn.next_event()
    return prepare, run


def wire_frames(items: list[bytes], decode: bool = False):
    def prepare():
        return wire.FrameReader(), items

    def run(data):
        reader, bufs = data
        feed = reader.feed
        if decode:
            for buf in bufs:
                for frame in feed(buf):
                    frame.payload.decode("utf-8")
        else:
            for buf in bufs:
                feed(buf)
    return prepare, run


def wsproto_frames(items: list[bytes]):
    def prepare():
        return FrameProtocol(client=False, extensions=[]), items

    def run(data):
        proto, bufs = data
        for buf in bufs:
            proto.receive_bytes(buf)
            for _frame in proto.received_frames():
                pass
    return prepare, run


def wsproto_events(items: list[bytes]):
    def prepare():
        return WsConnection(ConnectionType.SERVER), items

    def run(data):
        conn, bufs = data
        for buf in bufs:
            conn.receive_data(buf)
            for _event in conn.events():
                pass
    return prepare, run


def check(requests: list[bytes], responses: list[bytes], frame_bytes: list[bytes]) -> None:
    """The contenders read the same thing (a benchmark of parsers that disagree would mean nothing)."""
    req, conn = wire.parse_request(requests[0]), h11.Connection(h11.SERVER)
    conn.receive_data(requests[0])
    event = conn.next_event()
    assert isinstance(event, h11.Request) and event.target.decode() == req.target
    assert [(k.decode().lower(), v.decode()) for k, v in event.headers] == [(k.lower(), v) for k, v in req.headers]
    assert wire.request_body(req) == ("length", 0)
    resp = wire.parse_response(responses[0])
    assert resp.status == 200 and wire.response_body(resp, "GET") == ("length", 15)
    (frame,) = wire.FrameReader().feed(frame_bytes[0])
    proto = FrameProtocol(client=False, extensions=[])
    proto.receive_bytes(frame_bytes[0])
    (theirs,) = list(proto.received_frames())
    assert frame.payload == PAYLOAD and theirs.payload == PAYLOAD.decode()
    ws = WsConnection(ConnectionType.SERVER)
    ws.receive_data(frame_bytes[0])
    (message,) = list(ws.events())
    assert isinstance(message, TextMessage) and message.data == PAYLOAD.decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--items", type=int, default=1000, help="items per case and repeat (over 256: no cache hits)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = parser.parse_args()
    requests, responses = heads(args.items)
    frame_bytes = frames(args.items)
    check(requests, responses, frame_bytes)
    same = [requests[0]] * args.items  # one head again and again: wire.py's cache of parsed heads answers
    cases = {
        "request head: siolab.wire": wire_requests(requests),
        "request head: h11": h11_requests(requests),
        "response head: siolab.wire": wire_responses(responses),
        "response head: h11": h11_responses(responses),
        "repeated request head: siolab.wire (cached)": wire_requests(same),
        "masked text frame: siolab.wire FrameReader": wire_frames(frame_bytes),
        "masked text frame: wsproto FrameProtocol": wsproto_frames(frame_bytes),
        "masked text frame: siolab.wire + UTF-8 decode": wire_frames(frame_bytes, decode=True),
        "masked text frame: wsproto Connection events": wsproto_events(frame_bytes),
    }
    clock = time.process_time if args.clock == "cpu" else timeit.default_timer
    times: dict[str, list[float]] = {name: [] for name in cases}
    for repeat in range(args.repeats):
        names = list(cases) if repeat % 2 == 0 else list(cases)[::-1]  # neither of a pair always goes first
        for name in names:
            prepare, run = cases[name]
            holder = {}
            timer = timeit.Timer(lambda: run(holder["data"]), setup=lambda: holder.update(data=prepare()),
                                 timer=clock)
            times[name].append(timer.timeit(number=1) / args.items * 1e6)

    print(f"siolab.wire vs h11 {h11.__version__} / wsproto {wsproto.__version__} — "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python {platform.python_version()}, "
          f"{os.cpu_count()} cores, {args.repeats} repeats x {args.items} items, {args.clock} clock")
    print(f"  {'case':<48} {'best µs':>8} {'median µs':>10}")
    best = {n: min(v) for n, v in times.items()}
    med = {n: statistics.median(v) for n, v in times.items()}
    for name in cases:
        print(f"  {name:<48} {best[name]:>8.2f} {med[name]:>10.2f}")
    print("ratios (library / siolab.wire, on the medians; best in brackets):")
    for lib, ours, what in (("request head: h11", "request head: siolab.wire", "request head, h11"),
                            ("response head: h11", "response head: siolab.wire", "response head, h11"),
                            ("masked text frame: wsproto FrameProtocol", "masked text frame: siolab.wire FrameReader",
                             "frame, wsproto FrameProtocol"),
                            ("masked text frame: wsproto Connection events",
                             "masked text frame: siolab.wire + UTF-8 decode", "frame + text, wsproto Connection")):
        print(f"  {what:<36} {med[lib] / med[ours]:>5.1f}x  ({best[lib] / best[ours]:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
