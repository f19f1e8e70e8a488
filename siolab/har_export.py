"""HAR out: records written as a HAR 1.2 file that Chrome DevTools imports (Network panel, Import HAR),
WebSocket frames included, with tokens redacted by default (auth payloads and query strings carry them).

Reading HAR files is ``har.py``'s; this module only builds and writes them.
"""
from __future__ import annotations

import base64
import json
import os
import re
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, urlsplit

from . import notes, protocol
from .har import KEEP_PARAMS, REDACTED, SECRET_WORDS, _epoch, _version
from .record import Record
from .recorder import CLIENT_HEADER, parse_query


def write(records: Iterable[Record], path: str | os.PathLike, *, redact: bool = True, origin: str = "http://localhost",
          start: float = 0.0) -> str:
    """Write records as a HAR file Chrome DevTools imports; returns the note on what was redacted."""
    har, note = build(records, redact=redact, origin=origin, start=start)
    try:
        text = json.dumps(har, ensure_ascii=False, indent=1)
        data = text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        data = json.dumps(har, ensure_ascii=True, indent=1, default=str).encode("ascii")
    with open(path, "wb") as fh:
        fh.write(data)
    return note


def build(records: Iterable[Record], *, redact: bool = True, origin: str = "http://localhost",
          start: float = 0.0) -> tuple[dict, str]:
    """A trace as a HAR 1.2 dict (pure) and a note on what was redacted. ``start``: the wall time (seconds
    since the epoch) of the trace's t=0; ``origin``: scheme, host and port for the URLs (a trace keeps paths)."""
    builder = _Builder(redact)
    for record in records:
        builder.add(record)
    origin = origin.rstrip("/")
    ws_origin = "ws" + origin[4:] if origin.startswith("http") else origin
    entries = [e.to_har(origin, ws_origin, start, builder) for e in builder.entries]
    note = builder.note()
    comment = (f"{note}. Written by siolab from a trace: a trace keeps paths, bodies and WebSocket messages, "
               f"not headers, so the only request headers are Host and siolab's client name.")
    if builder.left_out:
        comment += f" {builder.left_out} records that are not traffic (faults, errors, logs) are not in it."
    return {"log": {"version": "1.2", "creator": {"name": "siolab", "version": _version()}, "pages": [],
                    "entries": entries, "comment": comment}}, note


class _Entry:
    """One HAR entry being built from records (an HTTP exchange or a WebSocket)."""

    def __init__(self, t: float, method: str, path: str, client: str | None, server: str | None,
                 websocket: bool) -> None:
        self.t, self.method, self.path, self.client, self.server = t, method, path, client, server
        self.websocket = websocket
        self.request_parts: list[str] = []
        self.request_raw: str | None = None
        self.t_answer: float | None = None
        self.status: int | None = None
        self.answer_parts: list[str] = []
        self.answer_raw: str | None = None
        self.answer_note: str | None = None
        self.answer_key: tuple | None = None
        self.sid: str | None = None
        self.messages: list[dict] = []
        self.last = t

    def to_har(self, origin: str, ws_origin: str, start: float, builder: "_Builder") -> dict:
        path = builder.redact_path(self.path)
        netloc = urlsplit(origin).netloc
        stamp = datetime.fromtimestamp(start + self.t, timezone.utc)
        started = stamp.isoformat(timespec="microseconds").replace("+00:00", "Z")
        began = _epoch(started) or start + self.t
        end = self.t_answer if self.t_answer is not None else self.t
        took = max(0.0, (start + end - began) * 1000)
        headers = [{"name": "Host", "value": netloc}]
        if self.websocket:
            headers += [{"name": "Upgrade", "value": "websocket"}, {"name": "Connection", "value": "Upgrade"}]
        if self.client:
            headers.append({"name": CLIENT_HEADER, "value": self.client})
        body = protocol.join_body(self.request_parts) if self.request_parts else self.request_raw
        query = urlsplit(path).query
        request: dict[str, Any] = {
            "method": self.method, "url": (ws_origin if self.websocket else origin) + path, "httpVersion": "HTTP/1.1",
            "cookies": [], "headers": headers,
            "queryString": [{"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)],
            "headersSize": -1, "bodySize": len(body.encode("utf-8", "surrogatepass")) if body is not None else 0}
        if body is not None:
            request["postData"] = {"mimeType": "text/plain;charset=UTF-8", "text": body}
        entry: dict[str, Any] = {"startedDateTime": started, "time": round(took, 3), "request": request,
                                 "response": self._response(), "cache": {},
                                 "timings": {"blocked": -1, "dns": -1, "ssl": -1, "connect": -1, "send": 0,
                                             "wait": round(took, 3), "receive": 0},
                                 "_resourceType": "websocket" if self.websocket else "xhr"}
        if self.server:
            entry["_siolabServer"] = self.server
        if self.websocket:
            entry["_webSocketMessages"] = [{**m, "time": round(start + m["time"], 6)} for m in self.messages]
        return entry

    def _response(self) -> dict:
        if self.status is None:
            return {"status": 0, "statusText": "", "httpVersion": "", "cookies": [], "headers": [],
                    "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "headersSize": -1,
                    "bodySize": -1, "_error": self.answer_note or "no answer"}
        if self.status == 101:
            return {"status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1", "cookies": [],
                    "headers": [{"name": "Upgrade", "value": "websocket"}, {"name": "Connection", "value": "Upgrade"}],
                    "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "headersSize": -1,
                    "bodySize": 0}
        body = protocol.join_body(self.answer_parts) if self.answer_parts else (self.answer_raw or "")
        stripped = body.lstrip()[:1]
        ctype = "text/plain; charset=UTF-8"
        if self.status >= 400 and stripped in ("{", "[", '"'):
            ctype = "application/json"
        elif notes.is_html("", body):
            ctype = "text/html; charset=UTF-8"
        size = len(body.encode("utf-8", "surrogatepass"))
        return {"status": self.status, "statusText": _REASONS.get(self.status, ""), "httpVersion": "HTTP/1.1",
                "cookies": [], "headers": [{"name": "Content-Type", "value": ctype}],
                "content": {"size": size, "mimeType": ctype, "text": body}, "redirectURL": "", "headersSize": -1,
                "bodySize": size}


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Internal Server Error",
            502: "Bad Gateway"}


class _Builder:
    """Pairs records back into HTTP exchanges and WebSockets, in the order they came."""

    def __init__(self, redact: bool) -> None:
        self.redact = redact
        self.entries: list[_Entry] = []
        self.requests: dict[tuple, _Entry] = {}  # (method, path, t) -> the request being filled
        self.waiting: dict[tuple, list[_Entry]] = {}  # (method, path) -> requests not answered yet, oldest first
        self.answers: dict[tuple, _Entry] = {}  # (method, path, status, t) -> the answer being filled
        self.sockets: list[_Entry] = []
        self.left_out = 0
        self.redacted_params: set[str] = set()
        self.redacted_urls = 0
        self.redacted_auth = 0

    def add(self, r: Record) -> None:
        http, transport = r.http, r.transport
        status = http.get("status") if http else None
        if transport == "websocket" and (r.kind in ("ws", "fault") or (r.kind == "http" and http is not None)):
            self._websocket(r, http, status)
        elif transport == "websocket" and r.kind == "packet":
            entry = self._socket_of(r)
            if entry is None:
                self.left_out += 1
                return
            self._message(entry, r)
        elif http is not None and r.kind in ("packet", "http") and r.dir == "c2s" and status is None:
            self._request(r, http)
        elif http is not None and r.kind in ("packet", "http") and r.dir == "s2c":
            self._answer(r, http, status)
        else:
            self.left_out += 1

    def _request(self, r: Record, http: dict) -> None:
        method, path = http.get("method") or "GET", http.get("path") or "/"
        key = (method, path, r.t)
        entry = self.requests.get(key)
        if entry is None or entry.t_answer is not None:
            entry = _Entry(r.t, method, path, r.client, r.server, False)
            self.entries.append(entry)
            self.requests[key] = entry
            self.waiting.setdefault((method, path), []).append(entry)
        if r.kind == "packet":
            entry.request_parts.append(self._wire(r))
        elif r.raw is not None:
            entry.request_raw = r.raw

    def _answer(self, r: Record, http: dict, status: int | None) -> None:
        method, path = http.get("method") or "GET", http.get("path") or "/"
        key = (method, path, status, r.t)
        entry = self.answers.get(key)
        if entry is None:
            queue = self.waiting.get((method, path))
            if not queue:  # an answer whose request is not in the records (a trace cut at its start)
                entry = _Entry(r.t, method, path, r.client, r.server, False)
                self.entries.append(entry)
            else:
                entry = queue.pop(0)
            entry.t_answer, entry.status = r.t, status
            self.answers[key] = entry
        if r.kind == "packet":
            entry.answer_parts.append(self._wire(r))
        else:
            entry.answer_raw = r.raw
            entry.answer_note = r.note

    def _websocket(self, r: Record, http: dict | None, status: int | None) -> None:
        if http is not None and r.dir == "c2s" and status is None:
            entry = _Entry(r.t, "GET", http.get("path") or "/", r.client, r.server, True)
            entry.sid = r.sid
            self.entries.append(entry)
            self.sockets.append(entry)
            return
        if http is not None and r.dir == "s2c":
            entry = next((e for e in reversed(self.sockets) if e.path == http.get("path") and e.t_answer is None),
                         None)
            if entry is None:
                self.left_out += 1
                return
            entry.t_answer, entry.status = r.t, status
            if status != 101:
                entry.answer_raw = r.raw if r.kind == "http" else (r.note or "")
                entry.answer_note = r.note
            return
        entry = self._socket_of(r)
        if entry is None or r.kind != "ws":
            self.left_out += 1
            return
        match = re.search(r"code (\d+)", r.note or "")
        if r.dir in ("c2s", "s2c") and match:  # the first close frame, as a close message (opcode 8)
            payload = int(match.group(1)).to_bytes(2, "big") if int(match.group(1)) < 65536 else b""
            entry.messages.append({"type": "send" if r.dir == "c2s" else "receive", "time": r.t, "opcode": 8,
                                   "data": base64.b64encode(payload).decode("ascii")})
        else:
            self.left_out += 1

    def _socket_of(self, r: Record) -> _Entry | None:
        """The WebSocket a record belongs to: by sid, else the newest one of its client whose sid is not known
        yet (a WebSocket-only client learns it from the open packet)."""
        if r.sid is not None:
            for entry in reversed(self.sockets):
                if entry.sid == r.sid and entry.status == 101:
                    return entry
        for entry in reversed(self.sockets):
            if entry.sid is None and entry.client == r.client and entry.status == 101:
                entry.sid = r.sid
                return entry
        return None

    def _message(self, entry: _Entry, r: Record) -> None:
        kind = "send" if r.dir == "c2s" else "receive"
        if r.binary:
            entry.messages.append({"type": kind, "time": r.t, "opcode": 2, "data": r.raw or ""})
        else:
            entry.messages.append({"type": kind, "time": r.t, "opcode": 1, "data": self._wire(r)})

    def _wire(self, r: Record) -> str:
        """The packet as it went on the wire (a polling attachment is 'b' + base64), redacted if asked."""
        raw = r.raw or ""
        if r.binary:
            return "b" + raw if r.transport == "polling" else raw
        if self.redact and r.dir == "c2s" and r.sio == "connect":
            redacted = redact_connect(raw)
            if redacted != raw:
                self.redacted_auth += 1
            return redacted
        return raw

    def redact_path(self, path: str) -> str:
        if not self.redact or "?" not in path:
            return path
        redacted, names = redact_query(path)
        if names:
            self.redacted_urls += 1
            self.redacted_params.update(names)
        return redacted

    def note(self) -> str:
        if not self.redact:
            return "nothing redacted (redact=False): tokens in auth payloads and query strings are as they were"
        urls = self.redacted_urls  # (counted as the entries were written)
        said = []
        if self.redacted_params:
            said.append(f"the value of the query parameter(s) {', '.join(sorted(self.redacted_params))} in {urls} "
                        f"URL(s)")
        if self.redacted_auth:
            said.append(f"the auth payload values of {self.redacted_auth} CONNECT packet(s) (keys kept)")
        if not said:
            return ("redacted nothing: no CONNECT auth payload and no query parameter named like token, auth, key, "
                    "password, session or jwt")
        return f"redacted {' and '.join(said)}: replaced with {REDACTED!r} (pass redact=False to keep them)"


def redact_query(path: str) -> tuple[str, list[str]]:
    """``path?query`` with the values of secret-looking parameters replaced (Engine.IO's own kept)."""
    base, _, query = path.partition("?")
    names, parts = [], []
    for part in query.split("&"):
        key, eq, _value = part.partition("=")
        name = parse_query(key).popitem()[0] if key else key
        if eq and name not in KEEP_PARAMS and any(word in name.lower() for word in SECRET_WORDS):
            names.append(name)
            parts.append(f"{key}={quote(REDACTED)}")
        else:
            parts.append(part)
    return base + "?" + "&".join(parts), names


def redact_connect(raw: str) -> str:
    """A CONNECT packet (``40``, a namespace, an auth object) with every auth value replaced by REDACTED."""
    if not raw.startswith("40"):
        return raw
    rest = raw[2:]
    prefix = ""
    if rest.startswith("/"):
        nsp, comma, after = rest.partition(",")
        if not comma:
            return raw
        prefix, rest = nsp + ",", after
    if not rest:
        return raw
    try:
        auth = json.loads(rest)
    except (ValueError, RecursionError):
        return f"40{prefix}{REDACTED}"  # not JSON: it may still carry a secret, and stays invalid
    if isinstance(auth, dict):
        return "40" + prefix + json.dumps({k: REDACTED for k in auth}, separators=(",", ":"), ensure_ascii=False)
    return "40" + prefix + json.dumps(REDACTED)


