# -*- test-case-name: tests.integration.test_daemon -*-
"""
The C{smtpsession} command (and C{python -m smtpsession}).

The same daemon as C{twistd -n smtpsession}, with the same options, in the
foreground and without a pid file, so that a user need not know twistd.
Of twistd's own options it takes C{--reactor} (C{--reactor=asyncio} for
hooks written with asyncio); the others (C{--logfile}, C{--uid}...) stay
with C{twistd}.  It runs through twistd's runner rather than a reactor of its
own, so logging, signals and the graceful stop are exactly the plugin's.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from smtpsession.config import find_flag

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run the daemon with C{argv} (default: the process's arguments)."""
    from twisted.scripts.twistd import ServerOptions, runApp

    from smtpsession import tap

    tap.PROGRAM = "smtpsession"
    args = list(sys.argv[1:] if argv is None else argv)
    reactor, args = _take_reactor(args)
    config = ServerOptions()
    # Errors in smtpsession's flags end the process from Options.parseOptions
    # (one line, status 2).  Of twistd's own flags only --reactor is taken,
    # for hooks written with asyncio (--reactor=asyncio).
    config.parseOptions(["--nodaemon", "--pidfile=", *reactor, "smtpsession", *args])
    runApp(config)


def _take_reactor(args: list[str]) -> tuple[list[str], list[str]]:
    """C{--reactor NAME} (or C{=NAME}) taken out of C{args}, for twistd."""
    found = find_flag(args, "reactor")
    if found is None:
        return [], args
    where, name = found
    return [f"--reactor={name}"], args[: where.start] + args[where.stop :]
