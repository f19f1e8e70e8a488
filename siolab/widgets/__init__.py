"""Live views of a trace (anywidget): the packet table, the sequence diagram, the packet
explainer, the chat, and the official JavaScript client running in the page. Widgets only read
``Record`` fields; decoding stays in ``protocol``.

``siolab`` does not import this package, so ``import siolab`` stays fast; ``trace.view()``,
``trace.sequence()`` or ``import siolab.widgets`` load it.
"""
from __future__ import annotations

from .browser_client import BrowserClient, browser_client
from .chat import ChatServer, ChatWidget, chat
from .explainer import Explainer
from .sequence import SequenceDiagram, messages, render_svg
from .trace_view import TraceView

__all__ = ["TraceView", "SequenceDiagram", "Explainer", "ChatWidget", "ChatServer", "chat", "render_svg",
           "messages", "BrowserClient", "browser_client"]
