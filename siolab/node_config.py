"""The python lab's server options, said the way the official Node.js server takes them.

``siolab.start(node=JS, ping_interval=1, ...)`` takes the python lab's option names (seconds, snake
case); ``node_options(...)`` turns them into ``new Server(httpServer, {...})``'s (milliseconds, camel
case). ``node_options={...}`` is passed as is, merged last. Pure: no I/O.
"""
from __future__ import annotations

from typing import Any

# python-socketio option -> the Node.js Server option (values that need no conversion)
SAME_VALUE = {"max_http_buffer_size": "maxHttpBufferSize", "path": "path", "transports": "transports",
              "allow_eio3": "allowEIO3", "allow_upgrades": "allowUpgrades", "http_compression": "httpCompression",
              "per_message_deflate": "perMessageDeflate", "cookie": "cookie"}
MS = {"upgrade_timeout": "upgradeTimeout", "connect_timeout": "connectTimeout"}  # seconds -> ms
RECOVERY = {"max_disconnection_duration": ("maxDisconnectionDuration", 1000),  # seconds -> ms
            "skip_middlewares": ("skipMiddlewares", 1)}


def _ms(name: str, seconds: Any) -> int:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise ValueError(f"{name}={seconds!r}: a number of seconds, e.g. 1 or 0.5")
    return round(seconds * 1000)


def origins(cors_allowed_origins: Any) -> None | str | list[str]:
    """Which page origins may connect: None (the page's own host, as the python lab), "*" or a list."""
    value = cors_allowed_origins
    if value is None or value == "*":
        return value
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"cors_allowed_origins={value!r}: for the Node.js server give None (same host, the default), "
                    f'"*" or a list of origins such as ["http://localhost:8888"] (a python callable cannot run in '
                    f"Node.js)")


def recovery(value: Any) -> dict:
    """``connection_state_recovery=True`` (Node's defaults) or a dict (snake case in seconds, or Node's own)."""
    if value is True:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"connection_state_recovery={value!r}: True, or a dict such as "
                        f"{{'max_disconnection_duration': 120, 'skip_middlewares': True}}")
    out = {}
    for key, item in value.items():
        name, scale = RECOVERY.get(key, (key, 1))
        out[name] = round(item * scale) if scale != 1 else item
    return out


def node_options(*, ping_interval: float, ping_timeout: float, cors_allowed_origins: Any = None,
                 connection_state_recovery: Any = None, node_options: dict | None = None,
                 **options: Any) -> dict:
    """The Node.js ``Server`` options for the python lab's options (``node_options`` merged last)."""
    out: dict[str, Any] = {"pingInterval": _ms("ping_interval", ping_interval),
                           "pingTimeout": _ms("ping_timeout", ping_timeout)}
    allowed = origins(cors_allowed_origins)
    if allowed is not None:  # a page on another origin may read the answers (the same host needs no header)
        out["cors"] = {"origin": True if allowed == "*" else allowed, "credentials": True}
    if connection_state_recovery not in (None, False):
        out["connectionStateRecovery"] = recovery(connection_state_recovery)
    for name, value in options.items():
        if name in MS:
            out[MS[name]] = _ms(name, value)
        elif name in SAME_VALUE:
            out[SAME_VALUE[name]] = value
        else:
            raise TypeError(f"{name}= is not an option of the Node.js lab: give the Node.js name in "
                            f"node_options={{...}} (https://socket.io/docs/v4/server-options/)")
    if "path" in out and isinstance(out["path"], str) and not out["path"].startswith("/"):
        out["path"] = "/" + out["path"]
    if node_options:
        if not isinstance(node_options, dict):
            raise TypeError(f"node_options={node_options!r}: a dict of Node.js Server options")
        out.update(node_options)
    return out


__all__ = ["node_options", "origins", "recovery"]
