"""siolab: learn how Socket.IO works by watching it work.

``lab = await siolab.start()`` runs a python-socketio server behind a recording tap on
the kernel's loop; ``await lab.client("alice")`` connects a client through it; every
packet on the wire lands in ``lab.trace``, decoded. ``siolab.explain("42[...]")``
breaks any packet into its fields; ``siolab.diagnose(trace)`` names what went wrong.
``siolab.start(node=JS)`` runs the official Node.js server with your JavaScript
instead; ``siolab.attach(URL)`` puts the tap in front of a server you run;
``%load_ext siolab`` adds the ``%%siolab_node`` cell magic.
``siolab.set_language("ko")`` makes siolab's own text Korean.
"""
from __future__ import annotations

from .doctor import diagnose
from .i18n import get_language, set_language
from .protocol import explain
from .trace import Record, Trace

__all__ = ["start", "attach", "Lab", "Tap", "explain", "check", "diagnose", "Record", "Trace", "current",
           "open_labs", "NodeUnavailable", "NodeError", "NodeSyntaxError", "set_language", "get_language"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # the lab and the tap pull in python-socketio and aiohttp: import them on first use
    if name in ("start", "Lab", "current", "open_labs"):
        from . import lab
        return getattr(lab, name)
    if name == "attach":
        from .attached import attach
        return attach
    if name == "NodeUnavailable":
        from .node_env import NodeUnavailable
        return NodeUnavailable
    if name in ("NodeError", "NodeSyntaxError"):
        from . import node_process
        return getattr(node_process, name)
    if name in ("load_ipython_extension", "unload_ipython_extension"):  # %load_ext siolab
        from . import magic
        return getattr(magic, name)
    if name == "check":
        from .conformance import check
        return check
    if name in ("widgets", "analysis", "exercises", "timeline", "reference", "conformance"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    if name == "Tap":
        from .tap import Tap
        return Tap
    raise AttributeError(f"module 'siolab' has no attribute {name!r}")
