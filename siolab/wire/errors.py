"""What both halves of the wire package share: the one exception type and how it quotes bad input."""
from __future__ import annotations

__all__ = ["WireError"]


class WireError(ValueError):
    """Bytes that are not HTTP/1.1 or WebSocket framing; str() says why, in plain English."""

    frames: list = []  # FrameReader.feed: the good frames before the bad one
    offset: int = 0


WireError.__module__ = "siolab.wire"  # where callers catch it: tracebacks name it as before the split


def _show(text: str | bytes | bytearray, limit: int = 60) -> str:
    """The offending input for an error message: repr'd and cut to ``limit`` characters."""
    if isinstance(text, bytearray):
        text = bytes(text)
    return repr(text[:limit]) + ("..." if len(text) > limit else "")
