"""
How the build backend (buildtools/smtpsession_build.py) decides whether to
compile the core: SMTPSESSION_MYPYC, the machine, and editable installs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_backend() -> Any:
    """A fresh copy of the build backend module (tests patch it)."""
    spec = importlib.util.spec_from_file_location(
        "_smtpsession_build_backend", ROOT / "buildtools" / "smtpsession_build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def backend() -> Any:
    return load_backend()


@pytest.mark.parametrize(
    ("asked", "compiler", "editable", "mode"),
    [
        (None, True, False, "optional"),
        ("auto", True, False, "optional"),
        (None, False, False, "no"),
        (None, True, True, "no"),
        ("1", False, False, "required"),
        ("1", True, True, "required"),
        ("yes", True, False, "required"),
        ("0", True, False, "no"),
        ("false", True, False, "no"),
    ],
)
def test_compile_mode(
    backend: Any,
    monkeypatch: pytest.MonkeyPatch,
    asked: str | None,
    compiler: bool,
    editable: bool,
    mode: str,
) -> None:
    if asked is None:
        monkeypatch.delenv("SMTPSESSION_MYPYC", raising=False)
    else:
        monkeypatch.setenv("SMTPSESSION_MYPYC", asked)
    monkeypatch.setattr(backend, "can_compile", lambda environ=None: compiler)
    assert backend.compile_mode(editable) == mode


def test_unknown_setting_is_an_error(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTPSESSION_MYPYC", "fast")
    with pytest.raises(ValueError, match="SMTPSESSION_MYPYC"):
        backend.compile_mode()


def test_can_compile_needs_a_compiler_on_the_path(backend: Any) -> None:
    assert backend.can_compile({"CC": "no-such-compiler-anywhere"}) is False
