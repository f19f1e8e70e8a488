"""Regenerate the golden HAR files in this folder, recorded by tools that are not siolab.

    .venv/bin/python tests/data/har/record.py [--mitmdump PATH] [--only NAME]

A python-socketio server on 127.0.0.1 serves a page that loads the official JavaScript client
(siolab/widgets/static/vendor/socket.io.esm.min.js) and runs one session: connect with an auth token,
an event with an ack, a binary event both ways, a heartbeat, a disconnect, then a poll for a session that
does not exist (the server refuses it with 400). Debian's Chromium runs the page, and three producers
record it:

- ``playwright-websocket.har``, ``playwright-polling.har``: Playwright's own HAR recorder
  (``browser.new_context(record_har_path=...)``), the default client (polling, then the upgrade) and a
  polling-only one. Playwright writes no WebSocket messages.
- ``mitmproxy-websocket.har``: mitmproxy's ``mitmdump --mode reverse:... --set hardump=...`` between
  the browser and the server (mitmproxy is not a siolab dependency: install it in a venv of its own and
  pass ``--mitmdump``, or have ``mitmdump`` on the PATH).
- ``cdp-websocket.har``: Chrome's own DevTools protocol events (``Network.*`` through Playwright's
  ``new_cdp_session``) assembled into a HAR the way DevTools' "Save all as HAR" does (``cdp_har`` below),
  WebSocket frames as ``_webSocketMessages``.

The tests read these files only (no browser at test time). To keep the files small, ``trim`` leaves out
the bodies of entries that are not Socket.IO (the page, the client bundle) and the request headers the
browser repeats in every entry (User-Agent, Accept-*, Referer, Sec-*); nothing else is changed.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
BUNDLE = ROOT / "siolab" / "widgets" / "static" / "vendor" / "socket.io.esm.min.js"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
TOKEN = "not-a-real-token"  # what the page sends in its CONNECT auth payload and its query (to_har redacts both)

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>siolab HAR fixture</title></head><body>
<script type="module">
import { io } from "/vendor/socket.io.esm.min.js";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const params = new URLSearchParams(location.search);
const transports = params.get("transports");
window.log = [];
const socket = io({ transports: transports ? transports.split(",") : ["polling", "websocket"],
                    auth: { token: "%(token)s" }, query: { apikey: "%(token)s" } });
socket.on("welcome", (m) => log.push(["welcome", m]));
let gotBinary;
const binary = new Promise((r) => { gotBinary = r; });
socket.on("bin", (b) => { log.push(["bin", b.byteLength]); gotBinary(); });
socket.once("connect", async () => {
  if (!transports) {  // let the upgrade to WebSocket happen first
    for (let i = 0; i < 50 && socket.io.engine.transport.name !== "websocket"; i++) await sleep(50);
  }
  log.push(["echo", await socket.emitWithAck("echo", { hello: "world", n: 1 })]);
  socket.emit("bin", new Uint8Array([1, 2, 3]));
  await binary;
  await sleep(1300);  // one heartbeat (pingInterval 1 s)
  socket.disconnect();
  await sleep(200);
  const refused = await fetch("/socket.io/?EIO=4&transport=polling&sid=no-such-session");
  log.push(["refused", refused.status, await refused.text()]);
  window.done = true;
});
</script></body></html>
""" % {"token": TOKEN}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """python-socketio on aiohttp in a thread: the page, the client bundle, and the Socket.IO endpoint."""

    def __init__(self) -> None:
        self.port = free_port()
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        if not self.ready.wait(15):
            raise RuntimeError("the server did not start")
        return self

    def __exit__(self, *exc) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        import socketio
        from aiohttp import web
        self.loop = asyncio.get_running_loop()
        self.stop = asyncio.Event()
        sio = socketio.AsyncServer(async_mode="aiohttp", ping_interval=1, ping_timeout=2, cors_allowed_origins="*")

        @sio.event
        async def connect(sid, environ, auth):
            await sio.emit("welcome", {"you": sid}, to=sid)

        @sio.event
        async def echo(sid, data):
            return data

        @sio.event
        async def bin(sid, data):
            await sio.emit("bin", bytes(reversed(data)), to=sid)

        app = web.Application()
        sio.attach(app)

        async def page(request):
            return web.Response(text=PAGE, content_type="text/html")

        async def bundle(request):
            return web.Response(body=BUNDLE.read_bytes(), content_type="text/javascript")

        app.router.add_get("/", page)
        app.router.add_get("/vendor/socket.io.esm.min.js", bundle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self.ready.set()
        await self.stop.wait()
        await runner.cleanup()


def run_page(browser, url: str, *, har: Path | None = None, cdp: bool = False) -> dict | None:
    """Load the page, wait for its session to end; returns the CDP HAR when ``cdp``."""
    context = browser.new_context(**({"record_har_path": str(har), "record_har_content": "embed"} if har else {}))
    page = context.new_page()
    collector = CdpCollector(context.new_cdp_session(page)) if cdp else None
    page.goto(url)
    page.wait_for_function("window.done === true", timeout=20_000)
    print("  page log:", page.evaluate("JSON.stringify(window.log)"))
    result = None
    if collector is not None:
        time.sleep(0.3)
        result = collector.har(browser.version)
    context.close()  # Playwright writes record_har_path here
    return result


class CdpCollector:
    """Chrome's Network.* events, kept to be assembled into a HAR as DevTools' HAR writer does."""

    def __init__(self, session) -> None:
        self.session = session
        self.requests: dict[str, dict] = {}
        self.order: list[str] = []
        for name in ("requestWillBeSent", "responseReceived", "loadingFinished", "loadingFailed",
                     "webSocketCreated", "webSocketWillSendHandshakeRequest", "webSocketHandshakeResponseReceived",
                     "webSocketFrameSent", "webSocketFrameReceived", "webSocketFrameError", "webSocketClosed"):
            session.on(f"Network.{name}", lambda params, name=name: self._event(name, params))
        session.send("Network.enable")

    def _get(self, request_id: str) -> dict:
        if request_id not in self.requests:
            self.requests[request_id] = {"frames": []}
            self.order.append(request_id)
        return self.requests[request_id]

    def _event(self, name: str, params: dict) -> None:
        r = self._get(params["requestId"])
        if name == "requestWillBeSent":
            r.update(request=params["request"], wallTime=params["wallTime"], timestamp=params["timestamp"],
                     type=params.get("type"))
        elif name == "responseReceived":
            r["response"] = params["response"]
        elif name == "loadingFinished":
            r["end"] = params["timestamp"]
            try:
                r["body"] = self.session.send("Network.getResponseBody", {"requestId": params["requestId"]})
            except Exception as exc:  # noqa: BLE001 - DevTools, too, saves the entry without its body
                r["body_error"] = str(exc)
        elif name == "loadingFailed":
            r["end"], r["error"] = params["timestamp"], params.get("errorText")
        elif name == "webSocketCreated":
            r["ws_url"] = params["url"]
        elif name == "webSocketWillSendHandshakeRequest":
            r.update(ws_request=params["request"], wallTime=params["wallTime"], timestamp=params["timestamp"])
        elif name == "webSocketHandshakeResponseReceived":
            r["ws_response"], r["ws_answer"] = params["response"], params["timestamp"]
        elif name in ("webSocketFrameSent", "webSocketFrameReceived", "webSocketFrameError"):
            kind = {"webSocketFrameSent": "send", "webSocketFrameReceived": "receive"}.get(name, "error")
            frame = params.get("response") or {}
            r["frames"].append({"type": kind, "timestamp": params["timestamp"], "opcode": frame.get("opcode", -1),
                                "data": frame.get("payloadData", params.get("errorMessage", ""))})
        elif name == "webSocketClosed":
            r["end"] = params["timestamp"]

    def har(self, version: str) -> dict:
        entries = []
        for request_id in self.order:
            r = self.requests[request_id]
            if "wallTime" not in r:
                continue
            wall = r["wallTime"] - r["timestamp"]  # monotonic -> wall clock, as DevTools' pseudoWallTime
            websocket = "ws_url" in r
            started = datetime.fromtimestamp(r["wallTime"], timezone.utc).isoformat(timespec="milliseconds")
            started = started.replace("+00:00", "Z")
            if websocket:
                url, method = r["ws_url"], "GET"
                headers = (r.get("ws_request") or {}).get("headers", {})
                answer = r.get("ws_response") or {}
                end = r.get("ws_answer", r["timestamp"])
            else:
                url, method = r["request"]["url"], r["request"]["method"]
                headers = r["request"].get("headers", {})
                answer = r.get("response") or {}
                end = r.get("end", r["timestamp"])
            took = max(0.0, (end - r["timestamp"]) * 1000)
            content = {"size": len((r.get("body") or {}).get("body", "")),
                       "mimeType": answer.get("mimeType", "x-unknown")}
            body = r.get("body")
            if body is not None:
                content["text"] = body["body"]
                if body.get("base64Encoded"):
                    content["encoding"] = "base64"
            entry = {
                "_initiator": {"type": "script"}, "_priority": "High",
                "_resourceType": "websocket" if websocket else (r.get("type") or "other").lower(),
                "cache": {}, "connection": str(answer.get("connectionId", "")),
                "request": {"method": method, "url": url, "httpVersion": "HTTP/1.1",
                            "headers": [{"name": k, "value": v} for k, v in headers.items()],
                            "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0},
                "response": {"status": answer.get("status", 0), "statusText": answer.get("statusText", ""),
                             "httpVersion": "HTTP/1.1",
                             "headers": [{"name": k, "value": v} for k, v in (answer.get("headers") or {}).items()],
                             "cookies": [], "content": content, "redirectURL": "", "headersSize": -1,
                             "bodySize": -1, "_transferSize": 0, "_error": r.get("error")},
                "serverIPAddress": "127.0.0.1", "startedDateTime": started, "time": took,
                "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0, "wait": took,
                            "receive": 0, "_blocked_queueing": -1},
            }
            post = (r.get("request") or {}).get("postData")
            if post is not None:
                entry["request"]["postData"] = {"mimeType": headers.get("Content-type", "text/plain;charset=UTF-8"),
                                                "text": post}
                entry["request"]["bodySize"] = len(post.encode())
            if websocket:
                entry["_webSocketMessages"] = [{"type": f["type"], "time": wall + f["timestamp"],
                                                "opcode": f["opcode"], "data": f["data"]} for f in r["frames"]]
            entries.append(entry)
        return {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36",
                                                      "comment": f"assembled from CDP events by record.py ({version})"},
                        "pages": [], "entries": entries}}


# Request headers every entry repeats and no test reads: left out to keep the files small.
NOISE = ("user-agent", "accept", "accept-language", "accept-encoding", "referer", "sec-ch-ua", "sec-fetch-")


def trim(har: dict) -> dict:
    """Leave out the bodies of entries that are not Socket.IO (no EIO in the URL: the page and the bundle)
    and the browser's repeated request headers (``NOISE``); everything else is as the producer wrote it."""
    for entry in har["log"]["entries"]:
        request = entry["request"]
        request["headers"] = [h for h in request.get("headers", [])
                              if not h["name"].lower().startswith(NOISE)]
        if "EIO=" not in request["url"]:
            content = entry.get("response", {}).get("content", {})
            if "text" in content:
                content.pop("text")
                content.pop("encoding", None)
                content["comment"] = "body left out by tests/data/har/record.py (not Socket.IO)"
    return har


def save(har: dict, name: str) -> None:
    path = HERE / name
    entries = ",\n".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in trim(har)["log"]["entries"])
    head = json.dumps({k: v for k, v in har["log"].items() if k != "entries"}, ensure_ascii=False)[:-1]
    path.write_text('{"log":' + head + ',"entries":[\n' + entries + "\n]}}\n", encoding="utf-8")  # an entry a line
    print(f"  wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes, {len(har['log']['entries'])} entries)")


def mitmdump_path(given: str | None) -> str | None:
    return given or os.environ.get("MITMDUMP") or shutil.which("mitmdump")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mitmdump", help="the mitmdump program (default: $MITMDUMP, or mitmdump on the PATH)")
    parser.add_argument("--only", choices=["playwright", "mitmproxy", "cdp"], action="append")
    args = parser.parse_args()
    only = set(args.only or ["playwright", "mitmproxy", "cdp"])
    from playwright.sync_api import sync_playwright
    with Server() as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        url = f"http://127.0.0.1:{server.port}/"
        if "playwright" in only:
            for name, query in (("playwright-websocket.har", ""), ("playwright-polling.har", "?transports=polling")):
                print(name)
                path = HERE / name
                run_page(browser, url + query, har=path)
                save(json.loads(path.read_text(encoding="utf-8")), name)
        if "cdp" in only:
            print("cdp-websocket.har")
            save(run_page(browser, url, cdp=True), "cdp-websocket.har")
        if "mitmproxy" in only:
            program = mitmdump_path(args.mitmdump)
            if program is None:
                print("mitmproxy-websocket.har: no mitmdump (pass --mitmdump PATH); skipped", file=sys.stderr)
            else:
                print("mitmproxy-websocket.har")
                out = HERE / "mitmproxy-websocket.har"
                proxy = free_port()
                proc = subprocess.Popen([program, "-q", "--mode", f"reverse:http://127.0.0.1:{server.port}",
                                         "--listen-host", "127.0.0.1", "-p", str(proxy), "--set",
                                         f"hardump={out}"], start_new_session=True)
                try:
                    for _ in range(100):
                        try:
                            socket.create_connection(("127.0.0.1", proxy), 0.2).close()
                            break
                        except OSError:
                            time.sleep(0.1)
                    run_page(browser, f"http://127.0.0.1:{proxy}/")
                    time.sleep(0.5)
                finally:
                    proc.send_signal(signal.SIGINT)  # mitmdump writes the HAR as it exits
                    proc.wait(20)
                save(json.loads(out.read_text(encoding="utf-8")), out.name)
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
