"""The chat lesson in a real browser: JupyterLab + headless Chromium (Playwright, Debian's chromium).

Runs every cell of notebooks/08_widget_chat.ipynb but the last (which closes the lab), types a message in
bob's panel and clicks Send, checks it reaches the other panels and the live trace view as
``42["message",…]``, then sends XSS payloads and checks they are shown as text and nothing runs.
Screenshots (light and dark theme) go to tests/screenshots/ (git-ignored); the test prints the folder.
"""
from __future__ import annotations

import json
import time

from browser_util import (ARGS, CHROMIUM, ROOT, SHOTS, JupyterLab, error_outputs, failure_evidence, menu,
                          open_and_run_all_but_last, require_browser, run_last_cell)

NOTEBOOK = ROOT / "notebooks" / "08_widget_chat.ipynb"
XSS_IMG = '<img src=x onerror="window.__xss=1">'
XSS_SCRIPT = '</style><script>window.__xss=2</script><svg onload="window.__xss=3">'


def _shoot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    for selector, part in ((".siolab-chat", "chat"), (".siolab-tv", "trace_view"),
                           (".siolab-seq-wrap >> nth=1", "sequence"), (".siolab-ex", "explainer")):
        element = page.locator(selector).first
        element.scroll_into_view_if_needed()
        element.screenshot(path=str(SHOTS / f"{name}_{part}.png"))


def test_chat_notebook_in_a_real_browser(tmp_path, capsys):
    sync_playwright = require_browser()
    with capsys.disabled():
        print(f"\nbrowser test screenshots: {SHOTS}")
    started = time.monotonic()
    lab = JupyterLab(tmp_path, NOTEBOOK)
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
                n_code = open_and_run_all_but_last(page, lab, NOTEBOOK)
                errors = error_outputs(page)
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
                menu(page, "Settings", "Theme", "JupyterLab Dark")
                page.locator("body[data-jp-theme-light='false']").wait_for(state="attached")
                page.wait_for_timeout(500)
                _shoot(page, "dark")

                # the last cell closes the lab: the panels show it
                run_last_cell(page, n_code)
                assert errors.count() == 0, errors.first.inner_text()
                panel["alice"].locator(".siolab-chat-state", has_text="disconnected").wait_for(timeout=5_000)
            except Exception:
                if page is not None:  # leave evidence: what the page showed, and each cell's prompt
                    failure_evidence(page, "failure", dialogs, console_errors)
                raise
            finally:
                browser.close()
    finally:
        lab.stop()
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"browser test: {elapsed:.1f} s; screenshots in {SHOTS}")
    assert not [e for e in console_errors if "siolab" in e], console_errors
