"""A Node.js server script as a child process of the kernel that never outlives it.

The official server (``siolab.reference``) and the node lab (``siolab.node_lab``) run as one of these.
The script binds 127.0.0.1 and prints ``{"port": n}`` on stdout once listening; any other JSON line on
stdout is a message for ``on_message`` (plain text lines too, as ``{"type": "stdout", "text": ...}``).
stdin is a pipe the script watches: it exits when the pipe closes, which is also what happens when the
kernel dies; on Linux a parent-death signal kills it even if its loop is stuck. It runs in its own
session, so interrupting the kernel does not reach it.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
from pathlib import Path
from typing import Any, Callable

from .broker import _die_with_parent, kill_quietly
from .node_env import NODE_DIR, ensure_packages, find_node

STDERR_LINES = 50


class NodeError(RuntimeError):
    """The Node.js script did not start: it exited, or reported why (a throw in the learner's code)."""


class NodeSyntaxError(NodeError, SyntaxError):
    """The learner's JavaScript does not compile; ``filename``, ``lineno``, ``offset`` and ``text`` point at it
    (Jupyter shows them as it shows a Python syntax error)."""

    def __init__(self, message: str, filename: str, lineno: int | None, offset: int | None, text: str | None):
        SyntaxError.__init__(self, message, (filename, lineno, offset, text))

    def __str__(self) -> str:
        where = f"{self.filename}, line {self.lineno}" if self.lineno else self.filename
        shown = f"\n    {self.text}" if self.text is not None else ""
        if shown and self.offset:
            shown += "\n    " + " " * (self.offset - 1) + "^"
        return f"{self.msg} ({where}){shown}"


class NodeProcess:
    """``node script args --port N`` in ``node_dir``; ``start()`` waits for its port, ``stop()`` ends it.

    ``input`` is written to its stdin first (one line: the script's configuration); ``on_message`` gets
    each message the script prints; ``on_exit(returncode)`` is called when it exits without being asked.
    """

    def __init__(self, script: Path, args: list[str] | None = None, *, input: str | None = None,
                 on_message: Callable[[dict], None] | None = None, on_exit: Callable[[int | None], None] | None = None,
                 node_dir: Path = NODE_DIR, start_timeout: float = 20, env: dict[str, str] | None = None,
                 stderr_lines: int = STDERR_LINES) -> None:
        self.script, self.args, self.input = script, list(args or []), input
        self.env = dict(env or {})  # added to the kernel's environment, e.g. {"DEBUG": "socket.io*"}
        self.on_message, self.on_exit = on_message, on_exit
        self.node_dir, self.start_timeout = node_dir, start_timeout
        self.port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._tasks: list[asyncio.Task] = []
        self._ready: asyncio.Future | None = None
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def process(self) -> asyncio.subprocess.Process | None:
        """The running (or last) child process."""
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        """The last lines the script wrote to stderr."""
        return "".join(self._stderr)

    async def start(self, port: int | None = None) -> None:
        """Spawn the script (on ``port``, else the last one, else a free one) and wait until it listens;
        raises NodeError (NodeSyntaxError) with what it reported if it exits first."""
        if self.running:
            return
        node = find_node()
        modules = await ensure_packages(self.node_dir)
        env = dict(os.environ, **self.env)
        if modules != self.node_dir / "node_modules":  # the per-user cache: require() looks there too
            env["NODE_PATH"] = os.pathsep.join(p for p in (str(modules), env.get("NODE_PATH")) if p)
        want = port if port is not None else self.port or 0
        self._stopping = False
        self._stderr.clear()
        self._ready = asyncio.get_running_loop().create_future()
        self._proc = await asyncio.create_subprocess_exec(
            node, str(self.script), *self.args, "--port", str(want), cwd=str(self.node_dir), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, preexec_fn=_die_with_parent())
        if self.input is not None:
            self._proc.stdin.write(self.input.encode("utf-8") + b"\n")
        self._tasks = [asyncio.ensure_future(self._read_stdout(self._proc)),
                       asyncio.ensure_future(self._read_stderr(self._proc))]
        try:
            self.port = await asyncio.wait_for(asyncio.shield(self._ready), self.start_timeout)
        except asyncio.TimeoutError:
            await self.stop()
            raise NodeError(f"the Node.js server did not listen within {self.start_timeout} s "
                            f"(a loop that never ends in the code?){self._stderr_tail()}") from None
        except BaseException:
            await self.stop()
            raise

    def _stderr_tail(self) -> str:
        text = self.stderr.strip()
        return f"\nstderr:\n{text}" if text else ""

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:  # a line over the stream's limit: skip it
                continue
            if not line:
                break
            self._line(line.decode("utf-8", "replace").rstrip("\n"))
        await proc.wait()
        await asyncio.sleep(0)  # the stderr reader's last lines
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(NodeError(f"the Node.js server exited (code {proc.returncode}) before it "
                                                f"listened{self._stderr_tail()}"))
        elif not self._stopping and self.on_exit is not None:
            self.on_exit(proc.returncode)

    def _line(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            message = {"type": "stdout", "text": text}
        ready = self._ready
        if ready is not None and not ready.done():
            if isinstance(message.get("port"), int) and len(message) == 1:
                ready.set_result(message["port"])
                return
            if message.get("type") == "fatal":
                ready.set_exception(startup_error(message))
                return
        if self.on_message is not None:
            try:
                self.on_message(message)
            except Exception:  # a broken listener must not stop the reading (the pipe would fill up)
                pass

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            self._stderr.append(line.decode("utf-8", "replace"))

    async def stop(self, *, crash: bool = False) -> None:
        """End the script: close its stdin (it closes its server and exits), then SIGTERM, then SIGKILL;
        ``crash``: SIGKILL at once, as if it died (every connection drops)."""
        proc = self._proc
        self._stopping = True
        if proc is not None and proc.returncode is None:
            if crash:
                kill_quietly(proc)
            elif proc.stdin is not None:
                proc.stdin.close()
            for then in (proc.terminate, proc.kill):
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                    break
                except asyncio.TimeoutError:
                    try:
                        then()
                    except ProcessLookupError:
                        pass
            await proc.wait()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if proc is not None and proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()

    def __repr__(self) -> str:
        state = f"pid {self.pid} {self.url}" if self.running else "stopped"
        return f"<NodeProcess {self.script.name} {state}>"


def debug_env(debug: str | None) -> dict:
    """NodeProcess options for the ``debug`` module's namespaces (``DEBUG``), or none. Its lines go to
    stderr, without colours when stderr is a pipe; more of them are kept than a process's error tail."""
    if debug is None:
        return {}
    if not isinstance(debug, str) or not debug.strip():
        raise ValueError(f"debug={debug!r}: the debug module's namespaces, e.g. 'socket.io-client:*'")
    return {"env": {"DEBUG": debug, "DEBUG_COLORS": "0"}, "stderr_lines": 2000}


def debug_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def startup_error(message: dict[str, Any]) -> NodeError:
    """The exception for a ``{"type": "fatal"}`` message: where the code failed, its line, and why."""
    name, why = message.get("name") or "Error", message.get("message") or ""
    line, column, text = message.get("line"), message.get("column"), message.get("text")
    where = f"lab.js, line {line}" if line else "lab.js"
    shown = ""
    if text is not None:
        shown = f"\n    {text}"
        if column:
            shown += "\n    " + " " * (column - 1) + "^"
    if message.get("kind") == "syntax":
        return NodeSyntaxError(why or name, "lab.js", line, column, text)
    if message.get("kind") == "runtime":
        return NodeError(f"the JavaScript threw at {where}: {name}: {why}{shown}\n{message.get('summary') or ''}"
                         .rstrip())
    return NodeError(f"the Node.js server could not start: {name}: {why}\n{message.get('summary') or ''}".rstrip())


__all__ = ["NodeProcess", "NodeError", "NodeSyntaxError", "startup_error"]
