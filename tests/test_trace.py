"""The Trace store: bounds, filters, waiting, listeners, JSON Lines export and untrusted import."""
import base64
import dataclasses
import asyncio
import json

import pytest

from siolab.trace import JSONL_KEYS, Record, Trace


def make(n=5, **kw):
    trace = Trace(**kw)
    for i in range(n):
        trace.add(t=float(i), dir="c2s" if i % 2 else "s2c", transport="websocket", raw=f"42[\"e{i}\"]",
                  eio="message", sio="event", event=f"e{i}", args=[], client="alice" if i < 3 else "bob")
    return trace


def test_bound_drops_oldest_and_counts_them():
    trace = make(10, limit=4)
    assert len(trace) == 4 and trace.dropped == 6
    assert [r.event for r in trace] == ["e6", "e7", "e8", "e9"]
    assert "6 older records were dropped" in trace.table()
    assert "6 older records were dropped" in trace._repr_html_()


def test_filter_find_expect():
    trace = make()
    assert [r.event for r in trace.find(client="alice")] == ["e0", "e1", "e2"]
    assert len(trace.filter(client="bob", dir="c2s")) == 1
    assert trace.first(event=("e3", "e4")).event == "e3"
    assert trace.expect(event="e4").client == "bob"
    with pytest.raises(AssertionError, match="no record with event='nope'"):
        trace.expect(event="nope")
    assert trace.raws(client="bob") == ['42["e3"]', '42["e4"]']
    assert [r.event for r in trace.since(3.0)] == ["e3", "e4"]


async def test_wait_for_wakes_on_append_and_times_out():
    trace = Trace()
    waiter = asyncio.ensure_future(trace.wait_for(timeout=2, event="late"))
    await asyncio.sleep(0.01)
    trace.add(kind="packet", event="late")
    assert (await waiter).event == "late"
    with pytest.raises(AssertionError, match="within 0.05 s"):
        await trace.wait_for(timeout=0.05, event="never")


def test_listeners_get_every_record_and_a_broken_one_is_contained():
    trace = Trace()
    seen = []
    unsubscribe = trace.subscribe(seen.append)
    trace.subscribe(lambda r: 1 / 0)
    trace.add(raw="2")
    unsubscribe()
    trace.add(raw="3")
    assert [r.raw for r in seen] == ["2"]
    assert trace.listener_errors == 2


def test_jsonl_round_trip_has_stable_keys(tmp_path):
    trace = make(3)
    trace.add(kind="packet", raw="AQID", binary=True, eio="message", note="attachment 0")
    path = tmp_path / "t.jsonl"
    trace.to_jsonl(path)
    lines = path.read_text().splitlines()
    assert len(lines) == 4
    assert list(json.loads(lines[0])) == list(JSONL_KEYS)
    back = Trace.from_jsonl(path)
    assert list(back) == list(trace)


@pytest.mark.parametrize("line, words", [
    ("not json", "line 2"), ('{"t": "x"}', "'t' must be a number"), ('{"t": 1, "evil": 1}', "unknown keys"),
    ('{"t": 1, "dir": "up"}', "'dir'"), ('{"t": 1, "eio": "bogus"}', "'eio'"), ("[1, 2]", "JSON object"),
    ('{"t": 1, "binary": true, "raw": "***"}', "base64"), ('{"t": 1, "args": "x"}', "'args'"),
])
def test_jsonl_import_rejects_bad_lines_with_line_numbers(line, words):
    text = '{"t": 0.5, "raw": "2", "eio": "ping"}\n' + line + "\n"
    with pytest.raises(ValueError) as info:
        Trace.from_jsonl(text)
    assert "line 2" in str(info.value) and words in str(info.value)


def test_html_escapes_wire_text():
    trace = Trace()
    evil = '<img src=x onerror=alert(1)>'
    trace.add(raw=f'42["{evil}"]', event=evil, client="</td><script>x</script>", eio="message", sio="event")
    html = trace._repr_html_()
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_record_line_is_readable():
    r = Record(t=1.5, dir="c2s", transport="polling", http={"method": "POST", "path": "/", "status": None},
               raw='421["chat","hi"]', eio="message", sio="event", event="chat", ack=1, client="alice")
    line = str(r)
    assert "1.500" in line and "alice" in line and "->" in line and "POST" in line
    assert "MESSAGE EVENT 'chat' ack 1" in line



def test_binary_shows_as_it_travelled_and_jsonl_keeps_the_base64(tmp_path):
    trace = Trace()
    trace.add(t=1.0, dir="c2s", transport="websocket", raw="AQIDBA==", binary=True, eio="message")
    trace.add(t=1.1, dir="c2s", transport="polling", raw="3q2+7w==", binary=True, eio="message")
    trace.add(t=1.2, dir="c2s", transport="websocket", raw=base64.b64encode(bytes(range(20))).decode(), binary=True)
    frame, part, big = trace
    assert frame.shown_raw == "<binary 4 bytes: 01 02 03 04>" and part.shown_raw == "b3q2+7w=="
    assert big.shown_raw == "<binary 20 bytes: 00 01 02 03 04 05 06 07 …>"
    table = trace.table()
    assert "<binary 4 bytes: 01 02 03 04>" in table and "b3q2+7w==" in table and "AQIDBA==" not in table
    assert "&lt;binary 4 bytes: 01 02 03 04&gt;" in trace._repr_html_()
    trace.to_jsonl(tmp_path / "t.jsonl")
    assert [r.raw for r in Trace.from_jsonl(tmp_path / "t.jsonl")][:2] == ["AQIDBA==", "3q2+7w=="]
    text = Record(t=0, dir="s2c", transport="websocket", raw='42["x"]', eio="message")
    assert text.shown_raw == '42["x"]' and Record(t=0).shown_raw == ""


# ------------------------------------------------------------ deferred records (what the tap decodes a moment later)


def _producer(trace, seen):
    def produce(i, t):
        seen.append(i)
        trace.append(Record(t=t, raw=f"4{i}", eio="message"))
    return produce


async def test_deferred_records_are_there_when_the_trace_is_read_in_arrival_order():
    trace, seen = Trace(), []
    produce = _producer(trace, seen)
    for i in range(3):
        trace.defer(produce, i, trace.now())
    assert seen == []  # nothing decoded yet
    direct = trace.add(raw="log", kind="log")  # a direct append settles what came before it first
    assert [r.raw for r in trace] == ["40", "41", "42", "log"]
    assert [r.t for r in trace] == sorted(r.t for r in trace) and direct.t >= trace[2].t
    trace.defer(produce, 3, trace.now())
    assert len(trace) == 5 and trace.expect(raw="43") and seen == [0, 1, 2, 3]


async def test_deferred_records_settle_by_themselves_and_wake_waiters_and_listeners():
    from siolab import trace as trace_module
    trace, seen, heard = Trace(), [], []
    trace.subscribe(heard.append)
    produce = _producer(trace, seen)
    loop = asyncio.get_running_loop()
    start = loop.time()
    waiting = asyncio.ensure_future(trace.wait_for(raw="40", timeout=2))
    await asyncio.sleep(0)
    trace.defer(produce, 0, trace.now())
    assert heard == []
    found = await waiting
    elapsed = loop.time() - start
    assert found.raw == "40" and [r.raw for r in heard] == ["40"]
    assert elapsed < trace_module.SETTLE_AFTER + 0.5, elapsed


def test_a_full_backlog_settles_at_once_and_a_failing_decoder_is_recorded():
    from siolab import trace as trace_module
    trace, seen = Trace(), []
    produce = _producer(trace, seen)
    for i in range(trace_module.MAX_BACKLOG):  # no loop running: each settles at once or at the bound
        trace.defer(produce, i, 0.0)
    assert len(seen) == trace_module.MAX_BACKLOG and not trace._backlog

    def broken():
        raise ValueError("boom")
    trace.defer(broken)
    err = trace.expect(kind="error")
    assert "could not decode" in err.note and "boom" in err.note


async def test_deferred_bytes_are_bounded():
    """Big frames are not hoarded: past MAX_BACKLOG_BYTES the backlog settles at once."""
    from siolab import trace as trace_module
    trace, seen = Trace(), []
    produce = _producer(trace, seen)
    half = trace_module.MAX_BACKLOG_BYTES // 2
    trace.defer(produce, 0, trace.now(), size=half)
    assert seen == [] and trace._backlog_bytes == half
    trace.defer(produce, 1, trace.now(), size=half)
    assert seen == [0, 1] and not trace._backlog and trace._backlog_bytes == 0


# ------------------------------------------------------------ LazyRecord: decoded when a field is first read

def lazy(raw: str, **kw):
    from siolab.record import lazy_packet
    values = dict(t=1.5, dir="c2s", transport="websocket", http=None, raw=raw, sid="abc", client="alice", server=None)
    return lazy_packet(**{**values, **kw})


def decoded(raw: str) -> Record:
    """The Record the tap's general path makes for ``raw``, built by hand from the library's parse."""
    from siolab import protocol
    sio = protocol.decode_sio(raw[1:])
    return Record(t=1.5, kind="packet", dir="c2s", transport="websocket", raw=raw, eio="message", sio=sio.type,
                  nsp=sio.nsp, ack=sio.ack, event=sio.event, args=sio.args, error=sio.error, sid="abc",
                  client="alice")


@pytest.mark.parametrize("raw", ['421["echo",{"a":[1]}]', '431["x"]', "40", "41", '42/admin,["x"]', '42["x"]junk',
                                 '42["connect"]', "42{", '43"not a list"'])
def test_a_lazy_record_is_the_record_decoding_would_have_made(raw):
    from siolab.trace import FIELDS, LazyRecord
    want = decoded(raw)
    got = lazy(raw)
    assert isinstance(got, LazyRecord) and isinstance(got, Record)
    assert got.raw == raw and got.kind == "packet" and got.eio == "message"  # stored fields: no decoding yet
    assert isinstance(got, LazyRecord)
    assert got.meaning == want.meaning  # a derived field decodes it; then it is an ordinary record
    assert isinstance(got, Record) and not isinstance(got, LazyRecord)
    assert [getattr(got, n) for n in FIELDS] == [getattr(want, n) for n in FIELDS]
    assert got == want and want == got and not got != want
    assert repr(got) == repr(want) and str(got) == str(want) and got.to_json() == want.to_json()
    assert got != decoded('42["other"]')


def test_a_lazy_record_copies_pickles_and_replaces_as_a_record():
    import copy
    import pickle

    from siolab.trace import replace
    got = lazy('421["echo","x"]')
    for other in (copy.copy(got), copy.deepcopy(got), pickle.loads(pickle.dumps(got))):
        assert other == got and type(other) is Record and other.event == "echo"
    changed = replace(lazy('421["echo","x"]'), note="held")
    assert changed.note == "held" and changed.event == "echo" and changed.args == ["x"] and changed.ack == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.event = "other"  # frozen, like any Record
    hashable = lazy("40", http=None)
    assert hash(hashable) == hash(decoded("40"))


def test_a_lazy_record_that_cannot_be_decoded_says_so_instead_of_raising(monkeypatch):
    from siolab import protocol

    def broken(text):
        raise RuntimeError("boom")
    got = lazy('42["x"]')
    monkeypatch.setattr(protocol, "decode_sio", broken)
    assert got.sio is None and "could not decode" in got.error and "boom" in got.error


def test_new_lazy_http_works_out_only_what_produce_gives_once():
    from siolab.record import LazyRecord, lazy_http
    calls = []

    def produce(record):
        calls.append(record.raw)
        return {"note": f"answered {record.raw}"}
    http = {"method": "POST", "status": 200}
    got = lazy_http(produce, t=2.0, dir="s2c", transport="polling", http=http, raw="ok", sid="S", client="bob",
                    server=None)
    assert isinstance(got, LazyRecord) and calls == []  # nothing worked out yet
    want = Record(t=2.0, kind="http", dir="s2c", transport="polling", http=http, raw="ok", sid="S", client="bob",
                  note="answered ok")
    assert got.note == "answered ok" and calls == ["ok"]
    assert got == want and repr(got) == repr(want) and got.to_json() == want.to_json() and str(got) == str(want)
    assert got.sio is None and got.event is None and got.error is None and calls == ["ok"]  # once

    def broken(record):
        raise ValueError("no note")
    failed = lazy_http(broken, t=1.0, dir="s2c", transport=None, http=http, raw="ok", sid=None, client=None,
                       server=None)
    assert "could not decode" in failed.error and failed.note is None and failed.sio is None


def test_filters_waiters_and_exports_read_lazy_records():
    trace = Trace()
    trace.append(lazy('42["chat","hi"]'))
    trace.append(lazy('42["x"]junk'))
    assert trace.first(event="chat").args == ["hi"]
    assert trace.first(where=lambda r: r.error is not None).raw == '42["x"]junk'
    lines = [json.loads(line) for line in trace.to_jsonl().splitlines()]
    assert lines[0]["event"] == "chat" and lines[1]["error"].startswith("cannot decode EVENT")
