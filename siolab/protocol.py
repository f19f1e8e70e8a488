"""Pure decoding and explanation of Engine.IO v4 / Socket.IO v5 packets.

No I/O, no time, no widgets: bytes or text in, frozen values out. Parsing is
python-engineio's and python-socketio's own (``engineio.packet.Packet``,
``socketio.packet.Packet``); this module wraps them so that any input, however
malformed, becomes a value whose ``error`` says what is wrong instead of raising.

Wire format, Engine.IO v4 (one packet)::

    <type digit>[<data>]        0 open  1 close  2 ping  3 pong
                                4 message  5 upgrade  6 noop
    b<base64>                   a binary message inside a polling body
    <bytes>                     a binary message in a WebSocket frame

A polling body joins packets with the record separator ``\\x1e``.

Socket.IO v5 (the data of an Engine.IO message)::

    <type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]
    0 CONNECT  1 DISCONNECT  2 EVENT  3 ACK  4 CONNECT_ERROR
    5 BINARY_EVENT  6 BINARY_ACK
"""
from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable

from .frozen import constructor
from .text import cut

# The libraries' packet modules are imported on first use: importing python-engineio or python-socketio
# pulls in aiohttp and both their servers and clients (~0.6 s), which ``import siolab`` should not pay.
@functools.cache
def _eio_packet():
    from engineio import packet
    return _with_fast_json(packet)


@functools.cache
def _sio_packet():
    from socketio import packet
    module = _with_fast_json(packet)
    Packet = module.Packet

    def parse(encoded: str) -> Any:
        """``Packet(encoded_packet=encoded)``: the library's ``decode``, without the constructor's look for
        binary data that is not there yet (a quarter of the cost; tests/test_protocol.py checks the result)."""
        pkt = Packet.__new__(Packet)
        pkt.packet_type, pkt.data, pkt.namespace, pkt.id, pkt.attachments = packet.EVENT, None, None, None, []
        pkt.attachment_count = 0
        pkt.attachment_count = pkt.decode(encoded) or 0
        return pkt
    module.parse = staticmethod(parse)
    return module


def _with_fast_json(module: Any) -> Any:
    """The library's packet module with its ``Packet`` given a JSON module that reuses one decoder.

    Both libraries read JSON through ``engineio.json.loads``, which builds a new decoder on every call
    (to pass ``parse_int``); that was a third of the tap's decoding time. The parsing is the library's,
    and so are the rules: the same ``parse_int`` refuses integers of more than 100 digits. ``Packet.json``
    is the libraries' documented hook for a custom JSON module.
    """
    from engineio import json as engineio_json
    decoder = json.JSONDecoder(parse_int=getattr(engineio_json, "_safe_int", None))
    decode, scan = decoder.decode, decoder.scan_once  # type: ignore[attr-defined]  # (not in typeshed)

    def fast_loads(text: str) -> Any:
        """``decoder.decode(text)``; when the value fills the text exactly (what the libraries send), without
        decode's two whitespace look-ups and its Python frames (a third of the time). Anything else (white
        space around the value, extra data, no value, not a str) goes to ``decode``, which says what is wrong."""
        try:
            value, end = scan(text, 0)
        except (StopIteration, TypeError):
            return decode(text)
        return value if end == len(text) else decode(text)

    class FastJSON:
        loads = staticmethod(fast_loads)
        dumps = staticmethod(engineio_json.dumps)

    class Packet(module.Packet):
        json = FastJSON

    return type("PacketModule", (), {"Packet": Packet, "library": module})


# The libraries' ``packet_names``, lowercased (tests/test_protocol.py checks they still agree).
EIO_TYPES = ("open", "close", "ping", "pong", "message", "upgrade", "noop")
SIO_TYPES = ("connect", "disconnect", "event", "ack", "connect_error", "binary_event", "binary_ack")
RECORD_SEPARATOR = "\x1e"

EIO_MEANING = {
    "open": "the server accepts the connection; its JSON says sid, upgrades, pingInterval, pingTimeout, maxPayload",
    "close": "this Engine.IO session is over",
    "ping": "heartbeat: are you still there? (the server sends it every pingInterval)",
    "pong": "heartbeat answer to a ping",
    "message": "carries a Socket.IO packet (or plain data)",
    "upgrade": "the client switches to the new transport (the WebSocket) for good",
    "noop": "no operation: used to end a pending long-poll during the upgrade",
}
SIO_MEANING = {
    "connect": "connect to a namespace (the server's answer carries the Socket.IO sid)",
    "disconnect": "leave a namespace",
    "event": "an event: [name, ...args]",
    "ack": "an acknowledgement: the answer to the event with the same ack id",
    "connect_error": "the server refused the namespace connection (called ERROR in older versions)",
    "binary_event": "an event whose arguments contain binary data; the attachments follow as separate packets",
    "binary_ack": "an acknowledgement containing binary data; the attachments follow",
}
# Names the official socket.io-parser refuses as event names (they have a meaning of their own).
RESERVED_EVENTS = ("connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener")
_V3_FRAMING = re.compile(r"^\d+:")
_NSP_CHARS = re.compile(r"^/[^\[\]{}\"]*$")


@dataclass(frozen=True, slots=True)
class EioPacket:
    """One Engine.IO packet as decoded, or an ``error`` saying why it could not be."""

    raw: str | bytes
    type: str | None = None
    data: Any = None
    binary: bool = False
    error: str | None = None

    @property
    def text(self) -> str | None:
        """The message payload as text (what a Socket.IO packet is decoded from)."""
        return self.data if isinstance(self.data, str) else None


@dataclass(frozen=True, slots=True)
class SioPacket:
    """One Socket.IO packet (the data of an Engine.IO message)."""

    raw: str
    type: str | None = None
    nsp: str = "/"
    ack: int | None = None
    attachments: int = 0
    data: Any = None
    error: str | None = None

    @property
    def event(self) -> str | None:
        if self.type in ("event", "binary_event") and isinstance(self.data, list) and self.data:
            first = self.data[0]
            return first if isinstance(first, str) else None
        return None

    @property
    def args(self) -> list | None:
        if self.type in ("event", "binary_event") and isinstance(self.data, list):
            return self.data[1:]
        if self.type in ("ack", "binary_ack") and isinstance(self.data, list):
            return self.data
        return None


def _short(value: Any, limit: int = 60) -> str:
    return cut(value, limit)


def decode_eio(raw: str | bytes | bytearray) -> EioPacket:
    """Decode one Engine.IO packet (a WebSocket frame, or one packet of a polling body)."""
    if isinstance(raw, (bytes, bytearray)):
        return _new_eio(raw=bytes(raw), type="message", data=bytes(raw), binary=True)
    if not isinstance(raw, str):
        return EioPacket(raw=repr(raw), error=f"not a packet: {type(raw).__name__}")
    if raw == "":
        return EioPacket(raw=raw, error="empty packet: an Engine.IO packet starts with a type digit 0-6")
    if raw[0] == "b":
        try:
            data: Any = base64.b64decode(raw[1:], validate=True)
        except (binascii.Error, ValueError):
            return EioPacket(raw=raw, type="message", binary=True,
                             error="'b' announces a base64 binary message, but the rest is not valid base64")
        return EioPacket(raw=raw, type="message", data=data, binary=True)
    if raw[0] not in "0123456":
        if _V3_FRAMING.match(raw):
            return EioPacket(raw=raw, error="Engine.IO v3 framing (<length>:<packet>): "
                             "this is the older protocol (EIO=3); v4 joins packets with \\x1e")
        return EioPacket(raw=raw, error=f"unknown Engine.IO packet type {raw[0]!r}: expected a digit 0-6")
    if raw[0] == "4" and raw[1:2].isnumeric():
        # A Socket.IO packet: python-engineio never parses a message that starts with a digit (it keeps the
        # text as it is), so its Packet would only slice it. Skipped on this, the tap's busiest path
        # (tests/test_protocol.py checks the result is the same as through the library).
        return _new_eio(raw=raw, type="message", data=raw[1:])
    try:
        pkt = _eio_packet().Packet(encoded_packet=raw)
    except Exception as exc:  # the library's own parser refused it
        return EioPacket(raw=raw, error=f"Engine.IO parser: {exc}")
    name = EIO_TYPES[pkt.packet_type]
    data = raw[1:] if raw[1:] else None
    if name == "open":
        data = pkt.data
        if not isinstance(data, dict):
            return EioPacket(raw=raw, type=name, data=raw[1:],
                             error="open packet without a JSON object (sid, upgrades, pingInterval, ...)")
        missing = [k for k in ("sid", "upgrades", "pingInterval", "pingTimeout") if k not in data]
        if missing:
            return EioPacket(raw=raw, type=name, data=data,
                             error="open packet is missing " + ", ".join(missing))
        wrong = _open_field_errors(data)
        if wrong:
            return EioPacket(raw=raw, type=name, data=data, error="open packet: " + "; ".join(wrong))
    return _new_eio(raw=raw, type=name, data=data)


def _open_field_errors(data: dict) -> list[str]:
    """What is wrong with the types in an open packet (a misbehaving server may send anything)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    wrong = []
    if not isinstance(data["sid"], str) or not data["sid"]:
        wrong.append("sid must be a non-empty string")
    if not isinstance(data["upgrades"], list) or not all(isinstance(u, str) for u in data["upgrades"]):
        wrong.append('upgrades must be a list of transport names (e.g. ["websocket"])')
    for key in ("pingInterval", "pingTimeout", "maxPayload"):
        if key in data and not number(data[key]):
            wrong.append(f"{key} must be a number of milliseconds (bytes for maxPayload)")
    return wrong


def decode_payload(body: str | bytes | bytearray) -> tuple[list[EioPacket], str | None]:
    """Split an HTTP long-polling body into its packets; the second item is an error, if any.

    python-engineio's ``Payload`` refuses bodies of more than 16 packets (a server
    limit, not the protocol's), so the body is split here and each packet is decoded
    by the library's ``Packet``.
    """
    if isinstance(body, (bytes, bytearray)):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return [], "polling body is not UTF-8 text (v4 sends binary over polling as 'b' + base64)"
    if not isinstance(body, str):
        return [], f"not a polling body: {type(body).__name__}"
    if body == "":
        return [], None
    if _V3_FRAMING.match(body):
        return [], ("Engine.IO v3 framing (<length>:<packet>...): this is the older protocol (EIO=3); "
                    "v4 joins packets with \\x1e")
    packets = [decode_eio(part) for part in body.split(RECORD_SEPARATOR)]
    bad = [p.error for p in packets if p.error]
    return packets, (bad[0] if bad else None)


def _placeholders(data: Any) -> list[int]:
    """The ``num`` of every binary placeholder in decoded JSON, in document order."""
    found: list[int] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("_placeholder") is True and "num" in item:
                found.append(item["num"])
            else:
                stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def _check_sio(name: str, data: Any, attachments: int) -> str | None:
    """The protocol's rules on each packet type's payload (the library's parser does not check them).

    Like the official socket.io-parser, a packet with no payload at all is not checked.
    """
    if data is None and name not in ("binary_event", "binary_ack"):
        return None
    if name == "disconnect":
        return "DISCONNECT carries no payload"
    if name in ("event", "binary_event"):
        if not isinstance(data, list) or not data:
            return f"{name.upper()} payload must be a non-empty array [name, ...args]"
        if not isinstance(data[0], (str, int, float)) or isinstance(data[0], bool):
            return f"{name.upper()} name (first element) must be a string"
        if data[0] in RESERVED_EVENTS:
            return f"{data[0]!r} is a reserved event name: it has a special meaning and cannot be emitted"
    if name in ("ack", "binary_ack") and not isinstance(data, list):
        return f"{name.upper()} payload must be an array of arguments"
    if name == "connect" and data is not None and not isinstance(data, dict):
        return "CONNECT payload must be an object (auth from the client, {sid} from the server)"
    if name == "connect_error" and not isinstance(data, dict):
        if isinstance(data, str):
            return None  # python-socketio sends a plain string here; see lesson notes
        return "CONNECT_ERROR payload must be an object {message, data?}"
    if name in ("binary_event", "binary_ack"):
        nums = _placeholders(data)
        if attachments < 1:
            return f"{name.upper()} must announce its attachment count ('<n>-')"
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
            return f"{name.upper()} has a placeholder whose num is not an integer: {_short(nums, 80)}"
        if sorted(nums) != list(range(attachments)):
            return (f"{name.upper()} announces {attachments} attachment(s) but its placeholders "
                    f"are numbered {sorted(nums)}")
    return None


def decode_sio(text: Any) -> SioPacket:
    """Decode one Socket.IO packet (without the Engine.IO '4' in front)."""
    if not isinstance(text, str):
        return SioPacket(raw=_short(text), error="a Socket.IO packet is text")
    if text == "":
        return SioPacket(raw=text, error="empty Socket.IO packet: expected a type digit 0-6")
    if text[0] not in "0123456":
        return SioPacket(raw=text, error=f"unknown Socket.IO packet type {text[0]!r}: expected a digit 0-6")
    name = SIO_TYPES[int(text[0])]
    try:
        pkt = _sio_packet().parse(text)
    except (ValueError, json.JSONDecodeError) as exc:
        return SioPacket(raw=text, type=name, error=f"cannot decode {name.upper()}: {exc}")
    except Exception as exc:  # any other refusal by the library's parser
        return SioPacket(raw=text, type=name, error=f"Socket.IO parser: {exc!r}")
    if pkt.namespace is None:  # the library found none where the wire would have one: the default
        nsp = "/"
    else:
        nsp = _wire_namespace(text) or "/"  # python-socketio drops a '?query' from it; show the wire's
    if pkt.namespace and "," not in text and not _NSP_CHARS.match(nsp):
        return SioPacket(raw=text, type=name, nsp=_short(nsp, 40),
                         error="namespace without a comma: '/name' must be followed by ',' before the data")
    attachments = getattr(pkt, "attachment_count", 0) or 0
    if attachments and name not in ("binary_event", "binary_ack"):
        return SioPacket(raw=text, type=name, nsp=nsp, error=f"{name.upper()} cannot carry attachments")
    error = _check_sio(name, pkt.data, attachments) or _not_json(text, pkt.data)
    return _new_sio(raw=text, type=name, nsp=nsp, ack=pkt.id, attachments=attachments,
                    data=pkt.data, error=error)


def _not_json(text: str, data: Any) -> str | None:
    """Python's json accepts NaN and Infinity; JSON (and JavaScript's JSON.parse) does not."""
    if "NaN" not in text and "Infinity" not in text:
        return None
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            return ("the data is not valid JSON: NaN and Infinity are not JSON values (Python's json reads them, "
                    "JavaScript's JSON.parse refuses them)")
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return None


def _wire_namespace(text: str) -> str | None:
    """The namespace exactly as written: after the type and attachment count, up to the first comma."""
    rest = text[1:]
    dash = rest.find("-")
    if dash > 0 and rest[:dash].isdigit():
        rest = rest[dash + 1:]
    if not rest.startswith("/"):
        return None
    comma = rest.find(",")
    return rest if comma == -1 else rest[:comma]


def attachment_marker(data: bytes) -> str:
    """How an attachment appears among the args of its event: ``<4 bytes>``."""
    return f"<{len(data)} bytes>"


def fill_placeholders(data: Any, attachments: list[bytes]) -> Any:
    """Replace each placeholder with a marker for its attachment (library's reconstruct, markers not bytes)."""
    markers = [attachment_marker(a) for a in attachments]
    try:
        return _sio_packet().Packet.reconstruct_binary(data, markers)
    except (IndexError, TypeError, KeyError, RecursionError):  # RecursionError: absurdly deep arrays
        return data


@dataclass(frozen=True, slots=True)
class Decoded:
    """One Engine.IO packet with its Socket.IO packet, as it goes into a record."""

    eio: EioPacket
    sio: SioPacket | None = None
    args: list | None = None
    error: str | None = None
    attachment_of: int | None = None  # for a binary attachment: which attachment it is (0-based)


# Every packet the tap relays makes one of each: built without the frozen __init__'s call per field.
_new_eio, _new_sio, _new_decoded = constructor(EioPacket), constructor(SioPacket), constructor(Decoded)


@dataclass
class Reassembler:
    """Pairs a BINARY_EVENT/BINARY_ACK with the attachments that follow it (one per direction).

    ``feed`` returns what is ready, in wire order; a binary event is held until its
    attachments arrived so that its args can show them. Tags (e.g. timestamps) travel along.
    """

    pending: tuple[Any, Decoded] | None = None  # a packet waiting for attachments: its sio is never None
    parts: list[tuple[Any, EioPacket]] = field(default_factory=list)

    def feed(self, pkt: EioPacket, tag: Any = None) -> list[tuple[Any, Decoded]]:
        out: list[tuple[Any, Decoded]] = []
        if pkt.binary and pkt.error is None:
            if self.pending is None:
                return [(tag, Decoded(eio=pkt, error="binary attachment with no BINARY_EVENT/BINARY_ACK "
                                      "placeholder before it"))]
            self.parts.append((tag, pkt))
            head = self.pending[1]
            if len(self.parts) == head.sio.attachments:  # type: ignore[union-attr]
                out.extend(self._complete())
            return out
        if self.pending is not None:
            out.extend(self.flush("the next packet arrived before every attachment (a receiver may take that "
                                  "packet as the attachment, as python-socketio does, or close the connection, "
                                  "as Node.js does)"))
        decoded = decode(pkt)
        if decoded.sio is not None and decoded.sio.attachments and decoded.error is None:
            self.pending = (tag, decoded)
            return out
        out.append((tag, decoded))
        return out

    def _complete(self) -> list[tuple[Any, Decoded]]:
        tag, head = self.pending  # type: ignore[misc]  # (called only while a packet is pending)
        blobs = [p.data for _, p in self.parts]
        args = fill_placeholders(head.sio.args, blobs)  # type: ignore[union-attr]
        out = [(tag, Decoded(eio=head.eio, sio=head.sio, args=args))]
        out += [(t, Decoded(eio=p, attachment_of=i)) for i, (t, p) in enumerate(self.parts)]
        self.pending, self.parts = None, []
        return out

    def flush(self, why: str = "the connection ended") -> list[tuple[Any, Decoded]]:
        """Give back a binary packet still waiting for attachments, marked as an error."""
        if self.pending is None:
            return []
        tag, head = self.pending
        n = head.sio.attachments  # type: ignore[union-attr]
        err = f"placeholder with no attachment: expected {n} attachment(s), got {len(self.parts)}; {why}"
        out = [(tag, Decoded(eio=head.eio, sio=head.sio, args=head.sio.args, error=err))]  # type: ignore[union-attr]
        out += [(t, Decoded(eio=p, attachment_of=i)) for i, (t, p) in enumerate(self.parts)]
        self.pending, self.parts = None, []
        return out


def decode(pkt: EioPacket) -> Decoded:
    """Decode the Socket.IO layer of one Engine.IO packet (no attachment pairing)."""
    if pkt.error or pkt.type != "message" or pkt.binary:
        return _new_decoded(eio=pkt, error=pkt.error)
    sio = decode_sio(pkt.text or "")
    return _new_decoded(eio=pkt, sio=sio, args=sio.args, error=sio.error)


def explain_refusal(status: int, body: str) -> str:
    """Why an Engine.IO server refused an HTTP request, from its status and body."""
    text = body.strip()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "message" in parsed:
        text = str(parsed["message"])
    elif isinstance(parsed, str):
        text = parsed
    hint = ""
    low = text.lower()
    if "session" in low and ("invalid" in low or "unknown" in low):
        hint = (" - the server has no session with this sid (expired, closed, or it lives in another "
                "server process: 'Session ID unknown' behind a load balancer without sticky sessions)")
    elif "session is disconnected" in low or "not connected" in low:
        hint = (" - this session is over (the client sent close, or the server ended it, e.g. after a ping "
                "timeout); a client has to start again with a new handshake")
    elif "protocol version" in low or "eio" in low or "unsupported version" in low:
        hint = " - the client speaks another Engine.IO protocol version (v4 is EIO=4)"
    elif "transport" in low:
        hint = " - the transport query parameter is missing or not one the server allows"
    elif "origin" in low:
        hint = (" - refused because of the request's Origin header (CORS): the server accepts only the origins "
                "in its cors_allowed_origins (same origin by default)")
    elif status == 403:
        hint = " - refused by the server (often CORS: the Origin is not allowed)"
    elif "too large" in low or status == 413:
        hint = " - the body is larger than the server's maxPayload"
    return f"HTTP {status}: {_short(text, 120) or '(empty body)'}{hint}"


# ---------------------------------------------------------------- explain()


@dataclass(frozen=True)
class Field:
    """One part of a packet: the characters it spans and what they mean."""

    name: str
    text: str
    meaning: str
    start: int | None = None  # span in the raw packet; None when implicit (e.g. namespace '/')
    end: int | None = None


@dataclass(frozen=True)
class Explanation:
    """A packet broken into named fields; ``str()`` is plain English, one line per field."""

    raw: str
    fields: tuple[Field, ...] = ()
    eio: str | None = None
    sio: str | None = None
    nsp: str | None = None
    ack: int | None = None
    event: str | None = None
    args: list | None = None
    data: Any = None
    error: str | None = None
    packets: tuple["Explanation", ...] = ()  # for a polling body: one per packet

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def __str__(self) -> str:
        lines = [f"packet {self.raw!r}"]
        for f in self.fields:
            where = f"{f.text!r:<12}" if f.start is not None else f"{'(implicit)':<12}"
            lines.append(f"  {where} {f.name}: {f.meaning}")
        for i, sub in enumerate(self.packets):
            lines.append(f"  packet {i + 1} of {len(self.packets)}:")
            lines.extend("    " + line for line in str(sub).splitlines())
        if self.error:
            lines.append(f"  error: {self.error}")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):  # IPython shows the plain English
        p.text(str(self))


def _eio_field(pkt: EioPacket) -> Field:  # (of a packet that decoded: its type is not None)
    index = EIO_TYPES.index(pkt.type)
    return Field("engine.io type", str(index), f"Engine.IO {index} {pkt.type.upper()}: {EIO_MEANING[pkt.type]}", 0, 1)  # type: ignore[union-attr,index]


def _explain_sio(raw: str, offset: int, sio: SioPacket) -> list[Field]:  # (of a packet that decoded)
    """Fields of a Socket.IO packet whose text starts at ``offset`` in ``raw``."""
    fields = []
    pos = offset
    index = SIO_TYPES.index(sio.type)
    fields.append(Field("socket.io type", raw[pos], f"Socket.IO {index} {sio.type.upper()}: {SIO_MEANING[sio.type]}",  # type: ignore[union-attr,index]
                        pos, pos + 1))
    pos += 1
    if sio.attachments:
        n = _digits(raw, pos)  # as written: '01-' is 1 attachment too
        fields.append(Field("attachments", n + "-", f"{sio.attachments} binary attachment(s) follow as separate "
                            "packets", pos, pos + len(n) + 1))
        pos += len(n) + 1
    if raw.startswith("/", pos):
        comma = raw.find(",", pos)
        end = comma + 1 if comma != -1 else len(raw)
        fields.append(Field("namespace", raw[pos:end], f"namespace {sio.nsp}", pos, end))
        pos = end
    else:
        fields.append(Field("namespace", "", "namespace / (the default, not written on the wire)"))
    if sio.ack is not None:
        a, n = _digits(raw, pos), sio.ack  # as written: '001' is ack id 1
        if sio.type in ("ack", "binary_ack"):
            meaning = f"ack id {n}: this answers the event sent with ack id {n}"
        else:
            meaning = f"ack id {n}: the sender wants an acknowledgement (answered by an ACK with id {n})"
        fields.append(Field("ack id", a, meaning, pos, pos + len(a)))
        pos += len(a)
    if pos < len(raw):
        body = raw[pos:]
        if sio.event is not None:
            meaning = f"event {sio.event!r} with args {json.dumps(sio.args, ensure_ascii=False)}"
        elif sio.type in ("ack", "binary_ack"):
            meaning = f"ack args {json.dumps(sio.args, ensure_ascii=False)}"
        elif sio.type == "connect":
            meaning = ("the Socket.IO sid of this namespace connection" if isinstance(sio.data, dict)
                       and "sid" in sio.data else "auth data sent with the connection request")
        elif sio.type == "connect_error":
            meaning = "why the connection was refused"
        else:
            meaning = "JSON data"
        fields.append(Field("data", body, meaning, pos, len(raw)))
    return fields


def _digits(raw: str, pos: int) -> str:
    end = pos
    while end < len(raw) and raw[end] in "0123456789":
        end += 1
    return raw[pos:end]


def explain(raw: str | bytes, layer: str = "engine.io") -> Explanation:
    """Break a packet into named fields; never raises.

    ``raw`` is what crossed the wire: one Engine.IO packet (``421["chat","hi"]``), a
    polling body with several packets joined by ``\\x1e``, or binary bytes. Pass
    ``layer="socket.io"`` for a Socket.IO packet without the Engine.IO digit (``2["foo"]``).
    """
    try:
        return _explain(raw, layer)
    except Exception as exc:  # a bug here must not reach the notebook
        return Explanation(raw=_short(raw, 200), error=f"could not explain: {exc!r}")


def _explain(raw: str | bytes, layer: str) -> Explanation:
    if isinstance(raw, (bytes, bytearray)):
        return Explanation(raw=repr(bytes(raw))[:200], eio="message", data=bytes(raw),
                           fields=(Field("binary", attachment_marker(raw),
                                         "a binary frame: an attachment of the BINARY_EVENT/ACK before it", 0, 1),))
    if not isinstance(raw, str):
        return Explanation(raw=_short(raw), error=f"not a packet: {type(raw).__name__}")
    if layer == "socket.io":
        sio = decode_sio(raw)
        if sio.type is None:
            return Explanation(raw=raw, error=sio.error)
        return Explanation(raw=raw, fields=tuple(_explain_sio(raw, 0, sio)), sio=sio.type, nsp=sio.nsp,
                           ack=sio.ack, event=sio.event, args=sio.args, data=sio.data, error=sio.error)
    if RECORD_SEPARATOR in raw or _V3_FRAMING.match(raw):
        packets, error = decode_payload(raw)
        subs = tuple(_explain(p.raw, "engine.io") for p in packets)
        fields = (Field("payload", "\\x1e", f"a polling body with {len(packets)} packets joined by \\x1e"),) \
            if packets else ()
        if _V3_FRAMING.match(raw):
            fields = (Field("v3 framing", raw.split(":", 1)[0] + ":",
                            "Engine.IO v3 (EIO=3) puts each packet's length and ':' before it; "
                            "v4 joins packets with \\x1e instead", 0, raw.find(":") + 1),)
        return Explanation(raw=raw, fields=fields, packets=subs, error=error)
    pkt = decode_eio(raw)
    if pkt.type is None:
        return Explanation(raw=raw, error=pkt.error)
    if pkt.binary:
        return Explanation(raw=raw, eio="message", data=pkt.data, error=pkt.error, fields=(
            Field("binary", "b", "b + base64: a binary message over polling (an attachment)", 0, 1),
            Field("data", raw[1:], f"{attachment_marker(pkt.data or b'')} of binary data", 1, len(raw))))
    fields = [_eio_field(pkt)]
    if pkt.type != "message":
        if len(raw) > 1:
            if pkt.type == "open" and isinstance(pkt.data, dict):
                meaning = ", ".join(f"{k}={v!r}" for k, v in pkt.data.items())
            elif pkt.data == "probe":
                meaning = "'probe': the upgrade check on the new WebSocket"
            else:
                meaning = "data"
            fields.append(Field("data", raw[1:], meaning, 1, len(raw)))
        return Explanation(raw=raw, fields=tuple(fields), eio=pkt.type, data=pkt.data, error=pkt.error)
    sio = decode_sio(pkt.text or "")
    if sio.type is None:
        fields.append(Field("data", raw[1:], "message data that is not a Socket.IO packet", 1, len(raw)))
        return Explanation(raw=raw, fields=tuple(fields), eio="message", data=pkt.data, error=sio.error)
    fields += _explain_sio(raw, 1, sio)
    return Explanation(raw=raw, fields=tuple(fields), eio="message", sio=sio.type, nsp=sio.nsp, ack=sio.ack,
                       event=sio.event, args=sio.args, data=sio.data, error=sio.error)


MAX_INFLATE = 4 * 1024 * 1024  # bytes a compressed body may inflate to before siolab stops decoding it
_MEASURE = 16  # past the bound, inflation goes on (output thrown away) to this many times it, to say the size


def inflate(body: bytes, encoding: str | None, limit: int = MAX_INFLATE) -> tuple[bytes, str | None]:
    """Undo HTTP Content-Encoding (gzip/deflate), inflating at most ``limit`` bytes: (the plain body, None),
    or (``body`` as it came, why it was not decoded). A body that inflates past the bound (a zip bomb, or
    just more than siolab decodes) is never held in memory: its size is measured up to ``_MEASURE`` times the
    bound, in pieces."""
    if not encoding or encoding == "identity":
        return body, None
    if encoding not in ("gzip", "deflate", "x-gzip"):
        return body, None
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, limit + 1)
        if len(plain) <= limit:
            return plain + inflater.flush(), None
        size, rest = len(plain), inflater.unconsumed_tail
        while rest and size <= limit * _MEASURE:
            size += len(inflater.decompress(rest, 1024 * 1024))
            rest = inflater.unconsumed_tail
    except zlib.error as exc:
        return body, f"the {encoding} body could not be inflated ({exc}); shown as it came"
    inflated = f"{size} bytes" if not rest else f"more than {limit * _MEASURE} bytes"
    return body, (f"too large to decode: {len(body)} {encoding} bytes inflate to {inflated}, more than the "
                  f"{limit} bytes siolab decodes (the bytes were relayed unchanged)")


def decompress(body: bytes, encoding: str | None, limit: int = MAX_INFLATE) -> bytes:
    """The plain body, or the body as it came if it cannot be (or may not be) inflated (see ``inflate``)."""
    return inflate(body, encoding, limit)[0]


def split_body(body: str) -> list[str]:
    """The raw packets of a polling body (for rebuilding a body without some of them)."""
    return body.split(RECORD_SEPARATOR) if body else []


def join_body(parts: Iterable[str]) -> str:
    return RECORD_SEPARATOR.join(parts)
