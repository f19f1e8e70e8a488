"""What the widgets share: where their front-end files live, and text made safe to send to a page."""
from __future__ import annotations

import re
from pathlib import Path

STATIC = Path(__file__).parent / "static"
_SURROGATES = re.compile("[\ud800-\udfff]")


def css(name: str) -> str:
    """The shared palette followed by one widget's own stylesheet (multi-line text, so anywidget
    takes it as CSS, not as a path)."""
    return (STATIC / "common.css").read_text(encoding="utf-8") + "\n" + (STATIC / name).read_text(encoding="utf-8")


def safe(text: str | None) -> str | None:
    """Wire text that can be sent to the page: a lone surrogate (JSON allows ``"\\ud800"``, UTF-8 does
    not) would make the kernel fail to send the whole message, so it becomes U+FFFD."""
    return _SURROGATES.sub("\ufffd", text) if text else text
