"""siolab's benchmark: what tracing costs, how the trace store and views scale, how fast the lessons run.

    .venv/bin/python benchmarks/bench.py [--quick] [--only tap,store,view,lessons] [--transports websocket,polling]

Every ratio is measured side by side in one run: configurations alternate within each repeat (in a
rotated order from one repeat to the next), and a verdict takes the median over the repeats of the ratio
between configurations that ran back to back. The pure byte relay (an asyncio TCP forwarder that
parses nothing) is the physical limit of any extra hop, so the tap is judged against it.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import socketio

HERE = Path(__file__).parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from servers import start_relay  # noqa: E402

VERDICTS: list[tuple[str, bool]] = []


def verdict(name: str, ok: bool, detail: str) -> None:
    VERDICTS.append((name, ok))
    print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def child(*args: str, announce: bool = True):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if announce else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        port = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["port"] if announce else None
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# ------------------------------------------------------------------ workloads

async def round_trips(url: str, transports: list[str], seconds: float) -> tuple[float, list[float]]:
    """One client calling an echo event back to back: (round trips per second, latencies in s)."""
    client = new_client()
    await client.connect(url, transports=transports, wait_timeout=10)
    loop = asyncio.get_running_loop()
    for _ in range(20):  # warm up
        await client.call("echo", "x", timeout=10)
    latencies = []
    start = loop.time()
    while loop.time() - start < seconds:
        t = loop.time()
        await client.call("echo", "x", timeout=10)
        latencies.append(loop.time() - t)
    elapsed = loop.time() - start
    await disconnect(client)
    await close_sessions()
    return len(latencies) / elapsed, latencies


async def one_way(url: str, transports: list[str], clients: int, per_client: int) -> float:
    """``clients`` clients emitting ``per_client`` events each, as fast as they can: events per second."""
    cs = [new_client() for _ in range(clients)]
    await asyncio.gather(*(c.connect(url, transports=transports, wait_timeout=10) for c in cs))
    base = await cs[0].call("count", timeout=10)
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def blast(c):
        for i in range(per_client):
            await c.emit("one", i)
            if i % 15 == 14:
                # python-engineio refuses a polling POST of more than 16 packets: keep batches under that
                await c.call("count", timeout=30)
    await asyncio.gather(*(blast(c) for c in cs))
    target = base + clients * per_client
    while await cs[0].call("count", timeout=30) < target:
        await asyncio.sleep(0.005)
    elapsed = loop.time() - start
    await asyncio.gather(*(disconnect(c) for c in cs))
    await close_sessions()
    return clients * per_client / elapsed


async def disconnect(client: socketio.AsyncClient) -> None:
    """Ask the server to end the session ("bye": it disconnects the client at once), then close. A polling
    client's own disconnect() waits for its pending long-poll, up to the ping interval."""
    try:
        if client.connected:
            await client.emit("bye")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 2
            while client.eio.state == "connected" and loop.time() < deadline:
                await asyncio.sleep(0.005)
        await asyncio.wait_for(client.disconnect(), 2)
    except (asyncio.TimeoutError, Exception):
        pass


_SESSIONS: list = []  # every aiohttp session the clients opened


def _http_session():
    import aiohttp
    session = aiohttp.ClientSession()
    _SESSIONS.append(session)
    return session


def new_client() -> socketio.AsyncClient:
    """A client whose HTTP sessions close_sessions() closes: python-engineio may open one more after the
    session ended (its write loop sending what it had queued) and never close it."""
    return socketio.AsyncClient(http_session=_http_session)


async def close_sessions() -> None:
    await asyncio.sleep(0.02)
    for session in _SESSIONS:
        if not session.closed:
            await session.close()
    _SESSIONS.clear()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# ------------------------------------------------------------------ 1-3: tap overhead

async def measure_configs(configs: dict[str, str], transports: list[str], repeats: int, seconds: float,
                          oneway_n: int) -> dict[str, dict]:
    results = {name: {"rt": [], "lat": [], "ow": []} for name in configs}
    names = list(configs)
    for repeat in range(repeats):
        # Forwards, then backwards (A B C D, D C B A, ...): configurations compared in a verdict are listed next
        # to each other (tap next to relay and to tap-off), so they run back to back in every repeat, and
        # neither always goes first (a drift of the machine within a pair of repeats cancels out).
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            rate, lat = await round_trips(configs[name], transports, seconds)
            results[name]["rt"].append(rate)
            results[name]["lat"].extend(lat)
        for name in order:
            results[name]["ow"].append(await one_way(configs[name], transports, 10, oneway_n))
    return results


def paired(results: dict[str, dict], a: str, b: str) -> float:
    """The median over repeats of a's round-trip rate divided by b's in the same repeat."""
    return statistics.median(x / y for x, y in zip(results[a]["rt"], results[b]["rt"]))


def report_configs(title: str, results: dict[str, dict], transport: str, target: float) -> None:
    print(f"\n{title}", flush=True)
    med = {n: statistics.median(r["rt"]) for n, r in results.items()}
    ow = {n: statistics.median(r["ow"]) for n, r in results.items()}
    p50 = {n: pct(r["lat"], 0.5) * 1000 for n, r in results.items()}
    p99 = {n: pct(r["lat"], 0.99) * 1000 for n, r in results.items()}
    print(f"  {'config':<12} {'round trips/s':>14} {'events/s (10 clients)':>22} {'p50 ms':>8} {'p99 ms':>8}")
    for n in results:
        print(f"  {n:<12} {med[n]:>14.0f} {ow[n]:>22.0f} {p50[n]:>8.3f} {p99[n]:>8.3f}")
    d = "direct"
    for n in results:
        if n != d:
            print(f"  {n}/direct: round trips {med[n] / med[d]:.2f}, events {ow[n] / ow[d]:.2f}")
    # Verdicts on paired ratios: each repeat's configurations ran back to back, so their ratio cancels the
    # machine's drift between repeats (other jobs come and go); the median of those ratios is reported.
    ratio = paired(results, "tap", "relay")
    verdict(f"{transport} tap >= {target} x byte relay (round trips)", ratio >= target,
            f"{ratio:.2f} (median of the repeats' ratios; medians: tap {med['tap']:.0f}/s, relay {med['relay']:.0f}/s)")
    if "tap-off" in results:
        cost = 1 - paired(results, "tap", "tap-off")
        verdict(f"{transport} tracing on vs off costs <= 10%", cost <= 0.10,
                f"{cost * 100:.1f}% (median of the repeats' ratios)")
    added = p50["tap"] - p50["relay"]
    verdict(f"{transport} added p50 latency over the relay < 0.5 ms", added < 0.5, f"{added:.3f} ms")


async def bench_tap(args) -> None:
    import siolab
    from siolab.tap import Tap
    from siolab.trace import Trace
    # Many short repeats: most of the noise here comes and goes between runs, so more of them give a steadier
    # median of the paired ratios for about the same time.
    repeats, seconds, oneway_n = (4, 0.4, 100) if args.quick else (25, 0.5, 200)
    tap_params = Tap.__init__.__code__.co_varnames
    for transport, target in (("websocket", 0.9), ("polling", 0.8)):
        if transport not in args.transports.split(","):
            continue
        transports = [transport]
        # placement 1: server, relay and CLI tap each in their own process; clients here
        async with child(str(HERE / "servers.py"), "server") as server_port:
            async with child(str(HERE / "servers.py"), "relay", str(server_port)) as relay_port, \
                    child(str(HERE / "servers.py"), "tap-off", str(server_port)) as off_port:
                tap_port = free_port()
                async with child("-m", "siolab", "trace", f"http://127.0.0.1:{server_port}",
                                 "--listen", str(tap_port), announce=False):
                    await wait_port(tap_port)
                    configs = {"direct": f"http://127.0.0.1:{server_port}",  # verdicts compare neighbours
                               "relay": f"http://127.0.0.1:{relay_port}",
                               "tap": f"http://127.0.0.1:{tap_port}",
                               "tap-off": f"http://127.0.0.1:{off_port}"}
                    results = await measure_configs(configs, transports, repeats, seconds, oneway_n)
        report_configs(f"[{transport}] separate processes: server | relay or CLI tap (prints every record) | "
                       f"clients", results, transport + " (processes)", target)
        # placement 2: the in-kernel lab: server, tap and clients on one loop
        lab = await siolab.start(ping_interval=25, ping_timeout=20, max_http_buffer_size=10**7)
        counts = {"one": 0}

        @lab.server.on("echo")
        async def echo(sid, data):
            return data

        @lab.server.on("one")
        async def one(sid, data):
            counts["one"] += 1

        @lab.server.on("count")
        async def count(sid):
            return counts["one"]

        @lab.server.on("bye")
        async def bye(sid):
            await lab.server.disconnect(sid)
        relay = await start_relay(lab.server_port)
        configs = {"direct": lab.server_url, "relay": f"http://127.0.0.1:{relay.sockets[0].getsockname()[1]}",
                   "tap": lab.url}
        off = None
        if "record" in tap_params:
            off = await Tap(lab.server_url, Trace(), record=False).start()
            configs["tap-off"] = off.url
        results = await measure_configs(configs, transports, repeats, seconds, oneway_n)
        records = len(lab.trace)
        relay.close()
        await relay.wait_closed()
        if off is not None:
            await off.close()
        await lab.close()
        report_configs(f"[{transport}] in-kernel lab: server, relay/tap and clients on one loop "
                       f"({records} records traced)", results, transport + " (in-kernel)", target)


# ------------------------------------------------------------------ 4: trace store

def bench_store(args) -> None:
    from siolab.trace import Record, Trace
    n = 100_000
    print(f"\ntrace store ({n} records)", flush=True)
    def fill(trace: Trace) -> float:
        t = time.perf_counter()
        for i in range(n):
            trace.append(Record(t=i * 0.001, kind="packet", dir="c2s" if i % 2 else "s2c", transport="websocket",
                                raw=f'42["chat",{{"user":"alice","text":"message number {i}"}}]', eio="message",
                                sio="event", nsp="/", event="chat",
                                args=[{"user": "alice", "text": f"message number {i}"}],
                                sid="lv_VI97HAXpY6yYWAAAC", client="alice"))
        return time.perf_counter() - t
    gc.collect()
    tracemalloc.start()  # memory in one pass; time in another, without tracemalloc (it slows every allocation)
    before = tracemalloc.get_traced_memory()[0]
    kept = Trace(limit=None)
    fill(kept)
    per_record = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    del kept
    gc.collect()
    trace = Trace(limit=None)
    append_s = fill(trace)
    print(f"  memory per record: {per_record:.0f} bytes; append: {append_s / n * 1e6:.2f} µs per record "
          f"(incl. building it)")
    verdict("a record costs under 1 KB", per_record < 1024, f"{per_record:.0f} bytes")
    from siolab.trace import DEFAULT_LIMIT
    bound_mb = per_record * DEFAULT_LIMIT / 1e6
    verdict("the default bound keeps a trace under 200 MB", bound_mb < 200,
            f"{DEFAULT_LIMIT} records x {per_record:.0f} B = {bound_mb:.0f} MB")
    t = time.perf_counter()
    hits = trace.find(dir="c2s", event="chat")
    print(f"  filter (dir + event) over {n}: {(time.perf_counter() - t) * 1000:.1f} ms ({len(hits)} hits)")
    t = time.perf_counter()
    text = trace.to_jsonl()
    print(f"  export JSON Lines: {(time.perf_counter() - t) * 1000:.0f} ms ({len(text) / 1e6:.1f} MB)")


# ------------------------------------------------------------------ 5: live view

async def bench_view(args) -> None:
    try:
        from siolab.widgets import TraceView
    except Exception as exc:
        print(f"\nlive view: not measured ({exc.__class__.__name__}: {exc})")
        return
    from siolab.trace import Record, Trace
    print("\nlive view: cost of taking 1,000 new records into a view", flush=True)

    def rec(i):
        return Record(t=i * 0.001, kind="packet", dir="c2s", transport="websocket", raw=f'42["n",{i}]',
                      eio="message", sio="event", event="n", args=[i], client="alice")
    views = {}
    for size in (1_000, 50_000):
        trace = Trace(limit=None)
        for i in range(size):
            trace.append(rec(i))
        view = TraceView(trace)
        sent: list[int] = []
        view.send = lambda msg, buffers=None, sent=sent: sent.append(len(json.dumps(msg, default=str)))
        view._on_custom(view, {"type": "hello"}, [])  # what an opened page says first
        views[size] = (trace, view, sent, [])
    batch = [rec(i) for i in range(1_000)]  # built outside the timing: a view does not build records
    for _ in range(15):  # alternate the two sizes within each repeat
        for trace, view, sent, samples in views.values():
            sent.clear()
            t = time.perf_counter()
            for r in batch:
                trace.append(r)
            view.flush()
            samples.append(time.perf_counter() - t)
    costs = {}
    for size, (trace, view, sent, samples) in views.items():
        costs[size] = statistics.median(samples)
        print(f"  trace of {size:>6}: {costs[size] * 1000:.2f} ms kernel-side (listener + flush), "
              f"{sum(sent)} bytes to the front end in {len(sent)} message(s)")
        view.close()
    ratio = costs[50_000] / costs[1_000]
    verdict("a view update costs the same at 50,000 records as at 1,000", ratio < 1.5, f"ratio {ratio:.2f}")


# ------------------------------------------------------------------ 6: lessons

def bench_lessons(args) -> None:
    print("\nlessons", flush=True)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import siolab"], cwd=ROOT, check=True)
        times.append(time.perf_counter() - t)
        base = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times[-1] -= time.perf_counter() - base
    imp = statistics.median(times)
    verdict("import siolab under 0.5 s", imp < 0.5, f"{imp:.3f} s (interpreter start-up subtracted)")
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    if args.quick:
        notebooks = notebooks[:2]
    for nb in notebooks:
        t = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(nb)],
                             cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t
        verdict(f"{nb.name} under 20 s", wall < 20 and res.returncode == 0,
                f"{wall:.1f} s under nbval{'' if res.returncode == 0 else ' (FAILED)'}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats")
    parser.add_argument("--only", default="tap,store,view,lessons")
    parser.add_argument("--transports", default="websocket,polling", help="the tap benchmark's transports")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"siolab benchmark — {time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, {'quick' if args.quick else 'full'} run", flush=True)
    if args.quick:
        print("  (a quick run's tap verdicts rest on 4 repeats and move by several percent from run to run; quote the "
              "full run's)", flush=True)
    if "tap" in parts:
        await bench_tap(args)
    if "store" in parts:
        bench_store(args)
    if "view" in parts:
        await bench_view(args)
    if "lessons" in parts:
        bench_lessons(args)
    failed = [n for n, ok in VERDICTS if not ok]
    print(f"\n{len(VERDICTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
