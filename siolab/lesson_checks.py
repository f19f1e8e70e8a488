"""The lessons' longer checks, as named functions: one line in a notebook says what is checked.

``from siolab import lesson_checks as check`` and then, under a lesson's explanation,
``check.upgrade_happened_as_described(lab.trace, "alice")``. Each function asserts one claim the text
makes, against the records of a live trace (or of any trace: they read records only, and most do no
I/O). When the wire disagrees, it raises ``AssertionError`` with the claim that failed and the records
that show it, so a failing notebook cell says *what* is no longer true. A check returns what a learner
may want to look at (a count, the records it read) or ``None``.

Grouped by lesson, in lesson order; the cheat sheet's helpers are at the end.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Iterable, Mapping, Sequence

from .analysis import around_upgrade, in_order, query, requests
from .protocol import explain
from .record import Record
from .render import table
from .text import cut

Records = Iterable[Record]


class CheckFailed(AssertionError):
    """A lesson's claim that the trace does not bear out (an AssertionError, as nbval and pytest expect)."""


def _require(condition: Any, claim: str, evidence: Iterable[Record] = ()) -> None:
    """Raise ``CheckFailed(claim)``, with the evidence records as a table, unless ``condition`` holds."""
    if condition:
        return
    rows = list(evidence)
    shown = f"\n{table(rows, limit=40)}" if rows else ""
    raise CheckFailed(f"not as the lesson says: {claim}{shown}")


def _method(r: Record) -> str | None:
    return (r.http or {}).get("method")


def _status(r: Record) -> int | None:
    return (r.http or {}).get("status")


def recipients(records: Records, event: str, **criteria: Any) -> list[str]:
    """The names of the clients an event went down to (one name per packet), sorted."""
    return sorted(r.client or "-" for r in records
                  if r.kind == "packet" and r.dir == "s2c" and r.event == event
                  and all(getattr(r, k) == v for k, v in criteria.items()))


# ---------------------------------------------------------------- 01 · A first chat
def message_went_up_once_and_came_down_to_each(records: Records, text: str, sender: str,
                                               to: Sequence[str]) -> list[Record]:
    """``sender``'s chat message ``text`` crossed the tap once, client to server, as
    ``42["message",{"message":text}]``; the server's broadcast (the whole list, ending with ``text``) came
    down once to each client in ``to`` and to nobody else, the same bytes to each. Returns the packets down."""
    recs = list(records)
    up = [r for r in recs if r.dir == "c2s" and r.event == "message" and r.args == [{"message": text}]]
    wire = "42" + json.dumps(["message", {"message": text}], separators=(",", ":"), ensure_ascii=False)
    _require([r.client for r in up] == [sender], f"{text!r} went up once, from {sender}", up)
    _require(up[0].raw == wire, f"it went up as {wire}", up)
    down = [r for r in recs if r.dir == "s2c" and r.kind == "packet" and r.event == "message"
            and r.args and isinstance(r.args[0], list) and r.args[0][-1:] == [text] and r.t >= up[0].t]
    _require(sorted(r.client or "-" for r in down) == sorted(to),
             f"the list ending with {text!r} came down once to each of {', '.join(sorted(to))}", down)
    _require(len({r.raw for r in down}) == 1, "every copy of the broadcast is the same packet", down)
    return down


def each_history_went_only_to_its_asker(records: Records, history: Mapping[str, list]) -> None:
    """Every client in ``history`` sent ``42["newClient"]`` once, and the server's ``initialChatList`` went down
    to that client only, carrying the chat history as it was then (``history[name]``); nobody else got one."""
    recs = list(records)
    asked = sorted(r.client or "-" for r in recs if r.dir == "c2s" and r.event == "newClient")
    _require(asked == sorted(history), f"newClient went up once from each of {', '.join(sorted(history))}",
             [r for r in recs if r.event == "newClient"])
    got = [r for r in recs if r.dir == "s2c" and r.event == "initialChatList"]
    _require(sorted((r.client or "-", json.dumps(r.args)) for r in got)
             == sorted((name, json.dumps([h])) for name, h in history.items()),
             "each initialChatList went to the client that asked, with the history of that moment", got)


# ---------------------------------------------------------------- 03 · Transports and the upgrade
def upgrade_happened_as_described(records: Records, client: str, sid: str | None = None) -> None:
    """The upgrade dance of lesson 03, for a client that starts on long-polling: a WebSocket request for the
    same session (it carries the sid of the open packet, and ``sid`` when given) is answered ``101`` before
    the probe; then ``2probe`` (client to server), ``3probe`` (back) and ``5`` (client to server), in this order,
    over the WebSocket; and python-engineio's noop ``6`` came down that WebSocket."""
    recs = [r for r in records if r.client == client]
    ws = [(r.dir, r.raw) for r in recs if r.kind == "packet" and r.transport == "websocket"]
    _require(in_order(ws, [("c2s", "2probe"), ("s2c", "3probe"), ("c2s", "5")]),
             "2probe -> 3probe -> 5, in this order and direction, over the WebSocket",
             [r for r in recs if r.transport == "websocket"])
    _require(("s2c", "6") in ws, "the server's noop 6 came down the WebSocket",
             [r for r in recs if r.transport == "websocket"])
    opened = next((r for r in recs if r.eio == "open"), None)
    _require(opened is not None, f"{client} received an open packet", recs)
    upgrade = around_upgrade(recs, client).upgrade
    _require(upgrade is not None and upgrade.sid == opened.sid and query(upgrade.path).get("transport") == "websocket",
             "the WebSocket request carries the session's sid and transport=websocket", recs[:12])
    _require(sid is None or upgrade.sid == sid, f"the WebSocket request carries the client's own sid {sid}")
    probe = next(r for r in recs if r.raw == "2probe")
    switched = [r for r in recs if r.kind == "ws" and r.dir == "s2c" and _status(r) == 101]
    _require(switched and switched[0].t <= probe.t, "the 101 came before the probe", recs[:12])


# ---------------------------------------------------------------- 09 · Heartbeat and disconnect detection
def disconnect_reasons_as_described(records: Records, server_reasons: Mapping[str, str],
                                    client_reasons: Mapping[str, str]) -> None:
    """Lesson 09's three goodbyes, as python-engineio and python-socketio give them:

    * carol (long-polling) POSTed ``41`` then ``1`` in one body: the server's reason is ``'client disconnect'``;
    * bob (WebSocket) closed his WebSocket without ``41`` or ``1`` reaching the wire (python-engineio's close
      frame overtakes them): the server's reason is ``'transport close'``;
    * the server kicked dave: ``41`` went down to him, and both sides say ``'server disconnect'``.

    ``server_reasons`` and ``client_reasons``: name -> the reason each side's disconnect handler received.
    """
    recs = list(records)
    carol_post = [r.raw for r in recs if r.client == "carol" and r.dir == "c2s" and _method(r) == "POST"]
    _require(server_reasons["carol"] == "client disconnect", "carol's reason is 'client disconnect'")
    _require(carol_post[-2:] == ["41", "1"], "carol's last POST carried 41 and 1",
             [r for r in recs if r.client == "carol" and _method(r) == "POST"])
    _require(server_reasons["bob"] == "transport close", "bob's reason is 'transport close'")
    _require(not [r for r in recs if r.client == "bob" and r.dir == "c2s" and r.raw in ("41", "1")],
             "neither 41 nor 1 from bob reached the wire", [r for r in recs if r.client == "bob"][-8:])
    _require([r for r in recs if r.client == "bob" and r.kind == "ws" and r.dir == "c2s"
              and "closed by the client" in (r.note or "")], "bob's client closed the WebSocket",
             [r for r in recs if r.client == "bob" and r.kind == "ws"])
    _require(server_reasons["dave"] == "server disconnect", "dave's reason is 'server disconnect'")
    _require([r for r in recs if r.client == "dave" and r.dir == "s2c" and r.raw == "41"],
             "41 went down to dave", [r for r in recs if r.client == "dave"][-8:])
    _require(client_reasons.get("dave") == "server disconnect", "dave's client says 'server disconnect'")
    _require(client_reasons.get("bob") == client_reasons.get("carol") == "client disconnect",
             "bob's and carol's clients say 'client disconnect'")


# ---------------------------------------------------------------- 05 · Packet numbers
V3_BODY = '96:0{"sid":"ptzi_578ycUci8WLB9G1","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}2:40'


def packet_forms_decode_as_described() -> None:
    """Each packet form of lesson 05 decodes to the fields the text gives (pure: ``siolab.explain`` only)."""
    e = explain('42["message",{"message":"hi"}]')
    _require((e.eio, e.sio, e.nsp, e.ack, e.event, e.args) == ("message", "event", "/", None, "message",
                                                               [{"message": "hi"}]), "42[...] is MESSAGE + EVENT")
    _require(explain("2").eio == "ping" and explain("2").sio is None and explain("3").eio == "pong",
             "2 and 3 are a lone PING and PONG")
    _require((explain("40").sio, explain("41").sio) == ("connect", "disconnect"), "40 is CONNECT, 41 DISCONNECT")
    _require((explain('421["add",1,2]').ack, explain("431[3]").sio, explain("431[3]").ack) == (1, "ack", 1),
             "421[...] carries ack id 1 and 431[3] answers it")
    _require(explain('42/chat,["hi","everyone"]').nsp == "/chat" and explain('42/chat,7["hi"]').ack == 7,
             "a namespace comes after the type, the ack id after its comma")
    b = explain('451-["file",{"_placeholder":true,"num":0}]')
    _require(b.sio == "binary_event" and b.field("attachments").text == "1-", "451-[...] announces 1 attachment")
    _require(explain("bAQIDBA==").data == b"\x01\x02\x03\x04", "b + base64 is a binary packet")
    v3 = explain(V3_BODY)
    _require("EIO=3" in (v3.error or "") and v3.field("v3 framing").text == "96:", "96:... is Engine.IO v3 framing")
    _require([p.event for p in explain('42["hello"]\x1e42["world"]').packets] == ["hello", "world"],
             "\\x1e separates the packets of a v4 polling body")


def connect_and_binary_forms_as_described(records: Records, client: str, data: bytes) -> None:
    """python-socketio's CONNECTs carry an auth object (``40{}``, ``40/chat,{}``) and are answered with the
    Socket.IO sid (``40{"sid":...}``); the binary ``call`` went up as ``451-2[...]`` with a placeholder, followed
    by its attachment (``data``), and was answered ``432[<len(data)>]``."""
    recs = [r for r in records if r.client == client and r.kind == "packet"]
    up = [r.raw for r in recs if r.dir == "c2s" and r.sio == "connect"]
    _require(up == ["40{}", "40/chat,{}"], "the CONNECTs are 40{} and 40/chat,{}",
             [r for r in recs if r.sio == "connect"])
    down = [r.raw or "" for r in recs if r.dir == "s2c" and r.sio == "connect"]
    _require(down and all(raw.startswith(('40{"sid":"', '40/chat,{"sid":"')) for raw in down),
             'the answers carry the Socket.IO sid: 40{"sid":...}', [r for r in recs if r.sio == "connect"])
    event = next((r for r in recs if r.sio == "binary_event"), None)
    _require(event is not None and event.raw == '451-2["file",{"_placeholder":true,"num":0}]'
             and event.args == [f"<{len(data)} bytes>"], '451-2["file",{placeholder}] went up', recs[-12:])
    c2s = [r for r in recs if r.dir == "c2s"]
    attachment = c2s[c2s.index(event) + 1]
    _require(attachment.binary and base64.b64decode(attachment.raw or "") == data,
             "the attachment follows the binary event", [event, attachment])
    _require(f"432[{len(data)}]" in [r.raw for r in recs], f"the ACK is 432[{len(data)}]", recs[-12:])


# ---------------------------------------------------------------- 06 · Acknowledgements and binary data
def binary_event_as_described(records: Records, client: str, data: bytes, transport: str, ack_id: int,
                              received: bytes | None = None) -> Record:
    """A ``call("upload", data)``: one BINARY_EVENT ``451-<id>["upload",{"_placeholder":true,"num":0}]`` followed by
    one binary attachment with the bytes, both on ``transport`` (over long-polling in the *same* POST), answered
    by the ACK ``43<id>[len(data)]``; ``received`` (what the handler got, when given) is the very bytes.
    Returns the attachment's record."""
    recs = [r for r in records if r.client == client]
    event = next((r for r in recs if r.sio == "binary_event" and r.event == "upload" and r.ack == ack_id), None)
    _require(event is not None and event.raw == f'451-{ack_id}["upload",{{"_placeholder":true,"num":0}}]',
             f'451-{ack_id}["upload",{{placeholder}}] went up', recs[-12:])
    _require(event.transport == transport and event.attachments == 1
             and event.args == [f"<{len(data)} bytes>"], f"over {transport}, announcing one attachment", [event])
    c2s = [r for r in recs if r.kind == "packet" and r.dir == "c2s"]
    attachment = c2s[c2s.index(event) + 1]
    _require(attachment.binary and attachment.transport == transport, "a binary attachment follows it",
             [event, attachment])
    _require(base64.b64decode(attachment.raw or "") == data, "the attachment is the bytes (kept as base64)",
             [attachment])
    if transport == "polling":
        _require(attachment.http == event.http and _method(event) == "POST", "both travelled in the same POST",
                 [event, attachment])
    _require([r.raw for r in recs if r.sio == "ack" and r.ack == ack_id] == [f"43{ack_id}[{len(data)}]"],
             f"the ACK is 43{ack_id}[{len(data)}]", recs[-12:])
    _require(received is None or received == data, "the handler got the bytes back in place")
    return attachment


# ---------------------------------------------------------------- 06 · delivery guarantees
def lost_while_disconnected(records: Records, event: str, client: str, since: float) -> list[Record]:
    """An event the server emitted to everyone while ``client`` was disconnected reached the others and never
    ``client``, not even after it connected again: nothing on the wire carried it to ``client`` since ``since``.
    Returns the packets that did carry it (to the others)."""
    recs = [r for r in records if r.t >= since]
    sent = [r for r in recs if r.kind == "packet" and r.dir == "s2c" and r.event == event]
    _require(sent, f"{event} went down to somebody", recs)
    _require(all(r.client != client for r in sent), f"no {event} went down to {client}", sent)
    return sent


# ---------------------------------------------------------------- 07 · Namespaces and rooms
def namespaces_share_one_session(records: Records, client: str, sids: Mapping[str, str], eio_sid: str) -> None:
    """A client with ``namespaces=["/", "/chat"]``: one handshake and one WebSocket (one Engine.IO session,
    ``eio_sid``) carry both CONNECTs, ``40{}`` and ``40/chat,{}``; each answer names that namespace's own Socket.IO
    sid (``sids[namespace]``), and the three ids differ."""
    recs = [r for r in records if r.client == client]
    _require([r.raw for r in recs if r.dir == "c2s" and r.sio == "connect"] == ["40{}", "40/chat,{}"],
             "two CONNECTs went up: 40{} and 40/chat,{}", [r for r in recs if r.sio == "connect"])
    _require(len([r for r in recs if r.eio == "open"]) == 1, "one handshake", recs[:8])
    _require(len([r for r in recs if r.kind == "ws" and r.note == "WebSocket open"]) == 1, "one WebSocket")
    connects = [r for r in recs if r.sio == "connect"]
    _require(len(connects) == 4 and {r.sid for r in connects} == {eio_sid}, "all four in one Engine.IO session",
             connects)
    answers = [r for r in connects if r.dir == "s2c"]
    _require([r.nsp for r in answers] == ["/", "/chat"], "one answer per namespace", answers)
    _require([explain(r.raw).data["sid"] for r in answers] == [sids["/"], sids["/chat"]],
             "each answer carries that namespace's Socket.IO sid", answers)
    _require(len({eio_sid, sids["/"], sids["/chat"]}) == 3, "three different ids")


def refusals_as_described(records: Records, outcomes: Mapping[str, Any], error_type: type) -> None:
    """Lesson 07's refusals: ``return False`` answers ``44/admin,{"message":"Connection rejected by server"}``; a
    ``ConnectionRefusedError("members only", {...})`` puts its message and data in the 44; the token opens
    ``/admin`` (``40/admin,{"token":"s3cret"}`` up, a CONNECT answer down); every refused ``connect()`` raised
    ``error_type``. ``outcomes``: description -> what connect raised (None when it connected)."""
    recs = list(records)

    def refusal(client: str):
        found = [r for r in recs if r.client == client and r.sio == "connect_error"]
        _require(found, f"{client} got a CONNECT_ERROR", [r for r in recs if r.client == client][-6:])
        return explain(found[0].raw)

    _require(refusal("mallory").nsp == "/admin"
             and refusal("mallory").data == {"message": "Connection rejected by server"},
             'return False: 44/admin,{"message":"Connection rejected by server"}')
    _require(refusal("eve").data == {"message": "members only", "data": {"hint": "ask at the door"}},
             "ConnectionRefusedError: its message and data in the 44")
    _require([r.raw for r in recs if r.client == "trent" and r.dir == "c2s" and r.sio == "connect"]
             == ['40/admin,{"token":"s3cret"}'], "trent's CONNECT carried the token")
    _require([r.nsp for r in recs if r.client == "trent" and r.dir == "s2c" and r.sio == "connect"] == ["/admin"],
             "trent was let into /admin")
    for who, exc in outcomes.items():
        if "trent" in who:
            _require(exc is None, "trent's connect() returned normally")
        else:
            _require(isinstance(exc, error_type), f"{who}: connect() raised {error_type.__name__}")


def broadcasts_as_described(records: Records, everyone: Mapping[str, str]) -> None:
    """Lesson 07's broadcasts since the mark: ``news`` (everyone on ``/``) reached all four, as four copies of
    one packet over four connections; ``dinner`` (the room) its three members; ``say`` (the room, without the
    sender) bob and carol; ``hi`` on ``/chat`` only alice, as ``42/chat,["hi","chatters"]``.
    ``everyone``: client name -> its Engine.IO sid."""
    recs = list(records)
    _require(recipients(recs, "news") == sorted(everyone), "news reached everyone on /", recs)
    _require(recipients(recs, "dinner") == ["alice", "bob", "carol"], "dinner reached the kitchen's members")
    _require(recipients(recs, "said") == ["bob", "carol"], "say skipped its sender (skip_sid)")
    hi = [r for r in recs if r.event == "hi" and r.dir == "s2c"]
    _require([r.client for r in hi] == ["alice"] and hi[0].raw == '42/chat,["hi","chatters"]',
             'only alice is on /chat, and the packet names it: 42/chat,["hi","chatters"]', hi)
    news = [r for r in recs if r.event == "news" and r.dir == "s2c"]
    _require(len({r.raw for r in news}) == 1, "the same bytes to each recipient", news)
    _require({r.sid for r in news} == set(everyone.values()), "over each recipient's own connection", news)


# ---------------------------------------------------------------- 11 · Two implementations
PYTHON_DEVIATIONS = frozenset({"refuses missing transport", "refuses bad method", "POST answered ok",
                               "a bad packet closes the session", "unknown namespace refused with 44{message}"})
HEARTBEAT_RULE = "heartbeat: ping every pingInterval, close after pingTimeout"
UPGRADE_RULE = "upgrade: 3probe, pending GET ends with 6, then 40 over WebSocket"
PLAIN_ONLY = frozenset({"handshake", HEARTBEAT_RULE, "CONNECT answered 40{sid}", UPGRADE_RULE})


def comparison_as_described(comparison: Any, have_node: bool) -> None:
    """Lesson 11's scenario on every server: the CONNECT, the ack and the binary ack are the same packets
    everywhere (given here), every client got the same results, and the servers differ only in the open
    packet (plain python-socketio) and, against Node, the upgrade, the answer to a POST and the refusal."""
    for step in ("connect", "ack", "binary_ack"):
        _require(comparison[step].same, f"every server played {step!r} the same: {comparison[step]}")
    _require(comparison["connect"].cells["lab"] == '→40{} ←40{"sid":"…"}', "the CONNECT is 40{} / 40{sid}")
    _require(comparison["ack"].cells["lab"] == '→421["echo","hi"] ←431["hi"]', "the ack is 421 / 431")
    _require(comparison["binary_ack"].cells["lab"] == ('→451-2["echo",{"_placeholder":true,"num":0}] →<3 bytes> '
                                                       '←461-2[{"_placeholder":true,"num":0}] ←<3 bytes>'),
             "the binary ack is 451-2 + attachment / 461-2 + attachment")
    for run in comparison.runs.values():
        _require(run.results == {"ack": "hi", "binary_ack": b"\x01\x02\x03",
                                 "refused": "One or more namespaces failed to connect: /nope"},
                 f"the client got the same results from {run.name}: {run.results}")
    want = ["open", "upgrade", "post_reply", "refused"] if have_node else ["open"]
    _require(comparison.differences == want, f"the servers differ in {want}, not {comparison.differences}")


def conformance_as_described(reports: Mapping[str, Any], have_node: bool) -> None:
    """The conformance checker's verdicts as lesson 11 gives them: the lab fails exactly the five
    python-engineio / python-socketio deviations (the facts tests/test_check.py asserts too), ``plain`` four
    more (the 0 ms pingInterval, and the greeting before ``40{sid}``), and the official server passes every rule."""
    lab, plain = reports["lab"], reports["plain"]
    _require(lab.failed == PYTHON_DEVIATIONS, f"the lab fails the five deviations\n{lab.table()}")
    _require(plain.failed == PYTHON_DEVIATIONS | PLAIN_ONLY, f"plain fails four rules more\n{plain.table()}")
    _require(lab["refuses missing transport"].seen.startswith("GET ?EIO=4 -> 200 0{"),
             "a GET without transport opens a session")
    _require(lab["refuses bad method"].seen.startswith("PUT ?EIO=4&transport=polling -> 405"), "a PUT gets 405")
    _require(lab["a bad packet closes the session"].seen.startswith("POST garbage -> 200 OK; next GET -> 200"),
             "a garbage POST is answered OK and the session lives on")
    _require("advertised pingInterval 0 ms" in plain[HEARTBEAT_RULE].seen, "plain advertises 0 ms")
    if have_node:
        node = reports["node"]
        _require(node.ok and {v.result for v in node.verdicts} == {"pass"}, f"node passes\n{node.table()}")
        _require(node["refuses bad method"].seen.startswith("PUT ?EIO=4&transport=polling -> 400"),
                 "node answers a PUT 400")


def conformance_summary(reports: Mapping[str, Any], width: int = 100) -> str:
    """The conformance reports of several servers as one compact text: a column per server, only the rules
    some server fails (failing rules first, the rest counted), and under each what the failing servers sent
    (sids shown as …) and what the rule expects. The full reports stay in ``reports[name]``."""
    names = list(reports)
    rules: list[str] = []
    for report in reports.values():
        rules += [v.rule for v in report.verdicts if v.rule not in rules]

    def verdict(name: str, rule: str):
        return next((v for v in reports[name].verdicts if v.rule == rule), None)

    def result(name: str, rule: str) -> str:
        v = verdict(name, rule)
        return "-" if v is None else v.result.upper() if v.result == "fail" else v.result

    failing = [rule for rule in rules if any(result(n, rule) == "FAIL" for n in names)]
    col = max([len(r) for r in failing] + [len("rule")])
    lines = [f"{'rule':<{col}}  " + "  ".join(f"{n:<6}" for n in names)]
    for rule in failing:
        lines.append(f"{rule:<{col}}  " + "  ".join(f"{result(n, rule):<6}" for n in names))
        seen: dict[str, list[str]] = {}
        expected = ""
        for n in names:
            v = verdict(n, rule)
            if v is not None and v.result == "fail":
                seen.setdefault(re.sub(r'"sid":"[^"]*"', '"sid":"…"', v.seen), []).append(n)
                expected = expected or v.expected
        for text, who in seen.items():
            lines.append(cut(f"    {', '.join(who)}: {text}", width))
        if expected:
            lines.append(cut(f"    expected: {expected}", width))
    lines.append(f"({len(rules) - len(failing)} more rules: every server passed them, or skipped)")
    lines.append("   ".join(f"{n} passed {sum(v.result == 'pass' for v in r.verdicts)} of {len(r.verdicts)}"
                           for n, r in reports.items()))
    return "\n".join(lines)


# ---------------------------------------------------------------- 04 · Your browser on the wire
async def browser_upgrade_as_described(trace: Any, client: str = "browser", wait: float = 3.0) -> int:
    """What lesson 04 says about the official JavaScript client's connection, as far as causality guarantees
    it (packets on different HTTP connections may cross the tap in either order):

    * the first request is a polling ``GET`` without ``sid`` (``EIO=4``), answered by an open packet offering
      ``websocket``; the Socket.IO ``40`` went up in a ``POST``;
    * on the WebSocket: ``2probe``, ``3probe``, ``5`` in this order;
    * any ``6`` on polling answered a ``GET`` and came after the WebSocket request went up;
    * every ``GET`` asked before the ``5`` was answered before it (the client sends ``5`` with no GET pending);
    * the ``6`` python-engineio queues at the probe went to a GET asked before the WebSocket, or else down the
      WebSocket after the ``5`` (waits up to ``wait`` s for it);
    * at least three polling requests came before the ``5``.

    Returns the number of polling requests before the ``5`` (the seed post saw four).
    """
    recs = [r for r in trace if r.client == client]
    first = recs[0]
    _require(first.kind == "http" and _method(first) == "GET" and first.transport == "polling"
             and "sid" not in query(first) and query(first).get("EIO") == "4",
             "the first request is a polling GET with EIO=4 and no sid", recs[:6])
    opened = next((r for r in recs if r.eio == "open"), None)
    _require(opened is not None and opened.transport == "polling" and opened.data["upgrades"] == ["websocket"],
             "the open packet came by polling and offers websocket", recs[:6])
    connect = [r for r in recs if r.dir == "c2s" and r.sio == "connect"]
    _require(connect and connect[0].raw == "40" and connect[0].transport == "polling"
             and _method(connect[0]) == "POST", "the 40 went up in a POST", recs[:10])
    on_ws = [(r.dir, r.raw) for r in recs if r.kind == "packet" and r.transport == "websocket"]
    _require(in_order(on_ws, [("c2s", "2probe"), ("s2c", "3probe"), ("c2s", "5")]),
             "2probe, 3probe, 5 in this order on the WebSocket", [r for r in recs if r.transport == "websocket"])
    ws_request = next(r for r in recs if r.kind == "ws" and r.dir == "c2s")
    five = next(r for r in recs if r.dir == "c2s" and r.eio == "upgrade")
    noops = [r for r in recs if r.dir == "s2c" and r.transport == "polling" and r.eio == "noop"]
    _require(all(_method(n) == "GET" and n.t >= ws_request.t for n in noops),
             "every 6 on polling answered a GET, after the WebSocket request", recs)
    asked = [r for r in recs if r.kind == "http" and r.dir == "c2s" and r.transport == "polling"
             and _method(r) == "GET" and r.t < five.t]
    answered = {(r.http or {}).get("path") for r in recs if r.dir == "s2c" and r.transport == "polling"
                and r.http and _method(r) == "GET" and r.t <= five.t}
    _require(asked and all((r.http or {}).get("path") in answered for r in asked),
             "every GET asked before the 5 was answered before it", recs)
    took_it = [n for n in noops if any((a.http or {}).get("path") == (n.http or {}).get("path")
                                       and a.t < ws_request.t for a in asked)]
    if not took_it:  # it may still be on its way: the page reports its upgrade as it sends the 5
        ws_noop = await trace.wait_for(timeout=wait, client=client, dir="s2c", transport="websocket", eio="noop")
        _require(ws_noop.t >= five.t, "the queued 6 came down the WebSocket after the 5", [five, ws_noop])
    polling = [r for r in requests(recs, client) if not r.websocket and r.t < five.t]
    _require(len(polling) >= 3, f"at least three polling requests before the 5, not {len(polling)}", recs)
    return len(polling)


# ---------------------------------------------------------------- 12 · Trace your own app
def node_chat_as_described(records: Records, history: Mapping[str, Any], browser: bool = False) -> None:
    """Lesson 12's chat on the Node.js server: carol's ``initialChatList`` (``history``, what her client
    reported) was the empty list and went to her only; every ``message`` came down once to each client
    connected then, the whole list; POSTs were answered ``ok`` (Node, not python's ``OK``); the server's
    ``console.log`` gives Node's reasons: ``client namespace disconnect`` for carol's ``41``, ``transport
    close`` for bob (the python client closes its WebSocket before its ``41`` is written)."""
    recs = list(records)
    lists = [r for r in recs if r.dir == "s2c" and r.event == "initialChatList"]
    _require(history.get("args") == [[]] and [r.client for r in lists] == ["carol"],
             "the first history went to carol only, and it was empty", lists)
    clients = ["bob", "carol"] + (["browser"] if browser else [])
    texts = ["hi from python", "hi from JavaScript"] + (["hi from your browser"] if browser else [])
    for text in texts:
        sender = {"hi from python": "bob", "hi from JavaScript": "carol"}.get(text, "browser")
        message_went_up_once_and_came_down_to_each(recs, text, sender, clients)
    posts = [r for r in recs if r.kind == "http" and r.dir == "s2c" and _method(r) == "POST"]
    _require(posts and all(r.raw == "ok" for r in posts), "the Node.js server answered every POST with ok", posts)
    byes = {r.client: r.note.rstrip().rsplit("bye... ", 1)[-1] for r in recs
            if r.kind == "log" and "client disconnected. bye..." in (r.note or "")}
    _require(byes == {"carol": "client namespace disconnect", "bob": "transport close"},
             f"the server logged carol's leaving as client namespace disconnect, bob's as transport close ({byes})",
             [r for r in recs if r.kind == "log"])
    sent = {name: [r.raw for r in recs if r.client == name and r.dir == "c2s" and r.sio == "disconnect"]
            for name in ("carol", "bob")}
    _require(sent == {"carol": ["41"], "bob": []}, f"carol sent 41, bob sent no DISCONNECT ({sent})")


async def answers_handshake(url: str, timeout: float = 5.0) -> bool:
    """Whether the server at ``url`` (not through a tap) answers a polling handshake with an open packet."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        async with http.get(f"{url}/socket.io/?EIO=4&transport=polling") as response:
            return response.status == 200 and (await response.text()).startswith('0{"sid":')


def url_in(line: str) -> str:
    """The first ``http://host:port`` in a line of text (the CLI's "listening on ..." line)."""
    found = re.search(r"http://[\w.\-]+:\d+", line)
    if not found:
        raise CheckFailed(f"no URL in {line!r}")
    return found.group(0)


def _debug_fields(line: str) -> tuple[str, str]:
    """A ``debug`` line without colours: ``2026-...Z namespace text`` -> (namespace, text)."""
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0][:2].isdigit():
        return parts[1], parts[2]
    parts = line.strip().split(" ", 1)
    return (parts[0], parts[1] if len(parts) > 1 else "")


def debug_lines_of_first_session(lines: Sequence[str], limit: int = 16) -> list[str]:
    """The ``DEBUG`` lines from the first incoming connection on, at most ``limit``."""
    start = next((i for i, line in enumerate(lines) if "incoming connection" in line), 0)
    return list(lines[start:start + limit])


def debug_output_as_described(lines: Sequence[str]) -> None:
    """``DEBUG=socket.io*``: Socket.IO's namespaces only, packets decoded without the Engine.IO digit
    (``decoded 2[...]``, ``decoded 0``), and no line about the upgrade, the probe or a heartbeat."""
    fields = [_debug_fields(line) for line in lines]
    spaces = {name for name, _ in fields}
    _require(spaces and all(name.startswith("socket.io") for name in spaces),
             f"only socket.io namespaces logged (saw {sorted(spaces)})")
    decoded = [text for _, text in fields if text.startswith("decoded ")]
    _require(any(text.startswith('decoded 2["message"') for text in decoded),
             'the server logged carol\'s message as decoded 2["message",...] (no Engine.IO 4)')
    _require(any(text.startswith("decoded 0") for text in decoded), "the server logged a CONNECT as decoded 0")
    quiet = [line for line in lines if re.search(r"probe|upgrad|\bping\b|\bpong\b|polling|websocket", line, re.I)]
    _require(not quiet, f"no line about the transport, the upgrade or heartbeats (saw {quiet[:3]})")


def client_debug_builds(modules: Any = None) -> dict[str, int]:
    """In the installed socket.io-client, the build bundlers take for ``import ... from "socket.io-client"``
    (``build/esm``) has no debug calls, ``socket.io-client/debug`` (``build/esm-debug``) and the unminified
    ``dist/socket.io.js`` have them, the minified bundle has none. Returns the count per build."""
    from pathlib import Path
    from .node_env import installed

    root = Path(modules or installed() or ".") / "socket.io-client"
    package = json.loads((root / "package.json").read_text())
    default = package["exports"]["."]["import"]["default"]
    debug_build = package["exports"]["./debug"]["import"]["default"]
    builds = {"socket.io-client": default, "socket.io-client/debug": debug_build,
              "dist/socket.io.js": "./dist/socket.io.js", "dist/socket.io.min.js": "./dist/socket.io.min.js"}
    counts = {}
    for name, target in builds.items():
        path = root / target
        folder = path.parent if target.endswith("index.js") and "dist" not in target else None
        files = sorted(folder.glob("*.js")) if folder else [path]
        counts[name] = sum(len(re.findall(r"\bdebug\(", f.read_text(errors="replace"))) for f in files)
    _require(counts["socket.io-client"] == 0 and counts["dist/socket.io.min.js"] == 0,
             f"the bundlers' build and the minified bundle log nothing ({counts})")
    _require(counts["socket.io-client/debug"] > 0 and counts["dist/socket.io.js"] > 0,
             f"socket.io-client/debug and dist/socket.io.js log ({counts})")
    return counts


def one_timeline(records: Records, client: str) -> None:
    """One client's session in one trace: the polling handshake, the upgrade request, the probe frames and
    the decoded Socket.IO packets, in time order on one clock, all with the same Engine.IO sid."""
    recs = [r for r in records if r.client == client]
    opened = [r for r in recs if r.eio == "open"]
    _require(opened and opened[0].transport == "polling", f"{client}'s session opened by polling", recs)
    probe = [r for r in recs if r.transport == "websocket" and r.raw in ("2probe", "3probe")]
    connect = [r for r in recs if r.sio == "connect"]
    event = [r for r in recs if r.kind == "packet" and r.sio == "event"]
    _require(len(probe) == 2 and connect and event, f"{client}'s probe, CONNECT and events are all there", recs)
    _require(opened[0].t < probe[0].t < probe[1].t <= event[-1].t, "in time order, on one clock", recs)
    sids = {r.sid for r in recs if r.kind == "packet" and r.sid}
    _require(len(sids) == 1, f"every packet of {client} carries the same Engine.IO sid ({sids})", recs)

# ---------------------------------------------------------------- the cheat sheet
#: Requests a server must refuse, as (name, method, query string); ``sid`` is replaced by a live session id.
BAD_REQUESTS = (
    ("unknown sid", "GET", "EIO=4&transport=polling&sid=nope"),
    ("unknown transport", "GET", "EIO=4&transport=carrier-pigeon"),
    ("Engine.IO v3 client", "GET", "EIO=3&transport=polling"),
    ("PUT instead of GET/POST", "PUT", "EIO=4&transport=polling"),
)


#: What python-engineio (under python-socketio on aiohttp, as in a lab) answers each of ``BAD_REQUESTS``, and a
#: handshake from the foreign origin ``http://localhost:3000``: (HTTP status, body). aiohttp answers the PUT.
PYTHON_REFUSALS = {
    "unknown sid": (400, '"Invalid session nope"'),
    "unknown transport": (400, '"Invalid transport"'),
    "Engine.IO v3 client": (400, '"The client is using an unsupported version of the Socket.IO or Engine.IO '
                                 'protocols"'),
    "PUT instead of GET/POST": (405, "405: Method Not Allowed"),
    "foreign origin": (400, '"http://localhost:3000 is not an accepted origin."'),
}
#: What Node's engine.io (6.6, under socket.io 4.8) answers each of ``BAD_REQUESTS``.
NODE_REFUSALS = {
    "unknown sid": (400, '{"code":1,"message":"Session ID unknown"}'),
    "unknown transport": (400, '{"code":0,"message":"Transport unknown"}'),
    "Engine.IO v3 client": (400, '{"code":5,"message":"Unsupported protocol version"}'),
    "PUT instead of GET/POST": (400, '{"code":2,"message":"Bad handshake method"}'),
}
#: Where socket.io 4.8's packages name each disconnect reason (files under node_modules).
NODE_REASONS = {
    "socket.io/dist/socket.js": ("client namespace disconnect", "server namespace disconnect", "server shutting down",
                                 "ping timeout", "transport close", "transport error"),
    "engine.io/build/socket.js": ("parse error",),
    "socket.io-client/build/cjs/socket.js": ("io server disconnect", "io client disconnect"),
    "socket.io-client/build/cjs/manager.js": ("parse error",),
    "engine.io-client/build/cjs/socket.js": ("ping timeout", "transport close", "transport error"),
}


def refusals_as_listed(answers: Mapping[str, tuple[int, str]], listed: Mapping[str, tuple[int, str]]) -> None:
    """Every bad request got exactly the status and body the cheat sheet lists (``listed``)."""
    for name, want in listed.items():
        _require(answers.get(name) == want, f"{name}: {want[0]} {want[1]}, not {answers.get(name)}")
    _require(set(answers) == set(listed), f"the requests are {sorted(listed)}")


async def bad_request_answers(url: str, path: str = "/socket.io/", *, origin: str | None = None,
                              timeout: float = 5.0) -> dict[str, tuple[int, str]]:
    """Send the requests of ``BAD_REQUESTS`` (and, with ``origin``, a handshake from that origin) to the
    server at ``url`` (through a tap, they are in its trace); returns {name: (HTTP status, body)}."""
    import aiohttp

    answers: dict[str, tuple[int, str]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http:
        cases = list(BAD_REQUESTS)
        if origin is not None:
            cases.append(("foreign origin", "GET", "EIO=4&transport=polling"))
        for name, method, q in cases:
            headers = {"Origin": origin} if name == "foreign origin" and origin else {}
            async with http.request(method, f"{url}{path}?{q}", headers=headers) as response:
                answers[name] = (response.status, await response.text())
    return answers


def answers_table(answers: Mapping[str, Mapping[str, tuple[int, str]]], width: int = 110) -> str:
    """{server: {request: (status, body)}} as text: each request, then each server's status and body."""
    names = list(answers)
    col = max(len(n) for n in names)
    lines = []
    for request in dict.fromkeys(r for a in answers.values() for r in a):
        lines.append(request)
        for name in names:
            if request in answers[name]:
                status, body = answers[name][request]
                lines.append(cut(f"  {name:<{col}}  {status} {body}", width))
    return "\n".join(lines)


def found_in_sources(root: Any, wanted: Mapping[str, Iterable[str]]) -> dict[str, str]:
    """Each string of ``wanted[file]`` occurs, quoted, in that file under ``root`` (a package directory such as
    ``siolab/node/node_modules``); returns {string: file}. For library facts a notebook cannot run, e.g. the
    disconnect reasons of the JavaScript client, read from the installed package itself."""
    from pathlib import Path

    found: dict[str, str] = {}
    for name, strings in wanted.items():
        path = Path(root) / name
        _require(path.is_file(), f"{path} exists")
        text = path.read_text(encoding="utf-8")
        for string in strings:
            _require(f'"{string}"' in text or f"'{string}'" in text, f"{string!r} is in {name}")
            found[string] = name
    return found


def explain_table(raws: Iterable[str]) -> str:
    """Each packet as ``siolab.explain`` reads it, one line each: Engine.IO type, Socket.IO type, namespace,
    ack id, attachments, and the event or data."""
    lines = [f"{'packet':<44} {'Engine.IO':<9} {'Socket.IO':<13} {'nsp':<6} {'ack':<4} {'att':<4} event / data"]
    for raw in raws:
        e = explain(raw)
        att = e.field("attachments")
        data = "" if e.data is None else json.dumps(e.data, default=lambda b: f"<{len(b)} bytes>")
        what = repr(e.event) if e.event is not None else cut(data, 30)
        lines.append(f"{cut(raw, 44):<44} {(e.eio or '').upper():<9} {(e.sio or '').upper():<13} "
                     f"{e.nsp or '':<6} {'' if e.ack is None else e.ack:<4} {att.text if att else '':<4} {what}")
    return "\n".join(lines)


#: The cheat sheet's example packets: packet -> (Engine.IO type, Socket.IO type, namespace, ack id, attachments),
#: or the first few of them (what ``examples_explained`` checks).
CHEAT_SHEET_EXAMPLES = {
    '0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}': ("open",),
    "1": ("close",), "2": ("ping",), "2probe": ("ping",), "3": ("pong",), "3probe": ("pong",),
    "5": ("upgrade",), "6": ("noop",), "bAQIDBA==": ("message", None),
    "40": ("message", "connect", "/"), '40/chat,{"token":"s3cret"}': ("message", "connect", "/chat"),
    '40{"sid":"abc"}': ("message", "connect", "/"),
    "41": ("message", "disconnect", "/"), "41/chat,": ("message", "disconnect", "/chat"),
    '42["message",{"message":"hi"}]': ("message", "event", "/", None), '42/chat,["hi"]': ("message", "event", "/chat"),
    '421["add",1,2]': ("message", "event", "/", 1), '420["add",1,2]': ("message", "event", "/", 0),
    "431[3]": ("message", "ack", "/", 1), '43/chat,1["ok"]': ("message", "ack", "/chat", 1),
    '44/admin,{"message":"not authorized"}': ("message", "connect_error", "/admin"),
    '451-["file",{"_placeholder":true,"num":0}]': ("message", "binary_event", "/", None, "1-"),
    '461-1[{"_placeholder":true,"num":0}]': ("message", "binary_ack", "/", 1, "1-"),
}


def examples_explained(expected: Mapping[str, Sequence[Any]]) -> None:
    """Each example packet means what the cheat sheet says: ``expected[raw]`` is (Engine.IO type, Socket.IO type,
    namespace, ack id, attachments), or the first few of them, as ``siolab.explain`` reads the packet."""
    for raw, want in expected.items():
        e = explain(raw)
        att = e.field("attachments")
        have = (e.eio, e.sio, e.nsp, e.ack, att.text if att else None)[:len(want)]
        _require(e.error is None and have == tuple(want),
                 f"{raw!r} is {tuple(want)}, but explain reads {have}:\n{e}")
