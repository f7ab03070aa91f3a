"""
docs/conformance.rst names a test for every test case of smtp-server's
suites.  This keeps that table true: every ``tests/...py::name`` it cites
must exist, and every protocol-test scenario it quotes must be in
C{tests/unit/test_connection.py::SCENARIOS}.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conformance.rst"
REFERENCE = re.compile(r"``(tests/[\w/]+\.py)::([\w:]+)``")


def names_in(path: Path) -> dict[str, set[str]]:
    """Top-level names of a test file, each with the method names if a class."""
    tree = ast.parse(path.read_text(), str(path))
    names: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names[node.name] = set()
        elif isinstance(node, ast.ClassDef):
            names[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    names[t.id] = set()
    return names


def test_every_cited_test_exists() -> None:
    """Each file::name (or file::Class::method) cited in the table exists."""
    text = DOC.read_text()
    cited = REFERENCE.findall(text)
    assert len(cited) > 150
    missing = []
    cache: dict[str, dict[str, set[str]]] = {}
    for file, name in cited:
        path = ROOT / file
        if not path.exists():
            missing.append(f"{file} (no such file)")
            continue
        names = cache.setdefault(file, names_in(path))
        top, _, method = name.partition("::")
        if top not in names or (method and method not in names[top]):
            missing.append(f"{file}::{name}")
    assert not missing, missing


def test_quoted_scenarios_exist() -> None:
    """Scenario descriptions quoted after test_scenario are in SCENARIOS (``x ...`` is a prefix)."""
    from tests.unit.test_connection import SCENARIOS

    descriptions = [d for d, _, _, _ in SCENARIOS]
    text = " ".join(DOC.read_text().split())
    quoted = re.findall(r"test_scenario`` \(([^)]*)\)", text)
    assert quoted
    for group in quoted:
        for q in re.findall(r"``(.+?)``", group):
            prefix = q.removesuffix("...").strip()
            assert any(d.startswith(prefix) for d in descriptions), q
