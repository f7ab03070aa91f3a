"""
Packaging: metadata lives in setup.cfg; this file only adds the compiled
core.

The pure protocol core (C{smtpsession/_core}: the command parser, the DATA
framer, the replies) is compiled to C extension modules with mypyc, beside
the same C{.py} files, when the build backend (buildtools/smtpsession_build.py)
decides so: by default wherever a C compiler and the Python headers are
there, always with C{SMTPSESSION_MYPYC=1}, never with C{SMTPSESSION_MYPYC=0}.
Python imports the extension when it is there and the source otherwise; the
pure-Python package behaves identically (the test suite runs on both).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The build backend reads SMTPSESSION_MYPYC; so does this file when it is run
# by hand (`python setup.py build_ext`), with the same rules.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "buildtools"))
from smtpsession_build import requested

#: The modules compiled by mypyc: the per-command and per-body hot path.  The
#: SASL and PROXY parsers (once per connection) and every module that touches
#: Twisted stay interpreted.
COMPILED = [
    "smtpsession/_core/addresses.py",
    "smtpsession/_core/auth.py",
    "smtpsession/_core/basic.py",
    "smtpsession/_core/body.py",
    "smtpsession/_core/connection.py",
    "smtpsession/_core/envelope.py",
    "smtpsession/_core/events.py",
    "smtpsession/_core/framing.py",
    "smtpsession/_core/greeting.py",
    "smtpsession/_core/machine.py",
    "smtpsession/_core/params.py",
    "smtpsession/_core/replies.py",
    "smtpsession/_core/settings.py",
    "smtpsession/_core/state.py",
    "smtpsession/_core/verdicts.py",
    "smtpsession/_core/xclient.py",
]

_FALLBACK = (
    "smtpsession: could not compile the protocol core ({reason}); "
    "installing the pure-Python build (SMTPSESSION_MYPYC=0 skips the attempt)"
)


def _mode() -> str:
    """
    C{"required"}, C{"optional"} or C{"no"}: the variable when it says 1 or
    0, else what the build backend decided (nothing to compile when this
    file is run by hand).
    """
    asked = requested()
    return os.environ.get("_SMTPSESSION_COMPILE", "no") if asked == "auto" else asked


def _warn(reason: str) -> None:
    reason = reason.splitlines()[0] if reason else "unknown error"
    if len(reason) > 160:
        reason = reason[:157] + "..."
    message = _FALLBACK.format(reason=reason)
    warnings.warn(message, stacklevel=1)
    print(message, file=sys.stderr)


class _OptionalBuildExt(build_ext):
    """
    build_ext that, when compiling is only wished for, leaves a pure-Python
    build instead of failing, and no part of a compiled one (a module's
    shim without the shared library behind it would not import).
    """

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:
            for path in self.get_outputs():
                if os.path.exists(path):
                    os.remove(path)
            self.extensions: list[Any] = []
            _warn(f"{type(e).__name__}: {e}")


def _ext_modules(mode: str) -> list[Any]:
    if mode == "no":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        # The backend is still asking what the build needs (mypy among it).
        if os.environ.get("_SMTPSESSION_FINDING_REQUIRES") == "1":
            return []
        if mode == "optional":
            _warn("mypy is not installed")
            return []
        raise
    try:
        return list(mypycify(COMPILED, opt_level="3", group_name="smtpsession_core"))
    except (Exception, SystemExit) as e:
        if mode == "required":
            raise
        _warn(f"mypyc: {e}")
        return []


if __name__ == "__main__":  # also how setuptools runs it; tests only read COMPILED
    _mode_now = _mode()
    setup(
        ext_modules=_ext_modules(_mode_now),
        cmdclass={"build_ext": _OptionalBuildExt} if _mode_now == "optional" else {},
    )
