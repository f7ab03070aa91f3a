# -*- test-case-name: tests.integration.test_workers -*-
"""
One worker of C{--workers N}: C{python -m smtpsession._worker --worker K
--sockets 3,4 [--reactor NAME] -- FLAGS...}, started by the supervisor
(L{smtpsession._supervisor}), never by hand.

It parses the daemon's own flags as the supervisor did (same handler, same
options, same C{--config} file), builds its own factory and handler, and
accepts connections on the listening sockets it inherited as file
descriptors 3, 4, ... (in the order of the C{--port} flags).  It runs
without twistd: there is no pid file, no daemonizing and no log file of its
own; its log lines go to standard output, marked C{worker=K}, and the
supervisor copies them into its log.  SIGTERM (or SIGINT) drains as one
server does; so does the death of the supervisor, noticed within a second
(the worker's parent process changes).
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from zope.interface import implementer

__all__ = ["AdoptedEndpoint", "main"]


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """An endpoint over a listening socket this process inherited (C{adoptStreamPort})."""

    def __init__(self, reactor: Any, fd: int) -> None:
        self._reactor = reactor
        self._fd = fd

    def __repr__(self) -> str:
        return f"<inherited listening socket {self._fd}>"

    def listen(self, protocolFactory: Any) -> Deferred[IListeningPort]:
        try:
            probe = socket.socket(fileno=self._fd)
            family = probe.family
            probe.detach()
            port = self._reactor.adoptStreamPort(self._fd, family, protocolFactory)
        except Exception as e:
            return fail(e)
        os.close(self._fd)  # adoptStreamPort keeps a copy of its own
        return succeed(port)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m smtpsession._worker")
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--sockets", required=True)
    parser.add_argument("--reactor")
    parser.add_argument("flags", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.flags[:1] == ["--"]:
        args.flags = args.flags[1:]
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if args.reactor:
        from twisted.application.reactors import installReactor

        installReactor(args.reactor)
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall
    from twisted.logger import Logger, globalLogBeginner

    from smtpsession import _daemon_log, tap
    from smtpsession._daemon_service import lean_reactor
    from smtpsession.service import SMTPService

    tap.PROGRAM = f"smtpsession worker {args.worker}"
    lean_reactor()
    options = tap.Options()
    options.probe_ports = False  # the supervisor holds them
    try:
        options.parseOptions(args.flags)
    except Exception as e:
        sys.stderr.write(f"{tap.PROGRAM}: {e}\n")
        raise SystemExit(2) from None
    out = io.TextIOWrapper(
        io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace", write_through=True
    )
    observer = _daemon_log.worker_observer(
        out, options["log-level"], options["log-format"], args.worker
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    log = Logger(namespace="smtpsession.worker")

    endpoints = [AdoptedEndpoint(reactor, int(fd)) for fd in args.sockets.split(",") if fd]
    service = SMTPService(options.factory, endpoints, reactor=reactor)
    service.announce = False
    parent = os.getppid()
    failed: list[bool] = []

    def orphaned() -> None:
        if os.getppid() != parent and reactor.running:
            log.warn("the supervisor is gone: stopping")
            reactor.stop()

    def start() -> None:
        try:
            service.privilegedStartService()
            service.startService()
        except Exception as e:
            log.critical("cannot start: {error}", error=e)
            failed.append(True)
            reactor.stop()
            return
        reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
        LoopingCall(orphaned).start(1.0, now=False)
        log.info("worker {number} ready (pid {pid})", number=args.worker, pid=os.getpid())

    reactor.callWhenRunning(start)
    reactor.run()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
