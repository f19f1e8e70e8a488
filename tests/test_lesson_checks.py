"""The lessons' named checks (siolab.lesson_checks): each passes on a trace shaped like the lesson's and fails,
saying which claim and showing the records, on one that differs. The notebooks run them on live traces
(nbval); here the traces are built record by record, so these are unit tests, except the last one, which asks
a live lab the bad requests of the cheat sheet."""
from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
import socketio  # noqa: F401  (now, not in a test: its first import probes IPv6 with a socket)

from siolab import lesson_checks as check
from siolab.conformance import Report, Verdict
from siolab.lesson_checks import CheckFailed
from siolab.protocol import explain
from siolab.trace import Trace

WS = "/socket.io/?EIO=4&transport=websocket&sid=S"


def poll(t: str, sid: str | None = "S") -> str:
    return f"/socket.io/?EIO=4&transport=polling&t={t}" + (f"&sid={sid}" if sid else "")


class Wire:
    """A Trace filled the way the tap fills one: packets decoded by siolab.explain, one record each."""

    def __init__(self) -> None:
        self.trace = Trace()
        self.t = 0.0

    def _tick(self) -> float:
        self.t += 0.01
        return round(self.t, 3)

    def packet(self, dir: str, raw: str, client: str = "alice", transport: str = "websocket", sid: str = "S",
               http: dict | None = None, args: list | None = None, **extra):
        e = explain(raw)
        att = e.field("attachments")
        args = args if args is not None else e.args if e.sio is not None else None
        return self.trace.add(t=self._tick(), kind="packet", dir=dir, transport=transport, raw=raw, eio=e.eio,
                              sio=e.sio, nsp=e.nsp if e.sio else None, ack=e.ack, event=e.event, args=args,
                              attachments=int(att.text[:-1]) if att else 0, sid=sid, client=client, http=http,
                              **extra)

    def attachment(self, dir: str, data: bytes, client: str = "alice", transport: str = "websocket",
                   http: dict | None = None):
        return self.trace.add(t=self._tick(), kind="packet", dir=dir, transport=transport, binary=True,
                              raw=base64.b64encode(data).decode(), eio="message", sid="S", client=client, http=http,
                              note="attachment 0")

    def http(self, dir: str, method: str, path: str, status: int | None = None, client: str = "alice",
             transport: str = "polling", sid: str | None = "S", raw: str | None = None, kind: str = "http",
             note: str | None = None):
        return self.trace.add(t=self._tick(), kind=kind, dir=dir, transport=transport, client=client, sid=sid,
                              http={"method": method, "path": path, "status": status}, raw=raw, note=note)


def failure(call, *args, **kwargs) -> str:
    with pytest.raises(CheckFailed) as caught:
        call(*args, **kwargs)
    assert isinstance(caught.value, AssertionError)  # nbval and pytest show it like any failed assert
    return str(caught.value)


# ---------------------------------------------------------------- 01
def chat_wire(down_to=("alice", "bob")) -> Wire:
    w = Wire()
    for name in ("alice", "bob"):
        w.packet("c2s", '42["newClient"]', client=name)
        w.packet("s2c", '42["initialChatList",[]]', client=name)
    w.packet("c2s", '42["message",{"message":"hi"}]')
    for name in down_to:
        w.packet("s2c", '42["message",["hi"]]', client=name)
    return w


def test_a_message_up_once_and_down_to_each():
    down = check.message_went_up_once_and_came_down_to_each(chat_wire().trace, "hi", sender="alice",
                                                            to=["alice", "bob"])
    assert [r.client for r in down] == ["alice", "bob"]
    check.each_history_went_only_to_its_asker(chat_wire().trace, {"alice": [], "bob": []})


def test_a_missing_recipient_or_sender_is_named():
    text = failure(check.message_went_up_once_and_came_down_to_each, chat_wire(down_to=["alice"]).trace, "hi",
                   sender="alice", to=["alice", "bob"])
    assert "came down once to each of alice, bob" in text and '42["message",["hi"]]' in text  # the evidence
    assert "went up once, from bob" in failure(check.message_went_up_once_and_came_down_to_each,
                                               chat_wire().trace, "hi", sender="bob", to=["alice", "bob"])
    assert "initialChatList went to the client that asked" in failure(
        check.each_history_went_only_to_its_asker, chat_wire().trace, {"alice": ["hi"], "bob": []})


# ---------------------------------------------------------------- 03
def python_upgrade(order=("2probe", "3probe", "5")) -> Wire:
    w = Wire()
    w.http("c2s", "GET", poll("a", None), sid=None)
    w.packet("s2c", '0{"sid":"S","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000}',
             transport="polling", http={"method": "GET", "path": poll("a", None), "status": 200})
    w.http("c2s", "GET", WS, kind="ws", transport="websocket")
    w.http("s2c", "GET", WS, 101, kind="ws", transport="websocket", note="WebSocket open")
    for raw in order:
        w.packet("c2s" if raw != "3probe" else "s2c", raw)
    w.packet("s2c", "6")
    w.packet("c2s", "40{}")
    return w


def test_the_upgrade_as_lesson_03_tells_it():
    check.upgrade_happened_as_described(python_upgrade().trace, "alice", sid="S")
    assert "2probe -> 3probe -> 5" in failure(check.upgrade_happened_as_described,
                                              python_upgrade(order=("2probe", "5", "3probe")).trace, "alice")
    assert "own sid" in failure(check.upgrade_happened_as_described, python_upgrade().trace, "alice", sid="X")


# ---------------------------------------------------------------- 04
def goodbyes(bob_sent_41: bool = False) -> Wire:
    w = Wire()
    post = {"method": "POST", "path": poll("p"), "status": None}
    w.packet("c2s", "41", client="carol", transport="polling", http=post)
    w.packet("c2s", "1", client="carol", transport="polling", http=post)
    if bob_sent_41:
        w.packet("c2s", "41", client="bob")
    w.http("c2s", "GET", WS, client="bob", kind="ws", transport="websocket", note="WebSocket closed by the client")
    w.packet("s2c", "41", client="dave")
    return w


def test_the_three_goodbyes():
    server = {"carol": "client disconnect", "bob": "transport close", "dave": "server disconnect"}
    client = {"carol": "client disconnect", "bob": "client disconnect", "dave": "server disconnect"}
    check.disconnect_reasons_as_described(goodbyes().trace, server, client)
    assert "neither 41 nor 1 from bob" in failure(check.disconnect_reasons_as_described,
                                                  goodbyes(bob_sent_41=True).trace, server, client)
    assert "bob's reason is 'transport close'" in failure(
        check.disconnect_reasons_as_described, goodbyes().trace, dict(server, bob="client disconnect"), client)


# ---------------------------------------------------------------- 05, 06
def test_the_packet_forms_decode_as_lesson_05_says():
    check.packet_forms_decode_as_described()


def binary_call(transport: str = "websocket", ack_id: int = 2, event: str = "file", data=b"\x01\x02\x03\x04",
                extra_frame: bool = False) -> Wire:
    w = Wire()
    w.packet("c2s", "40{}")
    w.packet("c2s", "40/chat,{}")
    w.packet("s2c", '40{"sid":"x1"}')
    w.packet("s2c", '40/chat,{"sid":"x2"}')
    http = {"method": "POST", "path": poll("b"), "status": None} if transport == "polling" else None
    w.packet("c2s", f'451-{ack_id}["{event}",{{"_placeholder":true,"num":0}}]', transport=transport, http=http,
             args=[f"<{len(data)} bytes>"])       # the tap puts the attachment's size in place
    if extra_frame:
        w.packet("c2s", "3", transport=transport)
    w.attachment("c2s", data, transport=transport, http=http)
    w.packet("s2c", f"43{ack_id}[{len(data)}]", transport=transport)
    return w


def test_the_connect_and_binary_forms_of_lesson_05():
    check.connect_and_binary_forms_as_described(binary_call().trace, "alice", b"\x01\x02\x03\x04")
    assert "the attachment follows the binary event" in failure(
        check.connect_and_binary_forms_as_described, binary_call(extra_frame=True).trace, "alice", b"\x01\x02\x03\x04")


def test_binary_events_over_each_transport():
    data = b"\xde\xad\xbe\xef"
    ws = binary_call(event="upload", ack_id=6, data=data).trace
    assert check.binary_event_as_described(ws, "alice", data, "websocket", 6, received=data).binary
    polling = binary_call("polling", event="upload", ack_id=1, data=data).trace
    check.binary_event_as_described(polling, "alice", data, "polling", 1)
    assert "over polling" in failure(check.binary_event_as_described, ws, "alice", data, "polling", 6)
    assert "the handler got the bytes" in failure(check.binary_event_as_described, ws, "alice", data, "websocket",
                                                  6, received=b"?")


def test_a_broadcast_lost_while_away():
    w = Wire()
    w.packet("s2c", '42["news","old"]', client="carol")
    mark = w.t + 0.005
    w.packet("s2c", '42["news","the shop opens at 9"]', client="alice")
    w.packet("s2c", '42["news","the shop opens at 9"]', client="bob")
    assert [r.client for r in check.lost_while_disconnected(w.trace, "news", "carol", since=mark)] == ["alice", "bob"]
    w.packet("s2c", '42["news","the shop opens at 9"]', client="carol")  # replayed: not at most once any more
    assert "no news went down to carol" in failure(check.lost_while_disconnected, w.trace, "news", "carol", mark)


# ---------------------------------------------------------------- 07
def test_two_namespaces_share_one_session():
    w = Wire()
    w.packet("s2c", '0{"sid":"S","upgrades":[]}')
    w.http("s2c", "GET", WS, 101, kind="ws", transport="websocket", note="WebSocket open")
    for raw in ("40{}", "40/chat,{}"):
        w.packet("c2s", raw)
    w.packet("s2c", '40{"sid":"A"}')
    w.packet("s2c", '40/chat,{"sid":"B"}')
    check.namespaces_share_one_session(w.trace, "alice", {"/": "A", "/chat": "B"}, eio_sid="S")
    assert "that namespace's Socket.IO sid" in failure(check.namespaces_share_one_session, w.trace, "alice",
                                                       {"/": "B", "/chat": "A"}, eio_sid="S")


def test_refusals_and_broadcasts_of_lesson_07():
    w = Wire()
    w.packet("s2c", '44/admin,{"message":"Connection rejected by server"}', client="mallory")
    w.packet("s2c", '44/vip,{"message":"members only","data":{"hint":"ask at the door"}}', client="eve")
    w.packet("c2s", '40/admin,{"token":"s3cret"}', client="trent")
    w.packet("s2c", '40/admin,{"sid":"T"}', client="trent")
    outcomes = {"mallory": ValueError(), "trent": None, "eve": ValueError()}
    check.refusals_as_described(w.trace, outcomes, error_type=ValueError)
    assert "mallory: connect() raised KeyError" in failure(check.refusals_as_described, w.trace, outcomes, KeyError)

    w = Wire()
    sids = {"alice": "SA", "bob": "SB", "carol": "SC", "dave": "SD"}
    for name, sid in sids.items():
        w.packet("s2c", '42["news","the shop opens at 9"]', client=name, sid=sid)
    for name in ("alice", "bob", "carol"):
        w.packet("s2c", '42["dinner","ready"]', client=name)
    for name in ("bob", "carol"):
        w.packet("s2c", '42["said","pass the salt"]', client=name)
    w.packet("s2c", '42/chat,["hi","chatters"]', client="alice")
    check.broadcasts_as_described(w.trace, sids)
    assert check.recipients(w.trace, "dinner") == ["alice", "bob", "carol"]
    w.packet("s2c", '42["said","pass the salt"]', client="alice")
    assert "say skipped its sender" in failure(check.broadcasts_as_described, w.trace, sids)


# ---------------------------------------------------------------- 10
def reports(plain_extra=(), node_fails=()) -> dict:
    rules = sorted(check.PYTHON_DEVIATIONS | check.PLAIN_ONLY | {"batches packets in one GET"})
    seen = {"refuses missing transport": "GET ?EIO=4 -> 200 0{...",
            "refuses bad method": "PUT ?EIO=4&transport=polling -> 405 Method Not Allowed",
            "a bad packet closes the session": "POST garbage -> 200 OK; next GET -> 200",
            check.HEARTBEAT_RULE: "advertised pingInterval 0 ms"}

    def report(failing, bad_method_seen=None):
        verdicts = [Verdict(r, "fail" if r in failing else "pass",
                            bad_method_seen if r == "refuses bad method" and bad_method_seen else seen.get(r, "ok"),
                            "HTTP 400") for r in rules]
        return Report("http://127.0.0.1:1", verdicts)
    return {"lab": report(check.PYTHON_DEVIATIONS),
            "plain": report(check.PYTHON_DEVIATIONS | check.PLAIN_ONLY | set(plain_extra)),
            "node": report(set(node_fails), "PUT ?EIO=4&transport=polling -> 400 {...}")}


def test_the_conformance_verdicts_of_lesson_10():
    check.conformance_as_described(reports(), have_node=True)
    assert "node passes" in failure(check.conformance_as_described, reports(node_fails={"POST answered ok"}), True)
    assert "plain fails four rules more" in failure(check.conformance_as_described,
                                                    reports(plain_extra={"batches packets in one GET"}), False)


def test_the_summary_shows_the_failing_rules_only():
    text = check.conformance_summary(reports())
    lines = text.splitlines()
    assert lines[0].split() == ["rule", "lab", "plain", "node"]
    assert "batches packets in one GET" not in text and "(1 more rules" in text
    assert "    lab, plain: PUT ?EIO=4&transport=polling -> 405" in text    # one line for the same failure
    assert "expected: HTTP 400" in text
    assert lines[-1] == "lab passed 5 of 10   plain passed 1 of 10   node passed 10 of 10"


def test_the_comparison_of_lesson_10():
    def row(same=True, text=""):
        return SimpleNamespace(same=same, cells={"lab": text})
    results = {"ack": "hi", "binary_ack": b"\x01\x02\x03", "refused": "One or more namespaces failed to connect: /nope"}
    steps = {"connect": row(text='→40{} ←40{"sid":"…"}'), "ack": row(text='→421["echo","hi"] ←431["hi"]'),
             "binary_ack": row(text='→451-2["echo",{"_placeholder":true,"num":0}] →<3 bytes> '
                                    '←461-2[{"_placeholder":true,"num":0}] ←<3 bytes>')}
    class Comparison:   # what reference.compare returns, as far as the check reads it
        runs = {"lab": SimpleNamespace(name="lab", results=results)}
        differences = ["open"]

        def __getitem__(self, step):
            return steps[step]
    comparison = Comparison()
    check.comparison_as_described(comparison, have_node=False)
    assert "differ in ['open', 'upgrade'" in failure(check.comparison_as_described, comparison, have_node=True)


# ---------------------------------------------------------------- 11
def browser_wire(pending_get_before_ws: bool = False, get_pending_at_5: bool = False) -> Wire:
    """The official client's connection (the shape of a real run of lesson 04)."""
    w = Wire()
    b = dict(client="browser")
    w.http("c2s", "GET", poll("a", None), sid=None, **b)
    w.packet("s2c", '0{"sid":"S","upgrades":["websocket"]}', transport="polling",
             http={"method": "GET", "path": poll("a", None), "status": 200}, **b)
    w.packet("c2s", "40", transport="polling", http={"method": "POST", "path": poll("b"), "status": None}, **b)
    w.http("s2c", "POST", poll("b"), 200, raw="OK", **b)
    w.http("c2s", "GET", poll("c"), **b)
    w.packet("s2c", '40{"sid":"X"}', transport="polling", http={"method": "GET", "path": poll("c"), "status": 200}, **b)
    if pending_get_before_ws:
        w.http("c2s", "GET", poll("d"), **b)
    w.http("c2s", "GET", WS, kind="ws", transport="websocket", **b)
    w.http("s2c", "GET", WS, 101, kind="ws", transport="websocket", **b)
    if not pending_get_before_ws:
        w.http("c2s", "GET", poll("d"), **b)
    w.packet("c2s", "2probe", **b)
    w.packet("s2c", "3probe", **b)
    w.packet("s2c", "6", transport="polling", http={"method": "GET", "path": poll("d"), "status": 200}, **b)
    if get_pending_at_5:
        w.http("c2s", "GET", poll("e"), **b)
    w.packet("c2s", "5", **b)
    w.packet("s2c", "6", **b)
    return w


async def test_the_browser_upgrade_as_lesson_11_tells_it():
    assert await check.browser_upgrade_as_described(browser_wire().trace) == 4
    assert await check.browser_upgrade_as_described(browser_wire(pending_get_before_ws=True).trace) == 4
    with pytest.raises(CheckFailed, match="every GET asked before the 5 was answered"):   # one still pending
        await check.browser_upgrade_as_described(browser_wire(get_pending_at_5=True).trace, wait=0.1)


# ---------------------------------------------------------------- the cheat sheet
def test_explaining_the_cheat_sheets_examples():
    check.examples_explained(check.CHEAT_SHEET_EXAMPLES)
    check.examples_explained({"421[\"add\",1,2]": ("message", "event", "/", 1), "6": ("noop",),
                              '451-["f",{"_placeholder":true,"num":0}]': ("message", "binary_event", "/", None, "1-")})
    assert "is ('message', 'ack')" in failure(check.examples_explained, {"42[\"x\"]": ("message", "ack")})
    table = check.explain_table(["431[3]", "2probe"]).splitlines()
    assert table[1].split()[:5] == ["431[3]", "MESSAGE", "ACK", "/", "1"] and table[2].split()[:2] == ["2probe", "PING"]


def test_strings_found_in_installed_sources(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "socket.js").write_text('this.onclose("io server disconnect");\n')
    assert check.found_in_sources(tmp_path, {"pkg/socket.js": ["io server disconnect"]}) == {
        "io server disconnect": "pkg/socket.js"}
    assert "'io client disconnect' is in pkg/socket.js" in failure(
        check.found_in_sources, tmp_path, {"pkg/socket.js": ["io client disconnect"]})


def test_refusals_listed_and_tabled():
    check.refusals_as_listed(dict(check.NODE_REFUSALS), check.NODE_REFUSALS)
    wrong = dict(check.NODE_REFUSALS, **{"unknown sid": (400, '"Invalid session nope"')})
    assert "unknown sid: 400" in failure(check.refusals_as_listed, wrong, check.NODE_REFUSALS)
    text = check.answers_table({"python": {"unknown sid": (400, "x")}, "node": {"unknown sid": (400, "y")}})
    assert text.splitlines() == ["unknown sid", "  python  400 x", "  node    400 y"]


async def test_a_lab_answers_the_bad_requests_as_the_cheat_sheet_lists(lab):
    answers = await check.bad_request_answers(lab.url, origin="http://localhost:3000")
    check.refusals_as_listed(answers, check.PYTHON_REFUSALS)
    refused = lab.trace.find(kind="http", dir="s2c", where=lambda r: (r.http or {}).get("status", 0) >= 400)
    assert len(refused) == len(check.PYTHON_REFUSALS)   # the tap saw every one of them
