"""HAR files in (``Trace.from_har``) and out (``Trace.to_har``).

The golden files in tests/data/har/ were recorded by tools that are not siolab (tests/data/har/record.py
regenerates them): Playwright's HAR recorder, mitmproxy's ``hardump`` and Chrome's DevTools protocol events
assembled as DevTools does, each watching Debian's Chromium run the official JavaScript client against
python-socketio. The tests read those files only. A live lab trace goes out with ``to_har`` and comes back
with ``from_har`` with the same packets; hostile and truncated files give a clear ValueError or error records.
"""
from __future__ import annotations

import asyncio
import base64
import copy
import io
import json
import sys
import types
from pathlib import Path

import engineio.packet  # noqa: F401 - imported at collection: its first import binds ::1 (urllib3's IPv6 probe),
import pytest  # which a unit test may not do (tests/test_recorder.py alone has the same trap)
import socketio.packet  # noqa: F401

from siolab import Trace, cli, har, har_export
from siolab.recorder import Recorder

DATA = Path(__file__).parent / "data" / "har"
GOLDEN = {
    "playwright-websocket.har": ("Playwright", True),
    "playwright-polling.har": ("Playwright", False),
    "cdp-websocket.har": ("WebInspector", True),
    "mitmproxy-websocket.har": ("mitmproxy", True),
}
TOKEN = "not-a-real-token"  # what tests/data/har/record.py's page sends (auth payload and query)
PACKET_FIELDS = ("raw", "dir", "transport", "eio", "sio", "event", "args", "sid")


def golden(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def packets(trace, fields=PACKET_FIELDS) -> list[tuple]:
    return [tuple(getattr(r, f) for f in fields) for r in trace if r.kind == "packet"]


def minimal(*entries: dict) -> dict:
    return {"log": {"version": "1.2", "creator": {"name": "test", "version": "1"}, "entries": list(entries)}}


def poll_entry(**changes) -> dict:
    entry = {"startedDateTime": "2026-01-01T00:00:00.000Z", "time": 5,
             "request": {"method": "GET", "url": "http://h/socket.io/?EIO=4&transport=polling&t=a", "headers": []},
             "response": {"status": 200, "headers": [{"name": "Content-Type", "value": "text/plain; charset=UTF-8"}],
                          "content": {"size": 9, "mimeType": "text/plain", "text":
                                      '0{"sid":"S1","upgrades":["websocket"],"pingInterval":25000,'
                                      '"pingTimeout":20000,"maxPayload":1000000}'}},
             "timings": {"send": 0, "wait": 5, "receive": 0}}
    entry.update(changes)
    return entry


def ws_entry(messages, **changes) -> dict:
    entry = {"startedDateTime": "2026-01-01T00:00:01.000Z", "time": 1, "_resourceType": "websocket",
             "request": {"method": "GET", "url": "ws://h/socket.io/?EIO=4&transport=websocket&sid=S1", "headers": []},
             "response": {"status": 101, "headers": [], "content": {"size": 0, "mimeType": "x-unknown"}},
             "timings": {"send": 0, "wait": 1, "receive": 0}, "_webSocketMessages": messages}
    entry.update(changes)
    return entry


def msg(kind: str, t: float, data, opcode: int = 1) -> dict:
    return {"type": kind, "time": 1767225601.0 + t, "opcode": opcode, "data": data}


def devtools_would_import(doc: dict) -> list[str]:
    """What Chrome DevTools' HAR importer (front_end/models/har/HARFormat.ts) would throw on: it requires objects
    where it builds HARBase classes and numbers (``safeNumber``) and dates (``safeDate``) where it reads them."""
    problems = []

    def number(value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where} is not a number: {value!r}")

    def obj(value, where):
        if not isinstance(value, dict):
            problems.append(f"{where} is not an object")
            return False
        return True

    if not obj(doc, "root") or not obj(doc.get("log"), "log") or not isinstance(doc["log"].get("entries"), list):
        return problems + ["log.entries is not an array"]
    obj(doc["log"].get("creator"), "log.creator")
    for i, e in enumerate(doc["log"]["entries"]):
        if har._epoch(e.get("startedDateTime")) is None:
            problems.append(f"entry {i}: startedDateTime")
        number(e.get("time"), f"entry {i}: time")
        if obj(e.get("request"), f"entry {i}: request"):
            for k in ("headersSize", "bodySize"):
                number(e["request"].get(k), f"entry {i}: request.{k}")
            for k in ("headers", "queryString", "cookies"):
                if not isinstance(e["request"].get(k), list):
                    problems.append(f"entry {i}: request.{k}")
        if obj(e.get("response"), f"entry {i}: response"):
            for k in ("status", "headersSize", "bodySize"):
                number(e["response"].get(k), f"entry {i}: response.{k}")
            if obj(e["response"].get("content"), f"entry {i}: response.content"):
                number(e["response"]["content"].get("size"), f"entry {i}: content.size")
        if obj(e.get("timings"), f"entry {i}: timings"):
            for k in ("send", "wait", "receive"):
                number(e["timings"].get(k), f"entry {i}: timings.{k}")
        for m in e.get("_webSocketMessages", []):
            if not (obj(m, f"entry {i}: message") and m.get("type") in ("send", "receive")
                    and isinstance(m.get("data"), str)):
                problems.append(f"entry {i}: message {m!r}")
            number(m.get("time"), f"entry {i}: message time")
            number(m.get("opcode"), f"entry {i}: message opcode")
    return problems


# ---------------------------------------------------------------- the golden files: other producers
@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_real_browser_session_reads_as_the_live_trace_would_record_it(name):
    creator, websocket = GOLDEN[name]
    trace = Trace.from_har(DATA / name)
    first = trace[0]
    assert first.kind == "log" and first.t == 0.0 and creator in first.note
    assert "skipped (not Socket.IO" in first.note and " 0 skipped" not in first.note  # the page and the bundle
    assert trace[1].t == 0.0 and all(0 <= r.t < 10 for r in trace)  # one timeline from 0 (Playwright: ms)

    opened = trace.expect(eio="open", dir="s2c")
    sid = opened.data["sid"]
    assert opened.transport == "polling" and opened.http["method"] == "GET" and opened.http["status"] == 200
    handshake = trace[1]
    assert (handshake.kind, handshake.dir, handshake.sid, handshake.note) == ("http", "c2s", None,
                                                                              "handshake: open a session")
    session = [r for r in trace[2:] if r.kind in ("packet", "ws") or (r.kind == "http" and "no-such-session" not in
                                                                      (r.http or {}).get("path", ""))]
    assert {r.sid for r in session} == {sid}  # one sid on every record after the handshake, across transports

    connect = trace.expect(dir="c2s", sio="connect")
    assert connect.raw == '40{"token":"%s"}' % TOKEN and connect.args is None
    trace.expect(dir="s2c", sio="connect", nsp="/")
    welcome = trace.expect(event="welcome", dir="s2c")
    assert welcome.args and set(welcome.args[0]) == {"you"}
    echo = trace.expect(event="echo", dir="c2s")
    assert (echo.ack, echo.args) == (0, [{"hello": "world", "n": 1}])
    answer = trace.expect(sio="ack", dir="s2c", ack=0)
    assert answer.args == [{"hello": "world", "n": 1}]
    sent = trace.expect(sio="binary_event", dir="c2s")
    back = trace.expect(sio="binary_event", dir="s2c")
    assert (sent.event, sent.args, back.args) == ("bin", ["<3 bytes>"], ["<3 bytes>"])  # (as the live trace)
    attachments = trace.find(binary=True)
    assert [(a.dir, a.note, base64.b64decode(a.raw)) for a in attachments] == \
        [("c2s", "attachment 0", b"\x01\x02\x03"), ("s2c", "attachment 0", b"\x03\x02\x01")]
    assert trace.find(raw="2", eio="ping") and trace.find(raw="3", eio="pong")
    assert trace.expect(dir="c2s", sio="disconnect").transport == ("websocket" if websocket else "polling")

    refused = trace.expect(kind="http", dir="s2c", where=lambda r: r.http["status"] == 400)
    assert "no-such-session" in refused.http["path"] and refused.raw == '"Invalid session no-such-session"'
    assert "the server has no session with this sid" in refused.error
    errors = [r for r in trace if r.error]
    assert errors == [refused]  # nothing else is flagged in a healthy session

    upgrade = trace.find(kind="ws", dir="c2s")
    if websocket:
        assert [(r.kind, r.dir, r.http["status"], r.note) for r in trace.find(kind="ws", dir="c2s") +
                trace.find(kind="ws", dir="s2c")] == [("ws", "c2s", None, "WebSocket upgrade request"),
                                                      ("ws", "s2c", 101, "WebSocket open")]
        assert upgrade[0].sid == sid and upgrade[0].http["path"].startswith("/socket.io/?")
        assert trace.raws(transport="websocket")[:3] == ["2probe", "3probe", "5"]
        assert "not in the HAR" in trace.expect(kind="ws", dir=None).note  # no close frame is made up
    else:
        assert not upgrade and not trace.find(transport="websocket")


def test_the_producers_differ_where_the_importer_has_to_cope():
    """What differs between the producers, each read the same way (docs/har.md lists it)."""
    pw, cdp, mitm = (golden(n)["log"]["entries"] for n in ("playwright-websocket.har", "cdp-websocket.har",
                                                            "mitmproxy-websocket.har"))
    ws = {name: next(e for e in entries if "transport=websocket" in e["request"]["url"])
          for name, entries in (("pw", pw), ("cdp", cdp), ("mitm", mitm))}
    assert ws["pw"]["_webSocketMessages"][0]["time"] > 1e12  # Playwright: milliseconds since the epoch
    assert 1e9 < ws["cdp"]["_webSocketMessages"][0]["time"] < 1e11  # DevTools: seconds
    assert 1e9 < ws["mitm"]["_webSocketMessages"][0]["time"] < 1e11
    assert ws["mitm"]["request"]["url"].startswith("http://") and "_resourceType" not in ws["mitm"]["request"]
    assert ws["cdp"]["request"]["url"].startswith("ws://") and ws["pw"]["request"]["url"].startswith("ws://")
    assert ws["pw"]["time"] > 1000 and ws["pw"]["timings"]["wait"] == -1  # Playwright: the WebSocket's lifetime
    assert "+00:00" in mitm[0]["startedDateTime"] and cdp[0]["startedDateTime"].endswith("Z")
    polling = golden("playwright-polling.har")["log"]["entries"]
    aborted = [e for e in polling if e["response"]["status"] == -1]
    assert aborted and aborted[0]["time"] == -1  # the poll the client cut short when it closed
    trace = Trace.from_har(DATA / "playwright-polling.har")
    assert trace.find(kind="http", dir="s2c", where=lambda r: r.http["status"] is None
                      and "no answer in the HAR" in r.note)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_the_records_come_from_the_tap_recorder_short_cuts_or_not(name):
    parsed = har.parse(har.load(DATA / name))
    assert har.replay(parsed.events) == har.replay(parsed.events, recorder=Recorder(short_cuts=False))


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_a_golden_file_goes_out_and_back_with_the_same_packets(name, tmp_path):
    trace = Trace.from_har(DATA / name)
    note = trace.to_har(tmp_path / "out.har", redact=False)
    assert "nothing redacted" in note
    written = json.loads((tmp_path / "out.har").read_text(encoding="utf-8"))
    assert devtools_would_import(written) == []
    back = Trace.from_har(tmp_path / "out.har")
    assert packets(back) == packets(trace)
    assert [(r.kind, r.dir, r.http, r.error) for r in back if r.kind != "log" and r.kind != "packet"] == \
        [(r.kind, r.dir, r.http, r.error) for r in trace if r.kind != "log" and r.kind != "packet"]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_to_har_redacts_tokens_by_default_and_says_so(name, tmp_path):
    note = Trace.from_har(DATA / name).to_har(tmp_path / "out.har")
    text = (tmp_path / "out.har").read_text(encoding="utf-8")
    assert TOKEN not in text
    assert "apikey" in note and "CONNECT" in note and "redact=False" in note
    urls = sum(TOKEN in e["request"]["url"] for e in golden(name)["log"]["entries"])
    assert f"apikey in {urls} URL(s)" in note and "auth payload values of 1 CONNECT packet(s)" in note
    assert json.loads(text)["log"]["comment"].startswith(note)
    back = Trace.from_har(tmp_path / "out.har")
    assert back.expect(dir="c2s", sio="connect").raw == '40{"token":"REDACTED"}'
    assert all("apikey=REDACTED" in r.http["path"] for r in back if r.http and "EIO" in r.http["path"]
               and "no-such-session" not in r.http["path"])
    assert back.expect(eio="open").sid == back.expect(sio="disconnect").sid  # sid, EIO, transport, t are kept


# ---------------------------------------------------------------- live: out with to_har, back with from_har
async def test_a_live_trace_goes_out_and_back_with_the_same_packets(lab, tmp_path):
    @lab.server.on("echo")
    async def echo(sid, data):
        return data

    @lab.server.on("bin")
    async def binary(sid, data):
        await lab.server.emit("bin", data[::-1], to=sid)

    alice = await lab.client("alice", auth={"token": "s3cret"})
    bob = await lab.client("bob", transports=["polling"], auth={"key": "k"})
    assert await alice.call("echo", {"x": 1}) == {"x": 1}
    assert await bob.call("echo", [1, "two"]) == [1, "two"]
    await alice.emit("bin", b"\x00\x01\x02")
    await bob.emit("bin", b"\x03\x04")
    await lab.trace.wait_for(sio="binary_event", dir="s2c", client="alice")
    await lab.trace.wait_for(sio="binary_event", dir="s2c", client="bob")
    await lab.trace.wait_for(eio="pong", client="bob", timeout=5)  # a heartbeat on each transport
    await lab.trace.wait_for(eio="pong", client="alice", timeout=5)
    await alice.disconnect()
    await bob.disconnect()
    await asyncio.sleep(0.2)
    live = lab.trace
    note = live.to_har(tmp_path / "live.har", redact=False, origin=lab.tap.url)
    assert "nothing redacted" in note
    doc = json.loads((tmp_path / "live.har").read_text(encoding="utf-8"))
    assert devtools_would_import(doc) == []
    sockets = [e for e in doc["log"]["entries"] if e.get("_resourceType") == "websocket"]
    assert len(sockets) == 1 and sockets[0]["request"]["url"].startswith("ws://127.0.0.1:")
    assert {m["opcode"] for m in sockets[0]["_webSocketMessages"]} == {1, 2, 8}

    back = Trace.from_har(tmp_path / "live.har")
    by_time = sorted((r for r in live if r.kind == "packet"), key=lambda r: r.t)  # the tap records in batches
    assert packets(back, PACKET_FIELDS + ("client", "binary", "ack", "nsp", "error")) == \
        [tuple(getattr(r, f) for f in PACKET_FIELDS + ("client", "binary", "ack", "nsp", "error")) for r in by_time]
    ws = [(r.kind, r.dir, r.http, r.note, r.sid, r.client) for r in live if r.kind == "ws"]
    assert [(r.kind, r.dir, r.http, r.note, r.sid, r.client) for r in back if r.kind == "ws"] == ws
    assert ws[-1][3].startswith("WebSocket closed by the client, code 1000")
    http = [(r.dir, r.http, r.raw, r.note, r.error) for r in live if r.kind == "http"]
    assert [(r.dir, r.http, r.raw, r.note, r.error) for r in back if r.kind == "http"] == http

    redacted_note = live.to_har(tmp_path / "redacted.har")
    assert "2 CONNECT" in redacted_note
    text = (tmp_path / "redacted.har").read_text(encoding="utf-8")
    assert "s3cret" not in text and '"k"' not in text
    again = Trace.from_har(tmp_path / "redacted.har")
    assert [r.raw for r in again.find(dir="c2s", sio="connect")] == ['40{"token":"REDACTED"}', '40{"key":"REDACTED"}']
    assert packets(again, ("raw",)) != packets(back, ("raw",)) and len(packets(again)) == len(packets(back))


# ---------------------------------------------------------------- the timeline, missing bodies
def test_events_from_different_entries_are_fed_in_time_order():
    """A long-poll started first and answered last: its answer comes after the POST sent meanwhile."""
    opened = poll_entry()
    poll = poll_entry(startedDateTime="2026-01-01T00:00:00.100Z", time=300)
    poll["request"] = {"method": "GET", "url": "http://h/socket.io/?EIO=4&transport=polling&sid=S1", "headers": []}
    poll["response"] = {"status": 200, "headers": [], "content": {"size": 1, "mimeType": "text/plain", "text": "2"}}
    post = poll_entry(startedDateTime="2026-01-01T00:00:00.200Z", time=10)
    post["request"] = {"method": "POST", "url": "http://h/socket.io/?EIO=4&transport=polling&sid=S1", "headers": [],
                       "postData": {"mimeType": "text/plain", "text": '42["a"]\x1e42["b"]'}}
    post["response"] = {"status": 200, "headers": [], "content": {"size": 2, "mimeType": "text/plain", "text": "ok"}}
    trace = Trace.from_har(minimal(opened, poll, post))
    assert [(r.t, r.dir, r.http["method"], r.raw) for r in trace if r.kind != "log"] == [
        (0.0, "c2s", "GET", None), (0.005, "s2c", "GET", trace[2].raw), (0.1, "c2s", "GET", None),
        (0.2, "c2s", "POST", '42["a"]'), (0.2, "c2s", "POST", '42["b"]'), (0.21, "s2c", "POST", "ok"),
        (0.4, "s2c", "GET", "2")]
    assert {r.sid for r in trace[2:]} == {"S1"}


def test_missing_bodies_are_said_not_guessed():
    """Firefox (and Playwright with content omitted) may leave bodies out: the exchange is recorded, with a note."""
    doc = golden("playwright-polling.har")
    for entry in doc["log"]["entries"]:
        entry["response"].get("content", {}).pop("text", None)
        entry["request"].pop("postData", None)
    trace = Trace.from_har(doc)
    assert not trace.packets()
    answers = trace.find(kind="http", dir="s2c", where=lambda r: r.http["status"] == 200)
    assert answers and all("the HAR has no body" in r.note for r in answers)
    posts = trace.find(kind="http", dir="c2s", where=lambda r: r.http["method"] == "POST")
    assert posts and all("the HAR has no body for this POST" in r.note for r in posts)
    assert [r for r in trace if r.error] == trace.find(where=lambda r: (r.http or {}).get("status") == 400)


def test_a_websocket_entry_without_messages_says_the_har_has_none():
    trace = Trace.from_har(minimal(poll_entry(), ws_entry([])))
    end = trace.expect(kind="ws", dir=None)
    assert "no WebSocket messages" in end.note and end.sid == "S1" and end.error is None


def test_base64_content_close_frames_ping_and_the_browser_s_frame_errors():
    opened = poll_entry()
    opened["response"]["content"] = {"size": 9, "mimeType": "text/plain", "encoding": "base64",
                                     "text": base64.b64encode(opened["response"]["content"]["text"].encode()).decode()}
    close = base64.b64encode((1001).to_bytes(2, "big")).decode()
    trace = Trace.from_har(minimal(opened, ws_entry([
        msg("send", 0.1, "2probe"), msg("receive", 0.2, "3probe"),
        msg("send", 0.3, base64.b64encode(b"hi").decode(), 2),
        msg("receive", 0.35, "", 9), {"type": "error", "time": 1767225601.4, "opcode": -1, "data": "net::ERR_FAILED"},
        msg("receive", 0.5, close, 8), msg("send", 0.6, close, 8)])))
    assert trace.expect(eio="open").sid == "S1"
    assert trace.expect(binary=True).raw == base64.b64encode(b"hi").decode()
    assert "binary attachment with no BINARY_EVENT" in trace.expect(binary=True).error  # as the live tap says
    assert "ping frame" in trace.expect(kind="ws", where=lambda r: "ping" in (r.note or "")).note
    assert "the browser reported a WebSocket error: net::ERR_FAILED" in trace.expect(kind="ws", dir=None).error
    closes = trace.find(kind="ws", where=lambda r: "closed" in (r.note or ""))
    assert [(r.dir, r.note) for r in closes] == [("s2c", "WebSocket closed by the server, code 1001 (going away "
                                                          "(the endpoint is shutting down))")]
    assert not trace.find(where=lambda r: "not in the HAR" in (r.note or ""))  # the close was in it


# ---------------------------------------------------------------- hostile and truncated files
@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"<html>not json</html>", "not JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", 'no "log" object'),
    (b'{"log": 5}', 'no "log" object'),
    (b'{"log": {"entries": {}}}', '"log.entries" is not a list'),
    (b'{"log": {"entries": [NaN]}}', "NaN"),
    (b'{"log": {"entries": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}}", "nests too deeply"),
    (b'{"log": {"entries": [' + b"[" * 300 + b"]" * 300 + b"]}}", "levels deep"),
    (b'{"log": {"entries": [1' + b"0" * 5000 + b"]}}", "not a HAR file"),
])
def test_a_file_that_is_not_a_har_is_refused_clearly(tmp_path, content, message):
    path = tmp_path / "x.har"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        Trace.from_har(path)


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.999])
def test_a_truncated_file_is_refused_and_says_it_may_be_truncated(tmp_path, fraction):
    text = (DATA / "cdp-websocket.har").read_bytes()
    path = tmp_path / "cut.har"
    path.write_bytes(text[: int(len(text) * fraction)])
    with pytest.raises(ValueError, match=r"ends early \(is the file truncated\?\)"):
        Trace.from_har(path)


def test_a_bom_is_accepted_and_a_file_over_the_bound_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "bom.har"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(minimal(poll_entry())).encode())
    assert Trace.from_har(path).expect(eio="open").sid == "S1"
    monkeypatch.setattr(har, "MAX_HAR_BYTES", 100)
    with pytest.raises(ValueError, match="more than the 100 bytes siolab reads from a HAR file"):
        Trace.from_har(path)


def test_entries_with_wrong_types_become_error_records_and_the_rest_is_read():
    bad_url = poll_entry()
    bad_url["request"] = {"method": "GET", "url": 5}
    bad_date = poll_entry(startedDateTime="yesterday")
    trace = Trace.from_har(minimal(7, {"no": "request"}, bad_url, bad_date, poll_entry(response="x"), poll_entry()))
    errors = sorted(r.error for r in trace if r.kind == "error")  # (those without a date come first)
    assert errors == ["HAR entry 0 is not a JSON object", "HAR entry 1 has no request with a url and a method (text)",
                      "HAR entry 2 has no request with a url and a method (text)",
                      "HAR entry 3 (GET /socket.io/): startedDateTime is not an ISO 8601 date",
                      "HAR entry 4 (GET /socket.io/): its response is not a JSON object"]
    assert "5 unreadable" in trace[0].note
    assert trace.expect(eio="open").sid == "S1"


def test_bad_base64_unknown_opcodes_and_message_types_are_error_records():
    opened = poll_entry()
    opened["response"]["content"].update(encoding="base64", text="not base64!")
    trace = Trace.from_har(minimal(opened, poll_entry(startedDateTime="2026-01-01T00:00:00.500Z"), ws_entry([
        msg("send", 0.1, "%%%", 2), msg("send", 0.2, "x", 5), {"type": "ping", "time": 1, "opcode": 1, "data": "2"},
        msg("send", 0.3, 42), {"type": "send", "time": "soon", "opcode": True, "data": "2"}, "junk",
        msg("send", 0.4, "2")])))
    assert "marked base64 (content.encoding) but is not valid base64" in trace[1 + 1].error
    errors = [r.error for r in trace if r.kind == "ws" and r.error]
    assert errors == ["WebSocket message 0 in the HAR (opcode 2) should carry base64 data, and does not",
                      "WebSocket message 1 in the HAR has the opcode 5: not a WebSocket message opcode (1 text, "
                      "2 binary, 8 close, 9 ping, 10 pong)",
                      "WebSocket message 2 in the HAR has the type 'ping': expected send or receive",
                      "WebSocket message 3 in the HAR has no data (text)",
                      "WebSocket message 4 in the HAR has the opcode True: expected a number",
                      "WebSocket message 5 in the HAR is not a JSON object"]
    assert trace.expect(transport="websocket", raw="2").eio == "ping"  # and the good one after them is read
    broken = Trace.from_har(minimal(poll_entry(), ws_entry("not a list")))
    assert "_webSocketMessages is not a list" in broken.expect(kind="ws", where=lambda r: r.error).error


def test_huge_declared_sizes_and_times_change_nothing_and_huge_bodies_are_refused(monkeypatch):
    entry = poll_entry(time=1e308)
    entry["response"]["content"]["size"] = 10 ** 30
    entry["response"]["bodySize"] = 1e308
    entry["request"]["bodySize"] = -(10 ** 30)
    trace = Trace.from_har(minimal(entry))
    assert trace.expect(eio="open").sid == "S1" and all(r.t < 1e8 for r in trace)
    monkeypatch.setattr(har, "MAX_BODY", 10)
    post = poll_entry()
    post["request"] = {"method": "POST", "url": "http://h/socket.io/?EIO=4&transport=polling&sid=S1",
                       "postData": {"mimeType": "text/plain", "text": "4" * 11}}
    trace = Trace.from_har(minimal(poll_entry(), post, ws_entry([msg("send", 0, "x" * 11)])))
    assert "more than the 10 siolab reads" in trace.expect(kind="http", dir="s2c", eio=None,
                                                            where=lambda r: r.error).error
    assert "request body is 11 characters, more than the 10" in trace.expect(dir="c2s", http={
        "method": "POST", "path": "/socket.io/?EIO=4&transport=polling&sid=S1", "status": None}).error
    assert "is 11 characters, more than the 10" in trace.expect(kind="ws", where=lambda r: r.error).error


def _leaves(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, path + (i,))
    yield path


def test_any_field_of_an_entry_with_any_wrong_type_never_raises_from_deep_inside():
    """Every field (and every object and list) of a polling entry and a WebSocket entry, replaced in turn by each
    value of the wrong type: the import gives records, never an exception."""
    base = minimal(poll_entry(), ws_entry([msg("send", 0.1, "2probe"), msg("receive", 0.2, "AQID", 2)]))
    for e in range(2):
        for path in list(_leaves(base["log"]["entries"][e])):
            for wrong in (None, 7, -1, 1e308, True, "x", "", [], {}, [1], {"a": 1}):
                doc = copy.deepcopy(base)
                target = doc["log"]["entries"][e]
                if not path:
                    doc["log"]["entries"][e] = wrong
                else:
                    for key in path[:-1]:
                        target = target[key]
                    target[path[-1]] = wrong
                records = har.read(doc).records
                assert records[0].kind == "log", (path, wrong)


# ---------------------------------------------------------------- redaction, the CLI
def test_redaction_keeps_engine_io_parameters_and_auth_keys():
    redact_query, redact_connect = har_export.redact_query, har_export.redact_connect
    path, names = redact_query("/socket.io/?EIO=4&transport=polling&t=abc&sid=S&token=x&apiKey=y&my_auth=z&n=1")
    assert path == "/socket.io/?EIO=4&transport=polling&t=abc&sid=S&token=REDACTED&apiKey=REDACTED" \
                   "&my_auth=REDACTED&n=1"
    assert names == ["token", "apiKey", "my_auth"]
    assert redact_query("/socket.io/?EIO=4&session_id=1&password")[0] == "/socket.io/?EIO=4&session_id=REDACTED" \
                                                                         "&password"
    assert redact_connect('40{"token":"abc","user":{"id":1}}') == '40{"token":"REDACTED","user":"REDACTED"}'
    assert redact_connect('40/admin,{"jwt":"e"}') == '40/admin,{"jwt":"REDACTED"}'
    assert redact_connect("40") == "40" and redact_connect("40/admin,") == "40/admin,"
    assert redact_connect("40{broken") == "40REDACTED" and redact_connect('40"s"') == '40"REDACTED"'


def test_the_har_command_prints_the_records_a_summary_and_writes_json_lines(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.jsonl"
    assert cli.main(["har", str(DATA / "mitmproxy-websocket.har"), "--jsonl", str(out)]) == 0
    printed = capsys.readouterr().out
    trace = Trace.from_har(DATA / "mitmproxy-websocket.har")
    lines = printed.splitlines()
    assert lines[: len(trace)] == [str(r) for r in trace]
    assert "1 Engine.IO session(s) opened" in printed
    assert Trace.from_jsonl(out)[:] == trace[:]
    assert ("the doctor:" in printed) == (har.doctor_report(trace) is not None)  # (when siolab.doctor exists)

    doctor = types.ModuleType("siolab.doctor")
    doctor.diagnose = lambda records: f"{sum(r.kind == 'packet' for r in records)} packets looked at"
    monkeypatch.setitem(sys.modules, "siolab.doctor", doctor)
    assert cli.main(["har", str(DATA / "mitmproxy-websocket.har")]) == 0
    assert capsys.readouterr().out.endswith(f"\nthe doctor:\n{len(trace.packets())} packets looked at\n")
    monkeypatch.setitem(sys.modules, "siolab.doctor", None)  # an install without the doctor: no section
    assert har.doctor_report(trace) is None

    bad = tmp_path / "bad.har"
    bad.write_text("{}")
    assert cli.main(["har", str(bad)]) == 2
    assert 'not a HAR file: no "log" object' in capsys.readouterr().err


def test_to_har_writes_what_devtools_imports_for_every_record_kind():
    buf = io.StringIO()
    trace = Trace.from_har(DATA / "playwright-websocket.har")
    doc, note = har_export.build(trace, start=1_700_000_000.0)
    assert devtools_would_import(doc) == [] and "redacted" in note
    assert doc["log"]["creator"]["name"] == "siolab" and doc["log"]["version"] == "1.2"
    json.dump(doc, buf)  # plain JSON
    sockets = [e for e in doc["log"]["entries"] if e["_resourceType"] == "websocket"]
    assert sockets[0]["startedDateTime"].startswith("2023-11-14T22:13:20")
    assert all(m["type"] in ("send", "receive") for m in sockets[0]["_webSocketMessages"])
