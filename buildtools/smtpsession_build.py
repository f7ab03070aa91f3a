"""
The build backend: setuptools', plus the build requirements of the optional
compiled core.

A compiled build (C{SMTPSESSION_MYPYC=1 pip install .}) needs mypy, and mypy
needs the packages the core's modules import to type them as the checker
does; a pure build needs none of that, so these requirements are asked for
only when the variable is set.
"""

from __future__ import annotations

import os
from collections.abc import Callable
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


def _compiled() -> bool:
    return os.environ.get("SMTPSESSION_MYPYC", "").lower() in ("1", "yes", "true")


def _with_compiler(requires: Callable[[Any], list[str]], config_settings: Any) -> list[str]:
    if not _compiled():
        return list(requires(config_settings))
    # setup.py runs while setuptools collects its own requirements, before
    # mypy is installed: it is told to leave the compiling for later.
    os.environ["_SMTPSESSION_FINDING_REQUIRES"] = "1"
    try:
        return list(requires(config_settings)) + COMPILED_BUILD_REQUIRES
    finally:
        del os.environ["_SMTPSESSION_FINDING_REQUIRES"]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    return _with_compiler(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(
    config_settings: dict[str, Any] | None = None,
) -> list[str]:
    return _with_compiler(_setuptools.get_requires_for_build_editable, config_settings)
