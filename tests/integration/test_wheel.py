"""
The package as users install it: build the wheel from a copy of this
checkout, install it into a throwaway virtualenv, and run
``twistd smtpsession --help`` there.  This is what proves that the plugin
file ships in ``twisted/plugins/`` (without an ``__init__.py`` that would
hide Twisted's own plugins) and that twistd finds it outside the source
tree.

The throwaway venv gets smtpsession from the wheel only; its dependencies
(Twisted and the rest) come from the environment running the tests, through
a ``.pth`` file and a tree of links that leaves out any smtpsession installed
there, so nothing is downloaded but the build backend (and, where the core is
compiled, mypy and the packages it reads to type the core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.unit.test_build_backend import load_backend

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".venv*", "venv", "node_modules", "__pycache__",
    "_build", "Maildir", ".peers", "dropin.cache", ".mypy_cache", ".ruff_cache", "results",
)  # fmt: skip


def dependencies_view(dest: Path) -> Path:
    """
    The packages of the environment running the tests, minus any
    smtpsession it may hold (run-tests.sh installs one): a tree of symbolic
    links, so that the throwaway venv gets Twisted and the rest without a
    download, and can only find smtpsession where the test installed it.
    """
    dest.mkdir()
    for root in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        for entry in sorted(Path(root).iterdir()):
            name = entry.name
            if name.startswith(("smtpsession", "__editable__")) or name.endswith(".pth"):
                continue
            if name == "twisted" and entry.is_dir():
                _link_tree(entry, dest / name, skip={"smtpsession_plugin.py", "dropin.cache"})
            elif not (dest / name).exists():
                (dest / name).symlink_to(entry)
    return dest


def _link_tree(source: Path, dest: Path, skip: set[str]) -> None:
    """Mirror twisted/ with links, leaving out our plugin in twisted/plugins."""
    dest.mkdir(exist_ok=True)
    for entry in source.iterdir():
        if entry.name == "plugins" and entry.is_dir():
            plugins = dest / "plugins"
            plugins.mkdir(exist_ok=True)
            for plugin in entry.iterdir():
                if plugin.name not in skip and not (plugins / plugin.name).exists():
                    (plugins / plugin.name).symlink_to(plugin)
        elif not (dest / entry.name).exists():
            (dest / entry.name).symlink_to(entry)


def throwaway_venv(
    tmp_path: Path, *install: str | Path
) -> tuple[Path, Path, dict[str, str]]:
    """
    A new venv with smtpsession installed by C{pip install --no-deps
    *install}, and the test environment's other packages made visible
    through L{dependencies_view}.  Returns its python, its purelib and the
    environment (no PYTHONPATH) to run it with.
    """
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q",
        *install, env=env,
    )  # fmt: skip
    deps = dependencies_view(tmp_path / "deps")
    (purelib / "zz-deps.pth").write_text(f"{deps}\n")
    return python, purelib, env


def can_compile(env: dict[str, str] | None = None) -> bool:
    """What the build backend concludes about this machine (see its can_compile)."""
    return bool(load_backend().can_compile(os.environ if env is None else env))


def run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kw  # type: ignore[call-overload]
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result  # type: ignore[no-any-return]


@pytest.mark.slow
def test_wheel_installs_the_twistd_plugin(tmp_path: Path) -> None:
    """The built wheel contains the plugin and no twisted/__init__.py; once
    installed, `twistd smtpsession --help` lists the daemon's flags and the
    code runs from the install, not from this checkout."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)
    dist = tmp_path / "dist"
    default = {k: v for k, v in os.environ.items() if k != "SMTPSESSION_MYPYC"}
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, source, env=default)
    [wheel] = list(dist.glob("smtpsession-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/smtpsession_plugin.py" in names
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert not any(n.endswith("dropin.cache") for n in names)
    for module in ("tap.py", "service.py", "handlers/maildir.py", "testing/pytest_plugin.py", "py.typed"):
        assert f"smtpsession/{module}" in names, module
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "smtpsession.testing.pytest_plugin" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "smtpsession = smtpsession.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    # By default the core is compiled wherever a C compiler and the Python
    # headers are there (buildtools/smtpsession_build.py).
    compiled = sorted(n for n in names if n.endswith(".so"))
    assert bool(compiled) is can_compile(default), compiled

    python, purelib, env = throwaway_venv(tmp_path, "--force-reinstall", wheel)
    build = run(
        python, "-c", "from smtpsession.service import _core_build; print(_core_build())",
        env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert build == ("compiled" if can_compile(default) else "pure-Python"), build

    where = run(
        python, "-c", "import smtpsession, smtpsession.tap; print(smtpsession.__file__)",
        env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(purelib)), where
    helped = run(
        python, "-c", "from twisted.scripts.twistd import run; run()", "smtpsession", "--help",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    for flag in ("--port=", "--handler=", "--maildir=", "--no-transaction-log", "--tls-cert="):
        assert flag in helped.stdout, helped.stdout
    # The console script: the same flags without twistd.
    script = Path(python).parent / "smtpsession"
    helped = run(script, "--help", env=env, cwd=tmp_path)
    for flag in ("--port=", "--handler=", "--config=", "--no-transaction-log"):
        assert flag in helped.stdout, helped.stdout
    plugin = run(
        python, "-c", "import twisted.plugins.smtpsession_plugin as p; print(p.__file__)",
        env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert plugin.startswith(str(purelib)), plugin


@pytest.mark.slow
def test_wheel_is_pure_python_when_the_compiler_fails(tmp_path: Path) -> None:
    """A compiler that fails leaves a working pure-Python build, and says so."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k != "SMTPSESSION_MYPYC"}
    env["CC"] = "false"  # found on PATH, fails every time
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", dist, source, env=env
    )
    if can_compile(env):
        assert "could not compile the protocol core" in built.stdout + built.stderr
    [wheel] = list(dist.glob("smtpsession-*.whl"))
    assert not [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".so")]
    python, _, venv_env = throwaway_venv(tmp_path, wheel)
    build = run(
        python, "-c", "from smtpsession.service import _core_build; print(_core_build())",
        env=venv_env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert build == "pure-Python"


@pytest.mark.slow
def test_strict_editable_install_is_found_by_twistd(tmp_path: Path) -> None:
    """The development install the docs recommend
    (`pip install -e . --config-settings editable_mode=strict`) makes
    `twistd smtpsession` work; the default editable mode would hide the
    plugin from twistd's scan."""
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)
    python, _, env = throwaway_venv(
        tmp_path, "-e", source, "--config-settings", "editable_mode=strict"
    )
    helped = run(
        python, "-c", "from twisted.scripts.twistd import run; run()", "smtpsession", "--help",
        env=env, cwd=tmp_path,
    )  # fmt: skip
    assert "--maildir=" in helped.stdout, helped.stdout
    # The plugin twistd loads is this install's, not one that the outer
    # environment may also hold.
    # The console script: the same flags without twistd.
    script = Path(python).parent / "smtpsession"
    helped = run(script, "--help", env=env, cwd=tmp_path)
    for flag in ("--port=", "--handler=", "--config=", "--no-transaction-log"):
        assert flag in helped.stdout, helped.stdout
    plugin = run(
        python, "-c", "import twisted.plugins.smtpsession_plugin as p; print(p.__file__)",
        env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert Path(plugin).resolve().is_relative_to(source), plugin
    # Editable installs stay pure Python: an edited .py file is what runs.
    core = run(
        python, "-c", "import smtpsession._core.connection as c; print(c.__file__)",
        env=env, cwd=tmp_path,
    ).stdout.strip()  # fmt: skip
    assert core.endswith(".py") and Path(core).resolve().is_relative_to(source), core
