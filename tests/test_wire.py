"""siolab.wire: HTTP/1.1 heads, body framing, chunked bodies and WebSocket frames, checked against h11 and wsproto."""
from __future__ import annotations

import ast
import os
from pathlib import Path

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.frame_protocol import FrameProtocol, Opcode

from siolab import wire
from siolab.wire import (
    MAX_HEAD, OPCODES, ChunkedReader, Frame, FrameReader, Request, Response, WireError, build_frame,
    close_frame_payload, head_end, parse_close, parse_request, parse_response, request_body, response_body,
    strip_query_param,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REQ = (b"POST /socket.io/?EIO=4&transport=polling&t=abc&sid=xyz HTTP/1.1\r\n"
       b"Host: localhost:8080\r\n"
       b"User-Agent: Mozilla/5.0\r\n"
       b"Accept: */*\r\n"
       b"Cookie: a=1\r\n"
       b"cookie: b=2\r\n"
       b"Content-Type: text/plain;charset=UTF-8\r\n"
       b"Content-Length: 5\r\n"
       b"\r\n")
RESP = (b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: text/plain; charset=UTF-8\r\n"
        b"Set-Cookie: io=abc; Path=/\r\n"
        b"Set-Cookie: other=1\r\n"
        b"Content-Length: 2\r\n"
        b"\r\n")


# ---------------------------------------------------------------------------------------------- heads

def test_request_fields_and_lookups():
    req = parse_request(REQ)
    assert (req.method, req.version) == ("POST", "HTTP/1.1")
    assert req.target == "/socket.io/?EIO=4&transport=polling&t=abc&sid=xyz"
    assert req.path == "/socket.io/"
    assert req.query_string == "EIO=4&transport=polling&t=abc&sid=xyz"
    assert req.headers[0] == ("Host", "localhost:8080")
    assert req.get("HOST") == req.get("host") == "localhost:8080"
    assert req.get("cookie") == "a=1"  # first match
    assert req.get_all("COOKIE") == ["a=1", "b=2"]
    assert req.get("missing") is None
    assert req.get("missing", "dflt") == "dflt"
    assert req.get_all("missing") == []


def test_path_and_query_without_question_mark():
    req = parse_request(b"GET /a/b HTTP/1.0\r\n\r\n")
    assert (req.path, req.query_string, req.version, req.headers) == ("/a/b", "", "HTTP/1.0", ())
    req = parse_request(b"GET /a?x=1?y HTTP/1.1\r\n\r\n")
    assert (req.path, req.query_string) == ("/a", "x=1?y")


def test_round_trip_request_and_response():
    for parse, head in ((parse_request, REQ), (parse_response, RESP)):
        msg = parse(head)
        assert msg.encode() == head  # already canonical
        assert parse(msg.encode()) == msg
        assert parse(bytearray(head)) == msg
        assert parse(memoryview(head)) == msg


def test_encode_normalises_whitespace_and_line_ends():
    req = parse_request(b"GET / HTTP/1.1\nHost:x\nX-A: \t spaced  value \t\n\n")
    assert req.headers == (("Host", "x"), ("X-A", "spaced  value"))
    assert req.encode() == b"GET / HTTP/1.1\r\nHost: x\r\nX-A: spaced  value\r\n\r\n"


def test_response_fields():
    resp = parse_response(RESP)
    assert (resp.version, resp.status, resp.reason) == ("HTTP/1.1", 200, "OK")
    assert resp.get_all("set-cookie") == ["io=abc; Path=/", "other=1"]
    assert resp.get("CONTENT-length") == "2"
    resp = parse_response(b"HTTP/1.1 404 Not Found Here\r\n\r\n")
    assert (resp.status, resp.reason) == (404, "Not Found Here")
    for head in (b"HTTP/1.1 200\r\n\r\n", b"HTTP/1.1 200 \r\n\r\n"):
        resp = parse_response(head)
        assert (resp.status, resp.reason) == (200, "")
        assert resp.encode() == b"HTTP/1.1 200 \r\n\r\n"
        assert parse_response(resp.encode()) == resp


def test_latin1_headers_round_trip():
    head = "GET / HTTP/1.1\r\nX-Name: caf\xe9 \xff\r\n\r\n".encode("latin-1")
    req = parse_request(head)
    assert req.get("x-name") == "caf\xe9 \xff"
    assert req.encode() == head


def test_pathological_whitespace_is_parsed_in_linear_time():
    # a lazy "strip the trailing whitespace" pattern would backtrack quadratically (minutes) on these
    for value, expected in ((b"x" + b" " * 60000 + b"y", "x" + " " * 60000 + "y"),
                            (b"x" + b" \t" * 30000, "x"), (b" " * 60000, "")):
        assert parse_request(b"GET / HTTP/1.1\r\nA:" + value + b"\r\nB: 1 \r\n\r\n").headers == \
            (("A", expected), ("B", "1"))


def test_heads_over_the_limit_are_refused():
    with pytest.raises(WireError, match="over the 65536-byte limit"):
        parse_request(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n")


def test_leading_empty_lines_are_ignored():
    req = parse_request(b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (req.method, req.target, req.get("host")) == ("GET", "/", "x")


def test_with_changes():
    req = parse_request(REQ)
    new = req.with_changes(target="/socket.io/?EIO=4", drop=["COOKIE", "user-agent"],
                           set={"host": "upstream:9000", "X-Forwarded-For": "1.2.3.4"})
    assert new.target == "/socket.io/?EIO=4" and new.path == "/socket.io/"
    assert new.get_all("cookie") == [] and new.get("User-Agent") is None
    assert new.headers[0] == ("host", "upstream:9000")  # replaced in place
    assert new.headers[-1] == ("X-Forwarded-For", "1.2.3.4")  # appended
    assert new.get("accept") == "*/*" and new.get("content-length") == "5"
    assert req.get("host") == "localhost:8080"  # the original is untouched
    assert parse_request(new.encode()) == new
    # set replaces every header of that name with exactly one, where the first one was
    both = req.with_changes(set={"Cookie": "c=3"})
    assert both.get_all("cookie") == ["c=3"]
    assert [k for k, _ in both.headers].index("Cookie") == 3
    assert len(both.headers) == len(req.headers) - 1
    # nothing to change: the same headers
    assert req.with_changes() == req
    # drop and set of the same name: dropped, then set once at the end
    assert req.with_changes(drop=["host"], set={"Host": "h"}).headers[-1] == ("Host", "h")
    resp = parse_response(RESP).with_changes(drop=["set-cookie"], set={"Content-Length": "9", "Via": "tap"})
    assert resp.get_all("set-cookie") == [] and resp.get("content-length") == "9" and resp.get("via") == "tap"
    assert (resp.status, resp.reason) == (200, "OK")
    assert parse_response(resp.encode()) == resp


def test_with_changes_refuses_header_injection():
    req = parse_request(REQ)
    for bad in ({"X-A": "v\r\nEvil: 1"}, {"X-A": "v\nEvil: 1"}, {"Bad Name": "v"}, {"": "v"}, {"X": "\u20ac"}):
        with pytest.raises(WireError):
            req.with_changes(set=bad)
    with pytest.raises(WireError):
        req.with_changes(target="/a b")
    with pytest.raises(WireError):  # built by hand, bypassing the checks: encode still refuses
        Request("GET", "/", "HTTP/1.1", (("X", "a\r\nEvil: 1"),)).encode()
    with pytest.raises(WireError):
        Response("HTTP/1.1", 200, "OK\r\nEvil: 1", ()).encode()


@pytest.mark.parametrize("head, words", [
    (b"GARBAGE\r\n\r\n", "not an HTTP/1.1 request line: 'GARBAGE'"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "request line"),
    (bytes(range(1, 10)) + b"\r\n\r\n", "request line"),
    (b"GET /\r\n\r\n", "request line"),
    (b"GET / HTTP/2.0\r\n\r\n", "version"),
    (b"GET / SPDY/1.1\r\n\r\n", "no HTTP version"),
    (b"GET  / HTTP/1.1\r\n\r\n", "request line"),
    (b"G(T / HTTP/1.1\r\n\r\n", "method"),
    (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", "whitespace between a header name and its colon"),
    (b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n", "whitespace between a header name and its colon"),
    (b"GET / HTTP/1.1\r\n: x\r\n\r\n", "empty header name"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n  folded\r\n\r\n", "obsolete line folding"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\tfolded\r\n\r\n", "obsolete line folding"),
    (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "without a colon"),
    (b"GET / HTTP/1.1\r\nX\x01Y: 1\r\n\r\n", "invalid character in a header name"),
    (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "control character"),
    (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "bare CR"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n", "does not end with a blank line"),
    (b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", "after the blank line"),
    (b"\r\n\r\n", "empty head"),
    (b"\n\n", "empty head"),
])
def test_malformed_request_heads(head, words):
    with pytest.raises(WireError) as err:
        parse_request(head)
    assert words in str(err.value)
    assert len(str(err.value)) < 200  # echoed input is truncated


def test_error_messages_truncate_long_input():
    with pytest.raises(WireError) as err:
        parse_request(b"X" * 5000 + b"\r\n\r\n")
    message = str(err.value)
    assert message.endswith("...") and len(message) < 120


@pytest.mark.parametrize("head, words", [
    (b"HTTP/1.1 20 OK\r\n\r\n", "3 digits"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "3 digits"),
    (b"HTTP/1.1 abc OK\r\n\r\n", "3 digits"),
    (b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n", "3 digits"),  # latin-1 superscript digits are not ASCII digits
    (b"HTTP/1.1\r\n\r\n", "3 digits"),
    (b"HTTP/2 200 OK\r\n\r\n", "version"),
    (b"GARBAGE 200 OK\r\n\r\n", "not an HTTP/1.1 status line"),
    (b"\x00\x01\x02\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 O\x00K\r\n\r\n", "control character"),
    (b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", "whitespace"),
    (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "folding"),
])
def test_malformed_response_heads(head, words):
    with pytest.raises(WireError) as err:
        parse_response(head)
    assert words in str(err.value)


def test_head_end():
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert head_end(b"") == -1
    assert head_end(head[:-1]) == -1
    assert head_end(head[:-2]) == -1
    assert head_end(head) == len(head)
    assert head_end(head + b"body bytes\r\n\r\n") == len(head)
    assert head_end(bytearray(head)) == len(head)
    assert head_end(b"xx" + head, 2) == len(head) + 2
    assert head_end(head + head, len(head)) == 2 * len(head)
    bare = b"GET / HTTP/1.1\nHost: x\n\n"
    assert head_end(bare + b"next") == len(bare)
    mixed = b"GET / HTTP/1.1\r\nHost: x\n\r\n"
    assert head_end(mixed + b"next") == len(mixed)
    mixed = b"GET / HTTP/1.1\nHost: x\r\n\n"
    assert head_end(mixed + b"next") == len(mixed)
    assert parse_request(mixed).get("host") == "x"
    # the first blank line ends the head, whichever line ends it and whatever follows
    first = b"GET / HTTP/1.1\n\n"
    assert head_end(first + b"GET / HTTP/1.1\r\n\r\n") == len(first)
    first = b"GET / HTTP/1.1\r\n\r\n"
    assert head_end(first + b"GET / HTTP/1.1\n\n") == len(first)
    # empty lines before the start line belong to the head; alone they are not a head yet
    assert head_end(b"\r\n\r\n") == -1
    assert head_end(b"\r\n\r\n" + head) == len(head) + 4
    assert head_end(b"\n" + bare) == len(bare) + 1


def test_head_end_limit():
    assert head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * 1000) == -1
    with pytest.raises(WireError, match="within 65536 bytes"):
        head_end(b"GET / HTTP/1.1\r\nX: " + b"a" * MAX_HEAD)
    with pytest.raises(WireError):
        head_end(b"\x00" * (MAX_HEAD + 1))
    with pytest.raises(WireError):
        head_end(b"\r\n" * (MAX_HEAD // 2 + 1))
    # a head of exactly MAX_HEAD bytes is fine; one more byte is not
    start = b"GET / HTTP/1.1\r\nX: "
    exact = start + b"a" * (MAX_HEAD - len(start) - 4) + b"\r\n\r\n"
    assert len(exact) == MAX_HEAD and head_end(exact) == MAX_HEAD
    assert parse_request(exact).get("x") == "a" * (MAX_HEAD - len(start) - 4)
    with pytest.raises(WireError):
        head_end(start + b"a" * (MAX_HEAD - len(start) - 3) + b"\r\n\r\n")
    # the limit counts from start, not from the beginning of the buffer
    assert head_end(b"z" * MAX_HEAD + exact, MAX_HEAD) == 2 * MAX_HEAD


# ------------------------------------------------------------------------------- differential: h11

_TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SPECIAL = {"host", "content-length", "transfer-encoding", "connection", "upgrade", "expect"}
tokens = st.text(_TCHARS, min_size=1, max_size=12)
names = tokens.filter(lambda n: n.lower() not in _SPECIAL)
vchars = st.characters(min_codepoint=0x21, max_codepoint=0xFF, blacklist_categories=("Cc",))
values = st.lists(st.text(vchars, min_size=1, max_size=8), max_size=4).map(" ".join)
padding = st.sampled_from(["", " ", "\t", "  \t "])
targets = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40).map(lambda t: "/" + t)


@st.composite
def header_lists(draw):
    items = draw(st.lists(st.tuples(names, values), max_size=8))
    wire = [f"{name}:{draw(padding)}{value}{draw(padding)}" for name, value in items]
    return items, wire


@SETTINGS
@given(method=tokens, target=targets, host=st.text(vchars, min_size=1, max_size=10), headers=header_lists(),
       crlf=st.booleans(), minor=st.sampled_from("01"))
def test_requests_match_h11(method, target, host, headers, crlf, minor):
    items, wire = headers
    eol = "\r\n" if crlf else "\n"
    text = eol.join([f"{method} {target} HTTP/1.{minor}", f"Host: {host}", *wire]) + eol + eol
    head = text.encode("latin-1")
    assert head_end(head + b"tail") == len(head)
    req = parse_request(head)
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, h11.Request)
    assert req.method.encode("latin-1") == event.method
    assert req.target.encode("latin-1") == event.target
    assert req.version == "HTTP/" + event.http_version.decode()
    assert [(k.encode("latin-1"), v.encode("latin-1")) for k, v in req.headers] == \
        list(event.headers.raw_items())
    assert req.headers == (("Host", host), *items)
    # and h11 reads our encoding the same way
    again = h11.Connection(h11.SERVER)
    again.receive_data(req.encode())
    assert again.next_event().headers.raw_items() == event.headers.raw_items()
    assert parse_request(req.encode()) == req


@SETTINGS
@given(status=st.integers(100, 599).filter(lambda s: s != 101),
       reason=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
       headers=header_lists())
def test_responses_match_h11(status, reason, headers):
    items, wire = headers
    head = ("\r\n".join([f"HTTP/1.1 {status} {reason}", *wire]) + "\r\n\r\n").encode("latin-1")
    resp = parse_response(head)
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, (h11.Response, h11.InformationalResponse))
    assert resp.status == event.status_code
    assert resp.reason.encode("latin-1") == event.reason
    assert [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers] == \
        list(event.headers.raw_items())
    assert resp.headers == tuple(items)
    assert parse_response(resp.encode()) == resp


# ------------------------------------------------------------------------------------ body framing

def _req(*headers: str, method: str = "POST") -> Request:
    return parse_request(("\r\n".join([f"{method} / HTTP/1.1", *headers]) + "\r\n\r\n").encode())


def _resp(status: int, *headers: str) -> Response:
    return parse_response(("\r\n".join([f"HTTP/1.1 {status} X", *headers]) + "\r\n\r\n").encode())


def test_request_body_framing():
    assert request_body(_req()) == ("length", 0)
    assert request_body(_req(method="GET")) == ("length", 0)
    assert request_body(_req("Content-Length: 42")) == ("length", 42)
    assert request_body(_req("Content-Length: 0")) == ("length", 0)
    assert request_body(_req("Content-Length: 7", "content-length: 7")) == ("length", 7)
    assert request_body(_req("Content-Length: 7, 7")) == ("length", 7)
    assert request_body(_req("Transfer-Encoding: chunked")) == ("chunked", 0)
    assert request_body(_req("Transfer-Encoding: gzip, Chunked")) == ("chunked", 0)
    assert request_body(_req("Transfer-Encoding: gzip", "Transfer-Encoding: chunked")) == ("chunked", 0)
    # Transfer-Encoding wins over Content-Length (RFC 9112 6.3)
    assert request_body(_req("Content-Length: 5", "Transfer-Encoding: chunked")) == ("chunked", 0)


@pytest.mark.parametrize("headers, words", [
    (("Content-Length: -5",), "negative"),
    (("Content-Length: abc",), "invalid"),
    (("Content-Length: 5 5",), "invalid"),
    (("Content-Length: +5",), "invalid"),
    (("Content-Length: 0x10",), "invalid"),
    (("Content-Length: ",), "invalid"),
    (("Content-Length: \xb2",), "invalid"),
    (("Content-Length: 5", "Content-Length: 6"), "conflicting"),
    (("Content-Length: 5, 6",), "conflicting"),
    (("Content-Length: 99999999999999999999999",), "absurd"),
    (("Transfer-Encoding: chunked, gzip",), "does not end in chunked"),
])
def test_request_body_errors(headers, words):
    with pytest.raises(WireError, match=words):
        request_body(_req(*headers))


def test_response_body_framing():
    cl = "Content-Length: 10"
    te = "Transfer-Encoding: chunked"
    assert response_body(_resp(200, cl), "GET") == ("length", 10)
    assert response_body(_resp(200, te), "GET") == ("chunked", 0)
    assert response_body(_resp(200, cl, te), "GET") == ("chunked", 0)
    assert response_body(_resp(200), "GET") == ("close", 0)
    assert response_body(_resp(200, "Transfer-Encoding: gzip"), "GET") == ("close", 0)
    assert response_body(_resp(200, "Content-Length: 0"), "POST") == ("length", 0)
    for status in (100, 101, 103, 199, 204, 304):
        assert response_body(_resp(status, cl), "GET") == ("none", 0), status
        assert response_body(_resp(status, te), "GET") == ("none", 0), status
    for status in (200, 404, 500):
        assert response_body(_resp(status, cl, te), "HEAD") == ("none", 0)
    assert response_body(_resp(205, cl), "GET") == ("length", 10)
    assert response_body(_resp(200, cl), "head") == ("length", 10)  # methods are case-sensitive
    with pytest.raises(WireError, match="conflicting"):
        response_body(_resp(200, "Content-Length: 1", "Content-Length: 2"), "GET")
    with pytest.raises(WireError, match="negative"):
        response_body(_resp(200, "Content-Length: -1"), "GET")


# ----------------------------------------------------------------------------------- chunked bodies

CHUNKED = b"5\r\nhello\r\n6;name=value\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n"
NEXT = b"HTTP/1.1 200 OK\r\n\r\n"


def test_chunked_whole():
    reader = ChunkedReader()
    assert reader.feed(CHUNKED + NEXT) == len(CHUNKED)
    assert reader.done and reader.body == b"hello world0123456789"
    assert reader.raw_length == len(CHUNKED)
    assert reader.feed(NEXT) == 0  # done: nothing more belongs to this body
    assert reader.raw_length == len(CHUNKED)


def test_chunked_byte_by_byte():
    reader = ChunkedReader()
    data = CHUNKED + NEXT
    used = [reader.feed(data[i:i + 1]) for i in range(len(data))]
    assert used == [1] * len(CHUNKED) + [0] * len(NEXT)
    assert reader.done and reader.body == b"hello world0123456789" and reader.raw_length == len(CHUNKED)
    assert not ChunkedReader().done


def test_chunked_trailers_bare_lf_and_buffer_types():
    data = b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other: y\r\n\r\n"
    for kind in (bytes, bytearray, memoryview):
        reader = ChunkedReader()
        assert reader.feed(kind(data + b"GET")) == len(data)
        assert reader.done and reader.body == b"abc"
    bws = b"3 ;ext\r\nabc\r\n0\r\n\r\n"  # RFC 9112 allows whitespace before ";" (h11 does not)
    reader = ChunkedReader()
    assert reader.feed(bws) == len(bws) and reader.done and reader.body == b"abc"
    lf = b"3\nabc\n0\nX-T: 1\n\n"
    reader = ChunkedReader()
    assert reader.feed(lf + b"rest") == len(lf) and reader.done and reader.body == b"abc"
    partial = ChunkedReader()
    assert partial.feed(data[:-1]) == len(data) - 1
    assert not partial.done
    assert partial.feed(b"\nrest") == 1 and partial.done


def test_chunked_large_chunk_uppercase_hex():
    payload = os.urandom(70000)
    data = b"%X\r\n" % len(payload) + payload + b"\r\n0\r\n\r\n"
    reader = ChunkedReader()
    assert reader.feed(data[:1000]) == 1000 and not reader.done
    assert reader.feed(data[1000:]) == len(data) - 1000
    assert reader.done and reader.body == payload


@st.composite
def chunked_bodies(draw):
    chunks = draw(st.lists(st.binary(min_size=1, max_size=300), max_size=6))
    wire = b""
    for chunk in chunks:
        size = draw(st.sampled_from(["%x", "%X", "%04x"])) % len(chunk)
        ext = draw(st.sampled_from(["", ";a=b", "; x", ';q="v"', "\t"]))
        wire += f"{size}{ext}\r\n".encode() + chunk + b"\r\n"
    trailers = draw(st.lists(st.sampled_from([b"X-A: 1", b"Expires: never", b"T:"]), max_size=2))
    wire += b"0\r\n" + b"".join(t + b"\r\n" for t in trailers) + b"\r\n"
    return b"".join(chunks), wire


@SETTINGS
@given(body=chunked_bodies(), tail=st.binary(max_size=30), cuts=st.lists(st.integers(0, 2000), max_size=12))
def test_chunked_random_splits(body, tail, cuts):
    payload, wire = body
    data = wire + tail
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    reader = ChunkedReader()
    used = 0
    for a, b in zip(points, points[1:]):
        piece = data[a:b]
        took = reader.feed(piece)
        assert 0 <= took <= len(piece)
        if not reader.done:
            assert took == len(piece)
        used += took
    assert reader.done and used == len(wire) == reader.raw_length
    assert reader.body == payload
    # h11 decodes the same payload from the same wire bytes
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + wire)
    got = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Data):
            got += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    assert got == payload


@pytest.mark.parametrize("data, words", [
    (b"zz\r\n", "not a chunk-size line"),
    (b"-1\r\n", "not a chunk-size line"),
    (b"\r\n", "not a chunk-size line"),
    (b"0x5\r\n", "not a chunk-size line"),
    (b"1" * 17 + b"\r\n", "not a chunk-size line"),
    (b"5\r\nhelloXX\r\n", "past the chunk's declared size"),
    (b"5\r\nhello", None),  # incomplete, not malformed
    (b"1" * 2000, "longer than 1024"),
    (b"5;" + b"e" * 1100 + b"\r\n", "longer than 1024"),
    (b"0\r\nnot a field\r\n\r\n", "trailer"),
    (b"0\r\n folded: x\r\n\r\n", "trailer"),
])
def test_chunked_malformed(data, words):
    reader = ChunkedReader()
    if words is None:
        assert reader.feed(data) == len(data) and not reader.done
        return
    with pytest.raises(WireError, match=words):
        reader.feed(data)


def test_chunked_long_size_line_rejected_while_incomplete():
    reader = ChunkedReader()
    for _ in range(10):
        assert reader.feed(b"1" * 100) == 100
    with pytest.raises(WireError, match="longer than 1024"):
        reader.feed(b"1" * 100)


# ------------------------------------------------------------------------------- WebSocket frames

SIZES = [0, 1, 125, 126, 127, 65535, 65536, 70000]
MASK = b"\x37\xfa\x21\x3d"


def test_build_frame_known_bytes():
    # RFC 6455 5.7 examples
    assert build_frame(1, b"Hello") == b"\x81\x05\x48\x65\x6c\x6c\x6f"
    assert build_frame(1, b"Hello", mask=MASK) == b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"
    assert build_frame(1, b"Hel", fin=False) == b"\x01\x03\x48\x65\x6c"
    assert build_frame(0, b"lo") == b"\x80\x02\x6c\x6f"
    assert build_frame(9, b"Hello") == b"\x89\x05\x48\x65\x6c\x6c\x6f"
    assert build_frame(2, b"\x00" * 256)[:4] == b"\x82\x7e\x01\x00"
    assert build_frame(2, b"\x00" * 65536)[:10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    frames = FrameReader().feed(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")
    assert frames == [Frame(True, 0, 1, True, b"Hello", b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58")]
    with pytest.raises(ValueError):
        build_frame(16)
    with pytest.raises(ValueError):
        build_frame(1, b"x", mask=b"abc")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mask", [None, MASK])
@pytest.mark.parametrize("opcode", [1, 2])
def test_build_frame_parses_back_and_matches_wsproto(size, mask, opcode):
    payload = (b"abcdefgh" * (size // 8 + 1))[:size] if opcode == 1 else os.urandom(size)
    raw = build_frame(opcode, payload, mask=mask)
    frames = FrameReader().feed(raw)
    assert len(frames) == 1
    frame = frames[0]
    assert (frame.fin, frame.rsv, frame.opcode, frame.masked) == (True, 0, opcode, mask is not None)
    assert frame.payload == payload and frame.raw == raw
    # wsproto reads our bytes the same way (a server reads masked frames, a client unmasked ones)
    proto = FrameProtocol(client=mask is None, extensions=[])
    proto.receive_bytes(raw)
    (theirs,) = list(proto.received_frames())
    assert theirs.opcode == Opcode(opcode) and theirs.message_finished
    assert theirs.payload == (payload.decode() if opcode == 1 else payload)


def _wsproto_bytes(client: bool) -> tuple[bytes, list[tuple[bool, int, bytes]]]:
    """Bytes a wsproto client (masked) or server (unmasked) writes, and the frames they should parse to."""
    conn = Connection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
    sent = []
    wire = b""

    def send(event, *expect):
        nonlocal wire
        wire += conn.send(event)
        sent.extend(expect)

    for size in SIZES:
        text = ("\u00e9x" * size)[:size]
        send(TextMessage(data=text), (True, 1, text.encode()))
        send(BytesMessage(data=bytes(size)), (True, 2, bytes(size)))
    send(TextMessage(data="frag", message_finished=False), (False, 1, b"frag"))
    send(TextMessage(data="ment", message_finished=False), (False, 0, b"ment"))
    send(TextMessage(data="ed", message_finished=True), (True, 0, b"ed"))
    send(BytesMessage(data=b"\x00\x01", message_finished=False), (False, 2, b"\x00\x01"))
    send(BytesMessage(data=b"\x02", message_finished=True), (True, 0, b"\x02"))
    send(Ping(payload=b"ping!"), (True, 9, b"ping!"))
    send(Pong(payload=b""), (True, 10, b""))
    send(Ping(payload=b"p" * 125), (True, 9, b"p" * 125))
    send(CloseConnection(code=1001, reason="going away"), (True, 8, close_frame_payload(1001, "going away")))
    return wire, sent


@pytest.mark.parametrize("client", [True, False])
def test_frames_from_wsproto(client):
    wire, expected = _wsproto_bytes(client)
    frames = FrameReader().feed(wire)
    assert [(f.fin, f.opcode, f.payload) for f in frames] == expected
    assert all(f.masked == client and f.rsv == 0 for f in frames)
    assert b"".join(f.raw for f in frames) == wire
    assert parse_close(frames[-1].payload) == (1001, "going away")
    for frame in frames:  # every raw is one exact frame: it parses alone to itself
        assert FrameReader().feed(frame.raw) == [frame]
    # fed one byte at a time, then in three uneven parts, the frames are the same
    reader = FrameReader()
    one_by_one = [f for i in range(len(wire)) for f in reader.feed(wire[i:i + 1])]
    assert one_by_one == frames and reader.buffered == 0
    reader = FrameReader()
    parts = [f for piece in (wire[:3], wire[3:70001], wire[70001:]) for f in reader.feed(bytearray(piece))]
    assert parts == frames


@st.composite
def frame_lists(draw):
    out = []
    for _ in range(draw(st.integers(1, 6))):
        opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10]))
        limit = 125 if opcode >= 8 else 400
        payload = draw(st.binary(max_size=limit))
        fin = True if opcode >= 8 else draw(st.booleans())
        mask = draw(st.none() | st.binary(min_size=4, max_size=4))
        out.append((opcode, payload, fin, mask))
    return out


@SETTINGS
@given(specs=frame_lists(), cuts=st.lists(st.integers(0, 5000), max_size=10),
       kind=st.sampled_from([bytes, bytearray, memoryview]))
def test_frames_random_splits(specs, cuts, kind):
    raws = [build_frame(op, payload, fin=fin, mask=mask) for op, payload, fin, mask in specs]
    wire = b"".join(raws)
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    reader = FrameReader()
    frames = []
    for a, b in zip(points, points[1:]):
        frames += reader.feed(kind(wire[a:b]))
        assert reader.buffered == b - sum(len(f.raw) for f in frames)
    assert [f.raw for f in frames] == raws
    assert [(f.opcode, f.payload, f.fin, f.masked) for f in frames] == \
        [(op, payload, fin, mask is not None) for op, payload, fin, mask in specs]
    assert frames == FrameReader().feed(wire)
    assert reader.buffered == 0


def test_partial_frame_is_buffered():
    raw = build_frame(2, b"x" * 300, mask=MASK)
    reader = FrameReader()
    assert reader.feed(raw[:100]) == [] and reader.buffered == 100
    assert reader.feed(raw[100:-1]) == [] and reader.buffered == len(raw) - 1
    (frame,) = reader.feed(raw[-1:] + raw[:5])
    assert frame.raw == raw and reader.buffered == 5
    assert reader.feed(b"") == [] and reader.buffered == 5
    assert reader.feed(memoryview(raw)[5:]) == [frame] and reader.buffered == 0


def test_rsv_bits_are_reported():
    raw = bytes([0x80 | 0x40 | 0x02, 0x01, 0x61])  # RSV1, as permessage-deflate sets it
    (frame,) = FrameReader().feed(raw)
    assert (frame.rsv, frame.opcode, frame.payload, frame.masked) == (4, 2, b"a", False)


def test_max_payload_rejected_with_only_the_header_buffered():
    header = bytes([0x82, 0xFF]) + (1 << 40).to_bytes(8, "big")  # masked binary, 1 TiB declared
    reader = FrameReader(max_payload=1_000_000)
    for i in range(9):
        assert reader.feed(header[i:i + 1]) == []
        assert reader.buffered == i + 1
    with pytest.raises(WireError, match="1099511627776-byte payload, over the 1000000-byte limit"):
        reader.feed(header[9:10])
    # the 16-bit length form, in one go
    with pytest.raises(WireError, match="over the 100-byte limit"):
        FrameReader(max_payload=100).feed(b"\x81\x7e\x00\xc8")
    # the 7-bit form too
    with pytest.raises(WireError, match="over the 10-byte limit"):
        FrameReader(max_payload=10).feed(b"\x81\x0b")
    # exactly the limit is fine
    raw = build_frame(2, b"y" * 100, mask=MASK)
    assert FrameReader(max_payload=100).feed(raw)[0].payload == b"y" * 100
    # no limit: a huge declared length is only buffered as it arrives
    reader = FrameReader()
    assert reader.feed(header + b"abc") == [] and reader.buffered == len(header) + 3


def test_length_with_top_bit_set():
    with pytest.raises(WireError, match="most significant bit"):
        FrameReader().feed(b"\x82\x7f" + (1 << 63).to_bytes(8, "big"))


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_reserved_opcodes(opcode):
    assert opcode not in OPCODES
    reader = FrameReader()
    with pytest.raises(WireError, match=f"reserved WebSocket opcode {opcode}"):
        reader.feed(build_frame(opcode, b"")[:2])
    with pytest.raises(WireError):  # also after a good frame in the same chunk
        FrameReader().feed(build_frame(1, b"ok") + build_frame(opcode, b"x", mask=MASK))


@pytest.mark.parametrize("opcode", [8, 9, 10])
def test_bad_control_frames(opcode):
    with pytest.raises(WireError, match="fragmented control frame"):
        FrameReader().feed(build_frame(opcode, b"", fin=False))
    for size in (126, 200, 70000):
        with pytest.raises(WireError, match="at most 125"):
            FrameReader().feed(build_frame(opcode, b"x" * size, mask=MASK)[:2])
    assert FrameReader().feed(build_frame(opcode, b"x" * 125))[0].payload == b"x" * 125


def test_close_payloads():
    assert close_frame_payload(None) == b""
    assert parse_close(b"") == (None, "")
    assert close_frame_payload(1000) == b"\x03\xe8"
    assert close_frame_payload(1009, "too big") == b"\x03\xf1too big"
    assert parse_close(b"\x03\xe8") == (1000, "")
    assert parse_close(bytearray(b"\x0f\xa0caf\xc3\xa9")) == (4000, "caf\u00e9")
    with pytest.raises(WireError, match="1-byte"):
        parse_close(b"\x03")
    with pytest.raises(WireError, match="not UTF-8"):
        parse_close(b"\x03\xe8\xff\xfe")
    with pytest.raises(ValueError):
        close_frame_payload(1000, "x" * 124)
    with pytest.raises(ValueError):
        close_frame_payload(70000)
    with pytest.raises(ValueError):
        close_frame_payload(None, "reason without code")


@SETTINGS
@given(code=st.integers(0, 0xFFFF), reason=st.text(max_size=30))
def test_close_round_trip(code, reason):
    payload = close_frame_payload(code, reason)
    assert parse_close(payload) == (code, reason)
    (frame,) = FrameReader().feed(build_frame(8, payload, mask=MASK))
    assert parse_close(frame.payload) == (code, reason)


# --------------------------------------------------------------------------------------- query strings

@pytest.mark.parametrize("target, expected", [
    ("/s/?siolab_client=a&EIO=4&t=x", "/s/?EIO=4&t=x"),  # first
    ("/s/?EIO=4&siolab_client=a&t=x", "/s/?EIO=4&t=x"),  # middle
    ("/s/?EIO=4&t=x&siolab_client=a", "/s/?EIO=4&t=x"),  # last
    ("/s/?siolab_client=a", "/s/"),  # only
    ("/s/?EIO=4&t=x", "/s/?EIO=4&t=x"),  # absent
    ("/s/", "/s/"),  # no query at all
    ("/s/?", "/s/?"),  # an empty query is left alone
    ("/s/?EIO=4&siolab_client&t=x", "/s/?EIO=4&t=x"),  # bare
    ("/s/?siolab_client=", "/s/"),  # empty value
    ("/s/?siolab_client=a&siolab_client=b&x=1", "/s/?x=1"),  # every one
    ("/s/?siolab_clientx=1&siolab_client=a", "/s/?siolab_clientx=1"),  # a similar name is kept
    ("/s/?xsiolab_client=1&a=siolab_client", "/s/?xsiolab_client=1&a=siolab_client"),
    ("/s/?a=%20b&&siolab_client=a&c=d%3D", "/s/?a=%20b&&c=d%3D"),  # otherwise byte for byte
])
def test_strip_query_param(target, expected):
    assert strip_query_param(target, "siolab_client") == expected


def test_repeated_heads_are_parsed_once_and_give_the_same_answer():
    head = b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
    first = wire.parse_request(head)
    again = wire.parse_request(bytes(bytearray(head)))  # equal bytes, another object
    assert again is first
    assert wire.parse_request(bytearray(head)) == first  # a bytearray is parsed, not looked up
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
    assert wire.parse_response(answer) is wire.parse_response(bytes(bytearray(answer)))
    assert wire.parse_response(answer).get("content-length") == "2"


def test_the_head_cache_is_bounded_and_never_remembers_an_error():
    for i in range(wire.http.HEAD_CACHE * 3):
        wire.parse_request(b"GET /?t=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        assert len(wire.http._requests) <= wire.http.HEAD_CACHE
    bad = b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"
    for _ in range(2):
        with pytest.raises(wire.WireError):
            wire.parse_request(bad)
    assert bad not in wire.http._requests


# Every public name of siolab/wire.py before it became a package; relay.py and tap.py say wire.<name>.
PUBLIC_BEFORE_THE_SPLIT = {
    "WireError", "MAX_HEAD", "MAX_CHUNK_LINE", "HEAD_CACHE", "head_end", "Request", "Response", "parse_request",
    "parse_response", "request_body", "response_body", "ChunkedReader", "Frame", "OPCODES", "FrameReader",
    "build_frame", "close_frame_payload", "parse_close", "strip_query_param",
}


def test_the_package_keeps_every_public_name_of_the_module_it_was():
    assert set(wire.__all__) == PUBLIC_BEFORE_THE_SPLIT - {"MAX_CHUNK_LINE", "HEAD_CACHE"}  # as it was
    for name in PUBLIC_BEFORE_THE_SPLIT:
        home = wire.websocket if hasattr(wire.websocket, name) else wire.http
        assert getattr(wire, name) is getattr(home, name), name
    assert wire.WireError is wire.errors.WireError and wire.WireError.__module__ == "siolab.wire"


def test_every_wire_name_the_package_uses_exists():
    """``wire.<name>`` anywhere in siolab/ or tests/ (read as code, not text) names something the package has."""
    root = Path(__file__).resolve().parent.parent
    used = set()
    for path in [*(root / "siolab").rglob("*.py"), *(root / "tests").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "wire":
                used.add(node.attr)
    assert {"Request", "FrameReader", "WireError", "parse_close", "build_frame"} <= used  # the scan sees them
    assert {name for name in used if not hasattr(wire, name)} == set()
