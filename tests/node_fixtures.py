"""Start the Node.js reference servers and client from tests/node as child processes."""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

NODE_DIR = Path(__file__).parent / "node"


@contextlib.asynccontextmanager
async def node_server(script: str, *args: str):
    """Run ``node script args`` and yield the port it announced; it exits when its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / script), *args, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line:
            raise RuntimeError((await proc.stderr.read()).decode())
        yield json.loads(line)["port"]
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


async def node_client(url: str, *args: str) -> dict:
    """Run the official socket.io-client script against ``url`` and return its JSON result."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(NODE_DIR / "sio_client.js"), url, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = out.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"sio_client.js printed nothing; stderr: {err.decode()}")
    return json.loads(lines[-1])
