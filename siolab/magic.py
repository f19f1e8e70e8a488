"""``%%siolab_node``: a notebook cell that holds only the server's JavaScript.

    %load_ext siolab

    %%siolab_node lab ping_interval=1 ping_timeout=1
    io.on("connection", (socket) => {
      socket.on("chat", (m) => io.emit("chat", m));
    });

starts ``siolab.start(node=<the cell>, ...)`` with the options of the first line, after closing the lab
bound to that name before, and binds the new lab to the name (``lab`` here). Other labs are left open.

A magic runs synchronously while the kernel's loop runs, so it could not wait for the server. The
extension therefore rewrites such a cell, before IPython reads it, into one line of python that
awaits the start (``await siolab.magic.run_cell(line, code)``), which IPython's autoawait runs on the
kernel's loop: the cell ends when the server listens (showing the lab), and a syntax error in the
JavaScript is the cell's error, with the cell's line number.
"""
from __future__ import annotations

import ast
import asyncio
import keyword
from typing import Any

MAGIC = "siolab_node"
PREFIX = f"%%{MAGIC}"


def split_line(line: str) -> list[str]:
    """Split the magic's first line at spaces outside quotes and brackets: ``a x=[1, 2] y="a b"``."""
    parts, current, depth, quote = [], [], 0, None
    for ch in line:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
            current.append(ch)
        elif ch in "([{":
            depth += 1
            current.append(ch)
        elif ch in ")]}":
            depth -= 1
            current.append(ch)
        elif ch.isspace() and depth <= 0:
            if current:
                parts.append("".join(current))
                current = []
        else:
            current.append(ch)
    if quote or depth > 0:
        raise ValueError(f"%%{MAGIC} {line}: a quote or bracket is not closed")
    if current:
        parts.append("".join(current))
    return parts


def parse_line(line: str) -> tuple[str, dict[str, Any]]:
    """The name to bind and the options: ``lab ping_interval=1 transports=["polling"]``. A value is a python
    literal, else the text itself (``cors_allowed_origins=*``)."""
    parts = split_line(line)
    usage = f"usage: %%{MAGIC} NAME [option=value ...], e.g. %%{MAGIC} lab ping_interval=1"
    if not parts or "=" in parts[0]:
        raise ValueError(f"no name to bind the lab to; {usage}")
    name, options = parts[0], {}
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"{name!r} is not a python name; {usage}")
    for part in parts[1:]:
        key, eq, text = part.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"{part!r} is not option=value; {usage}")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return name, options


async def run_cell(line: str, code: str, namespace: dict | None = None) -> Any:
    """What a ``%%siolab_node`` cell does: close the lab bound to the name, start one, bind it."""
    from .base import BaseLab
    from .lab import start

    name, options = parse_line(line)
    namespace = namespace if namespace is not None else _user_namespace()
    previous = namespace.get(name)
    if isinstance(previous, BaseLab) and not previous.closed:
        await previous.close()
    options.setdefault("replace", False)  # labs of other names stay open
    lab = await start(node=code, **options)
    namespace[name] = lab
    return lab


def _user_namespace() -> dict:
    from IPython import get_ipython
    shell = get_ipython()
    if shell is None:
        raise RuntimeError(f"%%{MAGIC} runs in IPython or Jupyter")
    return shell.user_ns


def rewrite(lines: list[str]) -> list[str]:
    """IPython input transformer: a ``%%siolab_node`` cell becomes one awaited call (see the docstring)."""
    first = next((i for i, text in enumerate(lines) if text.strip()), None)
    if first is None:
        return lines
    head = lines[first].rstrip("\n")
    if not (head == PREFIX or head.startswith(PREFIX + " ") or head.startswith(PREFIX + "\t")):
        return lines
    # the lines above the JavaScript become empty lines of it: lab.js's line numbers are the cell's
    line, code = head[len(PREFIX):].strip(), "\n" * (first + 1) + "".join(lines[first + 1:])
    return [f"await __import__('siolab.magic', fromlist=['run_cell']).run_cell({line!r}, {code!r})\n"]


def cell_magic(line: str, cell: str) -> Any:
    """``%%siolab_node`` called directly (not rewritten): the start is scheduled on the running loop and the
    name is bound when the server listens; the returned task can be awaited."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(f"%%{MAGIC} needs a running event loop (a Jupyter kernel)") from None
    namespace = _user_namespace()
    parse_line(line)  # a usage error now, not in the task
    return asyncio.ensure_future(run_cell(line, cell, namespace))


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext siolab``: register the cell magic and the rewrite that awaits it."""
    shell.register_magic_function(cell_magic, magic_kind="cell", magic_name=MAGIC)
    transforms = shell.input_transformers_cleanup
    if rewrite not in transforms:
        transforms.insert(0, rewrite)


def unload_ipython_extension(shell: Any) -> None:
    transforms = shell.input_transformers_cleanup
    if rewrite in transforms:
        transforms.remove(rewrite)


__all__ = ["load_ipython_extension", "unload_ipython_extension", "parse_line", "split_line", "rewrite", "run_cell"]
