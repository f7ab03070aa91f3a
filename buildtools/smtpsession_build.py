"""
The build backend: setuptools', plus the decision whether to compile the
protocol core with mypyc, and the build requirements that takes.

C{SMTPSESSION_MYPYC} in the environment decides:

  - unset (or C{auto}): compile the core when a C compiler and the Python
    headers are there, and fall back to the pure-Python package, with a
    warning, if compiling fails.  Editable installs stay pure, so that an
    edited C{.py} file is what runs.
  - C{1}: compile, and fail if that is not possible.
  - C{0}: never compile.

A compiled build needs mypy, and mypy needs the packages the core's modules
import to type them as the checker does; a pure build needs none of that,
so these requirements are asked for only when the core will be compiled.
The decision reaches setup.py through C{_SMTPSESSION_COMPILE}.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from collections.abc import Callable, Mapping
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F403 (the backend's whole interface)

#: The mypy that compiles the core (pinned: the generated C is its work),
#: its zope.interface plugin (named in pyproject.toml's mypy settings) and
#: the runtime requirements, which mypy follows from smtpsession/__init__.py.
COMPILED_BUILD_REQUIRES = [
    "mypy==2.4.1",
    "mypy-zope>=1.0",
    "Twisted[tls]>=26.4",
    "pyOpenSSL>=24.0",
    "service_identity>=24.1",
    "zope.interface>=6.0",
]


def can_compile(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a C compiler and the Python headers look available."""
    compiler = environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    include = sysconfig.get_paths().get("include") or ""
    return bool(compiler.split()) and shutil.which(compiler.split()[0]) is not None and (
        os.path.exists(os.path.join(include, "Python.h"))
    )


def requested() -> str:
    """What C{SMTPSESSION_MYPYC} asks for: C{"required"}, C{"no"} or C{"auto"}."""
    asked = os.environ.get("SMTPSESSION_MYPYC", "auto").strip().lower()
    if asked in ("1", "yes", "true"):
        return "required"
    if asked in ("0", "no", "false"):
        return "no"
    if asked not in ("", "auto"):
        raise ValueError(f"SMTPSESSION_MYPYC must be 0, 1 or auto, not {asked!r}")
    return "auto"


def compile_mode(editable: bool = False) -> str:
    """
    C{"required"}, C{"optional"} (try, fall back to pure) or C{"no"}, from
    C{SMTPSESSION_MYPYC} and what this machine has.
    """
    asked = requested()
    if asked != "auto":
        return asked
    return "optional" if not editable and can_compile() else "no"


def _requires(
    requires: Callable[[Any], list[str]], config_settings: Any, editable: bool
) -> list[str]:
    mode = compile_mode(editable)
    os.environ["_SMTPSESSION_COMPILE"] = mode
    if mode == "no":
        return list(requires(config_settings))
    # setup.py runs while setuptools collects its own requirements, before
    # mypy is installed: it is told to leave the compiling for later.
    os.environ["_SMTPSESSION_FINDING_REQUIRES"] = "1"
    try:
        return list(requires(config_settings)) + COMPILED_BUILD_REQUIRES
    finally:
        del os.environ["_SMTPSESSION_FINDING_REQUIRES"]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings, False)


def get_requires_for_build_editable(
    config_settings: dict[str, Any] | None = None,
) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_editable, config_settings, True)


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    os.environ["_SMTPSESSION_COMPILE"] = compile_mode(editable=False)
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    os.environ["_SMTPSESSION_COMPILE"] = compile_mode(editable=True)
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))
