"""A conformance checker: probe a live Socket.IO server against the protocol documents' rules.

``await siolab.check(url)`` (or ``python -m siolab check URL``) talks to the server the way a
careful client would, through a tap of its own so that every verdict comes with what was seen
on the wire. Rules follow https://socket.io/docs/v4/engine-io-protocol/ and
https://socket.io/docs/v4/socket-io-protocol/.
"""
from __future__ import annotations

import asyncio
import html
import json
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

import aiohttp

from .protocol import RECORD_SEPARATOR
from .tap import Tap, upstream_of
from .text import cut
from .trace import Trace

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True)
class Verdict:
    rule: str
    result: str  # pass / fail / skip
    seen: str  # what crossed the wire, short
    expected: str = ""


@dataclass
class Report:
    """The verdicts of one run; ``ok`` when no rule failed. Prints as a table."""

    url: str
    verdicts: list[Verdict] = field(default_factory=list)
    trace: Trace | None = None

    @property
    def ok(self) -> bool:
        return all(v.result != FAIL for v in self.verdicts)

    @property
    def failed(self) -> set[str]:
        return {v.rule for v in self.verdicts if v.result == FAIL}

    def __getitem__(self, rule: str) -> Verdict:
        return next(v for v in self.verdicts if v.rule == rule)

    def ordered(self) -> list[Verdict]:
        """Failing rules first (what to read), then the passes and the skips, each in the order run."""
        rank = {FAIL: 0, PASS: 1, SKIP: 2}
        return sorted(self.verdicts, key=lambda v: rank[v.result])

    def summary(self) -> str:
        """``14 passed, 1 failed (heartbeat), 1 skipped``: the whole report in one line."""
        failed = [v.rule for v in self.verdicts if v.result == FAIL]
        return (f"{sum(v.result == PASS for v in self.verdicts)} passed, {len(failed)} failed"
                + (f" ({', '.join(failed)})" if failed else "")
                + f", {sum(v.result == SKIP for v in self.verdicts)} skipped")

    def table(self) -> str:
        width = max(len(v.rule) for v in self.verdicts) if self.verdicts else 10
        lines = [f"conformance of {self.url}: {self.summary()}", f"{'rule':<{width}}  result  seen on the wire"]
        for v in self.ordered():
            line = f"{v.rule:<{width}}  {v.result.upper():<6}  {v.seen}"
            if v.result == FAIL and v.expected:
                line += f"   (expected {v.expected})"
            lines.append(line)
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        # a viewer without HTML shows this: one line, not every verdict and the whole trace
        return f"<conformance Report of {self.url}: {self.summary()}>"

    def _repr_html_(self) -> str:
        colour = {PASS: "#2e7d32", FAIL: "#c62828", SKIP: "#757575"}
        rows = "".join(
            f"<tr><td>{html.escape(v.rule)}</td><td style='color:{colour[v.result]};font-weight:bold'>"
            f"{v.result.upper()}</td><td><code>{html.escape(v.seen)}</code></td>"
            f"<td>{html.escape(v.expected) if v.result == FAIL else ''}</td></tr>" for v in self.ordered())
        return (f"<p>conformance of {html.escape(self.url)}: <b>{html.escape(self.summary())}</b></p><table>"
                "<thead><tr><th>rule</th><th>result</th><th>seen on the wire</th><th>expected</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")


def _short(text: str, limit: int = 90) -> str:
    return cut(text.replace(RECORD_SEPARATOR, "\\x1e"), limit)


class _Prober:
    """The probes; each returns a Verdict. Talks to the tap, never to the server directly."""

    def __init__(self, http: aiohttp.ClientSession, base: str, path: str, echo_event: str, max_wait: float):
        self.http, self.base, self.path = http, base, path
        self.echo_event, self.max_wait = echo_event, max_wait
        self.open_data: dict | None = None

    def url(self, query: str) -> str:
        return f"{self.base}{self.path}?{query}"

    async def request(self, method: str, query: str, data: str | None = None) -> tuple[int, str]:
        async with self.http.request(method, self.url(query), data=data) as r:
            return r.status, await r.text()

    async def open(self) -> tuple[str, dict]:
        status, body = await self.request("GET", "EIO=4&transport=polling")
        if status != 200 or not body.startswith("0"):
            raise RuntimeError(f"handshake failed: HTTP {status} {_short(body)}")
        data = json.loads(body[1:].split(RECORD_SEPARATOR)[0])
        return data["sid"], data

    async def poll(self, sid: str, timeout: float | None = None) -> tuple[int, str]:
        async with self.http.get(self.url(f"EIO=4&transport=polling&sid={sid}"),
                                 timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.text()

    async def post(self, sid: str, body: str) -> tuple[int, str]:
        return await self.request("POST", f"EIO=4&transport=polling&sid={sid}", body)

    async def connect(self, sid: str, nsp: str = "") -> str:
        """Connect a namespace over polling; returns the body that answered."""
        await self.post(sid, f"40{nsp + ',' if nsp else ''}")
        return (await self.poll(sid, 5))[1]

    # ---------------------------------------------------------------- Engine.IO rules
    async def handshake(self) -> Verdict:
        status, body = await self.request("GET", "EIO=4&transport=polling")
        expected = "200 and 0{sid: str, upgrades: [..], pingInterval: int, pingTimeout: int, maxPayload: int}"
        try:
            data = json.loads(body[1:])
        except ValueError:
            return Verdict("handshake", FAIL, f"{status} {_short(body)}", expected)
        good = (status == 200 and body[0] == "0" and isinstance(data.get("sid"), str)
                and isinstance(data.get("upgrades"), list)
                and all(isinstance(data.get(k), int) and not isinstance(data.get(k), bool) and data[k] > 0
                        for k in ("pingInterval", "pingTimeout", "maxPayload")))
        self.open_data = data
        return Verdict("handshake", PASS if good else FAIL, f"{status} {_short(body)}", expected)

    async def _refused(self, rule: str, method: str, query: str) -> Verdict:
        status, body = await self.request(method, query)
        return Verdict(rule, PASS if status == 400 else FAIL, f"{method} ?{query} -> {status} {_short(body, 60)}",
                       "HTTP 400")

    async def bad_eio(self) -> Verdict:
        return await self._refused("refuses bad EIO", "GET", "EIO=3&transport=polling")

    async def bad_transport(self) -> Verdict:
        return await self._refused("refuses bad transport", "GET", "EIO=4&transport=carrier-pigeon")

    async def missing_transport(self) -> Verdict:
        return await self._refused("refuses missing transport", "GET", "EIO=4")

    async def bad_method(self) -> Verdict:
        return await self._refused("refuses bad method", "PUT", "EIO=4&transport=polling")

    async def post_ok(self) -> Verdict:
        sid, _ = await self.open()
        status, body = await self.post(sid, "40")
        return Verdict("POST answered ok", PASS if (status, body) == (200, "ok") else FAIL,
                       f"POST 40 -> {status} {_short(body)}", "200 ok")

    async def batching(self) -> Verdict:
        sid, _ = await self.open()
        await self.post(sid, f"40{RECORD_SEPARATOR}40/siolab-nonexistent,")
        await asyncio.sleep(0.1)
        status, body = await self.poll(sid, 5)
        n = len(body.split(RECORD_SEPARATOR))
        return Verdict("batches packets in one GET", PASS if status == 200 and n >= 2 else FAIL,
                       f"POST 40\\x1e40/siolab-nonexistent, then GET -> {_short(body)}",
                       "both answers in one body, joined by \\x1e")

    async def concurrent_polls(self) -> Verdict:
        sid, _ = await self.open()
        first = asyncio.ensure_future(self.poll(sid, self.max_wait + 30))
        await asyncio.sleep(0.1)
        second = await self.poll(sid, 5)
        try:
            first_result = await asyncio.wait_for(first, 1)
        except asyncio.TimeoutError:
            first.cancel()
            first_result = ("still pending", "")
        refused = second[0] == 400
        return Verdict("refuses two concurrent long-polls", PASS if refused else FAIL,
                       f"second GET -> {second[0]} {_short(second[1], 40)}; first -> {first_result[0]} "
                       f"{_short(first_result[1], 30)}", "HTTP 400 and the session closed")

    async def bad_packet(self) -> Verdict:
        sid, _ = await self.open()
        status, body = await self.post(sid, "garbage")
        after, _ = await self.poll(sid, 5)
        good = status in (200, 400) and after == 400
        return Verdict("a bad packet closes the session", PASS if good else FAIL,
                       f"POST garbage -> {status} {_short(body, 30)}; next GET -> {after}",
                       "the session closed: the next request gets 400")

    async def close(self) -> Verdict:
        sid, _ = await self.open()
        status, _ = await self.post(sid, "1")
        after, body = await self.poll(sid, 5)
        return Verdict("client close ends the session", PASS if after == 400 else FAIL,
                       f"POST 1 -> {status}; next GET -> {after} {_short(body, 40)}", "the next request gets 400")

    async def upgrade(self) -> Verdict:
        sid, _ = await self.open()
        pending = asyncio.ensure_future(self.poll(sid, self.max_wait + 30))
        await asyncio.sleep(0.05)
        ws_url = self.url(f"EIO=4&transport=websocket&sid={sid}").replace("http", "ws", 1)
        frames = []
        async with self.http.ws_connect(ws_url) as ws:
            await ws.send_str("2probe")
            probe = (await ws.receive(timeout=5)).data
            try:
                poll_status, poll_body = await asyncio.wait_for(pending, 5)
            except asyncio.TimeoutError:
                pending.cancel()
                poll_status, poll_body = None, "still pending"
            await ws.send_str("5")
            await ws.send_str("40")
            for _ in range(2):
                try:
                    frames.append((await ws.receive(timeout=2)).data)
                except asyncio.TimeoutError:
                    break
        good = probe == "3probe" and poll_body == "6" and frames and str(frames[0]).startswith("40")
        seen = f"2probe -> {probe}; pending GET -> {poll_status} {poll_body}; after 5, 40: {frames[:2]}"
        return Verdict("upgrade: 3probe, pending GET ends with 6, then 40 over WebSocket",
                       PASS if good else FAIL, _short(seen, 140),
                       "3probe, the pending GET answered 6, the first WebSocket frame after 5 is the CONNECT answer")

    async def heartbeat(self) -> Verdict:
        rule = "heartbeat: ping every pingInterval, close after pingTimeout"
        sid, data = await self.open()
        interval, timeout = data["pingInterval"] / 1000, data["pingTimeout"] / 1000
        if interval + timeout > self.max_wait:
            return Verdict(rule, SKIP, f"pingInterval {interval} s + pingTimeout {timeout} s > {self.max_wait} s "
                                       f"(raise max_wait to check)")
        if interval <= 0:
            return Verdict(rule, FAIL, f"advertised pingInterval {data['pingInterval']} ms",
                           "a positive interval")
        loop = asyncio.get_running_loop()
        start = loop.time()
        status, body = await self.poll(sid, interval + timeout + 5)
        ping_after = loop.time() - start
        # no pong: the server must give up about pingTimeout later
        start = loop.time()
        status2, body2 = await self.poll(sid, interval + timeout + 5)
        closed_after = loop.time() - start
        ok_ping = body == "2" and abs(ping_after - interval) < max(0.25, interval * 0.3)
        ok_close = status2 == 400 or body2 == "1"
        ok_close = ok_close and closed_after < timeout + max(0.3, interval * 0.5) + interval
        seen = (f"advertised {data['pingInterval']}/{data['pingTimeout']} ms; first GET -> {body!r} after "
                f"{ping_after:.2f} s; no pong: next GET -> {status2} {_short(body2, 30)} after {closed_after:.2f} s")
        return Verdict(rule, PASS if ok_ping and ok_close else FAIL, seen,
                       f"a ping after ~{interval} s, the session closed ~{timeout} s after it")

    # ---------------------------------------------------------------- Socket.IO rules
    async def namespace_connect(self) -> Verdict:
        sid, _ = await self.open()
        body = await self.connect(sid)
        good = body.startswith('40{"sid":')
        return Verdict("CONNECT answered 40{sid}", PASS if good else FAIL, f"POST 40 -> GET {_short(body)}",
                       '40{"sid":"..."}')

    async def namespace_refused(self) -> Verdict:
        sid, _ = await self.open()
        body = await self.connect(sid, "/siolab-nonexistent")
        prefix = "44/siolab-nonexistent,"
        good = False
        if body.startswith(prefix):
            try:
                payload = json.loads(body[len(prefix):])
                good = isinstance(payload, dict) and isinstance(payload.get("message"), str)
            except ValueError:
                pass
        return Verdict("unknown namespace refused with 44{message}", PASS if good else FAIL,
                       f"POST 40/siolab-nonexistent, -> GET {_short(body)}",
                       '44/siolab-nonexistent,{"message":"..."}')

    async def _echo(self, sid: str, body: str) -> str:
        await self.post(sid, body)
        got: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.5
        while loop.time() < deadline:
            try:
                status, text = await self.poll(sid, max(0.1, deadline - loop.time()))
            except asyncio.TimeoutError:
                break
            got += text.split(RECORD_SEPARATOR)
            if any(p.startswith("43") or p.startswith("46") for p in got):
                break
        return RECORD_SEPARATOR.join(got)

    async def ack(self) -> Verdict:
        rule = f"ACK answers with the same id (event {self.echo_event!r})"
        sid, _ = await self.open()
        await self.connect(sid)
        try:
            body = await self._echo(sid, f'4217["{self.echo_event}","x"]')
        except asyncio.TimeoutError:
            return Verdict(rule, SKIP, f"no answer to {self.echo_event!r} (no such handler on this server?)")
        acks = [p for p in body.split(RECORD_SEPARATOR) if p.startswith("43")]
        if not acks:
            return Verdict(rule, SKIP, f"no ACK to {self.echo_event!r}: {_short(body)}")
        good = acks[0].startswith("4317[")
        return Verdict(rule, PASS if good else FAIL, f"4217[...] -> {_short(acks[0])}", "4317[...]")

    async def binary_ack(self) -> Verdict:
        rule = f"binary over polling: BINARY_ACK with b64 attachment (event {self.echo_event!r})"
        sid, _ = await self.open()
        await self.connect(sid)
        send = (f'451-18["{self.echo_event}",{{"_placeholder":true,"num":0}}]{RECORD_SEPARATOR}bAQIDBA==')
        try:
            body = await self._echo(sid, send)
        except asyncio.TimeoutError:
            return Verdict(rule, SKIP, f"no answer to {self.echo_event!r}")
        parts = body.split(RECORD_SEPARATOR)
        idx = next((i for i, p in enumerate(parts) if p.startswith("46")), None)
        if idx is None:
            return Verdict(rule, SKIP if not any(p.startswith("4") for p in parts) else FAIL,
                           f"451-18[...] + bAQIDBA== -> {_short(body)}", "461-18[...] + bAQIDBA==")
        good = parts[idx].startswith("461-18[") and idx + 1 < len(parts) and parts[idx + 1] == "bAQIDBA=="
        return Verdict(rule, PASS if good else FAIL, f"451-18[...] + bAQIDBA== -> {_short(body)}",
                       "461-18[...] then bAQIDBA==")

    def rules(self) -> list[Callable[[], Awaitable[Verdict]]]:
        return [self.handshake, self.bad_eio, self.bad_transport, self.missing_transport, self.bad_method,
                self.post_ok, self.batching, self.concurrent_polls, self.bad_packet, self.close, self.upgrade,
                self.heartbeat, self.namespace_connect, self.namespace_refused, self.ack, self.binary_ack]


async def check(url: str, *, path: str = "/socket.io/", echo_event: str = "echo", max_wait: float = 5.0,
                only: Iterable[str] | None = None) -> Report:
    """Probe the Socket.IO server at ``url``; the report's trace holds everything that crossed the wire.

    ``echo_event`` names an event the server acknowledges (for the ack rules; skipped if it never
    answers); rules that need longer than ``max_wait`` seconds (the heartbeat) are skipped.
    ``only`` limits the run to the probes with these names (``RULES`` lists them).
    """
    trace = Trace()
    report = Report(url=url, trace=trace)
    async with Tap(upstream_of(url), trace) as tap, aiohttp.ClientSession() as http:
        prober = _Prober(http, tap.url, path, echo_event, max_wait)
        for rule in prober.rules():
            name = rule.__name__
            if only is not None and name not in only:
                continue
            try:
                verdict = await rule()
            except Exception as exc:  # a rule that cannot run is a failure, with the reason
                verdict = Verdict(name, FAIL, f"probe could not run: {exc.__class__.__name__}: {_short(str(exc))}")
            report.verdicts.append(verdict)
    return report


RULES = ("handshake", "bad_eio", "bad_transport", "missing_transport", "bad_method", "post_ok", "batching",
         "concurrent_polls", "bad_packet", "close", "upgrade", "heartbeat", "namespace_connect",
         "namespace_refused", "ack", "binary_ack")
