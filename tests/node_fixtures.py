"""Start the Node.js reference servers and client as child processes: the test fixtures in tests/node, and
the official server the package runs (siolab/node/sio_server.js)."""
from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from siolab.reference import NODE_DIR as PACKAGE_NODE_DIR

NODE_DIR = Path(__file__).parent / "node"


def script_path(script: str) -> Path:
    """A fixture of tests/node, or else one of the package's (sio_server.js)."""
    path = NODE_DIR / script
    return path if path.is_file() else PACKAGE_NODE_DIR / script


@contextlib.asynccontextmanager
async def node_server(script: str, *args: str):
    """Run ``node script args`` and yield the port it announced; it exits when its stdin closes."""
    proc = await asyncio.create_subprocess_exec(
        "node", str(script_path(script)), *args, stdin=asyncio.subprocess.PIPE,
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
