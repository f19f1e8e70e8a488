"""A trace as text (terminal lines, a table) and as an HTML table, for records from any source.

Wire text never drives the terminal (control characters show as ``\\xNN``) and is escaped in HTML.
"""
from __future__ import annotations

import html
from typing import Any, Iterable

from .record import ARROWS, is_heartbeat
from .text import CONTROL, cut, printable

HEADER = f"{'time':>8}  {'client':<8} dir {'transport':<9} {'http':<8} {'raw':<50} meaning"


def table(records: Iterable[Any], *, limit: int | None = 200, hide_heartbeats: bool = False, dropped: int = 0,
          bound: int | None = None, prefix: Any = None) -> str:
    """Records as a text table with a header; says how many were dropped by the store's ``bound`` and how
    many earlier ones are not shown. ``prefix(record)``: a column in front (e.g. the server)."""
    rows = [r for r in records if not (hide_heartbeats and is_heartbeat(r))]
    lines = [HEADER if prefix is None else f"{'':<8}{HEADER}"]
    if dropped:
        lines.append(f"({dropped} older records were dropped by the trace's limit of {bound})")
    if limit is not None and len(rows) > limit:
        lines.append(f"({len(rows) - limit} earlier records not shown)")
        rows = rows[-limit:]
    lines += [str(r) if prefix is None else f"{prefix(r):<7} {r}" for r in rows]
    return "\n".join(lines)


def html_table(records: list[Any], *, total: int, dropped: int = 0, bound: int | None = None,
               limit: int = 200) -> str:
    """The last ``limit`` records as an HTML table (every wire text escaped)."""
    def esc(text: str) -> str:
        return html.escape(text.translate(CONTROL))
    rows = []
    for r in records[-limit:]:
        err = f"<br><span style='color:#c62828'>{esc(r.error)}</span>" if r.error else ""
        http_ = esc(f"{(r.http or {}).get('method') or ''} {(r.http or {}).get('status') or ''}")
        rows.append(
            f"<tr><td>{r.t:.3f}</td><td>{esc(r.client or '')}</td><td>{esc(ARROWS.get(r.dir, ''))}</td>"
            f"<td>{esc(r.transport or '')}</td><td>{http_}</td>"
            f"<td><code>{esc(cut(printable(r.shown_raw), 80))}</code></td><td>{esc(r.meaning)}{err}</td></tr>")
    note = ""
    if dropped:
        note = f"<p>{dropped} older records were dropped by the trace's limit of {bound}.</p>"
    if total > limit:
        note += f"<p>Showing the last {limit} of {total} records.</p>"
    return (note + "<table><thead><tr><th>time</th><th>client</th><th></th><th>transport</th><th>http</th>"
            "<th>raw</th><th>meaning</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
