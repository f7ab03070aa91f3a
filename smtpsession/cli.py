# -*- test-case-name: tests.integration.test_cli -*-
"""
The C{smtpsession} command (and C{python -m smtpsession}).

The same daemon as C{twistd -n smtpsession}, with the same options, in the
foreground and without a pid file, so that a user need not know twistd;
twistd's own options (C{--reactor}, C{--logfile}, C{--uid}...) stay with
C{twistd}.  It runs through twistd's runner rather than a reactor of its
own, so logging, signals and the graceful stop are exactly the plugin's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the daemon with C{argv} (default: the process's arguments)."""
    from twisted.scripts.twistd import ServerOptions, runApp

    from smtpsession import tap

    tap.PROGRAM = "smtpsession"
    args = list(sys.argv[1:] if argv is None else argv)
    config = ServerOptions()
    # Errors in smtpsession's flags end the process from Options.parseOptions
    # (one line, status 2); twistd's flags are not used here.
    config.parseOptions(["--nodaemon", "--pidfile=", "smtpsession", *args])
    runApp(config)
