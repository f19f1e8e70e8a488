"""HTTP/1.1 for the tap, with no I/O: heads, how a body is framed, chunked bodies, query strings.

Heads are parsed with one regular-expression pass and kept by their exact bytes (the same heads come
again and again); bodies are measured, not copied, except a chunked one, which is decoded as it comes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn

from .errors import WireError, _show

__all__ = [
    "MAX_HEAD", "MAX_CHUNK_LINE", "HEAD_CACHE", "head_end", "Request", "Response", "parse_request",
    "parse_response", "request_body", "response_body", "ChunkedReader", "strip_query_param",
]

MAX_HEAD = 65536  # bytes of a request/response head before we give up
MAX_CHUNK_LINE = 1024  # bytes of a chunk-size line (with its extensions) before we give up

_TCHAR = r"[-!#$%&'*+.^_`|~0-9A-Za-z]"
_TOKEN = re.compile(_TCHAR + "+")
_REQUEST_LINE = re.compile(rf"({_TCHAR}+) ([^\x00-\x20\x7f]+) (HTTP/1\.[0-9])")
_STATUS_LINE = re.compile(r"(HTTP/1\.[0-9]) ([0-9]{3})(?: (.*))?", re.S)
# Control characters that may not appear in a head (tab is allowed in values; CR and LF end lines).
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CTL_BYTES = bytes(range(0x00, 0x09)) + b"\x0b\x0c" + bytes(range(0x0e, 0x20)) + b"\x7f"  # the same, but CR, LF
# One header line: a token name, a colon, the value after the optional whitespace (trailing
# whitespace is stripped afterwards: a lazy pattern for it could backtrack quadratically).
_HEADER_LINE = re.compile(rf"^({_TCHAR}+):[ \t]*(.*)$", re.M)
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")


# --------------------------------------------------------------------------------------------------
# HTTP/1.1 heads


def head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending the head that begins at ``start``, or -1 if not complete yet.

    Empty lines before the start line are part of the head (RFC 9112 2.2 asks servers to ignore
    them). Lines may end with CRLF or a bare LF. Raises WireError once MAX_HEAD bytes have
    arrived without an end, so a peer cannot make the caller buffer forever.
    """
    limit = start + MAX_HEAD
    first = buf[start:start + 1]
    if first == b"\r" or first == b"\n":
        window = buf[start:limit]
        body = start + len(window) - len(window.lstrip(b"\r\n"))  # a lone CR is the parser's to reject
    else:
        body = start
    # "\r\n\r\n" contains "\n\r\n"; together with "\n\n" that covers CRLF, bare LF and mixes of both.
    i = buf.find(b"\n\r\n", body, limit)
    end = i + 3 if i >= 0 else -1
    j = buf.find(b"\n\n", body, end if end >= 0 else limit)
    if j >= 0 and (end < 0 or j + 2 < end):
        end = j + 2
    if end < 0 and len(buf) >= limit:
        _too_long()
    return end


def _too_long() -> NoReturn:
    raise WireError(f"no end of the HTTP head within {MAX_HEAD} bytes: not HTTP, or a head far too large")


class _Headers:
    """What requests and responses share: header look-ups, header edits and encoding."""

    __slots__ = ()
    headers: tuple[tuple[str, str], ...]  # (a field of each subclass)
    _index: dict[str, str] | None  # lower-case name -> first value (a field of each subclass)

    def _lookup(self) -> dict[str, str]:
        """Lower-case name -> first value, built on first use: a relay asks a dozen questions of every head.
        (Built backwards so that the first of repeated headers wins.)"""
        index = self._index
        if index is None:
            index = {key.lower(): value for key, value in reversed(self.headers)}
            object.__setattr__(self, "_index", index)
        return index

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (any case), else ``default``."""
        return self._lookup().get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every header called ``name`` (any case), in wire order."""
        index = self._lookup()
        name = name.lower()
        if len(index) == len(self.headers):  # no name repeats: the index has every header
            value = index.get(name)
            return [] if value is None else [value]
        return [value for key, value in self.headers if key.lower() == name]

    def _encode(self, start_line: str) -> bytes:
        text = start_line + "".join([f"{key}: {value}\r\n" for key, value in self.headers]) + "\r\n"
        # A line break smuggled into a field would split it into headers of the attacker's choosing.
        lines = len(self.headers) + 2
        if text.count("\n") != lines or text.count("\r") != lines:
            raise WireError("a line break inside the start line or a header: refusing to encode it")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError as exc:
            raise WireError(f"a header or start line is not latin-1: {_show(text[exc.start:])}") from None


def _changed_headers(headers: tuple[tuple[str, str], ...], drop: Iterable[str],
                     replace: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``headers`` without the ``drop`` names; each ``replace`` name set once (in place of its first copy)."""
    if isinstance(drop, str):
        drop = (drop,)
    dropped = {name.lower() for name in drop}
    pending: dict[str, tuple[str, str]] = {}
    for name, value in (replace or {}).items():
        _check_field(name, value)
        pending[name.lower()] = (name, value)
    if not dropped and not pending:
        return headers
    placed: set[str] = set()
    out = []
    for key, value in headers:
        low = key.lower()
        if low in dropped or low in placed:
            continue
        item = pending.pop(low, None)
        if item is not None:
            placed.add(low)
            out.append(item)
        else:
            out.append((key, value))
    out.extend(pending.values())
    return tuple(out)


def _check_field(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise WireError(f"not a valid header name: {_show(name)}")
    if _CTL.search(value):
        raise WireError(f"a control character or line break in the value of {name}: {_show(value)}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise WireError(f"the value of {name} is not latin-1: {_show(value)}") from None


@dataclass(frozen=True, slots=True)
class Request(_Headers):
    """An HTTP/1.x request head, as sent (header names keep their case and order)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def path(self) -> str:
        """The target before any ``?``."""
        return self.target.partition("?")[0]

    @property
    def query_string(self) -> str:
        """The target after the first ``?``; "" if there is none."""
        return self.target.partition("?")[2]

    def encode(self) -> bytes:
        """The head back to bytes, CRLF line ends, ending with the blank line."""
        return self._encode(f"{self.method} {self.target} {self.version}\r\n")

    def with_changes(self, *, target: str | None = None, drop: Iterable[str] = (),
                     set: dict[str, str] | None = None) -> Request:
        """A copy with a new target, the ``drop`` headers (any case) removed and each ``set`` header
        present exactly once: in place of the first header of that name, else appended."""
        if target is not None and not re.fullmatch(r"[^\x00-\x20\x7f]+", target):
            raise WireError(f"not a valid request target: {_show(target)}")
        return Request(self.method, self.target if target is None else target, self.version,
                       _changed_headers(self.headers, drop, set))


@dataclass(frozen=True, slots=True)
class Response(_Headers):
    """An HTTP/1.x response head, as sent (header names keep their case and order)."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def encode(self) -> bytes:
        """The head back to bytes, CRLF line ends, ending with the blank line."""
        return self._encode(f"{self.version} {self.status} {self.reason}\r\n")

    def with_changes(self, *, drop: Iterable[str] = (), set: dict[str, str] | None = None) -> Response:
        """A copy with the ``drop`` headers removed and each ``set`` header present exactly once."""
        return Response(self.version, self.status, self.reason, _changed_headers(self.headers, drop, set))


def _split_head(head: bytes | bytearray | memoryview) -> tuple[str, str, int, bool]:
    """(text, start line, index of the first header line, free of control characters?) of a head:
    decoded as latin-1, with LF line ends and without the blank line; WireError unless it is one
    complete head."""
    if len(head) > MAX_HEAD:
        raise WireError(f"an HTTP head of {len(head)} bytes, over the {MAX_HEAD}-byte limit")
    if not isinstance(head, (bytes, bytearray)):
        head = bytes(head)
    clean = len(head.translate(None, _CTL_BYTES)) == len(head)  # one C pass instead of a regex scan
    text = head.decode("latin-1")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            at = max(0, text.index("\r") - 20)
            raise WireError(f"a bare CR (not followed by LF) in the head: {_show(text[at:])}")
    if text[:1] == "\n":
        text = text.lstrip("\n")
        if not text:
            raise WireError("an empty head: only blank lines, no start line")
    text, blank, rest = text.partition("\n\n")
    if not blank:
        raise WireError(f"the head does not end with a blank line (incomplete?): {_show(text)}")
    if rest:
        raise WireError(f"bytes after the blank line that ends the head: {_show(rest)}")
    nl = text.find("\n")
    if nl < 0:
        return text, text, len(text), clean
    return text, text[:nl], nl + 1, clean


def _parse_headers(text: str, pos: int, clean: bool) -> tuple[tuple[str, str], ...]:
    """The header lines of ``text`` from ``pos`` on, as (name, value) pairs: one regex pass when all is well."""
    if pos >= len(text):
        return ()
    headers = _HEADER_LINE.findall(text, pos)
    # Each match is one whole line, so as many matches as lines means every line is a good header.
    if not clean or len(headers) != text.count("\n", pos - 1):
        _header_problem(text[pos:])
    if text.find(" \n", pos) >= 0 or text.find("\t\n", pos) >= 0 or text[-1] in " \t":
        return tuple([(name, value.rstrip(" \t")) for name, value in headers])
    return tuple(headers)


def _header_problem(lines: str) -> NoReturn:
    """Raise the WireError that says what is wrong with the first bad header line."""
    for line in lines.split("\n"):
        name, colon, _ = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            raise _header_error(line)
        m = _CTL.search(line)
        if m:
            raise WireError(f"control character {m.group()!r} in a header line: {_show(line)}")
    raise WireError(f"malformed header lines: {_show(lines)}")  # not reached: the loop finds the line


def _header_error(line: str) -> WireError:
    name, colon, _ = line.partition(":")
    if line[:1] in (" ", "\t"):
        why = "obsolete line folding (a header line that starts with whitespace) is not allowed"
    elif not colon:
        why = "a header line without a colon"
    elif not name:
        why = "an empty header name"
    elif name[-1] in " \t":
        why = "whitespace between a header name and its colon is not allowed"
    else:
        why = "an invalid character in a header name"
    return WireError(f"{why}: {_show(line)}")


# Heads repeat: a client's POSTs, a server's "200 OK" answers and its polling answers differ, if at all,
# in Content-Length and (once a second) Date. The last heads parsed are kept, by their exact bytes: the
# parsed heads are immutable, so handing one out again is the same as parsing again (only bytes are kept).
HEAD_CACHE = 256
_requests: dict[bytes, Request] = {}
_responses: dict[bytes, Response] = {}


def _remember(cache: dict, head: bytes, parsed: Request | Response) -> None:
    if len(cache) >= HEAD_CACHE:
        cache.clear()  # new heads keep coming (a GET's t=...): start over rather than track their ages
    cache[head] = parsed


def parse_request(head: bytes | bytearray | memoryview) -> Request:
    """The request in ``head`` (the bytes up to and including the blank line); WireError if malformed."""
    if type(head) is bytes:
        known = _requests.get(head)
        if known is not None:
            return known
    text, line, pos, clean = _split_head(head)
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise _request_line_error(line)
    method, target, version = m.groups()
    request = Request(method, target, version, _parse_headers(text, pos, clean))
    if type(head) is bytes:
        _remember(_requests, head, request)
    return request


def _request_line_error(line: str) -> WireError:
    parts = line.split(" ")
    if len(parts) != 3:
        why = "not an HTTP/1.1 request line"
    elif not parts[2].startswith("HTTP/"):
        why = "not an HTTP/1.1 request line (no HTTP version at the end)"
    elif not re.fullmatch(r"HTTP/1\.[0-9]", parts[2]):
        why = "an HTTP version other than 1.x in the request line"
    elif not _TOKEN.fullmatch(parts[0]):
        why = "an invalid method in the request line"
    else:
        why = "an invalid request target (empty, or a control character)"
    return WireError(f"{why}: {_show(line)}")


def parse_response(head: bytes | bytearray | memoryview) -> Response:
    """The response in ``head`` (the bytes up to and including the blank line); WireError if malformed."""
    if type(head) is bytes:
        known = _responses.get(head)
        if known is not None:
            return known
    text, line, pos, clean = _split_head(head)
    m = _STATUS_LINE.fullmatch(line)
    if m is None or not clean and _CTL.search(line):
        if not line.startswith("HTTP/"):
            why = "not an HTTP/1.1 status line"
        elif not re.match(r"HTTP/1\.[0-9](?: |$)", line):
            why = "an HTTP version other than 1.x in the status line"
        elif not re.match(r"HTTP/1\.[0-9] [0-9]{3}(?: |$)", line):
            why = "the status code is not 3 digits"
        else:
            why = "a control character in the status line"
        raise WireError(f"{why}: {_show(line)}")
    version, status, reason = m.groups()
    response = Response(version, int(status), reason or "", _parse_headers(text, pos, clean))
    if type(head) is bytes:
        _remember(_responses, head, response)
    return response


# --------------------------------------------------------------------------------------------------
# How a body is framed (RFC 9112 section 6.3)


def _transfer_codings(msg: Request | Response) -> list[str]:
    return [c.strip().lower() for value in msg.get_all("transfer-encoding") for c in value.split(",")
            if c.strip()]


def _content_length(msg: Request | Response) -> int | None:
    values = msg.get_all("content-length")
    if not values:
        return None
    lengths = set()
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not (item.isascii() and item.isdigit()):
                if item.startswith("-") and item[1:].isascii() and item[1:].isdigit():
                    raise WireError(f"a negative Content-Length: {_show(value)}")
                raise WireError(f"an invalid Content-Length (not a decimal number): {_show(value)}")
            if len(item) > 18:
                raise WireError(f"an absurd Content-Length: {_show(value)}")
            lengths.add(int(item))
    if len(lengths) > 1:
        raise WireError(f"conflicting Content-Length values: {_show(', '.join(values))}")
    return lengths.pop()


def _plain_length(msg: Request | Response) -> int | None:
    """The Content-Length of a head with no Transfer-Encoding, no repeated header and one plain decimal
    length (nearly every head); -1 when it has no Content-Length; None for anything the full rules decide."""
    index = msg._lookup()
    if "transfer-encoding" in index or len(index) != len(msg.headers):
        return None
    value = index.get("content-length")
    if value is None:
        return -1
    if value.isdigit() and value.isascii() and len(value) <= 18:
        return int(value)
    return None


def request_body(req: Request) -> tuple[str, int]:
    """How the request's body is framed: ("chunked", 0), ("length", n) from Content-Length, else ("length", 0).

    Transfer-Encoding wins over Content-Length (RFC 9112 6.3); a request whose Transfer-Encoding
    does not end in chunked has no knowable length, so that is a WireError (the RFC's 400).
    """
    plain = _plain_length(req)
    if plain is not None:
        return ("length", max(plain, 0))
    codings = _transfer_codings(req)
    if codings:
        if codings[-1] == "chunked":
            return ("chunked", 0)
        raise WireError(f"a request Transfer-Encoding that does not end in chunked: "
                        f"{_show(', '.join(req.get_all('transfer-encoding')))}")
    length = _content_length(req)
    return ("length", length or 0)


def response_body(resp: Response, request_method: str) -> tuple[str, int]:
    """How the response's body is framed: ("none", 0) for 1xx, 204, 304 or a HEAD request; ("chunked", 0);
    ("length", n); else ("close", 0): the body runs until the server closes the connection."""
    status = resp.status
    if status < 200 or status == 204 or status == 304 or request_method == "HEAD":
        return ("none", 0)
    plain = _plain_length(resp)
    if plain is not None:
        return ("close", 0) if plain < 0 else ("length", plain)
    codings = _transfer_codings(resp)
    if codings:
        return ("chunked", 0) if codings[-1] == "chunked" else ("close", 0)
    length = _content_length(resp)
    if length is None:
        return ("close", 0)
    return ("length", length)


# --------------------------------------------------------------------------------------------------
# Chunked bodies

_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class ChunkedReader:
    """Incremental chunked-body decoder (RFC 9112 7.1).

    feed(data) returns how many bytes of ``data`` belong to the body (the rest belongs to the
    next message); ``done`` is True after the last chunk and trailers; ``body`` is the decoded
    payload; ``raw_length`` is how many wire bytes the whole chunked body took. WireError if
    malformed, including a chunk-size line longer than 1024 bytes or trailers over MAX_HEAD.
    """

    __slots__ = ("_state", "_remaining", "_line", "_body", "_trailer_bytes", "raw_length", "done")

    def __init__(self) -> None:
        self._state = _SIZE
        self._remaining = 0
        self._line = bytearray()
        self._body = bytearray()
        self._trailer_bytes = 0
        self.raw_length = 0
        self.done = False

    @property
    def body(self) -> bytes:
        """The decoded payload so far."""
        return bytes(self._body)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume the body's bytes from the start of ``data``; return how many were consumed."""
        if self.done:
            return 0
        if isinstance(data, memoryview):
            data = data.tobytes()
        n = len(data)
        pos = 0
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                self._body += memoryview(data)[pos:pos + take]
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
                continue
            limit = MAX_HEAD if state == _TRAILER else MAX_CHUNK_LINE
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._line += memoryview(data)[pos:]
                pos = n
                if len(self._line) > limit:
                    self._too_long(state, self._line)
                break
            if self._line:
                self._line += memoryview(data)[pos:nl]
                line = bytes(self._line)
                self._line.clear()
            else:
                line = data[pos:nl]
            pos = nl + 1
            if len(line) > limit:
                self._too_long(state, line)
            if line[-1:] == b"\r":
                line = line[:-1]
            if state == _SIZE:
                m = _CHUNK_SIZE.fullmatch(line)
                if m is None:
                    raise WireError(f"not a chunk-size line: {_show(line)}")
                size = int(m.group(1), 16)
                if size:
                    self._remaining = size
                    self._state = _DATA
                else:
                    self._state = _TRAILER
            elif state == _DATA_END:
                if line:
                    raise WireError(f"chunk data runs past the chunk's declared size: {_show(line)}")
                self._state = _SIZE
            else:  # _TRAILER
                if not line:
                    self.done = True
                    break
                self._trailer_bytes += len(line)
                if self._trailer_bytes > MAX_HEAD:
                    self._too_long(state, line)
                name, colon, _ = line.partition(b":")
                if not colon or not _TOKEN.fullmatch(name.decode("latin-1")):
                    raise WireError(f"not a trailer field line: {_show(line)}")
        self.raw_length += pos
        return pos

    @staticmethod
    def _too_long(state: int, line: bytes | bytearray) -> None:
        if state == _TRAILER:
            raise WireError(f"trailers longer than {MAX_HEAD} bytes: {_show(line)}")
        raise WireError(f"a chunk-size line longer than {MAX_CHUNK_LINE} bytes without a line end "
                        f"(not chunked encoding?): {_show(line)}")


# --------------------------------------------------------------------------------------------------
# Query strings


def strip_query_param(target: str, name: str) -> str:
    """The target without every ``name=...`` (and bare ``name``) query parameter, otherwise byte for byte;
    drops the "?" if nothing is left."""
    path, question, query = target.partition("?")
    if not question or name not in query:
        return target
    prefix = name + "="
    kept = [p for p in query.split("&") if p != name and not p.startswith(prefix)]
    rest = "&".join(kept)
    return path + "?" + rest if rest else path
