"""What the recorder writes in a record's ``note`` and ``error`` about the wire: close codes, the server's
OK to a POST, a refused namespace, an HTML page where Engine.IO was expected. Pure text, no I/O.
"""
from __future__ import annotations

from enum import IntEnum

from .text import cut

PYTHON_MAX_DECODE_PACKETS = 16  # engineio.payload.Payload.max_decode_packets: a python server drops bigger bodies
HELD = "held by the tap: relaying is paused (pause()); it goes on at resume()"
NOT_RELAYED = "not relayed: the other side's WebSocket is already closed"


class CloseCode(IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4.1); ``meaning`` says what each means."""

    NORMAL = 1000  # normal closure
    GOING_AWAY = 1001  # the endpoint is shutting down
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # no close code was given (never sent on the wire)
    ABNORMAL = 1006  # the connection dropped without a close frame (never sent on the wire)
    INVALID_PAYLOAD = 1007  # e.g. a text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # larger than the receiver accepts (the server's maxPayload)
    INTERNAL_ERROR = 1011

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]

    @property
    def is_error(self) -> bool:
        """The code says something was wrong with the traffic."""
        return self in _ERRORS


_MEANINGS = {
    CloseCode.NORMAL: "normal closure", CloseCode.GOING_AWAY: "going away (the endpoint is shutting down)",
    CloseCode.PROTOCOL_ERROR: "protocol error", CloseCode.UNSUPPORTED_DATA: "unsupported data",
    CloseCode.NO_STATUS: "no close code was given",
    CloseCode.ABNORMAL: "abnormal closure: the connection dropped without a close frame",
    CloseCode.INVALID_PAYLOAD: "invalid frame payload (e.g. text that is not UTF-8)",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big: a frame was larger than the receiver accepts (the server's "
                               "maxPayload)",
    CloseCode.INTERNAL_ERROR: "internal error on the server",
}
_ERRORS = {CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA, CloseCode.INVALID_PAYLOAD,
           CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG, CloseCode.INTERNAL_ERROR}
CLOSE_CODES = {int(code): code.meaning for code in CloseCode}  # code -> meaning (kept for callers)


def close_note(closer: str, code: int) -> tuple[str, str | None]:
    """The note and the error (or None) of a WebSocket close by ``closer`` with ``code``."""
    meaning = CLOSE_CODES.get(code, "")
    note = f"WebSocket closed by the {closer}, code {code}" + (f" ({meaning})" if meaning else "")
    error = f"the {closer} closed the WebSocket with code {code}: {meaning}" \
        if code in CLOSE_CODES and CloseCode(code).is_error else None
    return note, error


def post_ok(body_error: str | None, packets: int) -> str:
    """What a server's OK to a POST means, given what the POST carried."""
    if packets > PYTHON_MAX_DECODE_PACKETS:
        return (f"the server answered OK, but this body carried {packets} packets: a python-engineio server "
                f"refuses more than {PYTHON_MAX_DECODE_PACKETS} in one body (Payload.max_decode_packets), logs "
                f"'Too many packets in payload' and drops them all while answering OK (the Node.js server takes "
                f"them)")
    if body_error:
        return ("the server answered OK, but this POST carried something invalid (see the error above): OK only "
                "means the body was received. python-engineio/python-socketio log the error and carry on; the "
                "Node.js server answers 400 or closes the session")
    return "the server accepted the POST"


def connect_error(nsp: str | None, data: object) -> str:
    """Why the server refused a namespace, from a CONNECT_ERROR packet's data."""
    message = data.get("message") if isinstance(data, dict) else data
    note = f"the server refused the namespace {nsp}: {cut(message, 120)}"
    if message == "Unable to connect":
        note += " (python-socketio's answer when no connect handler is registered for this namespace)"
    elif message == "Connection rejected by server":
        note += " (the namespace's connect handler returned False)"
    elif message == "Invalid namespace":
        note += " (the Node.js server has no such namespace)"
    return note


def html_answer(status: int) -> str:
    return (f"not a Socket.IO server's answer: HTTP {status} with an HTML page. Is the URL right (Socket.IO "
            f"listens at /socket.io/ by default) and is a Socket.IO server running there?")


def is_html(ctype: str, text: str) -> bool:
    """An HTML page, judged by its body: the Node.js engine.io answers a POST's plain ``ok`` as text/html."""
    head = text.lstrip()[:15].lower()
    return head.startswith(("<!doctype html", "<html")) or (
        ctype.startswith(("text/html", "application/xhtml")) and head.startswith("<"))


def overlapping_poll() -> str:
    return ("a second long-poll while another is still pending for this session: Engine.IO allows one GET at a "
            "time (the Node.js server refuses it at once and closes the session; python-engineio lets both wait "
            "and ends one with 400 after pingInterval + pingTimeout, closing the session)")


def too_big_post(size: int, limit: int) -> str:
    return (f" - the POST body was {size} bytes, more than the maxPayload of {limit} bytes the server announced in "
            f"its open packet (python-engineio answers 400 and closes the session; the Node.js server answers 413)")


def too_big_frame(size: int, limit: int) -> str:
    return (f"this frame is {size} bytes, more than the maxPayload of {limit} bytes announced in the open packet: "
            f"the receiver may close the WebSocket (code 1009)")


def after_close(dir: str) -> str:
    return (f"sent after this side's close packet (1): the Engine.IO session is over, so this packet should not "
            f"exist ({'client' if dir == 'c2s' else 'server'} misbehaves)")


NOT_UTF8 = "a text frame that is not UTF-8: the receiver should close the WebSocket with 1007"
LONE_CONTINUATION = ("a continuation frame without a first frame (RFC 6455 5.4): the receiver should close the "
                     "WebSocket with 1002")
