"""The official JavaScript client (socket.io-client), running in the learner's own page.

``browser = lab.browser_client("browser")`` (or ``BrowserClient(lab, "browser")``) shows a panel
whose front end imports the pinned socket.io-client bundle (``vendor.py``) and connects it from the
page to the lab's tap through jupyter-server-proxy::

    io({ path: `${baseUrl}proxy/${tapPort}/socket.io/`, query: { siolab_client: name } })

so the trace records exactly what the browser's DevTools network tab shows, under ``name``. The
connection belongs to the widget's model (one per page), not to a view: showing the panel twice does
not connect twice, and closing the widget disconnects it.

Two views of the same client, for assertions:

- the wire, in the kernel at once: ``await browser.wait_connected()``, ``await browser.emit(...)``
  (both wait on ``lab.trace``, which the tap fills while a cell runs);
- the page's own report, in traitlets (``status``, ``sid``, ``transport``, ``upgraded``, ``received``,
  ``reason``), kept up to date from the page's widget messages. ipykernel 7 reads those even while a
  cell awaits; ipykernel 6 only between cells, so assert on them in a cell of their own.

Those reports, arriving while a cell awaits, meet a race in ipykernel 7.4 that could leave the next cell at
``[*]`` for good: the guard below (``keep_shell_parent``) is installed with the first panel.

Outside a page served by a Jupyter server (VS Code, Colab) the panel says it cannot connect, and why;
``wait_connected`` then returns False and a lesson skips what needs the page.
"""
from __future__ import annotations

import inspect
import json
import sys
import weakref
from typing import Any

import anywidget
import traitlets

from ..text import cut
from ..trace import Record
from . import vendor
from ._common import STATIC, css

KEEP = 100  # received events the page keeps (and reports) per client
_registry: "weakref.WeakKeyDictionary[Any, dict[str, BrowserClient]]" = weakref.WeakKeyDictionary()


class BrowserClient(anywidget.AnyWidget):
    """A panel that runs the official socket.io-client in this page, connected to ``lab`` through the tap."""

    closed = False      # (class defaults: close() may run from __del__ of a widget whose __init__ raised)
    _stopping = False
    _seq = 0            # the newest state report applied
    _run: str | None = None  # which page client the reports come from
    _esm = STATIC / "browser_client.js"
    _css = css("browser_client.css")

    # kernel -> page
    name = traitlets.Unicode().tag(sync=True)
    port = traitlets.Int(0).tag(sync=True)                 # the tap's port, reached through jupyter-server-proxy
    library = traitlets.Unicode("").tag(sync=True)         # the bundle's source, imported from a Blob URL
    library_version = traitlets.Unicode(vendor.VERSION).tag(sync=True)
    library_error = traitlets.Unicode("").tag(sync=True)   # why the bundle is missing, if it is
    options = traitlets.Dict().tag(sync=True)              # more io() options, e.g. {"transports": ["polling"]}
    # The page's own view of its client, kernel-side. The page reports it in custom messages, not as synced
    # state: ipywidgets sends a model's next state update only once the kernel said "idle" for the previous
    # one, and ipykernel 7 handles comm messages that arrive during a running cell without saying busy/idle,
    # so every update after the first would wait forever. (ipykernel 7 handles them at once, even while a
    # cell awaits; ipykernel 6 between cells.)
    status = traitlets.Unicode("waiting for the page")
    reason = traitlets.Unicode("")                              # why it cannot connect or was disconnected
    sid = traitlets.Unicode(None, allow_none=True)              # socket.id (Socket.IO)
    eio_sid = traitlets.Unicode(None, allow_none=True)          # socket.io.engine.id (Engine.IO)
    transport = traitlets.Unicode(None, allow_none=True)        # socket.io.engine.transport.name
    upgraded = traitlets.Bool(False)
    received = traitlets.List()                     # [{"n": 1, "event": ..., "args": [...]}], the last KEEP
    page = traitlets.Dict()                                     # {"base_url", "path", "origin"} as the page saw them

    def __init__(self, lab: Any, name: str = "browser", *, transports: list[str] | None = None,
                 **io_options: Any) -> None:
        name = str(name)
        if not name or any(c in name for c in "&=#?/ "):
            raise ValueError(f"client name {name!r}: use letters, digits, - or _ (it goes into a query string)")
        mine = _registry.setdefault(lab, {})
        if name in getattr(lab, "clients", {}):
            raise ValueError(f"this lab already has a python client named {name!r}: pick another name")
        if name in mine and not mine[name].closed:
            mine[name].close()  # re-running the cell replaces the page's client instead of adding a second one
        try:
            library, library_error = vendor.bundle_text(), ""
        except vendor.VendorError as exc:
            library, library_error = "", str(exc)
        options = dict(io_options)
        if transports is not None:
            options["transports"] = list(transports)
        keep_shell_parent()  # before the page can send anything
        super().__init__(name=name, port=lab.tap.port, library=library, library_error=library_error,
                         options=options)
        self.lab = lab
        self.closed = self._stopping = False
        self._mark = lab.trace.now()  # this client's records come after this time
        mine[name] = self
        self.observe(self._stop_if_lab_closed, names="status")
        self.on_msg(self._on_page)

    # ------------------------------------------------------------ the wire (kernel-side, immediate)
    def records(self, **criteria: Any) -> list[Record]:
        """This client's records in the lab's trace (criteria as in ``Trace.find``)."""
        return self.lab.trace.find(client=self.name, where=lambda r: r.t >= self._mark, **criteria)

    async def wait_connected(self, timeout: float = 5.0) -> bool:
        """True once the server's CONNECT answer (``40{"sid":…}``) to this page's client crossed the tap;
        False after ``timeout`` (no page is running this widget: nbval, a closed tab, VS Code...)."""
        return await self._wait(timeout, kind="packet", dir="s2c", sio="connect") is not None

    async def wait_upgraded(self, timeout: float = 5.0) -> bool:
        """True once the page's client sent ``5`` (upgrade) over its WebSocket."""
        return await self._wait(timeout, kind="packet", dir="c2s", eio="upgrade") is not None

    async def emit(self, event: str, *args: Any, timeout: float = 5.0) -> Record | None:
        """Ask the page's client to ``socket.emit(event, ...args)``; returns the packet's record once it crossed
        the tap, or None after ``timeout`` (no page, or not connected)."""
        mark = self.lab.trace.now()
        self.send({"type": "emit", "event": str(event), "args": list(args)})
        return await self._wait(timeout, kind="packet", dir="c2s", event=str(event), since=mark)

    def disconnect(self) -> None:
        """Ask the page's client to ``socket.disconnect()`` (it sends ``41`` and does not reconnect)."""
        self.send({"type": "disconnect"})

    def connect(self) -> None:
        """Ask the page's client to ``socket.connect()`` again (a new handshake, the whole sequence again)."""
        self.send({"type": "connect"})

    def stop(self, reason: str = "stopped from the kernel") -> None:
        """Stop the page's client for good (no more reconnection attempts, and emit, connect and reconnect are
        ignored from then on); the panel stays, saying why."""
        if not self._stopping:
            self._stopping = True
            self.send({"type": "stop", "reason": str(reason)})

    def reconnect(self) -> None:
        """Disconnect the page's client and connect it again, like the panel's Reconnect button."""
        self.send({"type": "reconnect"})

    async def _wait(self, timeout: float, since: float | None = None, **criteria: Any) -> Record | None:
        start = self._mark if since is None else since
        try:
            return await self.lab.trace.wait_for(timeout=timeout, client=self.name,
                                                 where=lambda r: r.t >= start, **criteria)
        except AssertionError:
            return None

    # ------------------------------------------------------------ the page's report
    _REPORTED = {"status": str, "reason": str, "sid": (str, type(None)), "eio_sid": (str, type(None)),
                 "transport": (str, type(None)), "upgraded": bool, "page": dict}

    def _on_page(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # Reports are numbered: ipykernel 7 may handle a message that arrived during a cell before one that
        # arrived just before the cell started, so an older report must not undo a newer one. Numbers count
        # per page client ("run"): a reloaded page makes a new client, which starts from 1.
        if not isinstance(content, dict) or not isinstance(content.get("run"), str):
            return
        if content["run"] != self._run:  # a new page client (the page was reloaded): its numbers start again
            self._run, self._seq = content["run"], 0
            self.received = []
        seq = content.get("seq")
        if content.get("type") == "state" and isinstance(content.get("state"), dict) and _count(seq):
            if seq <= self._seq:
                return
            self._seq = seq
            with self.hold_trait_notifications():
                for key, value in content["state"].items():
                    kind = self._REPORTED.get(key)
                    if kind is not None and isinstance(value, kind):
                        setattr(self, key, value)
        elif content.get("type") == "received" and isinstance(content.get("item"), dict) and _count(content.get("n")):
            item = content["item"]
            entry = {"n": content["n"], "event": str(item.get("event")),
                     "args": item.get("args") if isinstance(item.get("args"), list) else []}
            if all(e["n"] != entry["n"] for e in self.received):  # the page sends recent events twice
                self.received = sorted(self.received + [entry], key=lambda e: e["n"])[-KEEP:]

    @property
    def events(self) -> list[str]:
        """The names of the events the page's client received, oldest first (the last ``KEEP``)."""
        return [str(item.get("event")) for item in self.received if isinstance(item, dict)]

    def _stop_if_lab_closed(self, change: dict) -> None:
        # the official client reconnects after the server goes away; once the lab is closed, nothing will answer
        if getattr(self.lab, "closed", False) and change["new"] not in ("connected", "stopped"):
            self.stop("the lab was closed (await lab.close())")

    def close(self) -> None:
        """Disconnect the page's client and remove the panel."""
        if not self.closed:
            self.closed = True
            if self.comm is not None:
                self.stop("the widget was closed")
                # the bundle must not end up in a notebook: nbconvert (and JupyterLab's "save widget state")
                # store each widget's last state in the notebook's metadata
                self.library = ""
        super().close()

    def __repr__(self) -> str:
        return f"<BrowserClient {self.name!r} via tap port {self.port}: {self.status}>"


def browser_client(lab: Any, name: str = "browser", **options: Any) -> BrowserClient:
    """The official socket.io-client, in this page, connected to ``lab`` (see ``BrowserClient``)."""
    return BrowserClient(lab, name, **options)


def keep_shell_parent(kernel: Any = None) -> bool:
    """Guard ipykernel against a race this widget's page provokes; True if the guard is on.

    ipykernel 7.4 dispatches a comm message that arrives while a cell awaits at once, beside the cell
    (``Kernel.shell_main``: ``dispatch_shell(..., concurrent=True)`` in a copy of the shell's context). Before
    that it reads the shell's parent request (the running cell's execute_request), and afterwards it sets that
    parent again, to repair what the comm's dispatch overwrote outside the context (the shell's and streams'
    global fallbacks). If the cell ended and the next queued cell started in between, that write puts the
    *previous* cell's request back as the current one: the new cell's ``status: idle`` then goes out with the
    previous cell's parent header. JupyterLab finishes a cell when both its execute_reply and an idle status
    for its request have come, so that cell keeps ``[*]`` for good, and anything published later from the
    shell's context goes to the previous cell, while the kernel, idle, runs every cell after it.
    This page's reports (sent whenever the client's state changes, and again half a second later) make that
    likely during Run All: lesson 04 kept a cell at [*] in 4 runs of 10 with chromium, the Jupyter server and
    the kernel on one core.

    The guard makes that write set the request that is current when it happens, which is what the shell's
    context holds (the comm ran in a copy): the same as before when no cell started in between, and the
    right one when one did. It wraps this kernel's ``set_parent`` and changes only the call made from
    ``shell_main``; a kernel without concurrent comm dispatch (ipykernel 6, or outside a kernel) is left alone.
    """
    try:
        from ipykernel.kernelbase import Kernel
    except ImportError:
        return False
    if kernel is None:
        if not Kernel.initialized():
            return False
        kernel = Kernel.instance()
    if getattr(kernel, "_siolab_keeps_shell_parent", False):
        return True
    shell_main = getattr(type(kernel), "shell_main", None)
    dispatch = getattr(kernel, "dispatch_shell", None)
    if (shell_main is None or dispatch is None or not hasattr(kernel, "_shell_parent_ident")
            or not hasattr(kernel, "_get_shell_context_var")
            or "concurrent" not in inspect.signature(dispatch).parameters):
        return False
    restoring = shell_main.__code__  # the one caller whose set_parent may be stale
    set_parent = kernel.set_parent

    def keeping_set_parent(ident: Any, parent: Any, channel: str = "shell") -> Any:
        if channel == "shell" and sys._getframe(1).f_code is restoring:
            current = kernel.get_parent("shell")  # the request current in the shell's context now
            if current is not parent:
                kernel._siolab_kept_shell_parent += 1  # a cell started meanwhile: the write would undo it
            parent, ident = current, kernel._get_shell_context_var(kernel._shell_parent_ident)
        return set_parent(ident, parent, channel)

    kernel.set_parent = keeping_set_parent
    kernel._siolab_kept_shell_parent = 0  # how many times the guard kept a newer request
    kernel._siolab_keeps_shell_parent = True
    return True


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# ------------------------------------------------------------------ what DevTools shows
def _short(text: str | None, limit: int = 70) -> str:
    return cut(text, limit)


def network_tab(records: Any, client: str, *, frames: int = 6) -> str:
    """One client's HTTP requests as the browser's DevTools network tab lists them: one row per request
    (polling GET/POST, or the WebSocket), what it carried up and what came back; a WebSocket row shows its
    first ``frames`` frames (DevTools' Messages pane). Heartbeats after the upgrade are left out."""
    rows: list[dict] = []
    by_key: dict[tuple, dict] = {}
    socket_row: dict | None = None
    for r in records:
        if r.client != client:
            continue
        http = r.http or {}
        if r.kind == "ws" and r.dir == "c2s" and http:
            socket_row = {"method": "GET", "type": "websocket", "status": None, "up": [], "down": [], "frames": []}
            rows.append(socket_row)
        elif r.kind == "ws" and r.dir == "s2c" and http and socket_row is not None:
            socket_row["status"] = http.get("status")
        elif r.transport == "websocket" and r.kind == "packet" and socket_row is not None:
            socket_row["frames"].append(("↑ " if r.dir == "c2s" else "↓ ") + (r.raw or ""))
        elif r.transport == "websocket" and http.get("status") and socket_row is not None and r.kind != "ws":
            socket_row["status"] = http.get("status")  # a refused WebSocket (its answer is an http record)
        elif r.transport == "polling" and http:
            key = (http.get("method"), http.get("path"))
            row = by_key.get(key)
            if row is None:
                row = by_key[key] = {"method": http.get("method"), "type": "xhr (polling)", "status": None,
                                     "up": [], "down": [], "frames": []}
                rows.append(row)
            if r.dir == "c2s" and r.kind == "packet":
                row["up"].append(r.raw or "")
            elif r.dir == "s2c":
                row["status"] = http.get("status")
                if r.kind == "packet" or r.raw:
                    row["down"].append(r.raw or "")
    lines = [f"{'#':>2}  {'method':<6} {'type':<14} {'status':<6} payload"]
    for i, row in enumerate(rows, 1):
        if row["type"] == "websocket":
            kept = [f for f in row["frames"] if f not in ("↓ 2", "↑ 3")]
            payload = "  ".join(_short(f) for f in kept[:frames]) + ("  …" if len(kept) > frames else "")
        else:
            payload = "  ".join(["↑ " + _short(p, 40) for p in row["up"]] + ["↓ " + _short(p) for p in row["down"]])
        lines.append(f"{i:>2}  {row['method']:<6} {row['type']:<14} {str(row['status'] or '…'):<6} {payload}")
    return "\n".join(lines)


async def cors_probe(lab: Any, origin: str, *, host: str | None = None, client: str = "cors-probe") -> dict[str, Any]:
    """Send one handshake GET through the tap with ``Origin: origin``, as a browser page on that origin would,
    and return what came back: status, body and the CORS headers (the trace records it under ``client``).

    ``host`` sets the Host header, as jupyter-server-proxy does when it forwards the page's request (the Host
    the browser sent, i.e. the Jupyter server's); by default it is the tap's own address."""
    import aiohttp

    url = f"{lab.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        headers = {"Origin": origin, "X-Siolab-Client": client, **({"Host": host} if host else {})}
        async with http.get(url, headers=headers) as response:
            body = await response.text()
            answer = {"origin": origin, "status": response.status, "body": _short(body, 60),
                      "Access-Control-Allow-Origin": response.headers.get("Access-Control-Allow-Origin"),
                      "Access-Control-Allow-Credentials": response.headers.get("Access-Control-Allow-Credentials")}
        if response.status == 200 and body.startswith("0{"):  # accepted: end the session it opened (close, 1)
            sid = json.loads(body[1:]).get("sid")
            async with http.post(f"{url}&sid={sid}", data="1", headers=headers):
                pass
    return answer
