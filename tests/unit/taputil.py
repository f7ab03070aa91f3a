"""Parsing the daemon's command line in tests (test_tap.py, test_config.py)."""

from __future__ import annotations

import sys

import pytest

from smtpsession import tap


@pytest.fixture(autouse=True)
def keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a handler puts the current directory on sys.path: undo it
    (autouse in every module that imports it)."""
    monkeypatch.setattr(sys, "path", list(sys.path))


def parse(*argv: str) -> tap.Options:
    """C{twistd smtpsession ARGV...}'s options, parsed."""
    options = tap.Options()
    options.parseOptions(list(argv))
    return options
