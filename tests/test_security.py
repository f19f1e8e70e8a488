"""Safe by default: loopback binds, same-origin CORS, escaped HTML, and a JSON Lines import that only parses."""
import html
import inspect
import json
import logging

import aiohttp
import pytest
import socketio

import siolab
from siolab import cli, lab as lab_module, tap as tap_module
from siolab.tap import Tap
from siolab.trace import MAX_DEPTH, Record, Trace

XSS = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '"><svg onload=alert(1)>',
       "</td></tr><iframe src=javascript:alert(1)>", "&lt;already&gt;"]


# ------------------------------------------------------------ binding


async def test_every_listener_binds_loopback_by_default(lab):
    assert lab.host == "127.0.0.1" and lab.tap.host == "127.0.0.1"
    for addresses in (lab.process.addresses, lab.tap.addresses):
        hosts = {address[0] for address in addresses}
        assert hosts == {"127.0.0.1"}, hosts


def test_host_defaults_are_loopback_everywhere():
    owners = [lab_module.Lab, tap_module.Tap]
    try:
        from siolab.cluster import Broker  # the broker child process of the several-servers lesson
        owners.append(Broker)
    except ImportError:
        pass
    for owner in owners:
        assert inspect.signature(owner).parameters["host"].default == "127.0.0.1", owner
    trace = cli.build_parser().parse_args(["trace", "http://127.0.0.1:1"])
    assert trace.host == "127.0.0.1"


def test_binding_another_address_needs_an_argument_and_warns(caplog):
    with caplog.at_level(logging.WARNING):
        siolab.Lab(host="0.0.0.0")  # not opened: nothing is bound
        Tap("http://127.0.0.1:1", host="0.0.0.0")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "the lab binds 0.0.0.0: it is reachable from other machines" in warnings
    assert "the tap binds 0.0.0.0: it is reachable from other machines" in warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        siolab.Lab()
        Tap("http://127.0.0.1:1")
    assert not caplog.records


# ------------------------------------------------------------ CORS


async def test_same_origin_only_a_foreign_origin_is_refused_and_explained(lab):
    url = lab.url + "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, headers={"Origin": lab.url}) as r:  # a page served from the lab itself
            assert r.status == 200 and (await r.text()).startswith("0{")
        async with http.get(url) as r:  # python and Node.js clients send no Origin
            assert r.status == 200
        for origin in ("http://evil.example", lab.server_url, "http://localhost:8888", "null"):
            async with http.get(url, headers={"Origin": origin, "X-Siolab-Client": "page"}) as r:
                assert r.status == 400 and "is not an accepted origin" in await r.text()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(lab.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket",
                                  headers={"Origin": "http://evil.example", "X-Siolab-Client": "page"})
        assert refused.value.status == 400
    answers = lab.trace.find(client="page", kind="http", dir="s2c")
    assert len(answers) == 5 and all(r.http["status"] == 400 for r in answers)
    for r in answers:
        assert "is not an accepted origin" in r.error and "Origin header (CORS)" in r.error
        assert "cors_allowed_origins" in r.error
    assert "refused the WebSocket" in answers[-1].note
    assert "cors_allowed_origins" in siolab.Lab.__doc__


@pytest.mark.loopback  # starts its own lab
async def test_cors_opens_only_to_the_origins_named():
    lab = await siolab.start(ping_interval=1, ping_timeout=1, cors_allowed_origins=["http://localhost:8888"])
    try:
        url = lab.url + "/socket.io/?EIO=4&transport=polling"
        async with aiohttp.ClientSession() as http:
            async with http.get(url, headers={"Origin": "http://localhost:8888"}) as r:
                assert r.status == 200
                assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:8888"
            async with http.get(url, headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 400
    finally:
        await lab.close()


# ------------------------------------------------------------ HTML escaping


async def test_wire_text_is_escaped_in_the_trace_html(lab):
    """Event names, args, namespaces, client names and raw packets from a hostile peer, rendered as HTML."""
    evil = XSS[1]
    ns = "/x<script>"

    @lab.server.on("connect", namespace=ns)
    async def connect(sid, environ, auth=None):
        pass

    @lab.server.on(evil, namespace=ns)
    async def handler(sid, *args):
        return list(args)

    client = await lab.client(XSS[0], namespaces=[ns], transports=["websocket"])
    assert await client.call(evil, [XSS[2], {XSS[3]: XSS[4]}], namespace=ns) == [[XSS[2], {XSS[3]: XSS[4]}]]
    async with aiohttp.ClientSession() as http:  # raw hostile text, and a path, straight through the tap
        async with http.post(lab.url + "/socket.io/?EIO=4&transport=polling&sid=<b>x</b>",
                             data="4" + XSS[0], headers={"X-Siolab-Client": XSS[3]}) as r:
            await r.read()
    lab.trace.add(kind="log", note=XSS[2], error=XSS[1], client=XSS[0])
    assert lab.trace.find(client=XSS[0], event=evil, nsp=ns)  # really recorded as wire data
    page = lab.trace._repr_html_()
    assert tags(page) <= TABLE_TAGS, tags(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    # the table's own markup is intact: one row per record shown, plus the header
    assert page.count("<tr>") == min(len(lab.trace), 200) + 1


TABLE_TAGS = {"table", "thead", "tbody", "tr", "th", "td", "code", "br", "span", "p"}


def tags(page: str) -> set[str]:
    """Every tag name in an HTML string."""
    return {part.split(">")[0].split()[0].strip("/").lower() for part in page.split("<")[1:]}


def test_html_tags_only_from_the_table_itself():
    trace = Trace()
    for payload in XSS:
        trace.add(kind="packet", raw=f'42["{payload}"]', event=payload, args=[payload], nsp="/" + payload,
                  client=payload, eio="message", sio="event", error=payload, note=payload,
                  http={"method": payload, "path": payload, "status": None})
    page = trace._repr_html_()
    assert tags(page) <= TABLE_TAGS, tags(page)
    assert all(html.escape(p) in page for p in XSS)
    assert "&amp;lt;already&amp;gt;" in page  # escaped once more, not trusted as already escaped


def test_terminal_output_escapes_control_characters():
    r = Record(t=1.0, raw="42[\"\x1b[2J\x1b[31mred\"]", event="\x1b]0;title\x07", client="eve", eio="message",
               sio="event", error="bad \x1b[5m blink")
    line = str(r)
    assert "\x1b" not in line and "\x07" not in line
    assert "\\x1b[2J" in line and "\\x1b[5m" in line
    trace = Trace()
    trace.append(r)
    assert "\x1b" not in trace.table() and "\x1b" not in trace._repr_html_()


# ------------------------------------------------------------ JSON Lines import


GOOD = '{"t": 0.5, "raw": "2", "eio": "ping"}'


@pytest.mark.parametrize("line, words", [
    ('{"t": 1e999}', "too large"),
    ('{"t": 1, "args": [1e999]}', "too large"),
    ('{"t": NaN}', "NaN is not JSON"),
    ('{"t": 1, "args": [Infinity]}', "Infinity is not JSON"),
    ('{"t": 1, "ack": ' + "9" * 5000 + "}", "line 2"),  # Python refuses to convert 5000-digit integers
    ('{"t": 1e300}', "seconds since the trace started"),
    ('{"t": 1, "ack": -1}', "'ack' must be a whole number"),
    ('{"t": 1, "ack": true}', "'ack' must be a whole number"),
    ('{"t": 1, "args": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ('{"t": 1, "args": ' + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "}", f"more than {MAX_DEPTH} levels"),
    ('{"t": 1, "__proto__": {"polluted": true}}', "unknown keys ['__proto__']"),
    ('{"t": 1, "constructor": {"prototype": {"x": 1}}}', "unknown keys ['constructor']"),
    ('{"t": 1, "http": {"method": "GET", "__proto__": {"x": 1}}}', "'http' has unknown keys ['__proto__']"),
    ('{"t": 1, "http": {"method": {"$gt": ""}}}', "'http' must be"),
    ('{"t": "__import__(\'os\').system(\'touch /tmp/siolab-pwned\')"}', "'t' must be a number"),
    ('{"t": 1, "raw": {"__class__": "x"}}', "'raw' has the wrong type"),
    ('{"t": 1, "kind": "eval"}', "'kind' must be one of"),
])
def test_jsonl_import_rejects_hostile_lines_with_line_numbers(line, words, tmp_path):
    with pytest.raises(ValueError) as info:
        Trace.from_jsonl(GOOD + "\n" + line + "\n" + GOOD)
    assert "line 2:" in str(info.value) and words in str(info.value), str(info.value)[:300]
    assert "line 1" not in str(info.value) and "line 3" not in str(info.value)


def test_jsonl_import_keeps_hostile_data_as_plain_data(tmp_path):
    """What a hostile peer sent is data: a '__proto__' key in args is a key like any other, and round-trips."""
    line = json.dumps({"t": 1, "kind": "packet", "raw": '42["x",{"__proto__":{"admin":true}}]', "eio": "message",
                       "sio": "event", "event": "x", "args": [{"__proto__": {"admin": True}}],
                       "client": XSS[0], "note": XSS[1]})
    trace = Trace.from_jsonl(line)
    (record,) = trace
    assert record.args == [{"__proto__": {"admin": True}}] and type(record.args[0]) is dict
    assert not hasattr({}, "admin")
    assert Trace.from_jsonl(trace.to_jsonl()).to_jsonl() == trace.to_jsonl()
    assert "<script>" not in trace._repr_html_()


def test_jsonl_export_of_non_json_numbers_from_the_wire_stays_valid_json():
    """Python's json reads NaN/Infinity off the wire; the export writes them as text so the file stays JSON."""
    trace = Trace()
    trace.add(kind="packet", raw='42["n",NaN,1e999]', eio="message", sio="event", event="n",
              args=[float("nan"), float("inf")])
    text = trace.to_jsonl()
    assert json.loads(text)["args"] == ["nan", "inf"]
    assert Trace.from_jsonl(text)[0].args == ["nan", "inf"]  # the strict import accepts it


def test_jsonl_import_never_evaluates(tmp_path):
    marker = tmp_path / "pwned"
    lines = [
        json.dumps({"t": 1, "raw": f"__import__('pathlib').Path({str(marker)!r}).touch()", "eio": "message"}),
        json.dumps({"t": 2, "note": "{{7*7}} ${7*7} `touch x`", "kind": "log"}),
    ]
    trace = Trace.from_jsonl("\n".join(lines))
    assert not marker.exists()
    assert trace[0].raw.startswith("__import__") and trace[1].note == "{{7*7}} ${7*7} `touch x`"


async def test_a_client_name_cannot_smuggle_headers_through_the_tap(lab):
    seen = {}

    @lab.server.on("connect")
    async def connect(sid, environ, auth=None):
        seen.update(environ)

    client = socketio.AsyncClient()
    await client.connect(lab.url + "?siolab_client=%3Cb%3Eeve%3C%2Fb%3E", transports=["websocket"], wait_timeout=3)
    await client.disconnect()
    assert "siolab_client" not in seen["QUERY_STRING"]
    assert lab.trace.find(client="<b>eve</b>") and "<b>eve" not in lab.trace._repr_html_()
