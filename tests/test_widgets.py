"""The live views: trace view batching and bounds, sequence diagram SVG, explainer spans, chat flow."""
import asyncio
import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

import siolab
from siolab.trace import Record, Trace
from siolab.widgets import ChatWidget, Explainer, SequenceDiagram, TraceView, chat, messages, render_svg
from siolab.widgets.trace_view import COLUMNS, RAW_LIMIT
from timing import eventually

XSS = ['<img src=x onerror="window.__xss=1">', "</style><script>window.__xss=2</script>",
       "\"'><svg onload=alert(1)>", "]]><!--", "&lt;b&gt;"]


def attach(view: TraceView) -> list[dict]:
    """Capture what the view sends to the page, and say hello as a page would."""
    sent: list[dict] = []
    view.send = sent.append
    view._on_custom(view, {"type": "hello"}, [])
    return sent


def packet(i: int, **kw) -> dict:
    values = dict(kind="packet", dir="c2s" if i % 2 else "s2c", transport="websocket", raw=f'42["e",{i}]',
                  eio="message", sio="event", event="e", args=[i], client="alice" if i % 3 else "bob")
    values.update(kw)
    return values


def col(row, name):
    return row[COLUMNS.index(name)]


# ---------------------------------------------------------------- trace view
async def test_records_in_one_window_become_one_message():
    trace = Trace()
    view = TraceView(trace, interval=0.1)
    sent = attach(view)
    assert [m["type"] for m in sent] == ["reset"] and sent[0]["rows"] == []
    for i in range(300):
        trace.add(**packet(i))
    assert len(sent) == 1  # nothing yet: the timer sends
    await eventually(lambda: len(sent) > 1)
    await asyncio.sleep(0)
    assert [m["type"] for m in sent] == ["reset", "rows"]
    rows = sent[1]["rows"]
    assert len(rows) == 300 and [col(r, "seq") for r in rows] == list(range(300))
    assert sent[1]["total"] == 300 and sent[1]["dropped"] == 0
    view.close()


async def test_updates_at_most_every_interval_however_fast_records_come():
    trace = Trace()
    view = TraceView(trace, interval=0.1)
    sent = attach(view)
    stamps = []
    view._post = (lambda post: lambda *a: (stamps.append(time.monotonic()), post(*a)))(view._post)
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 0.55:
        trace.add(**packet(i))
        i += 1
        await asyncio.sleep(0.002)
    await eventually(lambda: sum(len(m["rows"]) for m in sent if m["type"] == "rows") == i)
    updates = [m for m in sent if m["type"] == "rows"]
    assert 2 <= len(updates) <= 7  # at most one per interval (0.55 s: 6 and the last); fewer when the loop is late
    assert sum(len(m["rows"]) for m in updates) == i
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert min(gaps) >= 0.09
    view.close()


class CountingTrace(Trace):
    """A Trace that counts whole-trace reads (iteration, slicing)."""

    reads = 0

    def __iter__(self):
        self.reads += 1
        return super().__iter__()

    def __getitem__(self, index):
        if isinstance(index, slice):
            self.reads += 1
        return super().__getitem__(index)


async def test_an_update_never_reads_the_whole_trace():
    trace = CountingTrace()
    for i in range(50_000):
        trace.add(**packet(i))
    view = TraceView(trace)
    sent = attach(view)
    assert len(sent[0]["rows"]) == 500 and sent[0]["skipped"] == 49_500  # one bounded batch
    trace.reads = 0
    for i in range(1000):
        trace.add(**packet(i))
    view.flush()
    assert trace.reads == 0
    assert len(sent[-1]["rows"]) == 500 and sent[-1]["skipped"] == 500  # the page never gets more than max_rows
    view.close()


def _cost(size: int) -> float:
    trace = Trace(limit=None)
    for i in range(size):
        trace.add(**packet(i))
    view = TraceView(trace, max_rows=1000)
    attach(view)
    best = float("inf")
    for _ in range(3):
        records = [Record(t=float(i), **packet(i)) for i in range(1000)]
        start = time.perf_counter()
        for r in records:
            trace.append(r)
        view.flush()
        best = min(best, time.perf_counter() - start)
    view.close()
    return best


def test_update_cost_does_not_grow_with_the_trace():
    small, large = _cost(1_000), _cost(50_000)
    assert large < 0.1
    assert large < 3 * small + 0.005, (small, large)


async def test_dropped_count_travels_with_every_update():
    trace = Trace(limit=10)
    view = TraceView(trace)
    sent = attach(view)
    for i in range(25):
        trace.add(**packet(i))
    view.flush()
    assert sent[-1]["dropped"] == 15 and sent[-1]["limit"] == 10 and sent[-1]["total"] == 10
    view.close()


async def test_view_shows_existing_records_and_filters_reset_the_table():
    trace = Trace()
    for i in range(30):
        trace.add(**packet(i))
    trace.add(kind="packet", dir="s2c", transport="websocket", raw="2", eio="ping", client="alice")
    trace.add(kind="packet", dir="c2s", transport="websocket", raw="3", eio="pong", client="alice")
    trace.add(kind="packet", dir="c2s", transport="websocket", raw="2probe", eio="ping", client="alice")
    view = TraceView(trace, hide_heartbeats=True)
    sent = attach(view)
    assert len(sent[0]["rows"]) == 31  # every packet but the ping and pong (the probe stays)
    assert view.clients == ["alice", "bob"]
    view.client = "bob"
    assert sent[-1]["type"] == "reset" and {col(r, "client") for r in sent[-1]["rows"]} == {"bob"}
    view.client = ""
    view.packet_type = "eio:ping"
    assert [col(r, "raw") for r in sent[-1]["rows"]] == ["2probe"]
    view.hide_heartbeats = False
    assert [col(r, "raw") for r in sent[-1]["rows"]] == ["2", "2probe"]
    assert [col(r, "beat") for r in sent[-1]["rows"]] == [True, False]
    trace.add(**packet(99))  # not a ping: filtered out, nothing scheduled
    assert not view._pending
    view.close()


async def test_pause_holds_rows_and_resume_sends_them():
    trace = Trace()
    view = TraceView(trace)
    sent = attach(view)
    view.paused = True
    for i in range(5):
        trace.add(**packet(i))
    await asyncio.sleep(0.15)
    assert [m["type"] for m in sent] == ["reset"]
    view.paused = False
    assert sent[-1]["type"] == "rows" and len(sent[-1]["rows"]) == 5
    view.close()


async def test_clear_empties_the_table_not_the_trace():
    trace = Trace()
    for i in range(5):
        trace.add(**packet(i))
    view = TraceView(trace)
    sent = attach(view)
    view._on_custom(view, {"type": "clear"}, [])
    assert sent[-1] == {**sent[-1], "type": "reset", "rows": []} and len(trace) == 5
    trace.add(**packet(5))
    view.flush()
    assert [col(r, "raw") for r in sent[-1]["rows"]] == ['42["e",5]']
    view._on_custom(view, {"type": "hello"}, [])  # a page reloads: still only what came after the clear
    assert [col(r, "raw") for r in sent[-1]["rows"]] == ['42["e",5]']
    view.close()


async def test_long_packets_are_shortened_in_rows_and_whole_on_expand():
    trace = Trace()
    long = '42["big","' + "x" * 5000 + '"]'
    view = TraceView(trace)
    sent = attach(view)
    trace.add(**packet(1, raw=long, event="big"))
    view.flush()
    row = sent[-1]["rows"][0]
    assert len(col(row, "raw")) == RAW_LIMIT and col(row, "size") == len(long)
    view._on_custom(view, {"type": "detail", "seq": col(row, "seq")}, [])
    assert sent[-1]["type"] == "detail" and sent[-1]["raw"] == long
    view._on_custom(view, {"type": "detail", "seq": 12345}, [])
    assert sent[-1]["missing"] is True
    view.close()


def test_nothing_is_sent_before_a_page_says_hello():
    trace = Trace()
    view = TraceView(trace)
    sent = []
    view.send = sent.append
    trace.add(**packet(1))
    view.flush()
    assert sent == [] and not view._pending
    view.close()
    trace.add(**packet(2))  # unsubscribed: no error, nothing happens
    assert trace.listener_errors == 0


async def test_a_lone_surrogate_from_the_wire_cannot_break_an_update():
    # JSON may carry "\ud800"; UTF-8 cannot, and the kernel would fail to send the whole batch
    trace = Trace()
    view = TraceView(trace)
    sent = attach(view)
    trace.add(**packet(1, raw='42["\\ud800"]', event="\ud800"))
    view.flush()
    json.dumps(sent[-1], ensure_ascii=False).encode("utf-8")
    assert col(sent[-1]["rows"][0], "event") == "\ufffd"
    view._on_custom(view, {"type": "detail", "seq": col(sent[-1]["rows"][0], "seq")}, [])
    json.dumps(sent[-1], ensure_ascii=False).encode("utf-8")
    ex = Explainer(initial='42["\\ud800",{"x":"\\udfff"}]')
    json.dumps(ex.explanation, ensure_ascii=False).encode("utf-8")
    assert ex.explanation["event"] == "\ufffd"
    view.close()


def test_rows_carry_wire_text_as_plain_json_strings():
    trace = Trace()
    view = TraceView(trace)
    sent = attach(view)
    for text in XSS:
        trace.add(**packet(1, raw=f'42[{json.dumps(text)}]', event=text, client=text, nsp=text))
    view.flush()
    rows = [r for m in sent for r in m["rows"]]  # no running loop: each record is sent at once
    assert [col(r, "event") for r in rows] == XSS and [col(r, "client") for r in rows] == XSS
    view.close()


# ---------------------------------------------------------------- sequence diagram
ALLOWED = {"svg", "g", "line", "rect", "polygon", "text", "tspan", "title", "style"}


def svg_tree(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # must be well-formed XML
    for el in root.iter():
        tag = el.tag.split("}")[-1]
        assert tag in ALLOWED, tag
        assert not any(a.lower().startswith("on") or "href" in a for a in el.attrib), el.attrib
    return root


def text_of(root: ET.Element) -> str:
    return "".join(root.itertext())


def polling_session():
    """A handshake over polling, a POST with two packets, an upgrade, then WebSocket frames."""
    t = Trace()
    get = {"method": "GET", "path": "/socket.io/?EIO=4&transport=polling", "status": None}
    t.add(t=0.1, kind="http", dir="c2s", transport="polling", http=get, note="handshake: open a session",
          client="alice")
    t.add(t=0.2, kind="packet", dir="s2c", transport="polling", http={**get, "status": 200},
          raw='0{"sid":"abc","upgrades":["websocket"],"pingInterval":1000,"pingTimeout":1000}', eio="open",
          client="alice", sid="abc")
    post = {"method": "POST", "path": "/socket.io/?EIO=4&transport=polling&sid=abc", "status": None}
    t.add(t=0.3, kind="packet", dir="c2s", transport="polling", http=post, raw="40", eio="message", sio="connect",
          nsp="/", client="alice", sid="abc")
    t.add(t=0.3, kind="packet", dir="c2s", transport="polling", http=post, raw='42["hi"]', eio="message",
          sio="event", nsp="/", event="hi", args=[], client="alice", sid="abc")
    t.add(t=0.31, kind="http", dir="s2c", transport="polling", http={**post, "status": 200}, raw="ok",
          client="alice", sid="abc")
    t.add(t=0.4, kind="ws", dir="c2s", http={"method": "GET", "path": "/socket.io/?transport=websocket",
                                               "status": None}, note="WebSocket upgrade request", client="alice")
    t.add(t=0.41, kind="packet", dir="c2s", transport="websocket", raw="2probe", eio="ping", client="alice")
    t.add(t=0.42, kind="packet", dir="s2c", transport="websocket", raw="3probe", eio="pong", client="alice")
    t.add(t=0.43, kind="packet", dir="c2s", transport="websocket", raw="5", eio="upgrade", client="alice")
    t.add(t=1.4, kind="packet", dir="s2c", transport="websocket", raw="2", eio="ping", client="alice")
    t.add(t=1.41, kind="packet", dir="c2s", transport="websocket", raw="3", eio="pong", client="alice")
    t.add(t=1.5, kind="fault", dir="s2c", note="dropped by the tap: eio='pong'", client="alice")
    t.add(t=1.6, kind="fault", dir="c2s", transport="websocket", raw="3", eio="pong", client="alice",
          note="dropped by the tap: eio='pong'")
    return t


def test_messages_group_a_polling_body_into_one_arrow():
    rows = messages(polling_session())
    assert len(rows) == 12
    assert rows[-1].badge == "DROPPED" and rows[-1].arrow and rows[-1].label.startswith("3  ✗ dropped")
    rows = rows[:-1]
    post = rows[2]
    assert post.prefix == "POST" and post.label == '40\x1e42["hi"]' and post.category == "connect"
    assert [m.category for m in rows[4:8]] == ["upgrade"] * 4
    assert rows[7].badge == "UPGRADE" and rows[8].badge == "♥ PING" and rows[8].category == "heartbeat"
    assert rows[-1].arrow is False and rows[-1].category == "error"
    assert len(messages(polling_session(), hide_heartbeats=True)) == 10


def test_svg_is_well_formed_pure_and_shows_the_decoded_meaning(tmp_path):
    records = list(polling_session())
    svg = render_svg(records)
    assert svg == render_svg(list(polling_session()))  # a pure function of the records
    root = svg_tree(svg)
    text = text_of(root)
    for expected in ("alice", "server", "HANDSHAKE", "WS UPGRADE", "PROBE", "UPGRADE", "♥ PING", '42["hi"]'):
        assert expected in text
    diagram = SequenceDiagram(records)
    assert diagram.svg == diagram.to_svg() == svg and diagram.live is False
    diagram.save(tmp_path / "x.svg")
    assert ET.parse(tmp_path / "x.svg").getroot().tag.endswith("svg")


@pytest.mark.parametrize("payload", XSS)
def test_svg_escapes_wire_text(payload):
    t = Trace()
    t.add(kind="packet", dir="c2s", transport="websocket", raw=f"42{json.dumps([payload, payload])}",
          eio="message", sio="event", event=payload, args=[payload], client=payload, nsp=payload)
    t.add(kind="error", client=payload, error=payload, note=payload)
    t.add(kind="packet", dir="s2c", transport="polling", http={"method": "GET", "path": payload, "status": 200},
          raw=payload + "\x1e2\x00\x07", eio="message", client=payload)
    svg = SequenceDiagram(t, title=payload).to_svg()
    root = svg_tree(svg)
    assert payload[:12] in text_of(root)
    assert "<script" not in svg and "<img" not in svg and "<svg onload" not in svg


def test_a_balanced_trace_gets_one_lane_per_server():
    t = Trace()
    for i, (client, server) in enumerate((("alice", "s1"), ("bob", "s2"), ("alice", "s1"))):
        t.append(Record(**packet(i, client=client), t=float(i), **({"server": server}
                                                                      if "server" in Record.__slots__ else {})))
    if "server" not in Record.__slots__:
        pytest.skip("this Record has no server field")
    root = svg_tree(render_svg(list(t)))
    names = [el.text for el in root.iter("{http://www.w3.org/2000/svg}text")
             if el.get("class") == "sq-text sq-lane-name"]
    assert names[:4] == ["alice", "alice", "bob", "bob"] and "s1" in names and "s2" in names and "server" not in names


def test_live_diagram_follows_the_trace_with_a_bounded_window():
    t = polling_session()
    diagram = SequenceDiagram(t, limit=5)
    assert diagram.live and diagram.rows == 5
    assert "7 earlier messages not shown" in text_of(svg_tree(diagram.svg))
    for i in range(100):
        t.add(**packet(i))
    diagram.refresh()
    assert diagram.rows == 5 and len(diagram.records()) == 30
    diagram.close()


# ---------------------------------------------------------------- explainer
def test_explainer_spans_point_at_the_characters_they_explain():
    ex = Explainer(initial='421["chat","hi"]')
    fields = ex.explanation["fields"]
    raw = ex.explanation["raw"]
    spans = {f["name"]: raw[f["start"]:f["end"]] for f in fields if f["start"] is not None}
    assert spans == {"engine.io type": "4", "socket.io type": "2", "ack id": "1", "data": '["chat","hi"]'}
    assert any(f["name"] == "namespace" and f["start"] is None for f in fields)
    ex.value = '451-/chat,12["file",{"_placeholder":true,"num":0}]'
    spans = {f["name"]: f["text"] for f in ex.explanation["fields"] if f["start"] is not None}
    assert spans["attachments"] == "1-" and spans["namespace"] == "/chat," and spans["ack id"] == "12"
    ex.value = '2\\x1e42["a"]'  # typed with the separator spelled out
    assert [p["raw"] for p in ex.explanation["packets"]] == ["2", '42["a"]']
    ex.layer = "socket.io"
    ex.value = '2["foo"]'
    assert ex.explanation["sio"] == "event" and ex.explanation["event"] == "foo"
    ex.value = "9nope"
    assert ex.explanation["error"]


def test_explainer_keeps_wire_text_as_data():
    for payload in XSS:
        ex = Explainer(initial=f"42{json.dumps([payload])}")
        assert ex.explanation["event"] == payload
        assert all(isinstance(f["text"], str) for f in ex.explanation["fields"])


# ---------------------------------------------------------------- chat (a real lab over loopback)
@pytest.mark.loopback  # starts its own lab
async def test_chat_sends_real_emits_and_every_panel_gets_the_broadcast():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    try:
        room = await chat(lab, ["alice", "bob", "carol"])
        assert isinstance(room, ChatWidget)
        assert room.state == {u: "connected" for u in room.users}
        assert lab.trace.raws(client="alice", dir="c2s", event="newClient") == ['42["newClient"]']
        mark = lab.trace.now()
        assert await room.send("alice", "hi") is True
        assert room.messages["bob"] == room.messages["carol"] == [{"user": "alice", "message": "hi"}]
        said = lab.trace.since(mark)
        assert said.raws(dir="c2s", event="message") == ['42["message",{"message":"hi","user":"alice"}]']
        broadcast = said.find(kind="packet", dir="s2c", event="message")
        assert sorted(r.client for r in broadcast) == ["alice", "bob", "carol"]
        assert {r.raw for r in broadcast} == {'42["message",[{"user":"alice","message":"hi"}]]'}
        assert room.sent["alice"] == '42["message",{"message":"hi","user":"alice"}]'
        assert room.panels["bob"]["received"] == '42["message",[{"user":"alice","message":"hi"}]]'
        assert room.panels["bob"]["transport"] == "websocket"
        # the Send button's path: a custom message from the page, handled on the loop without blocking
        room._on_custom(room, {"type": "send", "user": "bob", "text": XSS[0]}, [])
        await lab.trace.wait_for(timeout=3, dir="s2c", client="carol", event="message",
                                 where=lambda r: r.args[0][-1]["message"] == XSS[0])
        assert await room._wait(lambda: len(room.messages["carol"]) == 2, timeout=3)
        assert room.messages["carol"][-1] == {"user": "bob", "message": XSS[0]}
        assert room.fanout() == 3 and "Right" in room.check_fanout(3) and "Not answered" in room.check_fanout(None)
        sent_raw = lab.trace.raws(client="bob", dir="c2s", event="message")[-1]
        assert "Right" in room.check_sent_raw("bob", sent_raw)
        assert "Not quite" in room.check_sent_raw("bob", "42[]")
        with pytest.raises(ValueError, match="no user"):
            await room.send("mallory", "x")
        room._on_custom(room, {"type": "send", "user": "mallory", "text": "x"}, [])  # ignored
        assert not room.errors
    finally:
        await lab.close()
    assert not siolab.open_labs()


@pytest.mark.loopback  # starts its own lab
async def test_chat_rooms_keep_messages_apart():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    try:
        room = await chat(lab, ["alice", "bob", "carol"], rooms=["general", "random"])
        assert await room.set_room("carol", "random") is True
        assert await room.send("alice", "to general") is True
        assert room.messages["bob"][-1]["message"] == "to general"
        assert room.messages["carol"] == []
        assert lab.trace.raws(client="carol", dir="c2s", event="join") == ['42["join",{"room":"random"}]']
        assert not lab.trace.find(client="carol", dir="s2c", event="message")
    finally:
        await lab.close()


async def test_trace_view_follows_a_live_lab(lab):
    view = lab.view()
    sent = attach(view)
    alice = await lab.client("alice")
    await alice.emit("hello", {"n": 1})
    await lab.trace.wait_for(timeout=3, dir="c2s", event="hello")
    await asyncio.sleep(0.15)
    raws = [col(r, "raw") for m in sent for r in m["rows"]]
    assert '42["hello",{"n":1}]' in raws
    assert "alice" in view.clients
    view.close()


def test_import_siolab_does_not_load_the_widgets():
    code = "import sys, siolab; assert 'anywidget' not in sys.modules and 'siolab.widgets' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
