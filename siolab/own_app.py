"""Your own app, run the way you run it, so that a lesson can put the tap in front of it.

``app = await run_node_app(SERVER_JS, debug="socket.io*")`` writes ``server.js`` to a temporary folder
and runs ``node server.js`` with ``PORT`` set (a free port on 127.0.0.1) and ``require`` resolving
siolab's pinned npm packages: a server the lab did not start, as yours is. ``await run_cli("trace",
app.url)`` runs ``python -m siolab ...`` as you would in a terminal. Both keep what the process printed
(``lines``; stderr, where the ``debug`` module writes, in ``stderr_lines``), die with the kernel, and are
stopped by a re-run (same ``name``) and by ``close_all()``.

A lesson that needs Node.js calls ``need_node(recorded)`` first: without Node.js it says how to get it,
shows the trace a run of the lesson recorded, and stops the notebook quietly instead of failing.
"""
from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

from .broker import _die_with_parent, kill_quietly
from .node_env import MIN_NODE, ensure_packages, installed, node_version

LINES = 5000  # lines kept per stream; the count of the dropped ones is said
_running: dict[str, "Command"] = {}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Command:
    """A child process whose output lines are kept (``lines``: (stream, text), newest last)."""

    def __init__(self, argv: list[str], *, name: str, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.argv, self.name, self.cwd = list(argv), name, cwd
        self.env = dict(os.environ, **(env or {}))
        self.lines: collections.deque[tuple[str, str]] = collections.deque(maxlen=LINES)
        self.dropped = 0  # lines that fell out of ``lines``
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task] = []
        self._changed = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def stdout_lines(self) -> list[str]:
        return [text for stream, text in self.lines if stream == "stdout"]

    @property
    def stderr_lines(self) -> list[str]:
        return [text for stream, text in self.lines if stream == "stderr"]

    def output(self) -> str:
        """Everything kept, stdout and stderr interleaved as they came."""
        head = f"({self.dropped} earlier lines dropped)\n" if self.dropped else ""
        return head + "\n".join(text for _, text in self.lines)

    async def start(self) -> None:
        old = _running.pop(self.name, None)
        if old is not None and old is not self:
            await old.stop()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv, cwd=None if self.cwd is None else str(self.cwd), env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_parent())
        _running[self.name] = self
        self._readers = [asyncio.ensure_future(self._read("stdout", self._proc.stdout)),
                         asyncio.ensure_future(self._read("stderr", self._proc.stderr))]

    async def _read(self, stream: str, pipe: asyncio.StreamReader) -> None:
        while True:
            try:
                line = await pipe.readline()
            except ValueError:  # a line over the stream's limit
                line = b"<a line too long to keep>\n"
            if not line:
                return
            if len(self.lines) == self.lines.maxlen:
                self.dropped += 1
            self.lines.append((stream, line.decode("utf-8", "replace").rstrip("\r\n")))
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for_line(self, pattern: str, timeout: float = 10.0, stream: str | None = None) -> str:
        """The first kept line that matches the regular expression ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for where, text in self.lines:
                if (stream is None or where == stream) and regex.search(text):
                    return text
            left = deadline - time.monotonic()
            if not self.running:
                raise RuntimeError(f"{self.name} exited (code {self.returncode}) before printing a line matching "
                                   f"{pattern!r}; its output:\n{self.output()[-3000:]}")
            if left <= 0:
                raise asyncio.TimeoutError(f"{self.name}: no line matching {pattern!r} in {timeout} s; its output:\n"
                                           f"{self.output()[-3000:]}")
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 0.2))
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        """SIGTERM (as Ctrl-C in a terminal would end it), then SIGKILL after 3 s."""
        proc = self._proc
        if _running.get(self.name) is self:
            del _running[self.name]
        if proc is not None and proc.returncode is None:
            for signal_it in (proc.terminate, proc.kill):
                try:
                    signal_it()
                except ProcessLookupError:
                    break
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                    break
                except asyncio.TimeoutError:
                    continue
            if proc.returncode is None:
                kill_quietly(proc)
                await proc.wait()
        if self._readers:
            await asyncio.wait(self._readers, timeout=1.0)
            for task in self._readers:
                task.cancel()
            await asyncio.gather(*self._readers, return_exceptions=True)
            self._readers = []

    def __repr__(self) -> str:
        state = f"running, pid {self.pid}" if self.running else f"exited ({self.returncode})"
        return f"<{type(self).__name__} {self.name} {state}>"


class NodeApp(Command):
    """``node server.js`` with ``PORT`` set: a Socket.IO server the lab did not start."""

    def __init__(self, script: Path, *, port: int, name: str, modules: Path,
                 env: dict[str, str] | None = None) -> None:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError(f"Node.js is not installed (no `node` on PATH): install Node.js >= {MIN_NODE}")
        extra = {"PORT": str(port), "NODE_PATH": os.pathsep.join(
            p for p in (str(modules), os.environ.get("NODE_PATH")) if p)}
        super().__init__([node, str(script)], name=name, env=extra | (env or {}), cwd=script.parent)
        self.script, self.port = script, port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_listening(self, timeout: float = 20.0) -> None:
        """Until the port takes connections (the app printed nothing we could rely on)."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running:
                await asyncio.sleep(0.05)  # the last lines
                raise RuntimeError(f"{self.name} ({self.script.name}) exited with code {self.returncode} before "
                                   f"it listened on {self.port}; its output:\n{self.output()[-3000:]}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                await self.stop()
                raise asyncio.TimeoutError(f"{self.name} did not listen on {self.port} within {timeout} s; its "
                                           f"output:\n{self.output()[-3000:]}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await super().stop()
        shutil.rmtree(self.script.parent, ignore_errors=True)


def _write_script(source: str | Path) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="siolab-app-"))
    script = folder / "server.js"
    script.write_text(Path(source).read_text() if isinstance(source, Path) else source, encoding="utf-8")
    return script


async def run_node_app(source: str | Path, *, name: str = "app", debug: str | None = None,
                       env: dict[str, str] | None = None, port: int | None = None) -> NodeApp:
    """Run a Node.js server as you would (``PORT=... DEBUG=... node server.js``) and wait until it listens.

    ``source`` is the JavaScript itself (written to a fresh temporary ``server.js``) or a file's path (copied
    there, so its folder is left alone); it reads its port from ``process.env.PORT``."""
    script = _write_script(source)
    more = dict(env or {})
    if debug is not None:
        more |= {"DEBUG": debug, "DEBUG_COLORS": "0"}
    modules = await ensure_packages()
    app = NodeApp(script, port=port or free_port(), name=name, modules=modules, env=more)
    try:
        await app.start()
        await app.wait_listening()
    except BaseException:
        await app.stop()
        raise
    return app


async def run_cli(*args: str, name: str = "cli", ready: str | None = r"listening on") -> Command:
    """``python -m siolab ARGS`` in its own process, as in a terminal; waits for a line matching ``ready``."""
    command = Command([sys.executable, "-u", "-m", "siolab", *args], name=name)
    await command.start()
    if ready is not None:
        try:
            await command.wait_for_line(ready)
        except BaseException:
            await command.stop()
            raise
    return command


def running() -> list[Command]:
    """The processes this module started that are still running."""
    return [c for c in _running.values() if c.running]


async def close_all() -> None:
    await asyncio.gather(*(c.stop() for c in list(_running.values())), return_exceptions=True)
    _running.clear()


# ---------------------------------------------------------------- without Node.js


class StopLesson(Exception):
    """Raised to end a notebook's run quietly (IPython shows no traceback: ``_render_traceback_``)."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def node_ready() -> tuple[bool, str]:
    """Whether Node.js (>= MIN_NODE) and siolab's npm packages are here; the text says what, or the fix."""
    node = shutil.which("node")
    version = node_version(node) if node else None
    if node is None or version is None:
        return False, (f"Node.js is not installed here (no `node` on PATH). Install Node.js >= {MIN_NODE} "
                       f"(https://nodejs.org, or `apt-get install -y nodejs npm` on Debian), then run `make lab` "
                       f"again; on Binder it is installed for you.")
    if version[0] < MIN_NODE:
        return False, f"Node.js {version[1]} is too old: this lesson needs Node.js >= {MIN_NODE}."
    if installed() is None and shutil.which("npm") is None:
        return False, "siolab's npm packages are not installed, and there is no `npm` to install them."
    return True, f"Node.js {version[1]} with siolab's pinned npm packages."


def need_node(recorded: str | Path | None = None) -> str:
    """Say what runs; without Node.js, show the ``recorded`` trace (JSON Lines) and stop the notebook."""
    ok, why = node_ready()
    if ok:
        return why
    shown = ""
    if recorded is not None:
        from .trace import Trace
        try:
            trace = Trace.from_jsonl(recorded)
            shown = ("\n\nWhat this lesson showed when it ran with Node.js (a recorded trace):\n\n"
                     + trace.table(hide_heartbeats=True))
        except (OSError, ValueError) as exc:
            shown = f"\n\n(the recorded trace {recorded} could not be read: {exc})"
    raise StopLesson(f"{why}{shown}\n\nThe rest of this notebook needs Node.js: it stops here.")


__all__ = ["Command", "NodeApp", "run_node_app", "run_cli", "running", "close_all", "need_node", "node_ready",
           "StopLesson", "free_port"]
