"""
The code stays lint-clean and type-clean: ruff and mypy run as tests, with
the configuration in pyproject.toml, so CI fails on a regression.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str) -> list[str]:
    """Run the tool from the same environment as the tests."""
    candidate = Path(sys.executable).with_name(name)
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed (pip install '.[dev]')")
    return [found]


def test_ruff() -> None:
    """ruff finds nothing in the package, the plugin, the tests, bench and docs."""
    result = subprocess.run(
        [*_tool("ruff"), "check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    """mypy (with the zope plugin) finds no type errors in the package."""
    result = subprocess.run(
        [*_tool("mypy"), "--no-incremental"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
