"""
The shape of the code, checked: one home for every reply, no import
cycle, rooms a person reads in one sitting.  See docs/design.rst.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "smtpsession"

#: "aim for no module much over 600 lines and no class over about 400"
#: (the architecture issue, after h11's largest module, ~630 lines).
MAX_MODULE_LINES = 650
MAX_CLASS_LINES = 460

_REPLY_TEXT = re.compile(r"^\s*[2-5][0-9][0-9][ -]")


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


MODULES = dict(modules())


def _is_reply_code(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and type(node.value) is int
        and 200 <= node.value <= 599
    )


def reply_decisions(tree: ast.AST) -> list[tuple[int, str]]:
    """Reply codes and reply texts a module produces by itself."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name == "SMTPError":
                code = node.args[0] if node.args else None
                for kw in node.keywords:
                    if kw.arg == "code":
                        code = kw.value
                if code is not None and _is_reply_code(code):
                    found.append((node.lineno, f"SMTPError({ast.unparse(code)}, ...)"))
            if name in ("format_reply", "pair"):
                found.append((node.lineno, f"{name}(...)"))
        elif isinstance(node, ast.Tuple) and len(node.elts) >= 2:
            # (451, "text", ...) or code, enhanced = 451, "4.4.2"
            first, second = node.elts[0], node.elts[1]
            if _is_reply_code(first) and isinstance(second, ast.Constant) and isinstance(
                second.value, (str, bytes)
            ):
                found.append((node.lineno, ast.unparse(node)[:60]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            if _REPLY_TEXT.match(text):
                found.append((node.lineno, repr(text[:40])))
    return found


@pytest.mark.parametrize(
    "module", [m for m in MODULES if not m.startswith("smtpsession._core")]
)
def test_no_reply_is_decided_outside_the_core(module: str) -> None:
    """Every reply code and text comes from smtpsession._core (verdicts, replies, app_replies)."""
    tree = ast.parse(MODULES[module].read_text())
    assert reply_decisions(tree) == []


def test_the_reply_check_finds_replies() -> None:
    """The check above is not blind: it finds what it looks for."""
    source = (
        "raise SMTPError(451, 'x')\n"
        "e = SMTPError(code=550)\n"
        "r = format_reply(421, 'bye')\n"
        "_LOST = (451, 'lost', '4.4.2')\n"
        "code, enhanced = 451, '4.4.2'\n"
        "w(b'421 4.4.2 closing\\r\\n')\n"
        "if 200 <= code < 300: pass\n"
    )
    assert [line for line, _ in reply_decisions(ast.parse(source))] == [1, 2, 3, 4, 5, 6]


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The smtpsession modules an import statement imports."""
    out = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".")
            base = ".".join(parts[: len(parts) - node.level + (module in PACKAGES)]) + (
                "." + base if base else ""
            )
        names = []
        for alias in node.names:
            full = f"{base}.{alias.name}"
            names.append(full if full in MODULES else base)
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name.startswith("smtpsession"):
            out.append(name)
    return out


PACKAGES = {m for m, p in MODULES.items() if p.name == "__init__.py"}


def import_graph() -> dict[str, set[str]]:
    """Every import of every module, at any depth: TYPE_CHECKING and lazy ones too."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(_resolve(module, node))
        edges.discard(module)
        # A package's own __init__ runs before its modules anyway: importing
        # a parent package is not an edge that can close a cycle.
        graph[module] = {e for e in edges if not module.startswith(e + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle() -> None:
    """No module imports, even for type checking only, one that imports it back."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_cycles() -> None:
    """The check above is not blind."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "smtpsession.protocol" in graph["smtpsession.factory"]
    assert "smtpsession._server" in graph["smtpsession.protocol"]


def test_protocol_and_factory_do_not_know_each_other_back() -> None:
    """The factory builds protocols; protocols never reach into the factory."""
    graph = import_graph()
    assert "smtpsession.factory" not in graph["smtpsession.protocol"]


@pytest.mark.parametrize("module", list(MODULES))
def test_rooms_a_person_reads_in_one_sitting(module: str) -> None:
    """No module much over 600 lines, no class much over 400."""
    source = MODULES[module].read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            assert node.end_lineno is not None
            assert node.end_lineno - node.lineno + 1 <= MAX_CLASS_LINES, node.name


def test_core_imports_no_driver_module() -> None:
    """The sans-IO core depends on nothing of the driver (only stdlib-only modules)."""
    graph = import_graph()
    allowed = {"smtpsession.errors", "smtpsession.options", "smtpsession.session"}
    for module, edges in graph.items():
        if module.startswith("smtpsession._core"):
            outside = {e for e in edges if not e.startswith("smtpsession._core")}
            assert outside <= allowed | {"smtpsession"}, (module, outside)
