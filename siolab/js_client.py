"""The official JavaScript client (socket.io-client) in a Node.js process, driven from the notebook.

``carol = await lab.js_client("carol")`` connects the client a React app uses, through the tap, where
the difference between the two clients matters: it buffers what is emitted while disconnected, it
recovers a session (connection state recovery) and says the JavaScript reasons (``io server
disconnect``, ``transport close``). What it reports (connect, disconnect with its reason, connect_error
with ``err.message``, every event it receives, each reconnection attempt) is in ``carol.events`` and,
as ``kind="log"`` records, in the trace beside the packets.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from .node_env import NODE_DIR
from .node_process import NodeError, NodeProcess, debug_env, debug_lines
from .trace import Trace

CLIENT_SCRIPT = NODE_DIR / "js_client.js"


class JsClient:
    """One socket.io-client ``io(url, options)`` in Node.js, named ``name`` in the trace (the
    ``siolab_client`` query parameter, as the lab's other clients). ``package`` may name another
    installed client, e.g. an older version under an npm alias."""

    def __init__(self, trace: Trace, url: str, name: str, *, options: dict | None = None,
                 package: str = "socket.io-client", start_timeout: float = 20, debug: str | None = None) -> None:
        self.trace, self.url, self.name, self.package = trace, url, name, package
        self.options = dict(options or {})
        self.events: list[dict] = []  # what the client reported, each with "t" (the trace's clock)
        self.sid: str | None = None  # the Socket.IO id (socket.id) while connected
        self.connected = False
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future] = {}
        self._changed = asyncio.Event()
        config = {"url": url, "name": name, "options": self.options, "package": package}
        self.process = NodeProcess(CLIENT_SCRIPT, input=json.dumps(config), on_message=self._on_message,
                                   on_exit=self._on_exit, start_timeout=start_timeout,
                                   **debug_env(debug))

    @property
    def debug_lines(self) -> list[str]:
        """What the client's ``debug`` module wrote (with ``debug=``), newest last: the lines a browser prints
        to its console with ``localStorage.debug`` set."""
        return debug_lines(self.process.stderr)

    async def start(self) -> "JsClient":
        await self.process.start()
        return self

    # ------------------------------------------------------------ what the client says
    def _on_message(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "done":
            future = self._answers.pop(message.get("id"), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(JsClientError(message["error"]))
                else:
                    future.set_result(message.get("value"))
            return
        event = dict(message, t=self.trace.now())
        self.events.append(event)
        if kind == "connect":
            self.connected, self.sid = True, message.get("sid")
        elif kind == "disconnect":
            self.connected = False
        self.trace.add(kind="log", client=self.name, note=f"js client: {describe(message)}")
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_exit(self, returncode: int | None) -> None:
        self.connected = False
        self.trace.add(kind="error", client=self.name, error=f"the JavaScript client's process exited "
                                                             f"(code {returncode})", note=self.process.stderr)
        for future in self._answers.values():
            if not future.done():
                future.set_exception(JsClientError("the JavaScript client's process exited"))

    async def wait(self, kind: str, timeout: float = 5.0, since: float | None = None, **fields: Any) -> dict:
        """The first event of ``kind`` (after ``since``, on the trace's clock) whose fields match."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["type"] == kind and (since is None or event["t"] >= since) and all(
                        event.get(k) == v for k, v in fields.items()):
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                seen = ", ".join(describe(e) for e in self.events[-5:]) or "nothing"
                raise asyncio.TimeoutError(f"{self.name}: no {kind!r} in {timeout} s (last: {seen})")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------ telling it what to do
    async def _run(self, command: dict, timeout: float = 10.0) -> Any:
        proc = self.process.process
        if proc is None or proc.stdin is None or not self.process.running:
            raise JsClientError(f"{self.name}: the JavaScript client is not running")
        command["id"] = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._answers[command["id"]] = future
        proc.stdin.write((json.dumps(command) + "\n").encode("utf-8"))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._answers.pop(command["id"], None)

    async def emit(self, event: str, *args: Any) -> None:
        """``socket.emit(event, ...args)``: sent now, or buffered by the client while it is disconnected."""
        await self._run({"op": "emit", "event": event, "args": list(args)})

    async def call(self, event: str, *args: Any, timeout: float = 2.0) -> Any:
        """``await socket.timeout(ms).emitWithAck(event, ...args)``: the answer, or JsClientError on timeout."""
        return await self._run({"op": "emit", "event": event, "args": list(args), "ack": True,
                                "timeout": round(timeout * 1000)}, timeout + 5)

    async def eval(self, code: str) -> Any:
        """Run a JavaScript expression with ``socket`` and ``io`` in scope; its (awaited) value."""
        return await self._run({"op": "eval", "code": code})

    async def connect(self) -> None:
        await self._run({"op": "connect"})

    async def disconnect(self) -> None:
        """``socket.disconnect()`` (reason ``io client disconnect``: it does not reconnect)."""
        await self._run({"op": "disconnect"})

    async def close(self) -> None:
        """Disconnect and end the Node.js process (closing its stdin)."""
        await self.process.stop()

    def __repr__(self) -> str:
        state = f"connected as {self.sid}" if self.connected else "not connected"
        return f"<JsClient {self.name} ({self.package}) {state}>"


class JsClientError(NodeError):
    """The JavaScript client said a command failed (an ack timeout, a throw in ``eval``)."""


def describe(message: dict) -> str:
    """One line for what the client reported: ``disconnect: io server disconnect``."""
    kind = message.get("type")
    if kind == "connect":
        return f"connect (socket.id {message.get('sid')}, recovered: {str(message.get('recovered')).lower()})"
    if kind == "disconnect":
        return f"disconnect: {message.get('reason')}"
    if kind == "connect_error":
        described = message.get("description")
        return f"connect_error: {message.get('message')}" + (f" ({described})" if described not in (None, {}) else "")
    if kind == "event":
        return f"event {message.get('event')!r} {json.dumps(message.get('args'), ensure_ascii=False)[:200]}"
    if kind == "reconnect_attempt":
        return f"reconnect_attempt {message.get('attempt')}"
    if kind == "log":
        return f"console.{message.get('level', 'log')}: {message.get('text', '')}"
    return kind or "?"


__all__ = ["JsClient", "JsClientError", "CLIENT_SCRIPT", "describe"]
