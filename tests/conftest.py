"""Shared fixtures, and the test tiers: every test gets exactly one of unit, loopback, node, browser, nbval.

The fast tier is ``make test PYTEST_ARGS="-m unit"``. A test's tier comes, first match wins, from its own
tier marker, from being a notebook cell (nbval), from ``needs_node`` (node), from its file in ``FILE_TIERS``,
from a fixture in ``LOOPBACK_FIXTURES``, else it is unit. A unit test that binds or connects a TCP/UDP
socket fails (``_unit_tests_open_no_sockets``), so a test that should be loopback cannot hide in the fast tier.
"""
from __future__ import annotations

import shutil
import socket
from pathlib import Path

import engineio.packet  # noqa: F401 - its first import probes IPv6 (urllib3 binds ::1): not inside a unit test
import pytest

import siolab

NODE_DIR = Path(__file__).parent / "node"
TIERS = ("unit", "loopback", "node", "browser", "nbval")

# Files whose tests are not unit, beyond what LOOPBACK_FIXTURES and needs_node say per test. Here are the ones
# that start servers without a fixture (directly, or in a child process the socket check cannot see).
FILE_TIERS = {
    "test_browser.py": "browser",
    "test_browser_client.py": "browser",
    "test_check.py": "loopback",  # its CLI test connects to 127.0.0.1:9 from a child process
    "test_cli.py": "loopback",  # the demo and the trace command run labs in child processes
    "test_cluster.py": "loopback",  # a broker and an emitter in child processes
    "test_kernel_lifecycle.py": "loopback",  # labs in a Jupyter kernel
    "test_lifecycle.py": "loopback",
    "test_load.py": "loopback",
    "test_readme.py": "loopback",  # the README's example starts a lab
    "test_server.py": "loopback",
    "test_tap.py": "loopback",
}
# Fixtures that open sockets on 127.0.0.1: a test using one is loopback, whatever its file.
LOOPBACK_FIXTURES = {"lab", "cluster", "hostile", "net", "plain", "kernel"}
# Single tests that open sockets themselves, in files otherwise unit (file name, test name without parameters).
LOOPBACK_TESTS = {
    ("test_reference.py", "test_start_plain_replaces_and_close_all_stops_everything"),
    ("test_browser_widget.py", "test_page_reports_during_run_all_leave_every_cell_its_own_idle"),  # a real kernel
}


def node_available() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "socket.io").is_dir()


NODE_MISSING = "node or tests/node/node_modules missing: run `cd tests/node && npm ci`"
# The node tier is the requirement: a test (or a module's pytestmark) with it is skipped where Node.js is missing.
needs_node = pytest.mark.node


def tier_of(item: pytest.Item) -> str:
    """The one tier of ``item`` (see the module docstring for the order of the rules)."""
    own = {mark.name for mark in item.iter_markers() if mark.name in TIERS}
    if len(own) > 1:
        raise pytest.UsageError(f"{item.nodeid} has the tier markers {sorted(own)}: a test has exactly one")
    if own:
        return own.pop()
    if item.path.suffix == ".ipynb":
        return "nbval"
    name = item.path.name
    if name in FILE_TIERS:
        return FILE_TIERS[name]
    base = getattr(item, "originalname", item.name)
    if LOOPBACK_FIXTURES.intersection(getattr(item, "fixturenames", ())) or (name, base) in LOOPBACK_TESTS:
        return "loopback"
    return "unit"


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    node_skip = None if node_available() else pytest.mark.skip(reason=NODE_MISSING)
    for item in items:
        tier = tier_of(item)
        if item.get_closest_marker(tier) is None:
            item.add_marker(getattr(pytest.mark, tier))
        if tier == "node" and node_skip is not None:
            item.add_marker(node_skip)


@pytest.fixture(autouse=True)
def _unit_tests_open_no_sockets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Fail a unit test that binds or connects an internet socket: it belongs in the loopback tier.

    The socket still opens (a test that expects a refusal behaves as usual); the failure comes at teardown.
    """
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    opened: list[str] = []
    for method in ("bind", "connect", "connect_ex"):
        original = getattr(socket.socket, method)

        def watched(self, address, *, _original=original, _method=method):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                opened.append(f"{_method}({address!r})")
            return _original(self, address)
        monkeypatch.setattr(socket.socket, method, watched)
    yield
    if opened:
        pytest.fail(f"a unit test opened sockets ({', '.join(opened[:3])}): give it the loopback tier in "
                    "tests/conftest.py (FILE_TIERS, LOOPBACK_FIXTURES or LOOPBACK_TESTS) or mark it loopback",
                    pytrace=False)


@pytest.fixture
async def lab():
    lab = await siolab.start(ping_interval=1, ping_timeout=1)
    yield lab
    await lab.close()
