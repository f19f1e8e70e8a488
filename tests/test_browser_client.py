"""The official JavaScript client in a real page: JupyterLab + headless Chromium run lesson 04.

The lesson's own checks run in the page (every cell but the last, which closes the lab); then the test asks
the kernel itself (a second jupyter_client on the same kernel) whether the browser's client did the polling
handshake, the upgrade (2probe / 3probe / 5 on the WebSocket, the pending GET ended by 6) and an event round
trip, checks in Chromium's own network log that all of it went through jupyter-server-proxy, clicks the
panel's Emit button, and runs the last cell. A second run serves JupyterLab under /user/demo/, as JupyterHub
and Binder do. Screenshots go to tests/screenshots/ (git-ignored).
"""
from __future__ import annotations

import json
import re
import time

import pytest

from browser_util import (ARGS, CHROMIUM, ROOT, SHOTS, JupyterLab, error_outputs, failure_evidence,
                          open_and_run_all_but_last, require_browser, run_last_cell)

NOTEBOOK = ROOT / "notebooks" / "04_browser_on_the_wire.ipynb"

# asked of the kernel once the lesson ran: what the tap recorded for the page's client, and what it reported
KERNEL_REPORT = r"""
import json
from siolab.analysis import query, requests
_t = lab.trace
_first = browser.records()[0]
_five = _t.expect(client="browser", dir="c2s", eio="upgrade")
_ws = _t.expect(client="browser", kind="ws", dir="c2s")
_noops = _t.find(client="browser", dir="s2c", transport="polling", eio="noop")
_asked = [r for r in _t.find(client="browser", kind="http", dir="c2s", transport="polling")
          if r.http["method"] == "GET" and r.t < _five.t]
_answered = {r.http["path"] for r in _t.find(client="browser", dir="s2c", transport="polling")
             if r.http and r.http["method"] == "GET" and r.t <= _five.t}
print(json.dumps({
    "BROWSER": BROWSER,
    "tap_port": lab.tap.port,
    "first": [_first.kind, _first.http["method"], _first.transport, sorted(query(_first))],
    "open": [_t.expect(client="browser", eio="open").transport],
    "connect": [(r.raw, r.transport, r.http["method"]) for r in _t.find(client="browser", dir="c2s", sio="connect")],
    "ws": [(r.dir, r.raw) for r in _t.packets(client="browser", transport="websocket")
           if r.raw in ("2probe", "3probe", "5")],
    # a 6 on polling only answers a GET, and only once the WebSocket exists (there may be none: the GET
    # pending during the probe may already have come back with the CONNECT answer)
    "polling_noops_after_ws": all(n.http["method"] == "GET" and n.t >= _ws.t for n in _noops),
    # the client sends 5 only when no GET is pending: every GET asked before 5 was answered before it
    "no_get_pending_at_5": bool(_asked) and all(r.http["path"] in _answered for r in _asked),
    # the 6 python-engineio queues at the probe: a GET asked before the WebSocket took it, or else it went
    # down the WebSocket after 5
    "queued_noop_delivered": any(a.http["path"] == n.http["path"] and a.t < _ws.t for n in _noops for a in _asked)
    or _t.expect(client="browser", dir="s2c", transport="websocket", eio="noop").t >= _five.t,
    "echo": [(r.dir, r.raw, r.transport) for r in _t.find(client="browser", event="echo")],
    "paths": sorted({r.path.split("?")[0] for r in requests(_t, "browser")}),
    "page": browser.page, "status": browser.status, "transport": browser.transport,
    "upgraded": browser.upgraded, "events": browser.events,
}))
"""


def lab_records(kernel, client: str) -> list:
    code = f"import json; print(json.dumps([str(r) for r in lab.trace.find(client={client!r})]))"
    return json.loads(kernel.run(code))


def _report(kernel) -> dict:
    for _ in range(50):  # the page's report reaches the kernel as widget messages: give it a moment
        report = json.loads(kernel.run(KERNEL_REPORT).strip().splitlines()[-1])
        if report["status"] == "connected" and report["upgraded"]:
            return report
        time.sleep(0.1)
    return report


@pytest.mark.parametrize("base_url", ["/", "/user/demo/"], ids=["root", "binder-like"])
def test_browser_client_lesson_in_a_real_browser(tmp_path, capsys, base_url):
    sync_playwright = require_browser()
    started = time.monotonic()
    lab = JupyterLab(tmp_path, NOTEBOOK, base_url=base_url)
    name = "browser_client_" + ("root" if base_url == "/" else "user_demo")
    dialogs: list[str] = []
    console_errors: list[str] = []
    network: list[str] = []  # every request the page made to the Jupyter server's proxy, as Chromium saw it
    kernel = None
    try:
        lab.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = None
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(20_000)
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
                page.on("request", lambda r: network.append(f"{r.method} {r.url}") if "/proxy/" in r.url else None)
                page.on("websocket", lambda ws: network.append(f"WS {ws.url}") if "/proxy/" in ws.url else None)
                n_code = open_and_run_all_but_last(page, lab, NOTEBOOK, timeout=60_000)
                errors = error_outputs(page)
                assert errors.count() == 0, errors.first.inner_text()

                # the kernel's side: the trace the tap recorded, and the page's own report
                kernel = lab.kernel()
                report = _report(kernel)
                assert report["BROWSER"] is True
                assert report["first"] == ["http", "GET", "polling", ["EIO", "t", "transport"]]
                assert report["open"] == ["polling"]
                assert report["connect"][0] == ["40", "polling", "POST"]
                assert report["ws"][:3] == [["c2s", "2probe"], ["s2c", "3probe"], ["c2s", "5"]]
                assert report["polling_noops_after_ws"] is True
                assert report["no_get_pending_at_5"] is True
                assert report["queued_noop_delivered"] is True
                echo = '42["echo",{"from":"your browser"}]'
                assert [e for e in report["echo"] if e[1] == echo] == [["c2s", echo, "websocket"],
                                                                       ["s2c", echo, "websocket"]]
                assert report["paths"] == ["/socket.io/"]  # what the tap saw: jupyter-server-proxy took its prefix
                proxy_path = f"{lab.base_url}proxy/{report['tap_port']}/socket.io/"
                assert report["page"]["base_url"] == lab.base_url and report["page"]["path"] == proxy_path
                assert (report["status"], report["transport"], report["upgraded"]) == ("connected", "websocket", True)
                assert "echo" in report["events"] and "message" in report["events"]

                # Chromium's side: every request of the client went to the Jupyter server's proxy path
                origin = f"http://127.0.0.1:{lab.port}"
                ours = [n for n in network if f"{proxy_path}?siolab_client=browser" in n]
                assert any(n.startswith(f"GET {origin}{proxy_path}?") and "transport=polling" in n
                           and "sid=" not in n for n in ours), network
                assert any(n.startswith(f"POST {origin}{proxy_path}?") for n in ours), network
                assert any(n.startswith(f"WS ws://127.0.0.1:{lab.port}{proxy_path}?") and "transport=websocket" in n
                           for n in ours), network

                # the panel: state, and its Emit button (the page's own emit, through the same client)
                panel = page.locator(".siolab-bc").first
                panel.scroll_into_view_if_needed()
                assert panel.get_attribute("data-status") == "connected"
                assert "websocket (upgraded from polling)" in panel.locator(".siolab-bc-facts").inner_text()
                panel.locator("input.siolab-bc-event").fill("echo")
                panel.locator("input.siolab-bc-data").fill('{"n": 1}')
                assert panel.locator(".siolab-bc-preview").inner_text() == 'will emit: 42["echo",{"n":1}]'
                panel.locator("button.siolab-bc-emit").click()
                panel.locator(".siolab-bc-item", has_text='[{"n":1}]').wait_for(timeout=5_000)
                assert panel.locator(".siolab-bc-sent").inner_text() == '↑ sent 42["echo",{"n":1}]'
                clicked = kernel.run('r = lab.trace.find(client="browser", event="echo", raw=\'42["echo",{"n":1}]\')\n'
                                     'print([(x.dir, x.transport) for x in r])')
                assert clicked.strip() == "[('c2s', 'websocket'), ('s2c', 'websocket')]", clicked
                page.screenshot(path=str(SHOTS / f"{name}.png"))
                panel.screenshot(path=str(SHOTS / f"{name}_panel.png"))
                page.locator(".siolab-chat").first.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / f"{name}_chat.png"))
                stranger = page.locator(".siolab-bc").nth(1)
                stranger.scroll_into_view_if_needed()
                assert stranger.get_attribute("data-status") == "stopped"
                assert "not accept this page's origin" in stranger.locator(".siolab-bc-reason").inner_text()
                page.screenshot(path=str(SHOTS / f"{name}_cors.png"))

                if base_url == "/":
                    # Reconnect (what a learner clicks with DevTools open): 41, then the whole sequence again
                    panel.locator("button.siolab-bc-reconnect").click()
                    again = ""
                    for _ in range(50):
                        again = kernel.run('print(len(lab.trace.find(client="browser", eio="open")), '
                                           'len(lab.trace.find(client="browser", dir="c2s", eio="upgrade")), '
                                           '[r.raw for r in lab.trace.find(client="browser", dir="c2s", '
                                           'sio="disconnect")])')
                        if again.startswith("2 2"):
                            break
                        time.sleep(0.1)
                    assert again.strip() == "2 2 ['41']", again
                    page.wait_for_function("() => document.querySelector('.siolab-bc').dataset.status === 'connected'")

                    # a page that no Jupyter server served (VS Code, Colab...) has no jupyter-config-data: the
                    # panel says it cannot connect, and why (the model is made in this page all the same)
                    page.evaluate("document.getElementById('jupyter-config-data').remove()")
                    kernel.run('elsewhere = lab.browser_client("elsewhere")')
                    said = ""
                    for _ in range(50):
                        said = kernel.run('print(elsewhere.status, "|", elsewhere.reason)')
                        if said.startswith("cannot connect"):
                            break
                        time.sleep(0.1)
                    assert said.startswith("cannot connect | This page was not served by a Jupyter server"), said
                    assert not lab_records(kernel, "elsewhere")
                    kernel.run("elsewhere.close()")

                # the last cell closes the widget and the lab: the page's client stops
                run_last_cell(page, n_code)
                assert errors.count() == 0, errors.first.inner_text()
                page.wait_for_function("() => document.querySelector('.siolab-bc')?.dataset.status !== 'connected'",
                                       timeout=5_000)
                assert not [e for e in console_errors if re.search("siolab|anywidget", e)], console_errors
            except Exception:
                if page is not None:
                    failure_evidence(page, f"{name}_failure", dialogs, console_errors)
                    print(f"network: {network}")
                raise
            finally:
                browser.close()
    finally:
        if kernel is not None:
            kernel.close()
        lab.stop()
    with capsys.disabled():
        print(f"\nbrowser client test ({base_url}): {time.monotonic() - started:.1f} s; screenshots in {SHOTS}")
