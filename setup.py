"""
Packaging: metadata lives in setup.cfg; this file only adds the optional
compiled core.

With C{SMTPSESSION_MYPYC=1} in the environment the pure protocol core
(C{smtpsession/_core}: the command parser, the DATA framer, the replies) is
compiled to C extension modules with mypyc, beside the same C{.py} files.
Python imports the extension when it is there and the source otherwise, so
a build without a compiler, or without the variable, is the pure-Python
package, which behaves identically (the test suite runs on both).
"""

from __future__ import annotations

import os

from setuptools import setup

#: The modules compiled by mypyc: the per-command and per-body hot path.  The
#: SASL and PROXY parsers (once per connection) and every module that touches
#: Twisted stay interpreted.
COMPILED = [
    "smtpsession/_core/addresses.py",
    "smtpsession/_core/connection.py",
    "smtpsession/_core/events.py",
    "smtpsession/_core/framing.py",
    "smtpsession/_core/params.py",
    "smtpsession/_core/replies.py",
]


def _ext_modules() -> list[object]:
    if os.environ.get("SMTPSESSION_MYPYC", "").lower() not in ("1", "yes", "true"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        # The backend is still asking what the build needs (mypy among it).
        if os.environ.get("_SMTPSESSION_FINDING_REQUIRES") == "1":
            return []
        raise
    return list(mypycify(COMPILED, opt_level="3", group_name="smtpsession_core"))


if __name__ == "__main__":  # also how setuptools runs it; tests only read COMPILED
    setup(ext_modules=_ext_modules())
