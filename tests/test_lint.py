"""ruff over the code and mypy over the pure modules, as tests, so that `make test` runs them too.

The rules and the list of modules mypy checks are pyproject.toml's ([tool.ruff], [tool.mypy]).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.lint


def run(tool: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m tool args`` from the venv running the tests, at the repository root; skip without the tool."""
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed: pip install -e '.[test]'")
    return subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_finds_nothing():
    out = run("ruff", "check", "--no-cache", "--output-format", "concise", "siolab", "tests")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_passes_on_the_pure_modules():
    out = run("mypy", "--cache-dir", os.devnull)  # the modules are [tool.mypy] files; no cache in the tree
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues found" in out.stdout
