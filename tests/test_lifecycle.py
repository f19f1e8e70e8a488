"""Starting and closing labs leaves nothing behind: no task, no socket, no port."""
import asyncio
import os
import socket

import siolab
from siolab.lab import open_labs
from timing import LoopLag


def open_sockets() -> int:
    fds = os.listdir("/proc/self/fd")
    count = 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def bindable(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def other_tasks():
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_start_close_twenty_times_and_rerun_without_closing():
    await asyncio.sleep(0)
    tasks_before, sockets_before = len(other_tasks()), open_sockets()
    ports = []
    for i in range(20):
        lab = await siolab.start(ping_interval=1, ping_timeout=1)
        ports += [lab.tap.port, lab.server_port]
        c = await lab.client("alice", transports=["polling"] if i % 2 else None)
        await c.emit("x", i)
        if i % 3 == 0:
            await lab.close()  # otherwise the next start() closes it, like a re-run cell
    last = siolab.current()
    if last is not None:
        await last.close()
        await last.close()  # closing twice is harmless
    await asyncio.sleep(0.1)
    assert not open_labs()
    assert len(other_tasks()) == tasks_before, other_tasks()
    assert open_sockets() <= sockets_before
    assert all(bindable(p) for p in ports)


async def test_two_labs_coexist_and_start_replaces_only_its_own():
    a = await siolab.start(ping_interval=1, ping_timeout=1)
    b = await siolab.start(replace=False, ping_interval=1, ping_timeout=1)
    assert a.url != b.url and not a.closed and not b.closed
    c = await siolab.start(ping_interval=1, ping_timeout=1)
    assert a.closed and not b.closed
    await b.close()
    await c.close()
    assert not open_labs()


async def test_close_is_fast_with_polling_clients():
    lab = await siolab.start(ping_interval=5, ping_timeout=5)
    await lab.client("p", transports=["polling"])
    await lab.client("w")
    loop = asyncio.get_running_loop()
    async with LoopLag() as lag:
        t = loop.time()
        await lab.close()
        took = loop.time() - t
    # not the pending long-poll's wait (up to pingInterval, 5 s): well under it, however late the loop ran
    assert took < 2.0 + lag.worst, (took, lag.worst)


async def test_everything_binds_loopback_by_default():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    try:
        assert lab.tap.host == "127.0.0.1" and lab.host == "127.0.0.1"
        assert lab.url.startswith("http://127.0.0.1:") and lab.server_url.startswith("http://127.0.0.1:")
    finally:
        await lab.close()


def test_bad_ping_interval_is_refused_with_a_reason():
    import pytest
    for bad in (0, -1, "1", True):
        with pytest.raises(ValueError, match="positive number of seconds"):
            siolab.Lab(ping_interval=bad)
