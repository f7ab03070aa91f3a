"""
The protocol core is sans-IO: nothing under C{smtpsession/_core} (nor the
stdlib-only modules it uses: session, options, errors) imports Twisted,
zope.interface or any other third-party package, but C{idna} for
internationalised domains (imported only when one comes).  Checked twice:
statically (every import statement) and at run time (importing them in a
fresh interpreter loads no Twisted module, nor C{idna}).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import smtpsession

PACKAGE = Path(smtpsession.__file__).resolve().parent
SANS_IO = [
    *sorted(PACKAGE.joinpath("_core").glob("*.py")),
    PACKAGE / "session.py",
    PACKAGE / "options.py",
    PACKAGE / "errors.py",
]
ALLOWED_OWN = {"smtpsession._core", "smtpsession.session", "smtpsession.options", "smtpsession.errors"}
#: The one third-party package the core may use: C{idna} (pure Python, no
#: I/O), for internationalised domains only, imported only when a domain is
#: not ASCII (checked below: importing the core does not load it).
ALLOWED_THIRD_PARTY = {"idna"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SANS_IO, ids=lambda p: p.name)
def test_imports_are_stdlib_or_core(path: Path) -> None:
    """Each sans-IO module imports only the standard library and other sans-IO modules."""
    for name in imported_modules(path):
        top = name.split(".")[0]
        if top == "smtpsession":
            assert any(name == own or name.startswith(own + ".") for own in ALLOWED_OWN), (
                f"{path.name} imports {name}"
            )
        else:
            assert top in sys.stdlib_module_names or top in ("__future__", *ALLOWED_THIRD_PARTY), (
                f"{path.name} imports {name}"
            )


def test_importing_the_core_loads_no_twisted() -> None:
    """In a fresh interpreter, importing every sans-IO module loads no Twisted or zope."""
    modules = [
        "smtpsession." + str(p.relative_to(PACKAGE).with_suffix("")).replace("/", ".")
        for p in SANS_IO
        if p.name != "__init__.py"
    ]
    # The package __init__ imports the Twisted layer; stand in for it so that
    # only the sans-IO modules themselves are executed.
    script = f"""
import importlib, json, sys, types
pkg = types.ModuleType("smtpsession")
pkg.__path__ = [{str(PACKAGE)!r}]
sys.modules["smtpsession"] = pkg
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("twisted", "zope", "OpenSSL", "idna"))))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(out.stdout) == []
    assert len(modules) >= 8
