"""HTTP/1.1 and WebSocket (RFC 6455) framing for the tap, with no I/O.

The tap relays raw bytes between a client and a server and parses a copy of them
to record what went by. This package is the parsing half, in the h11/wsproto habit:
pure functions and small incremental parsers that are fed bytes and say how many
they used, so the caller owns every socket, buffer and timeout. It runs on every
packet of a live proxy, so the hot paths (head_end, parse_request, FrameReader)
let C do the byte work: ``bytes.find``, regular expressions, slicing and the
``int.from_bytes`` XOR to unmask, never a per-byte Python loop.

``http`` holds HTTP/1.1 (heads, body framing, chunked bodies), ``websocket`` the frames; every
public name is here too, so callers write ``wire.Request`` and ``wire.FrameReader`` whichever
module defines them.
"""
from __future__ import annotations

from .errors import WireError
from .http import HEAD_CACHE as HEAD_CACHE  # public as before the split, though never in __all__
from .http import MAX_CHUNK_LINE as MAX_CHUNK_LINE
from .http import (
    MAX_HEAD, ChunkedReader, Request, Response, head_end, parse_request, parse_response,
    request_body, response_body, strip_query_param,
)
from .websocket import OPCODES, Frame, FrameReader, build_frame, close_frame_payload, parse_close

__all__ = [
    "WireError", "MAX_HEAD", "head_end", "Request", "Response", "parse_request", "parse_response",
    "request_body", "response_body", "ChunkedReader", "Frame", "OPCODES", "FrameReader", "build_frame",
    "close_frame_payload", "parse_close", "strip_query_param",
]
