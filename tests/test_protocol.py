"""The decoder against the protocol documents' examples, library round trips and malformed input."""
import json
from pathlib import Path

import pytest
from engineio import packet as eio_packet
from socketio import packet as sio_packet

from siolab import explain
from siolab.protocol import (EIO_TYPES, SIO_TYPES, Reassembler, decode, decode_eio, decode_payload, decode_sio,
                             explain_refusal)

VECTORS = json.loads((Path(__file__).parent / "data" / "protocol-vectors.json").read_text())


def unbin(value):
    """Turn the vectors' {"$bin": [...]} into bytes, recursively."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes(value["$bin"])
        return {k: unbin(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unbin(v) for v in value]
    return value


@pytest.mark.parametrize("vector", VECTORS["engineio_packets"], ids=lambda v: v["raw"][:20])
def test_engineio_packet_vectors(vector):
    pkt = decode_eio(vector["raw"])
    assert pkt.error is None
    assert pkt.type == vector["type"]
    assert pkt.data == vector.get("data")


@pytest.mark.parametrize("vector", VECTORS["engineio_polling_payloads"], ids=lambda v: repr(v["raw"][:20]))
def test_polling_payload_vectors(vector):
    packets, error = decode_payload(vector["raw"])
    assert error is None
    assert [p.type for p in packets] == [p["type"] for p in vector["packets"]]
    assert [p.data for p in packets] == [unbin(p.get("data")) for p in vector["packets"]]


def test_engineio_v3_framing_is_recognised():
    raw = VECTORS["engineio_v3_for_contrast"]["raw"]
    packets, error = decode_payload(raw)
    assert packets == [] and "v3" in error and "EIO=3" in error
    e = explain(raw)
    assert "v3" in e.error and e.fields[0].name == "v3 framing"


@pytest.mark.parametrize("vector", VECTORS["socketio_packets_without_engineio_prefix"], ids=lambda v: v["doc"])
def test_socketio_packet_vectors(vector):
    sio = decode_sio(vector["enc"])
    assert sio.error is None, sio.error
    assert sio.type == SIO_TYPES[vector["type"]]
    assert sio.nsp == vector["nsp"]
    assert sio.ack == vector.get("id")
    data = vector.get("data")
    if sio.attachments:
        # reassemble with the attachments that follow, as the tap does
        expected = unbin(data)
        blobs = []
        sio_packet.Packet.deconstruct_binary(expected)  # sanity: the library finds the same binaries
        _, blobs = sio_packet.Packet.deconstruct_binary(expected)
        assert sio.attachments == len(blobs)
        r = Reassembler()
        out = r.feed(decode_eio("4" + vector["enc"]))
        assert out == []  # held until its attachments arrived
        for blob in blobs:
            out += r.feed(decode_eio(blob))
        head = out[0][1]
        assert head.error is None
        assert head.args[-len(blobs):] == [f"<{len(b)} bytes>" for b in blobs]
        assert [d.attachment_of for _, d in out[1:]] == list(range(len(blobs)))
    else:
        assert sio.data == data


@pytest.mark.parametrize("raw", VECTORS["socketio_on_the_wire_examples"])
def test_on_the_wire_examples_explain_without_error(raw):
    e = explain(raw)
    assert e.error is None, e.error
    assert e.eio == "message" and e.sio in SIO_TYPES
    assert e.fields[0].text == "4" and e.fields[1].text == raw[1]


@pytest.mark.parametrize("raw", VECTORS["should_close_the_connection"])
def test_packets_that_should_close_the_connection_are_errors(raw):
    assert explain(raw).error


@pytest.mark.parametrize("error", VECTORS["errors_from_the_reference_server"], ids=lambda e: e["body"][:30])
def test_reference_server_refusals_are_explained(error):
    text = explain_refusal(error["http_status"], error["body"])
    assert text.startswith("HTTP 400: ")
    assert json.loads(error["body"])["message"] in text


def test_explain_names_each_digit():
    e = explain('421["chat","hi"]')
    assert (e.eio, e.sio, e.ack, e.nsp, e.event, e.args, e.error) == ("message", "event", 1, "/", "chat", ["hi"], None)
    assert [(f.name, f.text) for f in e.fields] == [
        ("engine.io type", "4"), ("socket.io type", "2"), ("namespace", ""), ("ack id", "1"),
        ("data", '["chat","hi"]')]
    text = str(e)
    assert "Engine.IO 4 MESSAGE" in text and "Socket.IO 2 EVENT" in text and "ack id 1" in text
    assert "'chat'" in text and '["hi"]' in text
    assert len(text.splitlines()) == 1 + len(e.fields)
    # spans point at the characters they name
    for f in e.fields:
        if f.start is not None:
            assert e.raw[f.start:f.end] == f.text


def test_explain_namespace_attachments_and_ack():
    e = explain('461-/admin,1[{"_placeholder":true,"num":0}]')
    assert (e.sio, e.nsp, e.ack) == ("binary_ack", "/admin", 1)
    assert e.field("attachments").text == "1-" and e.field("namespace").text == "/admin,"
    e = explain('2["foo"]', layer="socket.io")
    assert (e.sio, e.event, e.args) == ("event", "foo", [])


@pytest.mark.parametrize("raw, words", [
    ("", "empty"), ("7", "unknown Engine.IO packet type"), ("42[broken", "cannot decode EVENT"),
    ('42/admin["x"]', "without a comma"), ("4abc", "unknown Socket.IO packet type"),
    ('451-["x",{"_placeholder":true,"num":3}]', "placeholders"), ('42{}', "array"),
    ("b@@@", "base64"), ('43[1', "cannot decode ACK"), ("0notjson", "open packet"), ("48", "unknown Socket.IO"),
])
def test_malformed_packets_say_what_is_wrong(raw, words):
    e = explain(raw)
    assert e.error and words in e.error, e.error


@pytest.mark.parametrize("value", [None, 3, b"\xff\xfe", bytearray(b"\x00"), "\x00", "4" + "9" * 200])
def test_explain_never_raises(value):
    explain(value)  # must not raise
    assert decode_eio(value) is not None


def test_placeholder_with_no_attachment_is_flushed_as_error():
    r = Reassembler()
    assert r.feed(decode_eio('451-["x",{"_placeholder":true,"num":0}]')) == []
    out = r.feed(decode_eio('42["next"]'))
    assert out[0][1].error.startswith("placeholder with no attachment")
    assert out[1][1].sio.event == "next" and out[1][1].error is None


def test_attachment_with_no_placeholder_is_an_error():
    out = Reassembler().feed(decode_eio(b"\x01\x02"))
    assert "no BINARY_EVENT" in out[0][1].error


@pytest.mark.parametrize("ptype", range(7))
def test_engineio_round_trip(ptype):
    data = {"sid": "abc", "upgrades": [], "pingInterval": 1, "pingTimeout": 1} if ptype == 0 else \
        ("probe" if ptype in (2, 3) else ('2["x",1]' if ptype == 4 else None))
    raw = eio_packet.Packet(ptype, data).encode()
    pkt = decode_eio(raw)
    assert pkt.type == EIO_TYPES[ptype] and pkt.error is None
    assert pkt.data == data


def test_binary_round_trip_over_polling_and_websocket():
    encoded = eio_packet.Packet(eio_packet.MESSAGE, b"\x01\x02\x03").encode(b64=True)
    assert decode_eio(encoded).data == b"\x01\x02\x03"
    assert decode_eio(b"\x01\x02\x03").binary


@pytest.mark.parametrize("kwargs", [
    dict(packet_type=sio_packet.EVENT, data=["chat", "hi", {"n": [1, 2]}], namespace="/chat", id=7),
    dict(packet_type=sio_packet.ACK, data=["ok"], id=42),
    dict(packet_type=sio_packet.CONNECT, data={"token": "x"}, namespace="/admin"),
    dict(packet_type=sio_packet.DISCONNECT, namespace="/admin"),
    dict(packet_type=sio_packet.CONNECT_ERROR, data={"message": "no"}),
    dict(packet_type=sio_packet.EVENT, data=["bin", b"\x00\x01", {"x": b"\x02"}], id=3),
])
def test_socketio_round_trip(kwargs):
    encoded = sio_packet.Packet(**kwargs).encode()
    parts = encoded if isinstance(encoded, list) else [encoded]
    r = Reassembler()
    out = []
    for part in parts:
        out += r.feed(decode_eio(part if isinstance(part, bytes) else "4" + part))
    head = out[0][1]
    assert head.error is None
    assert head.sio.nsp == (kwargs.get("namespace") or "/")
    assert head.sio.ack == kwargs.get("id")
    want = kwargs.get("data")
    if len(parts) > 1:
        assert head.sio.type == "binary_event" and head.sio.attachments == len(parts) - 1
        assert head.args == ["<2 bytes>", {"x": "<1 bytes>"}]
    elif head.sio.type == "event":
        assert [head.sio.event] + head.args == want
    elif want is not None:
        assert head.sio.data == want


def test_decode_marks_non_message_packets_without_socketio_layer():
    d = decode(decode_eio("2"))
    assert d.sio is None and d.error is None


def test_type_names_are_the_libraries_own():
    assert EIO_TYPES == tuple(n.lower() for n in eio_packet.packet_names)
    assert SIO_TYPES == tuple(n.lower() for n in sio_packet.packet_names)


def test_import_siolab_does_not_import_the_servers():
    import subprocess
    import sys
    code = "import sys, siolab; print('socketio' in sys.modules, 'aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("raw", ['42["chat","hi"]', "40", '434["x"]', "41", '451-["b",{"_placeholder":true,"num":0}]',
                                 "4" + "9" * 120, "4²x", "4０{}", '42/admin,1["x"]', "42" + "[" * 5000])
def test_socketio_messages_skip_the_engineio_parser_with_the_same_result(raw):
    """decode_eio takes a short cut for "4<digit>...": python-engineio keeps such a message's text as it is."""
    pkt = decode_eio(raw)
    library = eio_packet.Packet(encoded_packet=raw)
    assert EIO_TYPES[library.packet_type] == pkt.type == "message"
    assert library.data == pkt.data == raw[1:] and not library.binary and not pkt.binary
    assert pkt.error is None and pkt.raw == raw


@pytest.mark.parametrize("text", [
    '2["chat","hi"]', "0", '0{"token":"x"}', '34["x"]', "1", '51-["b",{"_placeholder":true,"num":0}]',
    '2/admin,1["x"]', '2/admin?x=1,["y"]', "2" + "9" * 120, '2["x"]junk', "2[", '12-["x"]',
    "4\"nope\"", '2' + '1' * 101 + '["x"]', '3' + '[' * 300 + ']' * 300, "5" + "9" * 12 + "-[]"])
def test_the_socketio_parse_short_cut_is_the_library_constructor(text):
    """protocol's parse skips Packet's constructor (its look for binary data in data that is not there yet) and
    calls the library's decode: every attribute, or the exception, must be the constructor's."""
    from siolab.protocol import _sio_packet

    def outcome(make):
        try:
            pkt = make()
        except Exception as exc:
            return ("raised", type(exc), str(exc))
        return {k: getattr(pkt, k) for k in ("packet_type", "data", "namespace", "id", "attachments",
                                              "attachment_count")}
    module = _sio_packet()
    assert outcome(lambda: module.parse(text)) == outcome(lambda: module.Packet(encoded_packet=text))
    assert outcome(lambda: module.parse(text)) == outcome(lambda: sio_packet.Packet(encoded_packet=text)) or \
        "raised" in outcome(lambda: module.parse(text))  # the library's own json: the same data, other messages


@pytest.mark.parametrize("text", ['["x"]', ' ["x"]', '["x"] ', '["x"]\n', '["x"]x', '', ' ', 'nul', '[1,]', 'NaN',
                                  '[1e400]', '{"a":1,"a":2}', '"\\ud800"', '1' * 101, '[' + '1' * 101 + ']',
                                  '[1]\x00', '[-0, 1.5e3, true, false, null]', '[' * 100_000, b'[1]', None])
def test_the_packets_json_reader_answers_exactly_as_the_libraries_decoder(text):
    """The tap's JSON reader skips the decoder's whitespace look-ups when the value fills the text; whatever
    the text, it returns or raises what the libraries' decoder (with their parse_int) does."""
    import json as json_
    from engineio import json as engineio_json
    reference = json_.JSONDecoder(parse_int=engineio_json._safe_int).decode

    def outcome(loads):
        try:
            return "value", loads(text)
        except Exception as exc:
            return type(exc).__name__, str(exc)
    from siolab import protocol
    for module in (protocol._sio_packet(), protocol._eio_packet()):
        assert repr(outcome(module.Packet.json.loads)) == repr(outcome(reference))
