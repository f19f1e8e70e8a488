"""Processes the benchmark starts: a python-socketio echo server and a pure asyncio byte relay.

    python benchmarks/servers.py server            -> prints {"port": n}
    python benchmarks/servers.py relay UPSTREAM_PORT -> prints {"port": n}
    python benchmarks/servers.py tap-off UPSTREAM_PORT -> the tap with record=False, prints {"port": n}
"""
import asyncio
import json
import sys


async def echo_server() -> None:
    import socketio
    from aiohttp import web
    sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=25, ping_timeout=20, max_http_buffer_size=10**7)
    counts = {"one": 0}

    @sio.on("echo")
    async def echo(sid, data):
        return data

    @sio.on("one")
    async def one(sid, data):
        counts["one"] += 1

    @sio.on("count")
    async def count(sid):
        return counts["one"]

    @sio.on("bye")
    async def bye(sid):
        await sio.disconnect(sid)

    app = web.Application()
    sio.attach(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(json.dumps({"port": runner.addresses[0][1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def start_relay(upstream_port: int, port: int = 0) -> asyncio.AbstractServer:
    """A TCP forwarder that parses nothing: the physical limit a tap can reach."""
    async def handle(reader, writer):
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
    return await asyncio.start_server(handle, "127.0.0.1", port)


async def relay(upstream_port: int) -> None:
    server = await start_relay(upstream_port)
    print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def tap_off(upstream_port: int) -> None:
    """The tap as its own process with tracing off: the same sockets and parsing, no decoding or records."""
    from siolab.tap import Tap
    tap = await Tap(f"http://127.0.0.1:{upstream_port}", record=False).start()
    print(json.dumps({"port": tap.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await tap.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(echo_server())
    elif sys.argv[1] == "tap-off":
        asyncio.run(tap_off(int(sys.argv[2])))
    else:
        asyncio.run(relay(int(sys.argv[2])))
