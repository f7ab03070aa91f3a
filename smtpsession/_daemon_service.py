# -*- test-case-name: tests.integration.test_daemon -*-
"""
The services C{twistd smtpsession} runs: L{DaemonService} (one process) and
L{DaemonSupervisor} (C{--workers N}).  What they add to the library's
services is what a daemon needs and an embedder does not: the daemon's log
filter and format, start-up warnings, and a one-line exit when a port
cannot be opened.
"""

from __future__ import annotations

import os
from typing import Any

from smtpsession import _daemon_log
from smtpsession._supervisor import WorkerSupervisor
from smtpsession._twisted_shim import dispatch_without_log_context
from smtpsession.service import ListenError, SMTPService

__all__ = ["DaemonService", "DaemonSupervisor"]


class _Daemon:
    """
    In the foreground (C{twistd -n}) a port that cannot be opened ends the
    process with a one-line message instead of a traceback; when
    daemonizing, twistd itself reports the error.
    """

    foreground = False
    #: How the daemon names itself in that message.
    program = "twistd smtpsession"

    #: --log-level and --log-format.
    log_level = "info"
    log_format = "text"
    #: Lines to log as warnings once logging is set up.
    warnings: list[str] = []

    #: twistd's pid file, removed when the service cannot start (twistd
    #: would leave it behind, and the next start would find it stale).
    pidfile = ""

    log: Any

    def privilegedStartService(self) -> None:
        # twistd has begun logging: put the daemon's filter (and format) in
        # front of its observer before the first line (listening) and before
        # the transaction log looks at it (startService).
        _daemon_log.install(self.log_level, self.log_format)
        lean_reactor()
        for warning in self.warnings:
            self.log.warn("{warning}", warning=warning)
        try:
            super().privilegedStartService()  # type: ignore[misc]
        except ListenError as e:
            if not self.foreground:
                raise
            self._remove_pidfile()
            raise SystemExit(f"{self.program}: {e}") from None

    def _remove_pidfile(self) -> None:
        try:
            with open(self.pidfile) as f:
                ours = f.read().strip() == str(os.getpid())
            if ours:
                os.remove(self.pidfile)
        except (OSError, ValueError):
            pass


def lean_reactor() -> None:
    """
    The daemon owns its reactor: it dispatches each ready socket without
    Twisted's legacy logging context (see
    L{smtpsession._twisted_shim.dispatch_without_log_context}), a tenth of
    the CPU per small message.
    """
    from twisted.internet import reactor

    dispatch_without_log_context(reactor)


class DaemonService(_Daemon, SMTPService):
    """The daemon as one process."""


class DaemonSupervisor(_Daemon, WorkerSupervisor):
    """The daemon with C{--workers N}: a supervisor of N worker processes."""
