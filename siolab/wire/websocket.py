"""WebSocket framing (RFC 6455 section 5) for the tap, with no I/O: reading frames, building them, close payloads.

FrameReader unmasks with one ``int.from_bytes`` XOR per frame and slices, never a per-byte loop; it
checks a declared length before buffering any of the payload.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..frozen import constructor
from .errors import WireError, _show

__all__ = ["Frame", "OPCODES", "FrameReader", "build_frame", "close_frame_payload", "parse_close"]

OPCODES = {0: "continuation", 1: "text", 2: "binary", 8: "close", 9: "ping", 10: "pong"}


@dataclass(frozen=True, slots=True)
class Frame:
    """One WebSocket frame: its fields, its unmasked payload and its exact wire bytes."""

    fin: bool
    rsv: int  # the three RSV bits as a number 0-7 (RSV1 = 4, as permessage-deflate uses it)
    opcode: int  # 0 continuation, 1 text, 2 binary, 8 close, 9 ping, 10 pong
    masked: bool
    payload: bytes  # UNMASKED application data
    raw: bytes  # the frame exactly as on the wire (header + masked payload), to relay unchanged


_new_frame = constructor(Frame)  # a frame per WebSocket message the tap relays: no setattr call per field


def _mask(data: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """``data`` XORed with the 4-byte ``key`` repeated: masks and unmasks (RFC 6455 5.3)."""
    n = len(data)
    if not n:
        return b""
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


class FrameReader:
    """Incremental WebSocket frame parser (RFC 6455 5.2).

    feed(data) returns every complete frame and keeps a partial one. ``max_payload`` (None for no
    limit) bounds one frame's declared length, checked as soon as the length is known, before
    any payload is buffered, so a huge declared length cannot eat memory. Masking direction and
    message-level rules (continuations, RSV bits) are left to the caller.
    """

    __slots__ = ("max_payload", "_buf", "_need")

    def __init__(self, max_payload: int | None = None) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._need = 2  # bytes the buffer must hold before parsing can get further

    @property
    def buffered(self) -> int:
        """Bytes held for a partial frame."""
        return len(self._buf)

    def pending(self) -> bytes:
        """The bytes held: a partial frame, or after a WireError everything from the frame that could
        not be read on (so that a relay can pass on what it could not read)."""
        return bytes(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Every frame that ``data`` completes, in order.

        A WireError carries ``frames``, the good frames before the bad one; the bad one and what
        follows stay in ``pending()``.
        """
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            try:
                frames, pos = self._parse(buf)
            except WireError as exc:
                del buf[:exc.offset]
                raise
            del buf[:pos]
            return frames
        if isinstance(data, memoryview):
            data = data.tobytes()
        try:
            frames, pos = self._parse(data)
        except WireError as exc:
            buf += memoryview(data)[exc.offset:]
            raise
        if pos < len(data):
            buf += memoryview(data)[pos:]
        return frames

    def _parse(self, src: bytes | bytearray) -> tuple[list[Frame], int]:
        frames: list[Frame] = []
        n = len(src)
        pos = 0
        max_payload = self.max_payload
        view = None if type(src) is bytes else memoryview(src)
        try:
            while n - pos >= 2:
                b0 = src[pos]
                b1 = src[pos + 1]
                opcode = b0 & 0x0F
                length = b1 & 0x7F
                if opcode not in OPCODES:
                    _reserved(opcode)
                if opcode >= 8 and (not b0 & 0x80 or length > 125):
                    _bad_control(opcode, b0, length)
                head = 2
                if length == 126:
                    if n - pos < 4:
                        self._need = 4
                        return frames, pos
                    length = (src[pos + 2] << 8) | src[pos + 3]
                    head = 4
                elif length == 127:
                    if n - pos < 10:
                        self._need = 10
                        return frames, pos
                    length = int.from_bytes(src[pos + 2:pos + 10], "big")
                    if length >> 63:
                        raise WireError("a WebSocket frame length with the most significant bit set "
                                        "(RFC 6455 5.2 forbids it): not WebSocket framing")
                    head = 10
                if max_payload is not None and length > max_payload:
                    raise WireError(f"a WebSocket frame declares a {length}-byte payload, over the "
                                    f"{max_payload}-byte limit")
                masked = b1 & 0x80
                if masked:
                    head += 4
                end = pos + head + length
                if end > n:
                    self._need = head + length
                    return frames, pos
                raw = src[pos:end] if view is None else view[pos:end].tobytes()
                if masked:
                    payload = _mask(raw[head:], raw[head - 4:head])
                else:
                    payload = raw[head:]
                frames.append(_new_frame(fin=b0 >= 0x80, rsv=(b0 >> 4) & 7, opcode=opcode, masked=masked != 0,
                                         payload=payload, raw=raw))
                pos = end
            self._need = 2
            return frames, pos
        except WireError as exc:
            exc.frames, exc.offset = frames, pos
            raise
        finally:
            if view is not None:
                view.release()


def _reserved(opcode: int) -> None:
    raise WireError(f"reserved WebSocket opcode {opcode} (RFC 6455 5.2 reserves 3-7 and 11-15): "
                    "not WebSocket framing, or an extension nobody negotiated")


def _bad_control(opcode: int, b0: int, length: int) -> None:
    name = OPCODES[opcode]
    if not b0 & 0x80:
        raise WireError(f"a fragmented control frame ({name} with FIN=0): control frames cannot be fragmented")
    raise WireError(f"a {name} frame declaring more than 125 bytes of payload: control frames carry at most 125")


def build_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A frame as a sender would write it; ``mask``: 4 bytes to mask with (clients must mask), None = unmasked.

    It does not police RFC rules beyond what fits the header (any 4-bit opcode, any length),
    so tests and fault injection can build frames a reader must reject.
    """
    if not 0 <= opcode <= 15:
        raise ValueError(f"a WebSocket opcode is 4 bits, not {opcode}")
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    bit = 0 if mask is None else 0x80
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError(f"a WebSocket masking key is 4 bytes, not {len(mask)}")
    return head + bytes(mask) + _mask(payload, mask)


def close_frame_payload(code: int | None, reason: str = "") -> bytes:
    """The payload of a close frame: the 2-byte code then the UTF-8 reason; b"" when code is None."""
    if code is None:
        if reason:
            raise ValueError("a close reason needs a close code")
        return b""
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"a close code is 2 bytes, not {code}")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError(f"a close payload of {len(data)} bytes: control frames carry at most 125")
    return data


def parse_close(payload: bytes) -> tuple[int | None, str]:
    """(code, reason) of a close frame's payload; (None, "") when empty.

    WireError for a 1-byte payload or a reason that is not UTF-8 (RFC 6455 5.5.1).
    """
    if not payload:
        return (None, "")
    if len(payload) == 1:
        raise WireError(f"a 1-byte close payload {bytes(payload)!r}: a close code takes 2 bytes")
    try:
        reason = bytes(payload[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise WireError(f"a close reason that is not UTF-8: {_show(bytes(payload[2:]))}") from None
    return ((payload[0] << 8) | payload[1], reason)
