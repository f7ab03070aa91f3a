"""
Shared fixtures for the smtpsession test suite.

Servers started here listen on 127.0.0.1 only and are stopped by the test
that started them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.testing import RunningServer, call_in_reactor


def require_program(name: str) -> str:
    """
    The path of an external program the suite needs.  run-tests.sh installs
    all of them; a missing one is a setup error, not a reason to skip, unless
    SMTPSESSION_ALLOW_SKIP is set (for quick local runs).
    """
    import os

    path = shutil.which(name)
    if path is None:
        if os.environ.get("SMTPSESSION_ALLOW_SKIP"):
            pytest.skip(f"{name} is not installed")
        pytest.fail(f"{name} is not installed; run ./run-tests.sh, which installs it")
    return path


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    """Poll until the server side has caught up (the timeout is a bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def files(directory: Path) -> list[Path]:
    """The entries of a directory, sorted; none if it does not exist."""
    return sorted(directory.iterdir()) if directory.exists() else []


def options(**kw: Any) -> SMTPServerOptions:
    """Test options: a fixed name, no DNS; everything else as given or default."""
    kw.setdefault("name", "mx.test")
    kw.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**kw)


def connections(server: RunningServer) -> int:
    """How many connections a threaded test server holds (read in the reactor thread)."""
    return int(call_in_reactor(lambda: len(server.factory.connections)))
