"""The labs open in this process, and the one the last ``siolab.start()`` opened.

A re-run cell closes the current lab before it starts the next (``siolab.lab.start``); a notebook's
last check is that ``open_labs()`` is empty. Labs add themselves when they open and leave on close.
"""
from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import BaseLab

_open: "weakref.WeakSet[BaseLab]" = weakref.WeakSet()
_current: "BaseLab | None" = None


def add(lab: BaseLab) -> None:
    """A lab has opened."""
    _open.add(lab)


def discard(lab: BaseLab) -> None:
    """A lab is closing: it is neither open nor current any more."""
    global _current
    _open.discard(lab)
    if _current is lab:
        _current = None


def make_current(lab: BaseLab) -> None:
    global _current
    _current = lab


def open_labs() -> list[BaseLab]:
    """Every lab in this process that is open (a notebook's last check: none)."""
    return [lab for lab in _open if not lab.closed]


def current() -> BaseLab | None:
    """The lab the last ``start()`` opened, if it is still open."""
    return _current


__all__ = ["add", "discard", "make_current", "open_labs", "current"]
