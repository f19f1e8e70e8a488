"""Labs in a real Jupyter kernel: re-run cells, two labs side by side, and a kernel shut down with labs open."""
import json

import pytest

from test_lifecycle import bindable

jupyter_client = pytest.importorskip("jupyter_client")


def run(kc, code: str, timeout: float = 30) -> str:
    """Execute one cell; returns its stdout, raises with the traceback if the cell failed."""
    msg_id = kc.execute(code)
    out = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("cell failed:\n" + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


@pytest.fixture
def kernel():
    km = jupyter_client.KernelManager(kernel_name="python3")
    km.start_kernel(extra_arguments=["--HistoryManager.enabled=False"])
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def test_labs_in_a_kernel_rerun_coexist_and_free_their_ports_at_shutdown(kernel):
    km, kc = kernel
    # the same cell run 20 times: each start() closes the lab the previous one started
    cell = ("import siolab, json\n"
            "lab = await siolab.start(ping_interval=1, ping_timeout=1)\n"
            "alice = await lab.client('alice')\n"
            "await alice.emit('hello', 1)\n"
            "ports = globals().setdefault('ports', [])\n"
            "ports += [lab.tap.port, lab.server_port]\n")
    for _ in range(20):
        run(kc, cell)
    state = json.loads(run(kc, "print(json.dumps({'open': len(siolab.open_labs()), 'ports': ports, "
                                "'current': [lab.tap.port, lab.server_port]}))"))
    assert state["open"] == 1
    earlier = [p for p in state["ports"] if p not in state["current"]]
    assert len(earlier) == 38 and all(bindable(p) for p in earlier)  # every replaced lab freed its ports
    assert not any(bindable(p) for p in state["current"])  # the live one holds its own

    # a second lab next to the first, on other ports; both work; closing twice is harmless
    both = json.loads(run(kc, (
        "other = await siolab.start(replace=False, ping_interval=1, ping_timeout=1)\n"
        "@other.server.on('echo')\n"
        "async def echo(sid, data):\n"
        "    return data\n"
        "@lab.server.on('echo')\n"
        "async def echo2(sid, data):\n"
        "    return data\n"
        "bob = await other.client('bob')\n"
        "alice2 = await lab.client('alice2')\n"
        "ok = [await bob.call('echo', 'b'), await alice2.call('echo', 'a')]\n"
        "print(json.dumps({'ok': ok, 'open': len(siolab.open_labs()), "
        "'ports': [lab.tap.port, lab.server_port, other.tap.port, other.server_port]}))")))
    assert both["ok"] == ["b", "a"] and both["open"] == 2
    assert len(set(both["ports"])) == 4
    run(kc, "await other.close()\nawait other.close()\nassert len(siolab.open_labs()) == 1")
    left_open = both["ports"][:2]

    # shut the kernel down with the first lab still open: its ports are free afterwards
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    assert not km.is_alive()
    assert all(bindable(p) for p in left_open + both["ports"][2:])
