"""Decoder fuzzing: any text or bytes decodes to a value (never an exception), and packets the libraries
encode decode back to the same fields."""
import json
import math

import pytest
from engineio import packet as eio_packet
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from socketio import packet as sio_packet

from siolab import explain
from siolab.protocol import (EIO_TYPES, SIO_TYPES, Decoded, EioPacket, Explanation, Reassembler, SioPacket,
                             decode_eio, decode_payload, decode_sio)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that steer random text into the decoders' deeper branches.
WIRE = "0123456789b-/,[]{}\":\x1e _placeholdertruenumNaI \\\x00é"
wire_text = st.text(alphabet=WIRE, max_size=60)
json_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "_placeholder"), inner,
                                             max_size=4), max_leaves=12)
namespaces = st.sampled_from(["/", "/chat", "/admin"]) | st.from_regex(r"/[A-Za-z0-9_\-.~]{1,12}", fullmatch=True)
ack_ids = st.none() | st.integers(0, 2**31)


def packet_like(sio: bool):
    """Text shaped like a packet: a type digit, maybe attachments, namespace and ack id, then JSON-ish data."""
    data = json_values.map(lambda v: json.dumps(v, separators=(",", ":"))) | wire_text
    head = st.sampled_from("0123456") if sio else st.sampled_from(["0", "1", "2", "3", "4", "5", "6", "40", "42",
                                                                    "43", "44", "45", "46", "b"])
    return st.tuples(head, st.sampled_from(["", "1-", "2-", "0-", "x-"]), st.sampled_from(["", "/chat,", "/", "/a"]),
                     st.sampled_from(["", "1", "99"]), data).map("".join)


anything = st.text(max_size=80) | st.binary(max_size=80) | wire_text | packet_like(False)

HOSTILE = [
    '451-["a",{"_placeholder":true,"num":"x"},{"_placeholder":true,"num":0}]',
    '452-["a",{"_placeholder":true,"num":null},{"_placeholder":true,"num":0}]',
    '451-["a",{"_placeholder":true,"num":true}]',
    "42" + "[" * 5000 + "]" * 5000,
    "0" + "[" * 100000,
    "42[" + "9" * 5000 + "]",
    '42["x",NaN]', '431[Infinity]', "4\ud800", "45-", "4001-[]", "4" + "9" * 300,
    '0{"sid":1,"upgrades":"websocket","pingInterval":"soon","pingTimeout":null}',
]


# Valid, however odd: decoded without an error.
ODD_BUT_VALID = [
    '451-["a",' + "[" * 900 + '{"_placeholder":true,"num":0}' + "]" * 900 + "]",
    '42["\ud800"]', '42 ["x"]', "43001[]", '4501-["x",{"_placeholder":true,"num":0}]', "43" + "9" * 99 + "[]",
]


def check_eio(pkt):
    assert isinstance(pkt, EioPacket)
    assert pkt.type in EIO_TYPES + (None,)
    if pkt.type is None:
        assert pkt.error


def check_sio(pkt):
    assert isinstance(pkt, SioPacket)
    assert pkt.type in SIO_TYPES + (None,)
    if pkt.type is None:
        assert pkt.error
    _ = pkt.event, pkt.args  # the properties never raise


def check_explanation(e):
    assert isinstance(e, Explanation)
    assert isinstance(str(e), str)
    if e.eio is None and e.sio is None and not e.packets and not e.fields:
        assert e.error  # nothing understood: it says why
    assert not (e.error or "").startswith("could not explain"), e.error  # a decoder bug, not a packet error
    for f in e.fields:
        if f.start is not None:
            assert e.raw[f.start:f.end] == f.text or f.name == "binary"


@FUZZ
@given(anything)
@example("")
@example(b"")
def test_decode_eio_never_raises(raw):
    check_eio(decode_eio(raw))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200) | st.lists(packet_like(False), max_size=6).map("\x1e".join))
@example(b"\xff\xfe")
@example("3:abc")
def test_decode_payload_never_raises(body):
    packets, error = decode_payload(body)
    for p in packets:
        check_eio(p)
    assert error is None or isinstance(error, str)
    if any(p.error for p in packets):
        assert error  # a bad packet in a body makes the body's error


@FUZZ
@given(st.text(max_size=80) | packet_like(True) | wire_text | st.binary(max_size=20) | st.none() | st.integers())
def test_decode_sio_never_raises(text):
    check_sio(decode_sio(text))


@pytest.mark.parametrize("raw", HOSTILE, ids=lambda r: repr(r[:24]))
def test_hostile_examples_are_values_with_errors(raw):
    check_eio(decode_eio(raw))
    decode_payload(raw)
    check_sio(decode_sio(raw[1:]))
    e = explain(raw)
    check_explanation(e)
    assert e.error, raw[:60]
    r = Reassembler()
    out = r.feed(decode_eio(raw)) + r.feed(decode_eio(b"\x01")) + r.flush()
    assert out and all(isinstance(d, Decoded) for _, d in out)


@pytest.mark.parametrize("raw", ODD_BUT_VALID, ids=lambda r: repr(r[:24]))
def test_odd_but_valid_packets_decode_without_error(raw):
    e = explain(raw)
    check_explanation(e)
    assert e.error is None and e.sio is not None
    r = Reassembler()
    out = r.feed(decode_eio(raw)) + r.feed(decode_eio(b"\x01")) + r.flush()
    assert out[0][1].error is None


@FUZZ
@given(anything)
def test_explain_never_raises_and_always_says_something(raw):
    check_explanation(explain(raw))
    if isinstance(raw, str):
        check_explanation(explain(raw, layer="socket.io"))


@FUZZ
@given(st.lists(anything | st.binary(min_size=1, max_size=8), max_size=12))
def test_reassembler_accounts_for_every_packet(parts):
    """Whatever arrives, every packet fed comes out exactly once (held ones at the latest on flush)."""
    r = Reassembler()
    out = []
    for i, part in enumerate(parts):
        out += r.feed(decode_eio(part), tag=i)
    out += r.flush()
    assert sorted(tag for tag, _ in out) == list(range(len(parts)))
    assert [tag for tag, _ in out] == sorted(tag for tag, _ in out)  # wire order
    for _, d in out:
        assert isinstance(d, Decoded)
        if d.eio.binary and d.attachment_of is None:
            assert d.error  # an attachment out of place, or bad base64


# ------------------------------------------------------------ valid packets round-trip through the libraries


@FUZZ
@given(st.sampled_from(range(7)), st.none() | st.text(max_size=40) | st.binary(min_size=1, max_size=30))
def test_engineio_packets_round_trip(ptype, data):
    if ptype == eio_packet.OPEN:
        data = {"sid": "abc", "upgrades": ["websocket"], "pingInterval": 25000, "pingTimeout": 20000,
                "maxPayload": 1000000}
    if isinstance(data, bytes):
        ptype = eio_packet.MESSAGE
    pkt = eio_packet.Packet(ptype, data)
    for encoded in {pkt.encode(), pkt.encode(b64=True)}:
        got = decode_eio(encoded)
        assert got.error is None and got.type == EIO_TYPES[ptype]
        assert got.data == (data if data not in ("", None) else None)
        assert got.binary == isinstance(data, bytes)


@FUZZ
@given(st.lists(st.sampled_from(range(1, 7)).map(lambda t: eio_packet.Packet(t, "x" if t == 4 else None))
                | st.binary(max_size=5).map(lambda b: eio_packet.Packet(eio_packet.MESSAGE, b)),
                min_size=1, max_size=20))
def test_polling_bodies_round_trip(pkts):
    body = "\x1e".join(p.encode(b64=True) for p in pkts)
    packets, error = decode_payload(body)
    assert error is None and [p.type for p in packets] == [EIO_TYPES[p.packet_type] for p in pkts]


def binary_values():
    return st.recursive(json_scalars | st.binary(max_size=6), lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.sampled_from(["a", "b", "file"]), inner, max_size=3), max_leaves=8)


def markers(value):
    """What the decoder shows for each attachment: ``<n bytes>``."""
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list):
        return [markers(v) for v in value]
    if isinstance(value, dict):
        return {k: markers(v) for k, v in value.items()}
    return value


def same(a, b):
    """Equality that treats -0.0 == 0.0 and ints/floats from JSON alike."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@FUZZ
@given(st.sampled_from(["event", "ack", "connect", "disconnect", "connect_error"]), namespaces, ack_ids,
       st.text(max_size=10), st.lists(binary_values(), max_size=4), st.dictionaries(st.text(max_size=5), json_scalars,
                                                                                    max_size=3))
def test_socketio_packets_round_trip(kind, nsp, ack, name, args, obj):
    ptype = SIO_TYPES.index(kind)
    if kind == "event":
        data = [name, *args]
    elif kind == "ack":
        data = args
    elif kind == "connect":
        data, ack = obj or None, None
    elif kind == "disconnect":
        data, ack = None, None
    else:
        data, ack = {"message": name, **({"data": obj} if obj else {})}, None
    encoded = sio_packet.Packet(ptype, data=data, namespace=nsp, id=ack).encode()
    parts = encoded if isinstance(encoded, list) else [encoded]
    r = Reassembler()
    out = []
    for part in parts:
        out += r.feed(decode_eio(part if isinstance(part, bytes) else "4" + part))
    assert r.pending is None and len(out) == len(parts)
    head = out[0][1]
    assert head.error is None, (parts[0], head.error)
    assert head.sio.nsp == nsp and head.sio.ack == ack
    binary = len(parts) > 1
    assert head.sio.type == ("binary_" + kind if binary else kind)
    assert head.sio.attachments == len(parts) - 1
    assert [d.attachment_of for _, d in out[1:]] == list(range(len(parts) - 1))
    if kind == "event":
        assert head.sio.event == name and same(head.args, markers(args))
    elif kind == "ack":
        assert same(head.args, markers(args))
    else:
        assert same(head.sio.data, data)
    e = explain("4" + parts[0])
    assert e.error is None and e.sio == head.sio.type and e.nsp == nsp and e.ack == ack
