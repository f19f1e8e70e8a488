"""Where Node.js and the pinned npm packages are, so a lab can run the official server without a checkout.

The packages (``socket.io`` and friends, pinned by ``siolab/node/package-lock.json``) are found in
``siolab/node/node_modules`` (``make lab``, ``make test`` and Binder's ``postBuild`` run ``npm ci`` there);
else, for a pip-installed siolab, they are installed once with ``npm ci`` into a per-user cache named
by the lock file's hash (``~/.cache/siolab/node-<hash>``), which a changed lock never reuses.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parent / "node"  # part of the package; its node_modules is git-ignored
MIN_NODE = 18
PROBE = "socket.io"  # installed when this package's package.json is there
INSTALL_NODE = (f"Install Node.js >= {MIN_NODE} (it comes with npm): https://nodejs.org/en/download, "
                f"`conda install -c conda-forge 'nodejs>={MIN_NODE}'`, or on Debian/Ubuntu "
                f"`apt-get install nodejs npm`; then restart the kernel.")


class NodeUnavailable(RuntimeError):
    """Node.js (or npm, or the pinned packages) is missing here; the message says how to get it."""


def node_version(node: str) -> tuple[int, str] | None:
    """(major, "v20.1.0") of the ``node`` binary, or None if it does not answer."""
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.match(r"v(\d+)\.", out)
    return (int(match.group(1)), out) if match else None


_versions: dict[str, tuple[int, str] | None] = {}  # node binary -> its version, asked once per process


def find_node() -> str:
    """The ``node`` binary to run (Node.js >= MIN_NODE), or NodeUnavailable saying how to install it."""
    node = shutil.which("node")
    if node is None:
        raise NodeUnavailable(f"Node.js is not installed (no `node` on PATH). {INSTALL_NODE}")
    if node not in _versions:
        _versions[node] = node_version(node)
    version = _versions[node]
    if version is None:
        raise NodeUnavailable(f"`{node} --version` did not answer. {INSTALL_NODE}")
    if version[0] < MIN_NODE:
        raise NodeUnavailable(f"Node.js {version[1]} ({node}) is too old. {INSTALL_NODE}")
    return node


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "siolab"


def lock_hash(node_dir: Path = NODE_DIR) -> str:
    return hashlib.sha256((node_dir / "package-lock.json").read_bytes()).hexdigest()[:16]


def cached_dir(node_dir: Path = NODE_DIR) -> Path:
    """Where the packages of this lock file go when the package's own directory has none."""
    return cache_root() / f"node-{lock_hash(node_dir)}"


def installed(node_dir: Path = NODE_DIR) -> Path | None:
    """The node_modules directory holding the pinned packages, if they are installed (package or cache)."""
    for modules in (node_dir / "node_modules", cached_dir(node_dir) / "node_modules"):
        if (modules / PROBE / "package.json").is_file():
            return modules
    return None


async def ensure_packages(node_dir: Path = NODE_DIR, *, timeout: float = 600) -> Path:
    """The node_modules directory with the pinned packages; installs them into the cache on first use."""
    find_node()
    found = installed(node_dir)
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable(f"npm is not installed, so the pinned Node.js packages cannot be installed. "
                              f"{INSTALL_NODE}")
    final = cached_dir(node_dir)
    staging = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(node_dir / name, staging / name)
    print(f"siolab: installing the pinned Node.js packages into {final} (npm ci, once)...", file=sys.stderr)
    proc = await asyncio.create_subprocess_exec(
        npm, "ci", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if proc.returncode != 0 or not (staging / "node_modules" / PROBE).is_dir():
        shutil.rmtree(staging, ignore_errors=True)
        text = out.decode("utf-8", "replace").strip()[-2000:]
        raise NodeUnavailable(f"`npm ci` could not install the pinned packages (exit {proc.returncode}); "
                              f"it needs the npm registry, or run it yourself: "
                              f"cd {node_dir} && npm ci\n{text}")
    try:
        staging.rename(final)
    except OSError:  # another kernel installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return final / "node_modules"


__all__ = ["NODE_DIR", "MIN_NODE", "NodeUnavailable", "node_version", "find_node", "installed",
           "ensure_packages", "cached_dir", "cache_root", "lock_hash", "INSTALL_NODE"]
