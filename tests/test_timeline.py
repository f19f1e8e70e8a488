"""siolab.timeline on hand-built traces: ack pairing with latency, reconnection attempts, backoff ranges."""
from __future__ import annotations

import pytest

from siolab import explain
from siolab.timeline import (ack_pairs, ack_table, expected_waits, js_expected_waits, reconnection_timeline,
                             unanswered, wait_for_attempts, waits_table)
from siolab.trace import Record, Trace


def pkt(trace: Trace, t: float, dir: str, raw: str, *, sid: str | None = "S1", client: str | None = "alice",
        transport: str = "websocket", kind: str = "packet") -> Record:
    """A packet record decoded the way the tap decodes it."""
    e = explain(raw)
    return trace.add(kind=kind, t=t, dir=dir, raw=raw, transport=transport, eio=e.eio, sio=e.sio,
                     nsp=e.nsp if e.sio else None, ack=e.ack, event=e.event, args=e.args, sid=sid, client=client)


def http(trace: Trace, t: float, dir: str, path: str, status: int | None, *, sid: str | None = None,
         client: str = "alice", kind: str = "http", transport: str = "polling", note: str | None = None) -> Record:
    return trace.add(kind=kind, t=t, dir=dir, transport=transport, sid=sid, client=client, note=note,
                     http={"method": "GET", "path": path, "status": status})


# ---------------------------------------------------------------- acks


def test_pairs_event_with_ack_and_measures_latency():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["add",1,2]')
    pkt(trace, 1.25, "s2c", "431[3]")
    [pair] = ack_pairs(trace)
    assert pair.answered and pair.id == 1 and pair.nsp == "/" and pair.asker == "client"
    assert pair.request.event == "add" and pair.ack.raw == "431[3]"
    assert pair.latency == pytest.approx(0.25)
    assert "answered after 250.0 ms" in str(pair)


def test_unanswered_event_pairs_with_none():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["nobody"]')
    pkt(trace, 1.1, "c2s", '42["no ack wanted"]')  # no ack id: not a request
    [pair] = ack_pairs(trace)
    assert not pair.answered and pair.latency is None and pair.ack is None
    assert unanswered(trace) == [pair]
    assert "no ACK" in str(pair) and "no ACK" in ack_table([pair])


def test_ack_in_the_same_direction_does_not_answer():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["x"]')
    pkt(trace, 1.1, "c2s", "431[]")
    assert not ack_pairs(trace)[0].answered


def test_same_ack_id_in_different_namespaces_sessions_and_directions():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["a"]')                      # alice, '/'
    pkt(trace, 1.1, "c2s", '42/chat,1["b"]')                # alice, '/chat': ids counted per namespace
    pkt(trace, 1.2, "c2s", '421["c"]', sid="S2", client="bob")
    pkt(trace, 1.3, "s2c", '421["d"]')                      # the server asks alice, same id 1
    pkt(trace, 1.4, "s2c", '43/chat,1["B"]')
    pkt(trace, 1.5, "c2s", '431["D"]')                      # alice answers the server
    pkt(trace, 1.6, "s2c", '431["A"]')
    pkt(trace, 1.7, "s2c", '431["C"]', sid="S2", client="bob")
    pairs = {p.request.event: p for p in ack_pairs(trace)}
    assert pairs["a"].ack.args == ["A"] and pairs["a"].latency == pytest.approx(0.6)
    assert pairs["b"].ack.args == ["B"] and pairs["b"].nsp == "/chat"
    assert pairs["c"].ack.args == ["C"] and pairs["c"].client == "bob"
    assert pairs["d"].ack.args == ["D"] and pairs["d"].asker == "server"
    assert [p.request.event for p in ack_pairs(trace)] == ["a", "b", "c", "d"]  # in the order of the events


def test_filters_by_client_and_namespace():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["a"]')
    pkt(trace, 1.1, "c2s", '42/chat,1["b"]')
    pkt(trace, 1.2, "c2s", '421["c"]', sid="S2", client="bob")
    assert [p.request.event for p in ack_pairs(trace, client="bob")] == ["c"]
    assert [p.request.event for p in ack_pairs(trace, nsp="/chat")] == ["b"]


def test_binary_event_and_binary_ack_pair():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '451-4["file",{"_placeholder":true,"num":0}]')
    trace.add(kind="packet", t=1.0, dir="c2s", raw="AQIDBA==", binary=True, eio="message", sid="S1",
              client="alice")
    pkt(trace, 1.01, "s2c", '461-4[{"_placeholder":true,"num":0}]')
    [pair] = ack_pairs(trace)
    assert pair.id == 4 and pair.ack.sio == "binary_ack"


def test_reused_ack_id_leaves_the_earlier_request_unanswered():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["first"]')
    pkt(trace, 2.0, "c2s", '421["second"]')  # e.g. a new connection counting from 1 again
    pkt(trace, 2.1, "s2c", "431[]")
    first, second = ack_pairs(trace)
    assert not first.answered and second.answered


def test_dropped_packets_do_not_count():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["x"]')
    pkt(trace, 1.1, "s2c", "431[]", kind="fault")  # dropped by the tap: never arrived
    assert not ack_pairs(trace)[0].answered


def test_polling_acks_pair_by_sid():
    trace = Trace()
    pkt(trace, 1.0, "c2s", '421["x"]', transport="polling")
    pkt(trace, 1.2, "s2c", "431[1]", transport="websocket")  # the session upgraded in between
    assert ack_pairs(trace)[0].latency == pytest.approx(0.2)


# ---------------------------------------------------------------- reconnection

HS = "/socket.io/?transport=polling&EIO=4&t={}"


def down_and_up(trace: Trace) -> None:
    """A WebSocket client loses its server at 1.0, fails twice (502), reconnects on the third attempt."""
    pkt(trace, 0.1, "s2c", '0{"sid":"OLDSIDOLDSIDOLDSID00","upgrades":[],"pingInterval":5000,"pingTimeout":5000}',
        sid="OLDSIDOLDSIDOLDSID00")
    trace.add(kind="log", t=0.99, note="server on port 1 stopped")
    trace.add(kind="ws", t=1.0, dir="s2c", transport="websocket", sid="OLDSIDOLDSIDOLDSID00", client="alice",
              note="WebSocket closed by the server, code 1006")
    for i, t in enumerate((1.5, 2.6, 4.7)):
        http(trace, t, "c2s", HS.format(i), None, note="handshake: open a session")
        if i < 2:
            http(trace, t + 0.002, "s2c", HS.format(i), 502)
    trace.add(kind="packet", t=4.705, dir="s2c", transport="polling", eio="open", sid="NEWSIDNEWSIDNEWSID00",
              client="alice", raw='0{"sid":"NEWSIDNEWSIDNEWSID00","upgrades":["websocket"],"pingInterval":5000,'
                                  '"pingTimeout":5000}',
              http={"method": "GET", "path": HS.format(2), "status": 200})


def test_reconnection_timeline_attempts_waits_and_outcome():
    trace = Trace()
    down_and_up(trace)
    tl = reconnection_timeline(trace, "alice", since=0.5)
    assert tl.lost_at == pytest.approx(1.0) and tl.old_sid == "OLDSIDOLDSIDOLDSID00"
    assert [a.status for a in tl.attempts] == [502, 502, 200]
    assert [a.ok for a in tl.attempts] == [False, False, True]
    assert len(tl.failed) == 2 and tl.success is tl.attempts[2]
    # each wait runs from the loss, then from the end of the previous (failed) attempt
    assert tl.waits == pytest.approx([0.5, 2.6 - 1.502, 4.7 - 2.602])
    assert tl.reconnected_at == pytest.approx(4.705) and tl.new_sid == "NEWSIDNEWSIDNEWSID00"
    text = str(tl)
    assert "attempt 1" in text and "HTTP 502" in text and "session opened" in text


def test_reconnection_timeline_before_success_and_other_clients():
    trace = Trace()
    down_and_up(trace)
    http(trace, 1.6, "c2s", HS.format("b"), None, client="bob")
    partial = reconnection_timeline(trace.filter(where=lambda r: r.t < 3), "alice", since=0.5)
    assert len(partial.attempts) == 2 and partial.success is None and partial.reconnected_at is None
    assert "not reconnected" in str(partial)
    assert len(reconnection_timeline(trace, "bob").attempts) == 1


def test_requests_of_an_existing_session_are_not_attempts():
    trace = Trace()
    http(trace, 1.0, "c2s", "/socket.io/?transport=polling&EIO=4&sid=ABC&t=1", None, sid="ABC")
    http(trace, 1.1, "s2c", "/socket.io/?transport=polling&EIO=4&sid=ABC&t=1", 502, sid="ABC")
    http(trace, 1.3, "c2s", HS.format(1), None)
    tl = reconnection_timeline(trace, "alice")
    assert len(tl.attempts) == 1 and tl.lost_at == pytest.approx(1.1)  # a failed long-poll is a loss


def test_websocket_only_client_attempts():
    trace = Trace()
    path = "/socket.io/?transport=websocket&EIO=4&t={}"
    trace.add(kind="ws", t=1.0, dir="s2c", transport="websocket", sid="S", client="alice",
              note="WebSocket closed by the server, code 1006")
    http(trace, 1.2, "c2s", path.format(1), None, kind="ws", transport="websocket", note="WebSocket upgrade request")
    http(trace, 1.21, "s2c", path.format(1), 502, transport="websocket")
    http(trace, 1.6, "c2s", path.format(2), None, kind="ws", transport="websocket", note="WebSocket upgrade request")
    http(trace, 1.61, "s2c", path.format(2), 101, kind="ws", transport="websocket", note="WebSocket open")
    tl = reconnection_timeline(trace, "alice")
    assert [a.status for a in tl.attempts] == [502, 101] and tl.attempts[1].ok
    assert tl.waits == pytest.approx([0.2, 1.6 - 1.21])


def test_no_loss_no_attempts():
    tl = reconnection_timeline(Trace(), "alice")
    assert tl.attempts == () and tl.lost_at is None and tl.waits == []
    assert "no connection loss" in str(tl)


async def test_wait_for_attempts_returns_or_explains():
    trace = Trace()
    down_and_up(trace)
    tl = await wait_for_attempts(trace, 2, "alice", since=0.5, timeout=0.1)
    assert len(tl.attempts) == 3
    with pytest.raises(AssertionError, match="made 3 attempt"):
        await wait_for_attempts(trace, 5, "alice", since=0.5, timeout=0.05)


# ---------------------------------------------------------------- backoff rules


def test_python_socketio_waits_double_cap_then_add_absolute_jitter():
    assert expected_waits(4, 0.5, 2, 0.5) == [(0.0, 1.0), (0.5, 1.5), (1.5, 2.5), (1.5, 2.5)]
    assert expected_waits(5, 1, 5, 0.5) == [(0.5, 1.5), (1.5, 2.5), (3.5, 4.5), (4.5, 5.5), (4.5, 5.5)]
    assert expected_waits(2, 1, 5, 0) == [(1, 1), (2, 2)]


def test_javascript_waits_relative_jitter_then_cap():
    assert js_expected_waits(4, 1, 5, 0.5) == [(0.5, 1.5), (1.0, 3.0), (2.0, 5), (4.0, 5)]


def test_waits_table_is_deterministic_text():
    text = waits_table(3, 0.5, 2, 0.5)
    assert text.splitlines()[0] == "delay=0.5 s, delay_max=2 s, randomization_factor=0.5"
    assert len(text.splitlines()) == 5 and text == waits_table(3, 0.5, 2, 0.5)


def test_python_rule_matches_the_library():
    """The rule expected_waits documents is the one python-socketio's _handle_reconnect computes."""
    import inspect

    import socketio
    source = inspect.getsource(socketio.AsyncClient._handle_reconnect)
    assert "current_delay *= 2" in source and "reconnection_delay_max" in source
    assert "self.randomization_factor * (2 * random.random() - 1)" in source
