"""The recorder on its own: observed traffic in, Records out, with no sockets, loop or clock."""
import ast
from pathlib import Path

import pytest

from siolab import recorder as recorder_module
from siolab.record import LazyRecord, Record
from siolab.recorder import Recorder, parse_query, strip_client

OPEN = '0{"sid":"S1","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":20}'


def exchange(recorder: Recorder, method: str, query_string: str, body: bytes = b"", t: float = 1.0,
             client: str | None = None, server: str | None = None):
    return recorder.exchange(t=t, method=method, path="/socket.io/", query_string=query_string,
                             query=parse_query(query_string), client_header=client, body=body, server=server,
                             key=object())


def answer(recorder: Recorder, x, body: bytes, status: int = 200, t: float = 1.1, ctype="text/plain; charset=UTF-8"):
    return recorder.response(x, status=status, content_type=ctype, content_encoding=None, body=body, t=t)


def handshake(recorder: Recorder, client: str | None = "alice", server: str | None = None):
    x = exchange(recorder, "GET", "EIO=4&transport=polling", client=client, server=server)
    (request,), packets = recorder.request(x)
    records, _, _ = answer(recorder, x, OPEN.encode())
    return request, records[0]


def test_the_recorder_does_no_io_and_keeps_no_ambient_state():
    tree = ast.parse(Path(recorder_module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert not imported & {"asyncio", "socket", "aiohttp", "contextvars", "time", "threading"}, imported


def test_a_handshake_is_explained_and_teaches_the_session_and_its_client():
    recorder = Recorder()
    request, opened = handshake(recorder, server="A")
    assert request.kind == "http" and request.note == "handshake: open a session" and request.server == "A"
    assert opened.eio == "open" and opened.sid == "S1" and opened.client == "alice" and opened.server == "A"
    assert recorder.names == {"S1": "alice"} and recorder.knows("S1")
    later = exchange(recorder, "GET", "EIO=4&transport=polling&sid=S1")  # no name given: the session's
    (poll,), _ = recorder.request(later)
    assert poll.client == "alice" and poll.note.startswith("long-poll")


def test_the_client_parameter_is_stripped_with_or_without_a_value_and_the_first_value_wins():
    assert strip_client("EIO=4&siolab_client=bob&transport=polling") == "EIO=4&transport=polling"
    assert strip_client("EIO=4&siolab_client&transport=polling") == "EIO=4&transport=polling"
    assert strip_client("EIO=4&siolab_clientele=1") == "EIO=4&siolab_clientele=1"
    assert parse_query("a=1&a=2&b=%41+b") == {"a": "1", "b": "A b"}
    recorder = Recorder()
    x = exchange(recorder, "GET", "EIO=4&transport=polling&siolab_client=bob")
    (request,), _ = recorder.request(x)
    assert request.client == "bob" and "siolab_client" not in request.http["path"]
    nameless = exchange(recorder, "GET", "EIO=4&transport=polling&siolab_client")
    assert recorder.request(nameless)[0][0].client is None  # an empty name is no name


def test_the_ok_to_a_post_says_when_read_whether_its_packet_was_valid():
    recorder = Recorder()
    handshake(recorder)
    for body, says in ((b'42["chat","hi"]', "the server accepted the POST"),
                       (b'42["chat"', "carried something invalid")):
        x = exchange(recorder, "POST", "EIO=4&transport=polling&sid=S1", body=body)
        (packet,), packets = recorder.request(x)
        assert packets and isinstance(packet, LazyRecord)
        (ok,), _, _ = answer(recorder, x, b"ok")
        assert isinstance(ok, LazyRecord) and says in ok.note


def test_an_overlapping_long_poll_and_a_too_big_post_are_explained():
    recorder = Recorder()
    handshake(recorder)
    first = exchange(recorder, "GET", "EIO=4&transport=polling&sid=S1")
    recorder.poll_started(first)
    second = exchange(recorder, "GET", "EIO=4&transport=polling&sid=S1")
    (request,), _ = recorder.request(second)
    assert "a second long-poll" in request.error
    recorder.poll_ended(first)
    assert not exchange(recorder, "GET", "EIO=4&transport=polling&sid=S1").overlap
    big = exchange(recorder, "POST", "EIO=4&transport=polling&sid=S1", body=b'42["' + b"x" * 40 + b'"]')
    recorder.request(big)
    (refused,), packets, _ = answer(recorder, big, b'"Bad Request"', status=400)
    assert not packets and "maxPayload of 20 bytes" in refused.error


def test_binary_events_are_paired_with_their_attachments_across_messages():
    recorder = Recorder()
    handshake(recorder)
    stream = recorder.websocket("S1", "alice", None)
    assert recorder.message(stream, "c2s", 1, b'451-["file",{"_placeholder":true,"num":0}]', 2.0) == []
    event, attachment = recorder.message(stream, "c2s", 2, b"\x01\x02\x03", 2.1)
    assert event.sio == "binary_event" and event.args == ["<3 bytes>"] and event.t == 2.0
    assert attachment.binary and attachment.note == "attachment 0" and attachment.t == 2.1


def test_a_close_records_what_still_waited_then_the_close():
    recorder = Recorder()
    handshake(recorder)
    stream = recorder.websocket("S1", "alice", "B")
    recorder.message(stream, "s2c", 1, b'451-["file",{"_placeholder":true,"num":0}]', 2.0)
    waiting, closed = recorder.closed(stream, "s2c", 1009, 3.0)
    assert "placeholder with no attachment" in waiting.error and waiting.server == "B"
    assert closed.kind == "ws" and "code 1009" in closed.note and "maxPayload" in closed.error
    (normal,) = recorder.closed(stream, "c2s", 1000, 3.0)
    assert normal.error is None and "normal closure" in normal.note


def test_a_packet_after_the_close_packet_and_text_that_is_not_utf8_are_errors():
    recorder = Recorder()
    handshake(recorder)
    stream = recorder.websocket("S1", "alice", None)
    (close,) = recorder.message(stream, "c2s", 1, b"1", 1.0)
    assert close.eio == "close" and close.error is None
    (late,) = recorder.message(stream, "c2s", 1, b'42["x"]', 1.1)
    assert "after this side's close packet" in late.error
    (bad,) = recorder.message(stream, "s2c", 1, b'42["\xff"]', 1.2)
    assert "not UTF-8" in bad.error and "\\xff" in bad.raw


def test_the_open_packet_over_a_websocket_names_the_stream():
    recorder = Recorder()
    stream = recorder.websocket(None, "carol", None)
    (opened,) = recorder.message(stream, "s2c", 1, OPEN.encode(), 0.5)
    assert stream.sid == "S1" and opened.sid == "S1" and recorder.names["S1"] == "carol"


@pytest.mark.parametrize("layer", ["socket.io", "engine.io"])
def test_held_packets_say_so_and_the_engine_io_layer_stops_at_engine_io(layer):
    recorder = Recorder(layer)
    handshake(recorder)
    stream = recorder.websocket("S1", "alice", None)
    (held,) = recorder.message(stream, "c2s", 1, b'42["x"]', 1.0, held=True)
    assert "held by the tap" in held.note and type(held) is Record
    assert (held.sio == "event") == (layer == "socket.io")
