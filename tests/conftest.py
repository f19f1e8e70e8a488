import shutil
from pathlib import Path

import pytest

import siolab

NODE_DIR = Path(__file__).parent / "node"


@pytest.fixture
async def lab():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    yield lab
    await lab.close()


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "socket.io").is_dir()


needs_node = pytest.mark.skipif(not node_available(),
                                reason="node or tests/node/node_modules missing: run `cd tests/node && npm ci`")
