"""siolab's benchmark: what tracing costs, how the trace store and views scale, how fast the lessons run.

    .venv/bin/python benchmarks/bench.py [--quick] [--only tap,scale,store,view,lessons] [--transports websocket,polling]

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


# ------------------------------------------------------------------ scale: many clients, Node.js at both ends

NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# (transport, clients, the tap / byte relay target); p99 target: at 50 WebSocket clients
SCALE_CASES = (("websocket", 1, 0.9), ("websocket", 50, 0.8), ("websocket", 200, 0.8), ("polling", 50, 0.85))
SCALE_P99_ADDED_MS = 2.0
SCALE_PEAK_RSS_MB = 160  # the tap and its writer process together


def proc_children(pid: int) -> list[int]:
    """A process's living child processes, and theirs (the CLI tap's writer process)."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = [int(k) for k in fh.read().split()]
    except OSError:
        return out
    for kid in kids:
        out += [kid] + proc_children(kid)
    return out


def proc_cpu(pid: int, children: bool = True) -> float:
    """A process's CPU time so far (user + system, every thread), in seconds (/proc/<pid>/stat), with its
    living children's."""
    total = 0.0
    for p in [pid] + (proc_children(pid) if children else []):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_mem(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process and its living children together, in MB."""
    out = {"VmRSS": 0.0, "VmHWM": 0.0}
    for p in [pid] + proc_children(pid):
        with contextlib.suppress(OSError), open(f"/proc/{p}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] += int(line.split()[1]) / 1024
    return out


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (every core; /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK  # all but idle and iowait


@contextlib.asynccontextmanager
async def node_server():
    """benchmarks/node_echo_server.js: (port, pid)."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(HERE / "node_echo_server.js"), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        info = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        yield info["port"], proc.pid
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def py_child(*args: str, announce: bool = True):
    """As ``child``, and the process id too: (port, pid)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE if announce else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        port = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))["port"] if announce else None
        yield port, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def node_load(url: str, transport: str, clients: int, seconds: float, watch: dict[str, int]) -> dict:
    """Run benchmarks/node_load.js once; its JSON result, plus the CPU seconds each watched process (name ->
    pid) and the whole machine spent over the counted window."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(HERE / "node_load.js"), url, "--clients", str(clients), "--seconds", str(seconds),
        "--transport", transport, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    result = None
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), seconds + 90)
            if not line:
                break
            msg = json.loads(line)
            if msg.get("phase") in ("start", "end"):
                sample = {name: proc_cpu(pid) for name, pid in watch.items()}
                sample.update({f"{name} alone": proc_cpu(pid, children=False) for name, pid in watch.items()})
                sample["machine"] = machine_busy()
                if msg["phase"] == "start":
                    before = sample
                else:
                    after = sample
            else:
                result = msg
    finally:
        try:  # (Popen.kill() reaps a child that just exited, behind asyncio's watcher: wait first)
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    if result is None or "error" in result:
        raise RuntimeError(f"node_load.js {url} {transport} x{clients}: {result}")
    result["cpu"] = {name: after[name] - before[name] for name in before}
    result["cpu"]["clients"] = result["cpu_s"]
    return result


def mitmdump_command() -> list[str] | None:
    """mitmproxy as an optional comparison, only where it is installed already (never a dependency)."""
    import shutil
    exe = shutil.which("mitmdump") or (shutil.which("mitmdump", path=str(Path(sys.executable).parent)))
    return [exe] if exe else None


def count_echo_calls(path: Path) -> tuple[int, int]:
    """(echo calls client -> server, acks server -> client) in a JSON Lines trace, one JSON parse per line."""
    calls = acks = 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if '"echo"' not in line and '"ack"' not in line:
                continue
            obj = json.loads(line)
            if obj.get("kind") != "packet":
                continue
            if obj.get("dir") == "c2s" and obj.get("event") == "echo":
                calls += 1
            elif obj.get("dir") == "s2c" and obj.get("sio") == "ack":
                acks += 1
    return calls, acks


async def bench_scale(args) -> None:
    import shutil
    import tempfile
    if shutil.which("node") is None or not (NODE_MODULES / "socket.io-client").is_dir():
        print("\nscale: not measured (needs node and tests/node/node_modules: make setup-test)")
        verdict("scale benchmark ran", False, "node or tests/node/node_modules missing")
        return
    repeats, seconds = (2, 1.0) if args.quick else (args.scale_repeats or 5, 2.0)
    transports = args.transports.split(",")
    cases = [c for c in SCALE_CASES if c[0] in transports
             and (not args.scale_clients or str(c[1]) in args.scale_clients.split(","))]
    tmp = Path(tempfile.mkdtemp(prefix="siolab-scale-"))
    jsonl_path = tmp / "trace.jsonl"
    print(f"\nscale: the Node.js socket.io 4.8 server (echo acks) | byte relay or CLI tap (--jsonl, own process) | "
          f"N socket.io-client clients in one Node process calling echo back to back; {repeats} repeats of "
          f"{seconds:g} s, configurations alternated forward-backward", flush=True)
    results: dict[tuple, dict[str, list[dict]]] = {}
    acked_through_tap = 0
    async with node_server() as (server_port, server_pid):
        async with py_child(str(HERE / "servers.py"), "relay", str(server_port)) as (relay_port, relay_proc):
            tap_port = free_port()
            async with py_child("-m", "siolab", "trace", f"http://127.0.0.1:{server_port}", "--listen",
                                str(tap_port), "--jsonl", str(jsonl_path), announce=False) as (_, tap_proc):
                await wait_port(tap_port)
                configs = {"direct": (f"http://127.0.0.1:{server_port}", None),
                           "relay": (f"http://127.0.0.1:{relay_port}", relay_proc.pid),
                           "tap": (f"http://127.0.0.1:{tap_port}", tap_proc.pid)}
                others = []  # --scale-taps: the CLI tap from other siolab trees, side by side (A/B of a change)
                for spec in filter(None, (args.scale_taps or "").split(",")):
                    name, _, tree = spec.partition("=")
                    port = free_port()
                    other = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "siolab", "trace", f"http://127.0.0.1:{server_port}", "--listen",
                        str(port), "--jsonl", str(tmp / f"{name}.jsonl"), stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                        env={**os.environ, "PYTHONPATH": tree}, cwd=tree)
                    others.append(other)
                    await wait_port(port)
                    configs[name] = (f"http://127.0.0.1:{port}", other.pid)
                mitm = mitmdump_command()
                mitm_proc = None
                if mitm:
                    mitm_port = free_port()
                    mitm_proc = await asyncio.create_subprocess_exec(
                        *mitm, "-q", "--mode", f"reverse:http://127.0.0.1:{server_port}", "--listen-host",
                        "127.0.0.1", "--listen-port", str(mitm_port), stdout=asyncio.subprocess.DEVNULL,
                        stderr=asyncio.subprocess.DEVNULL)
                    await wait_port(mitm_port)
                    configs["mitmproxy"] = (f"http://127.0.0.1:{mitm_port}", mitm_proc.pid)
                else:
                    print("  (mitmproxy is not installed: no mitmproxy column)")
                names = list(configs)
                rss_after: dict[tuple, dict] = {}
                try:
                    for case in cases:
                        transport, clients, _ = case
                        per = results[case] = {n: [] for n in names}
                        for repeat in range(repeats):
                            order = names if repeat % 2 == 0 else names[::-1]
                            for name in order:
                                url, hop = configs[name]
                                watch = {"server": server_pid, **({"hop": hop} if hop else {})}
                                r = await node_load(url, transport, clients, seconds, watch)
                                per[name].append(r)
                                if name == "tap":
                                    acked_through_tap += r["acked"]
                        rss_after[case] = proc_mem(tap_proc.pid)
                    mem = proc_mem(tap_proc.pid)
                finally:
                    for other in others + ([mitm_proc] if mitm_proc is not None else []):
                        other.terminate()
                        await other.wait()
                tap_proc.send_signal(2)  # Ctrl-C: the CLI writes what it holds and closes the file
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(tap_proc.wait(), 15)
    for case in cases:
        report_scale(case, results[case], rss_after[case])
    calls, acks = count_echo_calls(jsonl_path)
    verdict("scale: every acknowledged call is in the JSON Lines", calls >= acked_through_tap,
            f"{calls} echo calls (c2s) and {acks} acks (s2c) recorded; the clients counted {acked_through_tap} "
            f"acknowledged calls through the tap")
    verdict(f"scale: tap memory bounded (peak RSS of its processes under {SCALE_PEAK_RSS_MB} MB)", mem["VmHWM"] < SCALE_PEAK_RSS_MB,
            f"peak {mem['VmHWM']:.0f} MB, now {mem['VmRSS']:.0f} MB; RSS after each case: "
            + ", ".join(f"{c[1]} {c[0]} {m['VmRSS']:.0f}" for c, m in rss_after.items()))
    shutil.rmtree(tmp, ignore_errors=True)


def report_scale(case: tuple, per: dict[str, list[dict]], rss: dict) -> None:
    transport, clients, target = case
    print(f"\n[scale] {clients} {transport} client{'s' if clients > 1 else ''}", flush=True)
    print(f"  {'config':<10} {'round trips/s':>14} {'p50 ms':>8} {'p99 ms':>8}   CPU µs per round trip: "
          f"{'server':>7} {'clients':>7} {'hop':>7} {'others':>7}")
    for name, runs in per.items():
        rate = statistics.median(r["rate"] for r in runs)
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)

        def us(key: str) -> str:
            vals = [r["cpu"][key] / r["calls"] * 1e6 for r in runs if key in r["cpu"] and r["calls"]]
            return f"{statistics.median(vals):>7.0f}" if vals else f"{'-':>7}"
        others = [(r["cpu"]["machine"] - r["cpu"]["server"] - r["cpu"]["clients"] - r["cpu"].get("hop", 0))
                  / r["calls"] * 1e6 for r in runs if r["calls"]]
        writer = [(r["cpu"]["hop"] - r["cpu"]["hop alone"]) / r["calls"] * 1e6 for r in runs
                  if "hop" in r["cpu"] and r["calls"]]
        split = f"  (its writer process: {statistics.median(writer):.0f})" if writer and max(writer) > 0 else ""
        print(f"  {name:<10} {rate:>14.0f} {p50:>8.2f} {p99:>8.2f}   {'':22}{us('server')} {us('clients')} "
              f"{us('hop')} {statistics.median(others):>7.0f}{split}")
    ratios = [t["rate"] / r["rate"] for t, r in zip(per["tap"], per["relay"])]
    spread = f"repeats {min(ratios):.2f}-{max(ratios):.2f}"
    label = f"{clients} {transport}"
    ratio = statistics.median(ratios)
    verdict(f"scale {label}: tap >= {target} x byte relay (round trips)", ratio >= target,
            f"{ratio:.2f} (median of the repeats' ratios; {spread})")
    added = statistics.median(t["p99_ms"] - r["p99_ms"] for t, r in zip(per["tap"], per["relay"]))
    if (transport, clients) == ("websocket", 50):
        verdict(f"scale {label}: p99 added over the byte relay <= {SCALE_P99_ADDED_MS} ms",
                added <= SCALE_P99_ADDED_MS, f"{added:.2f} ms (median of the repeats' differences)")
    else:
        print(f"  p99 added over the byte relay: {added:.2f} ms (median of the repeats' differences)")
    print(f"  tap RSS after this case: {rss['VmRSS']:.0f} MB (peak so far {rss['VmHWM']:.0f} MB)")
    for name in per:
        if name not in ("direct", "relay", "tap"):
            m = statistics.median(x["rate"] / r["rate"] for x, r in zip(per[name], per["relay"]))
            t = statistics.median(x["rate"] / r["rate"] for x, r in zip(per[name], per["tap"]))
            d = statistics.median(x["p99_ms"] - r["p99_ms"] for x, r in zip(per[name], per["tap"]))
            print(f"  {name} / byte relay: {m:.2f}; {name} / tap: {t:.2f}; p99 {name} - tap: {d:+.2f} ms")


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
    parser.add_argument("--only", default="tap,scale,store,view,lessons")
    parser.add_argument("--transports", default="websocket,polling", help="the tap and scale benchmarks' transports")
    parser.add_argument("--scale-taps", metavar="NAME=DIR,...",
                        help="scale: also run the CLI tap of these siolab trees (PYTHONPATH=DIR), side by side")
    parser.add_argument("--scale-repeats", type=int, help="scale: repeats per case (default 5)")
    parser.add_argument("--scale-clients", metavar="N,...",
                        help="scale: only the cases with these client counts (e.g. 50)")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    print(f"siolab benchmark — {time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, {'quick' if args.quick else 'full'} run", flush=True)
    if args.quick:
        print("  (a quick run's tap verdicts rest on 4 repeats and move by several percent from run to run; quote the "
              "full run's)", flush=True)
    if "tap" in parts:
        await bench_tap(args)
    if "scale" in parts:
        await bench_scale(args)
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
