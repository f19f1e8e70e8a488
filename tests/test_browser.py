"""The chat lesson in a real browser: JupyterLab + headless Chromium (Playwright, Debian's chromium).

Runs every cell of notebooks/09_widget_chat.ipynb but the last (which closes the lab), types a message in
bob's panel and clicks Send, checks it reaches the other panels and the live trace view as
``42["message",…]``, then sends XSS payloads and checks they are shown as text and nothing runs.
Screenshots (light and dark theme) go to tests/screenshots/ (git-ignored); the test prints the folder.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "09_widget_chat.ipynb"
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = '</style><script>window.__xss=2</script><svg onload="window.__xss=3">'


def _require(ok: bool, message: str) -> None:
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set, so this fails instead of skipping)")
    pytest.skip(message)


def _free_port() -> int:
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
    """A JupyterLab server on 127.0.0.1 with a fresh token and throwaway config, settings and runtime dirs."""

    def __init__(self, tmp: Path) -> None:
        self.root = tmp / "notebooks"
        self.root.mkdir()
        shutil.copy(NOTEBOOK, self.root / NOTEBOOK.name)  # the lab autosaves: never touch the repo's copy
        env = dict(os.environ)
        for var, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                         ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("JUPYTER_RUNTIME_DIR", "runtime")):
            (tmp / sub).mkdir()
            env[var] = str(tmp / sub)
        _settings(tmp / "settings")
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.log = tmp / "jupyterlab.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.terminals_enabled=False", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            env=env, cwd=self.root, stdout=self.log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

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


def _menu(page, top: str, *items: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    for item in items:
        page.locator(".lm-Menu-item:visible .lm-Menu-itemLabel").get_by_text(item, exact=True).first.click()


def _shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    for selector, part in ((".siolab-chat", "chat"), (".siolab-tv", "trace_view"),
                           (".siolab-seq-wrap >> nth=1", "sequence"), (".siolab-ex", "explainer")):
        element = page.locator(selector).first
        element.scroll_into_view_if_needed()
        element.screenshot(path=str(SHOTS / f"{name}_{part}.png"))


def test_chat_notebook_in_a_real_browser(tmp_path, capsys):
    _require(Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "playwright (python) not installed: pip install -e '.[test]'")
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / ".gitignore").write_text("*\n")
    with capsys.disabled():
        print(f"\nbrowser test screenshots: {SHOTS}")
    started = time.monotonic()
    lab = JupyterLab(tmp_path)
    dialogs: list[str] = []
    console_errors: list[str] = []
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = None
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.set_default_timeout(20_000)
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?reset&token={lab.token}")
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=30_000)

                # the stored outputs go first (so every prompt and widget seen below is from this run),
                # then every cell runs but the last one (it closes the lab)
                n_code = sum(c["cell_type"] == "code" for c in json.loads(NOTEBOOK.read_text())["cells"])
                code_cells = page.locator(".jp-Notebook .jp-CodeCell")
                page.wait_for_function("(n) => document.querySelectorAll('.jp-Notebook .jp-CodeCell').length === n",
                                       arg=n_code)
                _menu(page, "Edit", "Clear Outputs of All Cells")
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"
                    ".every(p => !/\\d/.test(p.textContent))")
                code_cells.nth(n_code - 1).locator(".jp-InputPrompt").click()
                _menu(page, "Run", "Run All Above Selected Cell")
                page.wait_for_function(
                    """(n) => {
                        const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                        return prompts.slice(0, n - 1).every(p => /\\[\\d+\\]/.test(p.textContent));
                    }""", arg=n_code, timeout=30_000)
                errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                      has_text=re.compile("Traceback|Error"))
                assert errors.count() == 0, errors.first.inner_text()

                chat = page.locator(".siolab-chat")
                panel = {u: chat.locator(f".siolab-chat-panel[data-user='{u}']") for u in ("alice", "bob", "carol")}
                for u in panel:
                    assert "connected" in panel[u].locator(".siolab-chat-state").inner_text()
                trace_rows = page.locator(".siolab-tv .siolab-tv-row")
                trace_rows.first.wait_for()

                # type in bob's box: the preview shows the packet as it will go out; then click Send
                text = "hello from the browser"
                box = panel["bob"].locator("input.siolab-chat-input")
                box.click()
                box.press_sequentially(text, delay=5)
                assert panel["bob"].locator(".siolab-chat-preview code").inner_text() == \
                    f'42["message",{{"message":"{text}","user":"bob"}}]'
                panel["bob"].locator("button.siolab-chat-send").click()
                for u in ("alice", "carol"):
                    panel[u].locator(".siolab-chat-msg", has_text=text).wait_for(timeout=5_000)
                    assert panel[u].locator(".siolab-chat-msg").last.inner_text().replace("\n", " ").endswith(text)
                up = f'42["message",{{"message":"{text}","user":"bob"}}]'
                trace_rows.filter(has=page.locator(".siolab-tv-raw code", has_text=up)).first.wait_for(timeout=5_000)
                down = trace_rows.filter(has=page.locator(".siolab-tv-raw code", has_text='42["message",[')).filter(
                    has_text=text)
                down.nth(2).wait_for(timeout=5_000)  # the broadcast reached all three users
                assert panel["bob"].locator(".siolab-chat-sent code").inner_text() == up
                _shoot(page, "light")

                # a row expands to the whole record (asked from the kernel); the filters reach the kernel
                row = trace_rows.filter(has=page.locator(".siolab-tv-raw code", has_text=up)).first
                row.click()
                detail = page.locator(".siolab-tv-detail")
                detail.locator("dt", has_text="meaning").wait_for(timeout=5_000)
                assert up in detail.locator(".siolab-tv-full").inner_text()
                assert "MESSAGE EVENT 'message'" in detail.inner_text()
                row.click()
                beat = page.locator(".siolab-tv .siolab-tv-check input")
                beat.check()
                page.wait_for_function("() => !document.querySelector('.siolab-tv .siolab-tv-beat')", timeout=5_000)
                assert trace_rows.filter(has_text=text).count() >= 4
                beat.uncheck()
                page.locator(".siolab-tv .siolab-tv-beat").first.wait_for(timeout=5_000)

                # XSS: through the chat (panels, trace view, sequence diagram) and the explainer
                for payload in (XSS_IMG, XSS_SCRIPT):
                    box = panel["alice"].locator("input.siolab-chat-input")
                    box.fill(payload)
                    panel["alice"].locator("button.siolab-chat-send").click()
                    for u in ("bob", "carol"):
                        panel[u].locator(".siolab-chat-text", has_text=payload).wait_for(timeout=5_000)
                explainer = page.locator(".siolab-ex").first
                explainer.locator("input.siolab-ex-input").fill("42" + json.dumps([XSS_IMG, XSS_SCRIPT]))
                explainer.locator(".siolab-ex-raw", has_text="<img src=x").wait_for(timeout=5_000)
                trace_rows.filter(has_text="<img src=x onerror=").first.wait_for(timeout=5_000)
                trace_rows.filter(has_text="</style><script>").first.wait_for(timeout=5_000)
                live = page.locator(".siolab-seq-wrap").nth(1)
                live.locator("svg.siolab-seq text", has_text="<img src=x").first.wait_for(timeout=5_000)
                assert XSS_IMG in explainer.locator(".siolab-ex-meaning").last.inner_text()
                page.wait_for_timeout(300)
                assert page.evaluate("window.__xss") is None
                assert dialogs == []
                assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
                assert page.evaluate("[...document.scripts].some(s => s.text.includes('__xss'))") is False

                # the sequence diagrams rendered: the static handshake slice and the live one
                diagrams = page.locator(".siolab-seq-wrap svg.siolab-seq")
                assert diagrams.count() == 2
                assert diagrams.nth(0).locator("g.sq-msg").count() >= 10
                assert diagrams.nth(1).locator("g.sq-msg").count() >= 40
                assert diagrams.nth(0).locator("text", has_text="WS UPGRADE").count() >= 1

                page.screenshot(path=str(SHOTS / "light_after_xss.png"))
                _menu(page, "Settings", "Theme", "JupyterLab Dark")
                page.locator("body[data-jp-theme-light='false']").wait_for(state="attached")
                page.wait_for_timeout(500)
                _shoot(page, "dark")

                # the last cell closes the lab: the panels show it
                code_cells.nth(n_code - 1).locator(".jp-InputPrompt").click()
                page.keyboard.press("Control+Enter")
                page.wait_for_function(
                    """(n) => /\\[\\d+\\]/.test(document.querySelectorAll(
                        '.jp-Notebook .jp-CodeCell .jp-InputPrompt')[n - 1].textContent)""",
                    arg=n_code, timeout=15_000)
                assert errors.count() == 0, errors.first.inner_text()
                panel["alice"].locator(".siolab-chat-state", has_text="disconnected").wait_for(timeout=5_000)
            except Exception:
                if page is not None:  # leave evidence: what the page showed, and each cell's prompt
                    page.screenshot(path=str(SHOTS / "failure.png"))
                    prompts = page.evaluate("[...document.querySelectorAll('.jp-InputPrompt')]"
                                            ".map(p => p.textContent)")
                    print(f"failure.png saved; prompts: {prompts}; dialogs: {dialogs}; console: {console_errors}")
                raise
            finally:
                browser.close()
    finally:
        lab.stop()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"browser test: {elapsed:.1f} s; screenshots in {SHOTS}")
    assert not [e for e in console_errors if "siolab" in e], console_errors
