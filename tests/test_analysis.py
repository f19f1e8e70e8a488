"""Trace analysis helpers, on hand-built traces shaped like what the tap records."""
import asyncio

import pytest

from siolab import analysis
from siolab.analysis import (around_upgrade, batches, gaps, heartbeats, in_order, last_pong, ping_intervals,
                             query, requests, time_since_last_pong, wait_until)
from siolab.trace import Record, Trace

SID = "A" * 20
HS = "/socket.io/?transport=polling&EIO=4&t=1"
POLL = f"/socket.io/?transport=polling&EIO=4&sid={SID}"


def get(trace, t, path, client="alice", status=None, **kw):
    kind = kw.pop("kind", "http")
    return trace.add(kind=kind, dir="c2s" if status is None else "s2c", transport="polling", client=client,
                     http={"method": "GET", "path": path, "status": status}, t=t, **kw)


def packet(trace, t, raw, eio, dir, transport="websocket", http=None, client="alice", sid=SID, **kw):
    return trace.add(kind=kw.pop("kind", "packet"), dir=dir, transport=transport, http=http, raw=raw, eio=eio,
                     client=client, sid=sid, t=t, **kw)


def upgraded_session() -> Trace:
    """Handshake over polling, upgrade, then heartbeats at 1 s intervals (the 3rd pong dropped)."""
    tr = Trace()
    get(tr, 0.00, HS)
    packet(tr, 0.01, '0{"sid":"' + SID + '"}', "open", "s2c", "polling",
           {"method": "GET", "path": HS, "status": 200})
    tr.add(kind="ws", dir="c2s", transport="websocket", client="alice", sid=SID, t=0.02,
           http={"method": "GET", "path": f"/socket.io/?transport=websocket&EIO=4&sid={SID}&t=2", "status": None})
    tr.add(kind="ws", dir="s2c", transport="websocket", client="alice", sid=SID, t=0.03,
           http={"method": "GET", "path": "x", "status": 101})
    packet(tr, 0.04, "2probe", "ping", "c2s")
    packet(tr, 0.05, "3probe", "pong", "s2c")
    packet(tr, 0.06, "5", "upgrade", "c2s")
    packet(tr, 0.07, "40", "message", "c2s", sio="connect")
    for i, t in enumerate((1.01, 2.03, 3.06)):
        packet(tr, t, "2", "ping", "s2c")
        if i < 2:
            packet(tr, t + 0.002, "3", "pong", "c2s")
        else:
            packet(tr, t + 0.002, "3", "pong", "c2s", kind="fault", note="dropped by the tap")
    return tr


def test_query_of_record_and_string():
    tr = Trace()
    rec = get(tr, 0, POLL + "&t=5")
    assert query(rec) == {"transport": "polling", "EIO": "4", "sid": SID, "t": "5"}
    assert query("http://h/socket.io/?EIO=4&sid=nope")["sid"] == "nope"
    assert query(None) == {} and query(Record(t=0)) == {}


def test_requests_gathers_a_post_body_and_keeps_wire_order():
    tr = Trace()
    get(tr, 0.0, HS)
    post = {"method": "POST", "path": POLL, "status": None}
    packet(tr, 0.1, "41", "message", "c2s", "polling", post)
    packet(tr, 0.1, "1", "close", "c2s", "polling", post)
    get(tr, 0.2, POLL + "&t=9")
    packet(tr, 0.3, "42[\"a\"]", "message", "c2s", "polling", post)  # a second POST: same path, other time
    tr.add(kind="http", dir="s2c", transport="polling", client="alice", t=0.31, raw="ok",
           http={**post, "status": 200})
    get(tr, 0.4, HS, client="bob")
    reqs = requests(tr, "alice")
    assert [(r.method, len(r.packets)) for r in reqs] == [("GET", 0), ("POST", 2), ("GET", 0), ("POST", 1)]
    assert [p.raw for p in reqs[1].packets] == ["41", "1"]
    assert reqs[0].sid is None and all(r.sid == SID for r in reqs[1:])
    assert len(requests(tr)) == 5 and "POST polling" in str(reqs[1]) and "41 + 1" in str(reqs[1])


def test_around_upgrade_splits_at_the_websocket_request():
    tr = upgraded_session()
    get(tr, 4.0, POLL + "&t=3")  # e.g. a refused upgrade leaves the client polling
    up = around_upgrade(tr, "alice")
    assert [r.method for r in up.before] == ["GET"] and up.upgrade.websocket and up.upgrade.sid == SID
    assert len(up.polling_after) == 1
    none = around_upgrade(tr, "nobody")
    assert none.upgrade is None and none.before == () and none.after == ()


def test_batches_group_packets_of_one_response():
    tr = Trace()
    one = {"method": "GET", "path": POLL + "&t=1", "status": 200}
    two = {"method": "GET", "path": POLL + "&t=2", "status": 200}
    packet(tr, 0.1, '42["tick",0]', "message", "s2c", "polling", one)
    packet(tr, 0.2, '42["tick",1]', "message", "s2c", "polling", two)
    tr.add(kind="fault", note="delayed 0.1 s", t=0.2)  # a notice in between does not split the body
    packet(tr, 0.2, '42["tick",2]', "message", "s2c", "polling", two)
    packet(tr, 0.2, '42["tick",3]', "message", "s2c", "polling", dict(two), client="bob")
    packet(tr, 0.3, '42["ws"]', "message", "s2c")  # WebSocket frames are never batched
    got = batches(tr)
    assert [[r.raw for r in b] for b in got] == [['42["tick",0]'], ['42["tick",1]', '42["tick",2]'],
                                                ['42["tick",3]']]
    assert [len(b) for b in batches(tr, "alice")] == [1, 2]
    assert batches(tr, dir="c2s") == []


def test_ping_intervals_per_session_and_from_open():
    tr = upgraded_session()
    assert ping_intervals(tr) == pytest.approx([1.02, 1.03])
    assert ping_intervals(tr, from_open=True) == pytest.approx([1.0, 1.02, 1.03])
    # a new session (new sid) starts its own count
    packet(tr, 5.0, "2", "ping", "s2c", sid="B" * 20)
    packet(tr, 6.0, "2", "ping", "s2c", sid="B" * 20)
    assert ping_intervals(tr) == pytest.approx([1.02, 1.03, 1.0])
    assert ping_intervals(tr, "bob") == []


def test_heartbeats_pair_pings_with_pongs_and_see_drops():
    tr = upgraded_session()
    packet(tr, 4.1, "2", "ping", "s2c")  # unanswered
    beats = heartbeats(tr, "alice")
    assert len(beats) == 4
    assert beats[0].round_trip == pytest.approx(0.002) and not beats[0].dropped
    assert beats[2].dropped and beats[2].pong is not None and beats[2].round_trip is None
    assert beats[3].pong is None
    assert all(b.ping.raw == "2" for b in beats)  # the probe is not a heartbeat


def test_last_pong_and_time_since_it():
    tr = upgraded_session()
    assert last_pong(tr).t == pytest.approx(2.032)  # the dropped one does not count
    assert last_pong(tr, before=1.5).t == pytest.approx(1.012)
    assert time_since_last_pong(tr, 4.062) == pytest.approx(2.03)
    assert time_since_last_pong(tr, 0.5) == pytest.approx(0.49)  # no pong yet: from the open packet
    with pytest.raises(ValueError):
        time_since_last_pong(Trace(), 1.0)


def test_gaps_find_silences():
    tr = Trace()
    for t in (0.0, 0.1, 2.8, 2.9):
        tr.add(kind="log", note="x", t=t)
    found = gaps(tr, 1.0)
    assert len(found) == 1 and found[0].seconds == pytest.approx(2.7) and found[0].before.t == 0.1
    assert gaps(tr, 1.0, until=5.0)[-1].after is None
    assert gaps(Trace(), 1.0, until=3.0) == []


def test_in_order():
    raws = ["0{}", "2probe", "3probe", "5", "40", "6"]
    assert in_order(raws, ["2probe", "3probe", "5"])
    assert in_order(raws, ["5", "40"])
    assert not in_order(raws, ["5", "2probe"])
    assert in_order(raws, [])


async def test_wait_until_returns_or_explains():
    box = []
    asyncio.get_running_loop().call_later(0.05, box.append, 1)
    assert await wait_until(lambda: box, timeout=1) >= 0.04
    with pytest.raises(AssertionError, match="the list filled"):
        await wait_until(lambda: False, timeout=0.05, what="the list filled")


def test_module_exports_exist():
    assert all(hasattr(analysis, name) for name in analysis.__all__)
