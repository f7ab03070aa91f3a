"""
Which build of the core the suite is running on.

run-tests.sh runs the suite twice: on the checkout (pure Python) and on a
copy whose core was compiled with mypyc (SMTPSESSION_EXPECT_COMPILED=1).
These tests make sure each run tests the build it claims to.
"""

from __future__ import annotations

import importlib
import os
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compiled_modules() -> list[str]:
    setup = runpy.run_path(str(ROOT / "setup.py"), run_name="not_main_setup")
    return [p.removesuffix(".py").replace("/", ".") for p in setup["COMPILED"]]


@pytest.mark.parametrize("name", compiled_modules())
def test_core_module_comes_from_the_expected_build(name: str) -> None:
    """Each module listed in setup.py is an extension module exactly when compiled."""
    expected = os.environ.get("SMTPSESSION_EXPECT_COMPILED") == "1"
    path = importlib.import_module(name).__file__ or ""
    assert path.endswith(".py") is not expected, path


def test_the_daemon_says_which_core_runs() -> None:
    """The listening log line names the build, as an operator needs to know it."""
    from smtpsession.service import _core_build

    expected = os.environ.get("SMTPSESSION_EXPECT_COMPILED") == "1"
    assert _core_build() == ("compiled" if expected else "pure-Python")
