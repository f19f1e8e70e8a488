"""python -m siolab: the demo prints an annotated trace; trace relays any server and flushes as it goes."""
import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import socketio
from aiohttp import web



def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "siolab", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_prints_the_annotated_chat():
    out = run("demo")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in ("OPEN", "2probe", "3probe", "UPGRADE", '42["newClient","alice"]', "initialChatList",
                   '42["message",{"name":"alice","message":"hello"}]', "PING", "PONG", "^ handshake",
                   "Socket.IO 2 EVENT"):
        assert needle in text, needle
    # the broadcast reached both users: once over the WebSocket, once in a long-poll response
    lines = [line for line in text.splitlines() if '42["message",[' in line]
    assert any("alice" in line and "websocket" in line for line in lines)
    assert any("bob" in line and "polling" in line for line in lines)
    assert "!!" not in "\n".join(line for line in text.splitlines() if "OPEN" in line)


def test_explain_subcommand():
    out = run("explain", '421["chat","hi"]')
    assert out.returncode == 0 and "ack id 1" in out.stdout


async def test_trace_command_relays_flushes_and_stops_on_sigterm(tmp_path):
    # a server with a custom path, not the lab's
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app, socketio_path="custom")

    @sio.on("echo")
    async def echo(sid, data):
        return data

    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    jsonl = tmp_path / "t.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "siolab", "trace", f"http://127.0.0.1:{port}", "--jsonl", str(jsonl), "--limit", "3",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert "listening on http://127.0.0.1:" in first
        url = first.split("listening on ")[1].split()[0]
        client = socketio.AsyncClient()
        await client.connect(url, socketio_path="custom", wait_timeout=5)
        assert await client.call("echo", "hi", timeout=5) == "hi"
        await client.disconnect()
        # lines arrive while the tap runs (written per burst of records)
        seen = ""
        while '431["hi"]' not in seen:  # (not just '43': a time or a sid may have it)
            seen += (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        records = [json.loads(line) for line in jsonl.read_text().splitlines()]
        assert any(r["eio"] == "open" for r in records)
        assert any(r["raw"] == '421["echo","hi"]' for r in records)
        assert all(r["client"] is None for r in records)
        assert all("/custom/" in r["http"]["path"] for r in records if r["http"])
        proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.stdout.read(), 10)).decode()
        assert await proc.wait() == 0
        every = jsonl.read_text().splitlines()
        assert len(every) > 3 and f"stopped after {len(every)} records" in rest  # all of them, though it kept 3
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sio.shutdown()
        await runner.cleanup()


async def test_the_printer_writes_its_records_in_one_go_in_order():
    import io

    from siolab.cli import _Printer
    from siolab.trace import Record

    class Out(io.StringIO):
        writes = 0

        def write(self, text):
            Out.writes += 1
            return super().write(text)
    out, jsonl = Out(), io.StringIO()
    printer = _Printer(out, jsonl, after=0.05, most=100)
    records = [Record(t=i, dir="c2s", transport="websocket", raw=f'42["n",{i}]', eio="message", sio="event",
                      event="n", args=[i]) for i in range(5)]
    for r in records:
        printer(r)
    await asyncio.sleep(0.01)
    assert out.getvalue() == ""  # not yet: records are printed together, at most `after` later
    await asyncio.sleep(0.1)
    assert out.getvalue() == "".join(str(r) + "\n" for r in records) and Out.writes == 1
    assert [json.loads(line)["args"] for line in jsonl.getvalue().splitlines()] == [[i] for i in range(5)]
    printer(records[0])
    printer.flush()  # what the command does when it stops
    assert out.getvalue().endswith(str(records[0]) + "\n") and Out.writes == 2
    for i in range(150):  # a long burst is written in pieces, not held
        printer(records[i % 5])
    assert Out.writes == 3 and len(printer.records) == 50
    printer.flush()
    await asyncio.sleep(0.1)
    assert Out.writes == 4 and out.getvalue().count("\n") == 5 + 1 + 150  # nothing twice, nothing lost


async def _cli_tap(upstream: str, jsonl):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "siolab", "trace", upstream, "--jsonl", str(jsonl),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
    assert "listening on http://127.0.0.1:" in first, first
    return proc, first.split("listening on ")[1].split()[0]


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])


async def _stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    rest = (await asyncio.wait_for(proc.stdout.read(), 20)).decode()
    assert await proc.wait() == 0, (await proc.stderr.read()).decode()
    return rest


async def test_unusual_but_legal_values_reach_the_jsonl_file_and_load_back(tmp_path):
    """python-socketio's JSON writes NaN, Infinity and a lone surrogate; the CLI lost the batch that held them."""
    from siolab.trace import Trace
    sio = socketio.AsyncServer(async_mode="aiohttp")
    app = web.Application()
    sio.attach(app)
    odd = [float("nan"), float("inf"), 10 ** 40, "\ud800", "\x00", "\u202eabc"]

    @sio.on("give")
    async def give(sid):
        await sio.emit("odd", odd, to=sid)
        return odd

    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    jsonl = tmp_path / "odd.jsonl"
    proc, url = await _cli_tap(f"http://127.0.0.1:{runner.addresses[0][1]}", jsonl)
    try:
        client = socketio.AsyncClient()
        got = asyncio.get_running_loop().create_future()
        client.on("odd", lambda *args: got.set_result(args))
        await client.connect(url, wait_timeout=5)
        await client.call("give", timeout=5)
        await asyncio.wait_for(got, 5)
        await client.disconnect()
        rest = await _stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await sio.shutdown()
        await runner.cleanup()
    lines = jsonl.read_text(encoding="utf-8").split("\n")[:-1]
    assert f"stopped after {len(lines)} records" in rest and "not written" not in rest
    trace = Trace.from_jsonl(jsonl)
    assert len(trace) == len(lines)
    event = trace.expect(event="odd", dir="s2c")
    assert event.args[0][2:] == [10 ** 40, "\ud800", "\x00", "\u202eabc"]
    assert [str(v) for v in event.args[0][:2]] == ["nan", "inf"]  # NaN and Infinity written as text


async def test_a_compressed_answer_that_inflates_hugely_is_relayed_and_not_decoded(tmp_path):
    """A polling answer of about half a MB that inflates to 512 MB: the tap relays the bytes unchanged, says
    it did not decode them (with both sizes), stays small, and the next request gets its answer."""
    import zlib
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"0" * (1024 * 1024)
    bomb = deflate.compress(b"4") + b"".join(deflate.compress(zeros) for _ in range(512)) + deflate.flush()

    async def poll(request):
        if request.query.get("sid") == "bomb":
            return web.Response(body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})
        return web.Response(text='0{"sid":"ok","upgrades":[],"pingInterval":25000,"pingTimeout":20000}',
                            content_type="text/plain")

    app = web.Application()
    app.router.add_get("/socket.io/", poll)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    jsonl = tmp_path / "bomb.jsonl"
    proc, url = await _cli_tap(f"http://127.0.0.1:{runner.addresses[0][1]}", jsonl)
    try:
        import aiohttp
        async with aiohttp.ClientSession(auto_decompress=False) as http:
            async with http.get(url + "/socket.io/?EIO=4&transport=polling&sid=bomb") as r:
                assert r.status == 200 and await r.read() == bomb  # relayed byte for byte
            async with http.get(url + "/socket.io/?EIO=4&transport=polling", timeout=aiohttp.ClientTimeout(10)) as r:
                assert r.status == 200 and '"sid":"ok"' in await r.text()
        peak_kb = _peak_rss_kb(proc.pid)
        await _stop(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    (refused,) = [r for r in records if r["error"] and "too large to decode" in r["error"]]
    assert f"{len(bomb)} gzip bytes inflate to" in refused["error"] and refused["http"]["status"] == 200
    assert any(r["eio"] == "open" for r in records)
    assert jsonl.stat().st_size < 100_000
    assert peak_kb < 250_000, f"the tap's peak memory was {peak_kb} kB"
