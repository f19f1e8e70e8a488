"""The conformance checker: the official Node.js server passes every rule; python-socketio's deviations
are reported exactly (so this test fails, and the lessons get updated, the day upstream changes)."""
import subprocess
import sys

from conftest import needs_node
from node_fixtures import node_server
from siolab.conformance import PASS, RULES, check

# What python-engineio 4.15 / python-socketio 5.18 do differently from the protocol documents.
PYTHON_DEVIATIONS = {
    "refuses missing transport",          # a GET with no transport opens a polling session
    "refuses bad method",                 # PUT is answered 405, not 400
    "POST answered ok",                   # answers "OK" (the spec and Node say "ok")
    "a bad packet closes the session",    # "garbage" in a POST is ignored; the session lives on
    "unknown namespace refused with 44{message}",  # 44/nsp,"Unable to connect": a string, not {message}
}


@needs_node
async def test_official_node_server_passes_every_rule():
    async with node_server("sio_server.js", "--ping-interval", "1000", "--ping-timeout", "1000") as port:
        report = await check(f"http://127.0.0.1:{port}")
    assert report.ok, report.table()
    assert {v.result for v in report.verdicts} == {PASS}
    assert len(report.verdicts) == len(RULES)
    # every verdict is backed by the tap's trace
    assert report.trace.find(eio="open") and report.trace.find(raw="3probe")


async def test_python_socketio_deviations_are_reported_exactly(lab):
    @lab.server.on("echo")
    async def echo(sid, *args):
        return args

    report = await check(lab.server_url)
    assert report.failed == PYTHON_DEVIATIONS, report.table()
    assert report["POST answered ok"].seen.endswith("200 OK")
    assert "Unable to connect" in report["unknown namespace refused with 44{message}"].seen
    text = report.table()
    assert "FAIL" in text and "expected 200 ok" in text


async def test_rules_that_need_an_echo_handler_are_skipped_without_one(lab):
    report = await check(lab.server_url, only={"ack", "binary_ack"})
    skipped = {v.rule for v in report.verdicts if v.result == "skip"}
    assert skipped == {"ACK answers with the same id (event 'echo')",
                       "binary over polling: BINARY_ACK with b64 attachment (event 'echo')"}


def test_cli_check_exits_non_zero_on_failure():
    out = subprocess.run([sys.executable, "-m", "siolab", "check", "http://127.0.0.1:9", "--max-wait", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "FAIL" in out.stdout and "handshake" in out.stdout


async def test_siolab_check_stays_the_function_after_import(lab):
    import siolab
    import siolab.conformance  # noqa: F401  (importing the module must not shadow the function)
    assert callable(siolab.check) and siolab.check is siolab.conformance.check


def test_a_report_reads_failures_first_and_its_repr_is_one_line():
    from siolab.conformance import FAIL, SKIP, Report, Verdict
    report = Report("http://127.0.0.1:1", [Verdict("handshake", PASS, "0{...}"),
                                           Verdict("heartbeat", FAIL, "no ping", "a ping in 1 s"),
                                           Verdict("ack", SKIP, "no echo handler"),
                                           Verdict("upgrade", PASS, "3probe")])
    assert [v.rule for v in report.ordered()] == ["heartbeat", "handshake", "upgrade", "ack"]
    assert report.summary() == "2 passed, 1 failed (heartbeat), 1 skipped"
    lines = report.table().splitlines()
    assert lines[0].endswith("2 passed, 1 failed (heartbeat), 1 skipped") and lines[2].startswith("heartbeat")
    assert repr(report) == "<conformance Report of http://127.0.0.1:1: 2 passed, 1 failed (heartbeat), 1 skipped>"
    html = report._repr_html_()
    assert html.index("heartbeat") < html.index("handshake")
