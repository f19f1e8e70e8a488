"""HAR files in and out: what a browser's DevTools (or a proxy) recorded, read by the live tap's recorder.

A HAR 1.2 file (Chrome/Edge DevTools, Firefox, mitmproxy, Playwright) is turned into timeline events
(``parse``: pure), which feed the same ``Recorder`` the tap feeds, in timeline order across entries
(``replay``): so an imported session's records have the live trace's fields, notes and errors. ``to_har``
goes the other way: a trace as a HAR that Chrome DevTools imports (Network panel, Import HAR), its
WebSocket frames as ``_webSocketMessages``, tokens redacted by default.

The file is untrusted: it is bounded (``MAX_HAR_BYTES``, ``MAX_BODY``, ``MAX_DEPTH``); a file that is not a
HAR raises ``ValueError``; a bad entry, body or message becomes a record with ``error`` set. Only ``read``
and ``write`` touch the file system. docs/har.md has the details.
"""
from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Union
from urllib.parse import urlsplit

from . import notes, protocol
from .record import Record, new_record, with_fields
from .recorder import CLIENT_HEADER, MAX_RECORDED_BODY, Exchange, Recorder, Stream, parse_query, strip_client
from .text import body_text, cut

MAX_HAR_BYTES = 256 * 1024 * 1024  # the largest HAR file read (Chrome writes every body of a session)
MAX_BODY = 16 * 1024 * 1024  # characters of one body or WebSocket message (as jsonl.MAX_LINE for a line)
MAX_DEPTH = 200  # JSON nesting a HAR may have (as jsonl.MAX_DEPTH; Chrome's initiator stacks nest ~40 deep)
REDACTED = "REDACTED"
# Query parameters whose values to_har redacts: a name containing one of these (lower case) ...
SECRET_WORDS = ("token", "auth", "key", "pass", "secret", "session", "jwt", "sig", "credential", "cookie")
# ... except Engine.IO's own, which say nothing secret and which a reader needs.
KEEP_PARAMS = frozenset({"sid", "EIO", "transport", "t", "b64"})
WS_OPEN_NOTE = "WebSocket open"
_NO_POLL_BODY = ("the HAR has no body for this answer (Firefox and Playwright may leave bodies out): its packets "
                 "are not known")


# ---------------------------------------------------------------- timeline events (what parse() gives)
@dataclass(frozen=True, slots=True)
class Request:
    """An Engine.IO HTTP request (a poll, a POST, a handshake), sent at ``t`` (seconds since the epoch)."""

    t: float
    order: int  # place in the file: breaks ties between events at the same time
    entry: int
    method: str
    path: str
    query_string: str
    client: str | None = None  # the X-Siolab-Client header, when the HAR has it
    server: str | None = None
    body: bytes | None = None  # None: the HAR has no body for it (or one siolab does not read: ``error``)
    note: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to a Request: ``status`` None when the HAR has none (the request was pending or failed)."""

    t: float
    order: int
    entry: int
    status: int | None
    content_type: str | None = None
    body: bytes | None = None  # already decoded (HAR text is not compressed); None: not in the HAR
    note: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A WebSocket upgrade request."""

    t: float
    order: int
    entry: int
    path: str
    query_string: str
    client: str | None = None
    server: str | None = None


@dataclass(frozen=True, slots=True)
class UpgradeAnswer:
    """The answer to an Upgrade: the 101 (``opened``), a refusal with its body, or nothing (status None)."""

    t: float
    order: int
    entry: int
    status: int | None
    opened: bool
    content_type: str | None = None
    body: bytes | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One ``_webSocketMessages`` item: a whole message (opcode 1 text, 2 binary), a close (8), a ping or
    pong (9, 10), or an ``error`` (what could not be read, or what the browser reported)."""

    t: float
    order: int
    entry: int
    dir: str | None
    opcode: int | None
    payload: bytes = b""
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Ended:
    """The end of a WebSocket entry: HAR files keep no close frames, so the end is said, not made up."""

    t: float
    order: int
    entry: int
    note: str


@dataclass(frozen=True, slots=True)
class Problem:
    """An entry siolab cannot read at all (wrong types, no date): an error record, and the rest goes on."""

    t: float | None
    order: int
    entry: int
    error: str


Event = Union[Request, Response, Upgrade, UpgradeAnswer, Message, Ended, Problem]


@dataclass(frozen=True, slots=True)
class Parsed:
    """What ``parse`` found: the events, and how many entries were read and skipped (not Socket.IO)."""

    events: tuple[Event, ...]
    entries: int
    skipped: int
    bad: int
    creator: str

    @property
    def summary(self) -> str:
        read = self.entries - self.skipped - self.bad
        text = (f"HAR from {self.creator}: {self.entries} entries; {read} Socket.IO entries read, {self.skipped} "
                f"skipped (not Socket.IO: no EIO in the query)")
        return text + (f", {self.bad} unreadable (see the error records)" if self.bad else "")


@dataclass(frozen=True, slots=True)
class Imported:
    """A HAR file as records (``read``): the records, with the counts from ``parse``."""

    records: tuple[Record, ...]
    parsed: Parsed


# ---------------------------------------------------------------- reading
def read(source: str | os.PathLike | dict, *, layer: str = "socket.io") -> Imported:
    """A HAR file (a path, or its parsed JSON) as records: the first is a ``log`` record that says what was
    read and skipped. Raises ``ValueError`` for a file that is not a HAR."""
    parsed = parse(load(source))
    records = [new_record(t=0.0, kind="log", note=parsed.summary)]
    records.extend(replay(parsed.events, layer=layer))
    return Imported(tuple(records), parsed)


def load(source: str | os.PathLike | dict) -> dict:
    """The HAR's JSON, bounded and checked to be a HAR (``ValueError`` says what is wrong)."""
    if isinstance(source, dict):
        doc: Any = source
        name = "the HAR"
    else:
        name = os.fspath(source)
        if not isinstance(name, str):
            name = name.decode(errors="replace")
        size = os.path.getsize(name)
        if size > MAX_HAR_BYTES:
            raise ValueError(f"{name}: {size} bytes, more than the {MAX_HAR_BYTES} bytes siolab reads from a HAR "
                             f"file (siolab.har.MAX_HAR_BYTES)")
        with open(name, "rb") as fh:
            data = fh.read(MAX_HAR_BYTES + 1)
        if len(data) > MAX_HAR_BYTES:
            raise ValueError(f"{name}: more than the {MAX_HAR_BYTES} bytes siolab reads from a HAR file")
        doc = parse_json(data, name)
    check(doc, name)
    return doc


def parse_json(data: bytes, name: str = "the HAR") -> Any:
    """JSON text as HAR files have it (UTF-8, a BOM allowed); anything else is a ``ValueError``."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not a HAR file: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ValueError(f"{name} is not a HAR file: it is empty")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        # the end came before the JSON closed: a string left open (JSON strings hold no raw newline, so the
        # scan ran to the end), or the error at the last few characters (a cut number, word, or bracket)
        ended = exc.msg.startswith("Unterminated string") or len(text.rstrip()) - exc.pos <= 8
        why = "the JSON ends early (is the file truncated?)" if ended else "not JSON"
        raise ValueError(f"{name} is not a HAR file: {why}: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    except RecursionError:
        raise ValueError(f"{name} is not a HAR file: its JSON nests too deeply") from None
    except ValueError as exc:  # a number with too many digits, NaN
        raise ValueError(f"{name} is not a HAR file: {exc}") from None


def check(doc: Any, name: str = "the HAR") -> None:
    """A HAR is ``{"log": {"entries": [...]}}``, nested at most MAX_DEPTH deep."""
    if not isinstance(doc, dict) or not isinstance(doc.get("log"), dict):
        raise ValueError(f'{name} is not a HAR file: no "log" object (HAR 1.2 is {{"log": {{"version": "1.2", '
                         f'"creator": {{...}}, "entries": [...]}}}})')
    if not isinstance(doc["log"].get("entries"), list):
        raise ValueError(f'{name} is not a HAR file: "log.entries" is not a list')
    if _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise ValueError(f"{name}: its JSON nests more than {MAX_DEPTH} levels deep (siolab.har.MAX_DEPTH)")


def parse(har: dict) -> Parsed:
    """The timeline events of a HAR's Socket.IO entries (pure: no I/O, no clock)."""
    log = har["log"]
    creator = log.get("creator")
    who = "an unnamed tool"
    if isinstance(creator, dict) and isinstance(creator.get("name"), str):
        who = " ".join(str(creator[k])[:60] for k in ("name", "version") if isinstance(creator.get(k), str))
    events: list[Event] = []
    skipped = bad = 0
    for index, entry in enumerate(log["entries"]):
        found, state = _entry_events(index, entry, len(events))
        events.extend(found)
        skipped += state == "skip"
        bad += state == "bad"
    return Parsed(tuple(events), len(log["entries"]), skipped, bad, who)


def _entry_events(index: int, entry: Any, order: int) -> tuple[list[Event], str]:
    """One entry's events and what it was: "read", "skip" (not Socket.IO) or "bad" (a Problem)."""
    where = f"HAR entry {index}"
    if not isinstance(entry, dict):
        return [Problem(None, order, index, f"{where} is not a JSON object")], "bad"
    request, response = entry.get("request"), entry.get("response")
    started = _epoch(entry.get("startedDateTime"))
    if not isinstance(request, dict) or not isinstance(request.get("url"), str) \
            or not isinstance(request.get("method"), str):
        return [Problem(started, order, index, f"{where} has no request with a url and a method (text)")], "bad"
    url, method = request["url"], request["method"][:32]
    try:
        parts = urlsplit(url[:MAX_RECORDED_BODY * 4])
    except ValueError as exc:
        return [Problem(started, order, index, f"{where}: its url is not a URL ({exc})")], "bad"
    if "EIO" not in parse_query(parts.query):
        return [], "skip"
    if started is None:
        return [Problem(None, order, index, f"{where} ({method} {parts.path}): startedDateTime is not an ISO 8601 "
                        f"date")], "bad"
    if response is not None and not isinstance(response, dict):
        return [Problem(started, order, index, f"{where} ({method} {parts.path}): its response is not a JSON "
                        f"object")], "bad"
    response = response if isinstance(response, dict) else {}
    headers = _headers(request.get("headers"))
    client = headers.get(CLIENT_HEADER.lower())
    server = entry.get("_siolabServer") if isinstance(entry.get("_siolabServer"), str) else None
    answered = started + _duration(entry)
    status = response.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) and 0 < status < 1000 else None
    messages = entry.get("_webSocketMessages")
    websocket = entry.get("_resourceType") == "websocket" or parts.scheme in ("ws", "wss") or status == 101 \
        or messages is not None or (headers.get("upgrade") or "").lower() == "websocket"
    ctype = _headers(response.get("headers")).get("content-type")
    content: dict = response["content"] if isinstance(response.get("content"), dict) else {}
    if ctype is None and isinstance(content.get("mimeType"), str):
        ctype = content["mimeType"]
    if websocket:
        return _websocket_events(index, entry, order, started, answered, parts, client, server, status, ctype,
                                 content, messages), "read"
    body, note, error = _request_body(request, method)
    events: list[Event] = [Request(started, order, index, method, parts.path, parts.query, client, server, body,
                                   note, error)]
    if status is None:
        why = response.get("_error") if isinstance(response.get("_error"), str) else None
        note = ("no answer in the HAR (status 0): the request was still pending when the HAR was saved, or it "
                "failed or was cancelled" + (f" ({why[:200]})" if why else ""))
        events.append(Response(answered, order + 1, index, None, note=note))
    else:
        body, note, error = _content(content)
        events.append(Response(answered, order + 1, index, status, ctype, body, note, error))
    return events, "read"


def _websocket_events(index: int, entry: dict, order: int, started: float, answered: float, parts: Any,
                      client: str | None, server: str | None, status: int | None, ctype: str | None, content: dict,
                      messages: Any) -> list[Event]:
    events: list[Event] = [Upgrade(started, order, index, parts.path, parts.query, client, server)]
    items = messages if isinstance(messages, list) else []
    frames: list[Message] = []
    last = started
    for number, item in enumerate(items):
        message = _message(item, number, last)
        last = max(last, message[0])
        frames.append(Message(last, order + 2 + number, index, *message[1:]))
    if messages is not None and not isinstance(messages, list):
        frames.append(Message(started, order + 2, index, None, None,
                              error="_webSocketMessages is not a list: no message could be read"))
    opened = status == 101 or bool(frames)
    first = frames[0].t if frames else answered
    when = max(started, min(answered, first))
    if opened:
        note = None if status == 101 else f"the HAR has no 101 for it (status {status}), but it has messages"
        events.append(UpgradeAnswer(when, order + 1, index, 101, True, note=note))
    elif status is None:
        events.append(UpgradeAnswer(when, order + 1, index, None, False,
                                    note="no answer in the HAR (status 0): the WebSocket was not opened"))
    else:
        body, note, _error = _content(content)
        events.append(UpgradeAnswer(when, order + 1, index, status, False, ctype, body, note))
    events.extend(frames)
    if opened:
        if not items:
            note = ("the HAR has no WebSocket messages for this connection (Firefox and Playwright do not save "
                    "them): its packets are not known")
        else:
            note = "the WebSocket's end is not in the HAR (HAR files keep the messages, not the close frames)"
        events.append(Ended(max(last, answered), order + 2 + len(items), index, note))
    return events


def _message(item: Any, number: int, last: float) -> tuple[float, str | None, int | None, bytes, str | None]:
    """(time, dir, opcode, payload, error) of one ``_webSocketMessages`` item."""
    what = f"WebSocket message {number} in the HAR"
    if not isinstance(item, dict):
        return last, None, None, b"", f"{what} is not a JSON object"
    when = _number(item.get("time"))
    if when is not None and when > 1e11:  # milliseconds where DevTools writes seconds since the epoch
        when /= 1000
    when = last if when is None or when < 0 else when
    kind, opcode, data = item.get("type"), item.get("opcode"), item.get("data")
    direction = {"send": "c2s", "receive": "s2c"}.get(kind) if isinstance(kind, str) else None
    if kind == "error":  # Chrome's frame errors (Network.webSocketFrameError)
        return when, None, None, b"", f"the browser reported a WebSocket error: {str(data)[:500]}"
    if direction is None:
        return when, None, None, b"", f"{what} has the type {_short(kind)}: expected send or receive"
    if isinstance(opcode, bool) or not isinstance(opcode, int):
        return when, direction, None, b"", f"{what} has the opcode {_short(opcode)}: expected a number"
    if not isinstance(data, str):
        return when, direction, opcode, b"", f"{what} has no data (text)"
    if len(data) > MAX_BODY:
        return when, direction, opcode, b"", f"{what} is {len(data)} characters, more than the {MAX_BODY} " \
                                             f"siolab reads (siolab.har.MAX_BODY)"
    if opcode == 1:
        return when, direction, 1, data.encode("utf-8", "surrogatepass"), None
    if opcode in (2, 8, 9, 10):
        try:
            return when, direction, opcode, base64.b64decode(data, validate=True), None
        except (binascii.Error, ValueError):
            return when, direction, opcode, b"", f"{what} (opcode {opcode}) should carry base64 data, and does not"
    return when, direction, opcode, b"", (f"{what} has the opcode {opcode}: not a WebSocket message opcode "
                                          f"(1 text, 2 binary, 8 close, 9 ping, 10 pong)")


def _request_body(request: dict, method: str) -> tuple[bytes | None, str | None, str | None]:
    post = request.get("postData")
    if post is None:
        if method == "POST":
            return None, "the HAR has no body for this POST: its packets are not known", None
        return b"", None, None
    if not isinstance(post, dict) or not isinstance(post.get("text"), str):
        return None, None, "the HAR's postData has no text: the POST's packets cannot be read"
    text = post["text"]
    if len(text) > MAX_BODY:
        return None, None, (f"the HAR's request body is {len(text)} characters, more than the {MAX_BODY} siolab "
                            f"reads (siolab.har.MAX_BODY)")
    return text.encode("utf-8", "surrogatepass"), None, None


def _content(content: dict) -> tuple[bytes | None, str | None, str | None]:
    """A response body: (bytes, None, None), or (None, why it is missing, what is wrong with it)."""
    text = content.get("text")
    if text is None:
        return None, _NO_POLL_BODY, None
    if not isinstance(text, str):
        return None, None, f"the HAR's response content.text is {type(text).__name__}, not text"
    if len(text) > MAX_BODY:
        return None, None, (f"the HAR's response body is {len(text)} characters, more than the {MAX_BODY} siolab "
                            f"reads (siolab.har.MAX_BODY)")
    encoding = content.get("encoding")
    if encoding is None or encoding == "":
        return text.encode("utf-8", "surrogatepass"), None, None
    if encoding != "base64":
        return None, None, f"the HAR's content.encoding is {_short(encoding)}: siolab reads plain text or base64"
    try:
        return base64.b64decode(text, validate=True), None, None
    except (binascii.Error, ValueError):
        return None, None, "the HAR's response body is marked base64 (content.encoding) but is not valid base64"


# ---------------------------------------------------------------- events -> records, through the recorder
def replay(events: Iterable[Event], *, layer: str = "socket.io", recorder: Recorder | None = None) -> list[Record]:
    """Feed the events to a Recorder in timeline order (across entries: the request sent, its answer, each
    WebSocket message at its time) and return its records, timed from the first event (pure)."""
    recorder = recorder if recorder is not None else Recorder(layer)
    ordered = sorted(events, key=lambda e: (e.t if e.t is not None else -math.inf, e.order))
    t0 = next((e.t for e in ordered if e.t is not None), 0.0)
    out: list[Record] = []
    exchanges: dict[int, Exchange] = {}
    upgrades: dict[int, tuple[dict, dict, bool]] = {}  # entry -> (request's http, where, is Engine.IO)
    streams: dict[int, Stream] = {}
    closed: set[int] = set()
    for ev in ordered:
        t = round(ev.t - t0, 6) if ev.t is not None else 0.0
        if isinstance(ev, Request):
            exchange = recorder.exchange(t=t, method=ev.method, path=ev.path, query_string=ev.query_string,
                                         query=parse_query(ev.query_string), client_header=ev.client,
                                         body=ev.body or b"", server=ev.server, key=("har", ev.entry))
            records = recorder.request(exchange)[0]
            if ev.note or ev.error:
                records = [with_fields(r, note=_join(r.note, ev.note), error=_join(r.error, ev.error))
                           for r in records]
            out.extend(records)
            recorder.poll_started(exchange)
            exchanges[ev.entry] = exchange
        elif isinstance(ev, Response):
            exchange = exchanges.pop(ev.entry)
            recorder.poll_ended(exchange)
            if ev.status is None:
                out.extend(recorder.unread(exchange, status=None, t=t, note=ev.note or "no answer in the HAR"))
                continue
            if ev.body is None:
                error = ev.error
                if error is None and exchange.is_eio and ev.status >= 400:
                    error = protocol.explain_refusal(ev.status, "")
                out.extend(recorder.unread(exchange, status=ev.status, t=t, note=ev.note or _NO_POLL_BODY,
                                           error=error))
            else:
                out.extend(recorder.response(exchange, status=ev.status, content_type=ev.content_type,
                                             content_encoding=None, body=ev.body, t=t)[0])
            out.extend(recorder.exchange_ended(exchange, ev.status))
        elif isinstance(ev, Upgrade):
            out.append(_upgrade(recorder, ev, t, upgrades))
        elif isinstance(ev, UpgradeAnswer):
            req_http, where, is_eio = upgrades[ev.entry]
            if ev.opened:
                note = WS_OPEN_NOTE + (f"; {ev.note}" if ev.note else "")
                out.append(new_record(t=t, kind="ws", dir="s2c", http={**req_http, "status": 101}, note=note,
                                      **where))
                streams[ev.entry] = recorder.websocket(where["sid"], where["client"], where["server"])
            else:
                out.append(_refusal(ev, t, req_http, where, is_eio))
        elif isinstance(ev, Message):
            stream = streams.get(ev.entry)
            if stream is not None:
                out.extend(_frame(recorder, stream, ev, t, closed))
        elif isinstance(ev, Ended):
            stream = streams.get(ev.entry)
            if stream is not None and ev.entry not in closed:
                out.extend(recorder.ended(stream, t, ev.note))
        else:
            out.append(new_record(t=t, kind="error", error=ev.error, note="siolab could not read this HAR entry"))
    return out


def _upgrade(recorder: Recorder, ev: Upgrade, t: float, upgrades: dict) -> Record:
    """The upgrade request's record, as the tap makes it (tap.py, ``_handle_websocket``)."""
    query = parse_query(ev.query_string)
    client, sid = recorder.client_of(ev.client, query)
    stripped = strip_client(ev.query_string)
    req_http = {"method": "GET", "path": ev.path + (f"?{stripped}" if stripped else ""), "status": None}
    where = {"transport": "websocket", "sid": sid, "client": client, "server": ev.server}
    upgrades[ev.entry] = (req_http, where, "EIO" in query)
    return new_record(t=t, kind="ws", dir="c2s", http=req_http, note="WebSocket upgrade request", **where)


def _refusal(ev: UpgradeAnswer, t: float, req_http: dict, where: dict, is_eio: bool) -> Record:
    """A WebSocket the server did not open, as the tap records it (its body explained)."""
    if ev.status is None:
        return new_record(t=t, kind="http", dir="s2c", http={**req_http, "status": None}, note=ev.note, **where)
    text = body_text(ev.body, MAX_RECORDED_BODY) if ev.body is not None else ""
    error = None
    if is_eio:
        html = notes.is_html(ev.content_type or "", text)
        error = notes.html_answer(ev.status) if html else protocol.explain_refusal(ev.status, text)
    note = "the server refused the WebSocket" + (f"; {ev.note}" if ev.note else "")
    return new_record(t=t, kind="http", dir="s2c", http={**req_http, "status": ev.status},
                      raw=text if ev.body is not None else None, error=error, note=note, **where)


def _frame(recorder: Recorder, stream: Stream, ev: Message, t: float, closed: set[int]) -> list[Record]:
    if ev.error is not None or ev.dir is None or ev.opcode is None:
        return [new_record(t=t, kind="ws", dir=ev.dir, error=ev.error or "unreadable message", **stream.where)]
    if ev.opcode in (1, 2):
        return recorder.message(stream, ev.dir, ev.opcode, ev.payload, t)
    if ev.opcode == 8:
        if ev.entry in closed:  # the answering close: the tap records the first only
            return []
        closed.add(ev.entry)
        code = int.from_bytes(ev.payload[:2], "big") if len(ev.payload) >= 2 else 1005
        return recorder.closed(stream, ev.dir, code, t)
    return [new_record(t=t, kind="ws", dir=ev.dir, note=f"WebSocket {'ping' if ev.opcode == 9 else 'pong'} frame "
                       "(a control frame: Engine.IO has its own ping and pong packets)", **stream.where)]


# ---------------------------------------------------------------- summary and the doctor's hook
def summary(records: Iterable[Record], parsed: Parsed | None = None) -> str:
    """What an imported HAR holds: sessions, packets per transport, errors (the CLI prints it)."""
    records = list(records)
    packets = [r for r in records if r.kind == "packet"]
    sessions = {r.sid for r in packets if r.eio == "open" and r.sid}
    by_transport = {name: sum(r.transport == name for r in packets) for name in ("polling", "websocket")}
    errors = [r for r in records if r.error]
    lines = [parsed.summary] if parsed is not None else []
    lines.append(f"{len(sessions)} Engine.IO session(s) opened; {len(packets)} packets ({by_transport['polling']} over "
                 f"polling, {by_transport['websocket']} over WebSocket); {len(errors)} record(s) with an error")
    if records:
        lines.append(f"from t=0 to t={max(r.t for r in records):.3f} s")
    return "\n".join(lines)


def doctor_report(trace: Any) -> str | None:
    """What the doctor (``siolab.doctor.diagnose``, built separately) says of an imported trace, in its own
    words; None when this install has no doctor. This is the one place the ``har`` command asks it."""
    import importlib
    try:
        doctor = importlib.import_module("siolab.doctor")
    except ModuleNotFoundError as exc:
        if exc.name in ("siolab.doctor", "siolab"):
            return None
        raise
    diagnose = getattr(doctor, "diagnose", None)
    return None if diagnose is None else str(diagnose(trace))


# ---------------------------------------------------------------- small helpers
_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d+))?\s*(Z|z|[+-]\d{2}:?\d{2})?$")


def _epoch(value: Any) -> float | None:
    """Seconds since the epoch of an ISO 8601 date as HAR files write it (any number of fraction digits)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _ISO.match(value.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z", "z") else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    text = base + (f".{fraction[:6].ljust(6, '0')}" if fraction else "") + zone
    try:
        return datetime.fromisoformat(text).timestamp()
    except (ValueError, OverflowError, OSError):
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _duration(entry: dict) -> float:
    """Seconds from the request to the end of its answer: ``time``, else the sum of ``timings``."""
    took = _number(entry.get("time"))
    if took is None or took < 0:
        timings: dict = entry["timings"] if isinstance(entry.get("timings"), dict) else {}
        parts = [_number(timings.get(k)) for k in ("blocked", "dns", "connect", "send", "wait", "receive")]
        took = sum(p for p in parts if p is not None and p > 0)
    return min(took, 1e10) / 1000


def _headers(value: Any) -> dict[str, str]:
    """HAR headers (``[{"name", "value"}]``) by lower-case name, the first of each; anything else ignored."""
    out: dict[str, str] = {}
    if isinstance(value, list):
        for item in value[:1000]:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str):
                out.setdefault(item["name"].lower(), item["value"][:MAX_RECORDED_BODY])
    return out


def _depth(value: Any, limit: int) -> int:
    """How deeply arrays and objects nest, up to ``limit`` + 1 (iterative: no recursion for hostile input)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _version() -> str:
    """siolab's version, from its installed metadata (importing the package here would make a cycle)."""
    from importlib import metadata
    try:
        return metadata.version("siolab")
    except metadata.PackageNotFoundError:
        return "unknown"


def _join(a: str | None, b: str | None) -> str | None:
    return f"{a}; {b}" if a and b else (a or b)


def _short(value: Any) -> str:
    return cut(repr(value), 60)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


__all__ = ["read", "load", "parse", "replay", "summary", "doctor_report", "Parsed", "Imported", "Request",
           "Response", "Upgrade", "UpgradeAnswer", "Message", "Ended", "Problem", "MAX_HAR_BYTES", "MAX_BODY",
           "MAX_DEPTH"]
