"""What the real-browser tests share: a throwaway JupyterLab server, Debian's chromium, menu clicks, running cells.

Used by tests/test_browser.py (the chat lesson) and tests/test_browser_client.py (the in-page JS client).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


def require(ok: bool, message: str) -> None:
    """Skip with ``message`` unless ``ok``; under CI (env CI set) fail instead: CI must run the browser tests."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def require_browser():
    """Chromium and Playwright, or skip (fail under CI); returns ``sync_playwright``."""
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (python) not installed: pip install -e '.[test]'")
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / ".gitignore").write_text("*\n")
    return sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(settings_dir: Path) -> None:
    """User settings for a quiet, fully rendered lab: no news popup, every cell in the DOM."""
    files = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                           "checkForUpdates": False},
    }
    for name, content in files.items():
        path = settings_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with a fresh token and throwaway config, settings and runtime dirs.

    ``base_url`` other than "/" stands in for JupyterHub/Binder, which serve each user under /user/<name>/.
    """

    def __init__(self, tmp: Path, notebook: Path, base_url: str = "/") -> None:
        self.root = tmp / "notebooks"
        self.root.mkdir()
        shutil.copy(notebook, self.root / notebook.name)  # the lab autosaves: never touch the repo's copy
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("JUPYTER_RUNTIME_DIR", "runtime")):
            (tmp / sub).mkdir()
            env[var] = str(tmp / sub)
        self.runtime = tmp / "runtime"
        _settings(tmp / "settings")
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.log = tmp / "jupyterlab.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--ServerApp.base_url={self.base_url}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            env=env, cwd=self.root, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}{self.base_url.rstrip('/')}"  # + "/lab/...", "/api/..."

    def api(self, path: str, method: str = "GET") -> bytes:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()

    def wait_ready(self, timeout: float = 40) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited:\n{self.log.read_text()[-3000:]}")
            try:
                self.api("/api/status")
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?reset&token={self.token}"

    def kernel(self) -> "Kernel":
        """A second client of the notebook's (only) kernel, to ask it things from the test."""
        sessions = json.loads(self.api("/api/sessions"))
        assert len(sessions) == 1, sessions
        return Kernel(self.runtime / f"kernel-{sessions[0]['kernel']['id']}.json")

    def stop(self) -> None:
        try:
            self.api("/api/shutdown", method="POST")  # shuts the kernels down too
            self.proc.wait(timeout=10)
        except Exception:
            pass
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


class Kernel:
    """Runs code in the notebook's kernel (its user namespace) through jupyter_client, next to the page."""

    def __init__(self, connection_file: Path) -> None:
        from jupyter_client import BlockingKernelClient
        self.client = BlockingKernelClient(connection_file=str(connection_file))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=10)

    def run(self, code: str, timeout: float = 20) -> str:
        """Execute ``code``; returns what it printed; raises AssertionError with the traceback if it failed."""
        out: list[str] = []
        errors: list[str] = []

        def hook(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(code, timeout=timeout, output_hook=hook, store_history=False)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"kernel code failed:\n{code}\n" + "\n".join(errors) +
                                 str(reply["content"].get("evalue", "")))
        return "".join(out)

    def close(self) -> None:
        try:
            self.client.stop_channels()
        except Exception:
            pass


def menu(page, top: str, *items: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    for item in items:
        page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel").get_by_text(item, exact=True).first.click()


def code_cell_count(notebook: Path) -> int:
    return sum(c["cell_type"] == "code" for c in json.loads(notebook.read_text())["cells"])


class KernelWire:
    """The page's kernel messages, as its WebSocket to the Jupyter server carried them (both ways).

    A cell's prompt gets its number when the kernel's execute_reply *and* a ``status: idle`` whose parent
    header is that cell's execute_request have come: when a prompt keeps [*], this tells which was missing.
    """

    def __init__(self, page) -> None:
        self.messages: list[tuple[str, str, str, str, dict]] = []  # (way, msg_type, msg_id, parent msg_id, content)
        page.on("websocket", self._watch)

    def _watch(self, ws) -> None:
        if "/api/kernels/" in ws.url:
            ws.on("framesent", lambda payload: self._add("sent", payload))
            ws.on("framereceived", lambda payload: self._add("received", payload))

    def _add(self, way: str, payload) -> None:
        try:
            if isinstance(payload, str):  # the older JSON protocol
                msg = json.loads(payload)
                header, parent, content = msg["header"], msg["parent_header"], msg["content"]
            else:  # v1.kernel.websocket.jupyter.org: offsets, channel, header, parent, metadata, content, ...
                n = struct.unpack_from("<Q", payload)[0]
                at = struct.unpack_from(f"<{n}Q", payload, 8)
                header, parent, _, content = (json.loads(payload[at[i]:at[i + 1]]) for i in range(1, 5))
        except (ValueError, KeyError, IndexError, struct.error):
            return
        self.messages.append((way, header.get("msg_type", ""), header.get("msg_id", ""),
                              (parent or {}).get("msg_id", ""), content or {}))

    def unfinished(self) -> list[str]:
        """The execute_requests the page sent that lack an execute_reply or their own idle, and where the
        idle statuses went instead."""
        executes = [(mid, c.get("code", "")) for way, kind, mid, _, c in self.messages
                    if way == "sent" and kind == "execute_request"]
        replied = {p for way, kind, _, p, _ in self.messages if kind == "execute_reply"}
        idles = Counter(p for way, kind, _, p, c in self.messages
                        if kind == "status" and c.get("execution_state") == "idle")
        lines = []
        for i, (mid, code) in enumerate(executes):
            first = code.strip().splitlines()[0] if code.strip() else ""
            if mid not in replied or mid not in idles:
                lines.append(f"request {i + 1} ({first!r}): execute_reply {'came' if mid in replied else 'missing'}, "
                             f"its own status idle {'came' if mid in idles else 'never came'}")
            if idles[mid] > 1:
                lines.append(f"request {i + 1} ({first!r}) had {idles[mid]} idle statuses: a later request's went "
                             f"out with its parent header")
        return lines


def open_and_run_all_but_last(page, lab: JupyterLab, notebook: Path, timeout: float = 30_000) -> int:
    """Open the notebook, clear its stored outputs, run every code cell but the last; returns the code cell count.

    (The stored outputs go first so that every prompt and widget seen afterwards is from this run; the last
    cell of a lesson closes its lab, so the test runs it itself when it is done looking.) Done when every one
    of them is numbered, as a learner sees it, or when one failed (Run All stops there); a prompt left at [*]
    fails, with what the kernel's messages say about it.
    """
    kernel = KernelWire(page)
    page.goto(lab.notebook_url(notebook.name))
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=30_000)
    n_code = code_cell_count(notebook)
    code_cells = page.locator(".jp-Notebook .jp-CodeCell")
    page.wait_for_function("(n) => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === n",
                           arg=n_code)
    menu(page, "Edit", "Clear Outputs of All Cells")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
        ".every(p => !/\\d/.test(p.textContent))")
    code_cells.nth(n_code - 1).locator(".jp-InputPrompt").click()
    menu(page, "Run", "Run All Above Selected Cell")
    started = ("() => /\\[(\\*|\\d+)\\]/"
               ".test(document.querySelector('.jp-Notebook .jp-CodeCell .jp-InputPrompt').textContent)")
    try:
        page.wait_for_function(started, timeout=10_000)
    except Exception:  # the menu click did not take (a busy machine): once more
        code_cells.nth(n_code - 1).locator(".jp-InputPrompt").click()
        menu(page, "Run", "Run All Above Selected Cell")
        page.wait_for_function(started, timeout=10_000)
    try:
        page.wait_for_function(
            """(n) => {
                const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                const failed = [...document.querySelectorAll(
                    ".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")]
                    .some(e => /Traceback/.test(e.textContent));
                const idle = document.querySelector(".jp-Notebook-ExecutionIndicator[data-status='idle']");
                return prompts.slice(0, n - 1).every(p => /\\[\\d+\\]/.test(p.textContent)) || (failed && idle);
            }""", arg=n_code, timeout=timeout)
    except Exception as exc:
        prompts = page.evaluate(
            "[...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)")
        raise AssertionError(f"not every cell but the last got its number in {timeout / 1000:.0f} s ({exc}); "
                             f"code cell prompts: {prompts}; the kernel's messages: "
                             + ("; ".join(kernel.unfinished()) or "each request got its reply and its idle")) from exc
    failed = error_outputs(page)
    assert failed.count() == 0, f"a cell failed:\n{failed.first.inner_text()}"
    return n_code


def run_last_cell(page, n_code: int, timeout: float = 15_000) -> None:
    page.locator(".jp-Notebook .jp-CodeCell").nth(n_code - 1).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        """(n) => /\\[\\d+\\]/.test(document.querySelectorAll(
            '.jp-Notebook .jp-CodeCell .jp-InputPrompt')[n - 1].textContent)""",
        arg=n_code, timeout=timeout)


def error_outputs(page):
    """The cells' error outputs (a traceback shown in the page)."""
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text=re.compile("Traceback|Error"))


def failure_evidence(page, name: str, dialogs: list, console: list) -> None:
    """Leave what the page showed and each cell's prompt, for a failing test."""
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    prompts = page.evaluate("[...document.querySelectorAll('.jp-InputPrompt')].map(p => p.textContent)")
    print(f"{name}.png saved; prompts: {prompts}; dialogs: {dialogs}; console: {console}")
