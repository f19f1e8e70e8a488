"""The test tiers (tests/conftest.py): every test, notebooks included, has exactly one, and the rules hold."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import conftest
from conftest import TIERS, tier_of

ROOT = Path(__file__).resolve().parent.parent


def fake_item(file: str, *, marks: tuple[str, ...] = (), fixtures: tuple[str, ...] = (), name: str = "test_x"):
    """What tier_of reads of a pytest item."""
    return SimpleNamespace(
        nodeid=f"{file}::{name}", path=Path(file), name=name, originalname=name, fixturenames=list(fixtures),
        iter_markers=lambda: [getattr(pytest.mark, mark).mark for mark in marks])


def test_every_collected_test_has_exactly_one_tier():
    none = " or ".join(TIERS)
    several = " or ".join(f"({a} and {b})" for i, a in enumerate(TIERS) for b in TIERS[i + 1:])
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                          "-m", f"not ({none}) or {several}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, out.stdout[-3000:] + out.stderr[-3000:]
    assert "deselected" in out.stdout  # something was collected, and all of it deselected


@pytest.mark.parametrize(("item", "tier"), [
    (fake_item("tests/test_wire.py"), "unit"),  # a file not in FILE_TIERS, no fixture that opens sockets
    (fake_item("tests/test_new.py", fixtures=("tmp_path", "lab")), "loopback"),  # the lab fixture
    (fake_item("tests/test_tap.py"), "loopback"),  # its file
    (fake_item("tests/test_browser.py", fixtures=("lab",)), "browser"),  # the file wins over the fixture
    (fake_item("tests/test_check.py", marks=("node", "skip")), "node"),  # needs_node beats the file's loopback
    (fake_item("tests/test_widgets.py", marks=("loopback", "parametrize")), "loopback"),  # its own marker
    (fake_item("tests/test_reference.py", name="test_start_plain_replaces_and_close_all_stops_everything"),
     "loopback"),
    (fake_item("notebooks/01_first_contact.ipynb", name="Cell 3"), "nbval"),
])
def test_tier_rules(item, tier):
    assert tier_of(item) == tier


def test_two_tier_markers_are_refused():
    with pytest.raises(pytest.UsageError, match="exactly one"):
        tier_of(fake_item("tests/test_x.py", marks=("unit", "loopback")))


def test_needs_node_is_the_node_tier():
    assert conftest.needs_node.mark.name == "node"


def test_a_unit_test_that_opens_a_socket_fails(tmp_path):
    """The check that keeps loopback tests out of the fast tier, run on a throwaway test directory."""
    shutil.copy(Path(__file__).parent / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "pytest.ini").write_text("[pytest]\nasyncio_default_fixture_loop_scope = function\nmarkers =\n"
                                         + "".join(f"    {tier}\n" for tier in TIERS))
    (tmp_path / "test_socket.py").write_text(
        "import socket\n\n"
        "def test_pure():\n    assert True\n\n"
        "def test_binds():\n    with socket.socket() as s:\n        s.bind(('127.0.0.1', 0))\n\n"
        "def test_unix_socketpair_is_fine():\n    a, b = socket.socketpair()\n    a.close(); b.close()\n")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:nbval",
                          "-m", "unit", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # test_binds itself passes; its teardown is the error
    assert "3 passed, 1 error" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert "ERROR test_socket.py::test_binds" in out.stdout and "give it the loopback tier" in out.stdout
