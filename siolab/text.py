"""Text from the wire made fit to show: cut to a length, control characters made visible.

The lowest module of the package (it imports nothing from siolab): protocol, render, the tap and the
views all cut and clean text the same way.
"""
from __future__ import annotations

from typing import Any

#: Control characters (but newline and tab) shown as ``\\xNN``: the record separator, and escapes a hostile
#: peer could send to colour or clear a terminal.
CONTROL = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x09), *range(0x0b, 0x20), 0x7f]}


def cut(value: Any, limit: int) -> str:
    """``value`` as text (None is empty, other objects their repr), at most ``limit`` characters: a longer
    one ends in an ellipsis."""
    text = value if isinstance(value, str) else ("" if value is None else repr(value))
    limit = max(limit, 2)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` with its control characters (but newline and tab) shown as ``\\xNN``."""
    return text if text.isprintable() else text.translate(CONTROL)


def body_text(body: bytes, limit: int) -> str:
    """An HTTP body as text (bytes that are not UTF-8 show as ``\\xff``), cut to ``limit`` characters with
    the full length said."""
    text = body.decode("utf-8", errors="backslashreplace")
    if len(text) > limit:
        return text[:limit] + f"… ({len(text)} characters in all)"
    return text
