"""siolab.instrument: what python-socketio's objects tell the trace, each record naming its side and server."""
import asyncio
import logging

from siolab.client import LabClient
from siolab.instrument import Instruments, TaskTracker, record_session_end, trace_logger
from siolab.server import SpecServer, TracedEngineIOServer, TracedServer
from siolab.trace import Trace


def test_the_logger_records_warnings_errors_and_the_info_lines_that_explain_a_loss():
    trace = Trace()
    log = trace_logger(trace, "siolab.test", "server B", server="B", name_of={"s1": "alice"}.get)
    log.info("%s: Sending packet PING", "s1")  # one line per packet: the tap has it already
    log.info("Reconnection successful")
    log.warning("%s: Client is gone, closing socket", "s1")
    log.warning("%s: Client is gone, closing socket", "s1")  # python-engineio says it twice in a row
    try:
        raise ValueError("bad")
    except ValueError:
        log.exception("handler failed")
    notes = [r.note.splitlines()[0] for r in trace]
    assert notes == ["server B info: Reconnection successful", "server B warning: s1: Client is gone, closing socket",
                     "server B: handler failed"]
    gone = trace.expect(kind="log", sid="s1")
    assert gone.client == "alice" and {r.server for r in trace} == {"B"}
    assert "ValueError: bad" in trace.expect(kind="error").error
    assert not logging.getLogger("siolab.test").handlers  # made directly: nothing registered globally


async def test_a_failing_task_is_recorded_and_leftovers_are_cancelled():
    trace = Trace()
    tasks = TaskTracker(trace, "server A", server="A")

    async def fail():
        raise RuntimeError("in a handler")

    tasks.add(asyncio.ensure_future(fail()))
    slow = tasks.add(asyncio.ensure_future(asyncio.sleep(60)))
    await asyncio.sleep(0.01)
    error = trace.expect(kind="error")
    assert error.server == "A" and error.error == "exception in a server A handler: RuntimeError: in a handler"
    await tasks.cancel()
    assert slow.cancelled() and not tasks.tasks


def test_a_session_end_says_why_and_names_the_server():
    trace = Trace()
    record_session_end(trace, "server", "s1", "ping timeout", client="bob", server="B")
    rec = trace.expect(kind="log")
    assert rec.note.startswith("server: the session of bob ended: ping timeout (no pong")
    assert (rec.server, rec.client, rec.sid) == ("B", "bob", "s1")
    off = Instruments(Trace(), "server", sessions=False)
    off.session_ended("s1", "transport close")
    assert len(off.trace) == 0


async def test_the_lab_classes_track_their_own_tasks():
    trace = Trace()
    server = SpecServer(async_mode="aiohttp", instruments=Instruments(trace, "server B", server="B"))
    task = server.start_background_task(asyncio.sleep, 60)  # python-socketio -> python-engineio's method
    assert task in server.instruments.tasks.tasks and server.eio.instruments is server.instruments
    await server.instruments.tasks.cancel()
    assert task.cancelled()
    assert SpecServer(async_mode="aiohttp").eio.instruments is None  # without instruments: nothing tracked
    assert type(TracedServer(async_mode="aiohttp").eio) is TracedEngineIOServer  # no siolab fix: only reports

    client = LabClient("alice", Instruments(trace, "client alice", client="alice"), connect_options={"auth": 1})
    assert (client.name, client.siolab_name, client.connect_options) == ("alice", "alice", {"auth": 1})
    task = client.start_background_task(asyncio.sleep, 60)
    assert task in client.tasks.tasks
    await client.tasks.cancel()
    assert task.cancelled()
