"""Profile the CLI tap under many clients: the Node.js echo server, the CLI tap with --jsonl in its own
process, N Node.js clients; prints the round trips and the CPU per round trip of each process.

    .venv/bin/python benchmarks/profile_tap.py [--clients 50] [--transport websocket] [--seconds 10]
        [--py-spy profile.svg | --py-spy-top | --cprofile tap.prof] [--tree DIR] [--no-jsonl]

--py-spy records a flame graph of the tap (py-spy must be installed: .venv/bin/pip install py-spy);
--cprofile runs the tap under cProfile and writes its stats; --tree runs the tap from another siolab
checkout (PYTHONPATH=DIR), to compare two versions.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench import free_port, node_load, node_server, proc_mem, wait_port  # noqa: E402


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--transport", default="websocket")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--py-spy", dest="pyspy")
    p.add_argument("--cprofile")
    p.add_argument("--tree")
    p.add_argument("--no-jsonl", action="store_true")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="siolab-profile-"))
    env = dict(os.environ)
    if args.tree:
        env["PYTHONPATH"] = args.tree
    async with node_server() as (server_port, server_pid):
        tap_port = free_port()
        cmd = [sys.executable]
        if args.cprofile:
            cmd += ["-m", "cProfile", "-o", args.cprofile]
        cmd += ["-m", "siolab", "trace", f"http://127.0.0.1:{server_port}", "--listen", str(tap_port)]
        if not args.no_jsonl:
            cmd += ["--jsonl", str(tmp / "t.jsonl")]
        tap = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.DEVNULL, env=env)
        await wait_port(tap_port)
        spy = None
        if args.pyspy:
            spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).parent / "py-spy"), "record", "-o", args.pyspy, "--pid", str(tap.pid),
                "--rate", "500", *(["--format", "raw"] if args.pyspy.endswith(".txt") else []),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(1)
        for _ in range(args.runs):
            r = await node_load(f"http://127.0.0.1:{tap_port}", args.transport, args.clients, args.seconds,
                                {"server": server_pid, "tap": tap.pid})
            cpu = {k: round(v / r["calls"] * 1e6) for k, v in r["cpu"].items()}
            print(json.dumps({"rate": round(r["rate"]), "p50_ms": round(r["p50_ms"], 2),
                              "p99_ms": round(r["p99_ms"], 2), "cpu_us_per_rt": cpu,
                              "mem": proc_mem(tap.pid)}), flush=True)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            await spy.wait()
        tap.send_signal(signal.SIGINT)
        await tap.wait()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
