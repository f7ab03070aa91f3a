# -*- test-case-name: tests.integration.test_workers -*-
"""
C{--workers N}: one supervisor process and N worker processes sharing its
listening sockets.

The supervisor opens every C{--port} as the endpoint string says (before
twistd sheds root privileges, so port 25 works with C{--uid}), never
accepts on them, and starts N workers (C{python -m smtpsession._worker},
L{smtpsession._worker}) that inherit the sockets and accept from them.

Why shared sockets and not C{SO_REUSEPORT}: with one socket there is one
queue of connections not yet accepted, which every worker takes from; when
a worker dies, what waits in the queue is taken by the others, and only the
connections the dead worker had accepted are cut.  With C{SO_REUSEPORT}
each worker has its own queue, the kernel hashes each new connection to
one of them, and the connections waiting in a dead worker's queue are
reset with it.  (The cost: every idle worker is woken for each new
connection, and one of them gets it.  With a handful of workers that is
cheap.)

A worker that dies is started again, after 0.25 s, doubling with each
death in a row up to 30 s; a worker that has run for a minute is counted
as healthy again.  Each worker writes its log lines, marked C{worker=N}, to
its standard output; the supervisor copies them, whole lines at a time, to
its own log file (or logs them as events when its log is not a file).
SIGTERM to the supervisor stops the restarts, closes its own copy of the
sockets and sends SIGTERM to every worker, which drains as one server does
("Shutdown" in the API); a worker still there C{close_timeout} plus 15
seconds later gets SIGKILL.  A worker whose supervisor is gone (killed with
SIGKILL) notices within a second and drains too.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from twisted.application.reactors import getReactorTypes
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtpsession import _twisted_shim
from smtpsession.service import SMTPService

__all__ = ["WorkerSupervisor", "BACKOFF_FIRST", "BACKOFF_MAX", "HEALTHY_AFTER"]

#: Seconds before a dead worker is started again, the first time.
BACKOFF_FIRST = 0.25
#: The longest wait before a restart (deaths in a row double the wait).
BACKOFF_MAX = 30.0
#: Seconds after which a running worker's death no longer counts as "in a row".
HEALTHY_AFTER = 60.0
#: Seconds a worker may take to drain beyond C{close_timeout} before SIGKILL.
KILL_MARGIN = 15.0
#: A line of a worker's output longer than this is written in pieces.
MAX_LINE = 1 << 20

_log = Logger(namespace="smtpsession.supervisor")


class WorkerSupervisor(SMTPService):
    """
    Listen on the endpoints, run C{count} workers that accept on them.

    @param factory: the server factory built from the command line; the
        supervisor uses only its options (what the listening line says,
        C{close_timeout}): the workers build their own.
    @param worker_args: the daemon's own flags (what follows
        C{smtpsession} on the command line), given to every worker.
    """

    def __init__(
        self,
        factory: Any,
        endpoints: Iterable[str | IStreamServerEndpoint],
        count: int,
        worker_args: Sequence[str],
        *,
        reactor: Any = None,
    ) -> None:
        super().__init__(factory, endpoints, reactor=reactor)
        if count < 1:
            raise ValueError("a supervisor needs at least one worker")
        self.count = count
        self.worker_args = list(worker_args)
        #: The live workers by number (1..count).
        self.workers: dict[int, _Worker] = {}
        #: The listening sockets' descriptors, by endpoint (the workers' 3, 4...).
        self._fds: dict[int, int] = {}
        self._restarts: dict[int, Any] = {}
        self._deaths: dict[int, int] = {}
        self._stopping = False
        self._output = _LogCopy()

    def _listening_factory(self) -> Any:
        # Never asked for a protocol (the supervisor accepts nothing), and
        # quiet: "Starting factory" here would name a server that is not.
        factory = Factory()
        factory.noisy = False
        return factory

    def _what(self, description: str | IStreamServerEndpoint) -> str:
        return f"{super()._what(description)}, {self.count} workers"

    def _listened(
        self, port: IListeningPort, i: int, d: Deferred[Any], slots: list[IListeningPort | None]
    ) -> None:
        fd = _twisted_shim.stop_accepting(port)
        if fd is None:
            port.stopListening()
            self._listen_failed(
                Failure(ValueError("--workers needs tcp:, tcp6: or unix: endpoints")),
                self._descriptions[i],
                d,
            )
            return
        self._fds[i] = fd
        super()._listened(port, i, d, slots)

    # ------------------------------------------------------------------
    # IService
    # ------------------------------------------------------------------

    def startService(self) -> None:
        if not self._listening:
            self._listen()
        Service.startService(self)
        self._output.attach()
        self._reactor.callWhenRunning(self._start_all)

    def _start_all(self) -> None:
        for number in range(1, self.count + 1):
            self._start(number)

    def stopService(self) -> Deferred[None]:
        """SIGTERM to every worker; fires when all are gone."""
        Service.stopService(self)
        self._stopping = True
        for call in self._restarts.values():
            if call.active():
                call.cancel()
        self._restarts.clear()
        ended = [w.ended for w in self.workers.values()]
        for worker in list(self.workers.values()):
            worker.signal("TERM")
        ports, self.ports = self.ports, []
        for port in ports:
            maybeDeferred(port.stopListening)
        deadline = self.factory.options.close_timeout + KILL_MARGIN
        killer = self._reactor.callLater(deadline, self._kill_stragglers)
        done: Deferred[None] = Deferred()

        def finished(_: object) -> None:
            if killer.active():
                killer.cancel()
            self._output.flush_all(self.workers.values())
            done.callback(None)

        DeferredList(ended, consumeErrors=True).addCallback(finished)
        return done

    def _kill_stragglers(self) -> None:
        for worker in list(self.workers.values()):
            _log.warn(
                "worker {number} (pid {pid}) still running {seconds:g} s after SIGTERM: SIGKILL",
                number=worker.number,
                pid=worker.pid,
                seconds=self.factory.options.close_timeout + KILL_MARGIN,
            )
            worker.signal("KILL")

    # ------------------------------------------------------------------
    # Workers
    # ------------------------------------------------------------------

    def _start(self, number: int) -> None:
        self._restarts.pop(number, None)
        if self._stopping:
            return
        fds = {3 + n: self._fds[i] for n, i in enumerate(sorted(self._fds))}
        args = [sys.executable, "-m", "smtpsession._worker", "--worker", str(number)]
        args += ["--sockets", ",".join(map(str, fds))]
        name = reactor_name(self._reactor)
        if name is not None:
            args += ["--reactor", name]
        args += ["--", *self.worker_args]
        worker = _Worker(number, self._output, self._reactor.seconds())
        self._reactor.spawnProcess(
            worker,
            sys.executable,
            args,
            env=_worker_environment(),
            path=os.getcwd(),
            childFDs={0: "w", 1: "r", 2: "r", **fds},
        )
        self.workers[number] = worker
        worker.ended.addCallback(self._ended, worker)
        _log.info("worker {number} started (pid {pid})", number=number, pid=worker.pid)

    def _ended(self, status: str, worker: _Worker) -> None:
        if self.workers.get(worker.number) is worker:
            del self.workers[worker.number]
        if self._stopping:
            _log.info(
                "worker {number} (pid {pid}) {status}",
                number=worker.number, pid=worker.pid, status=status,
            )
            return
        lived = self._reactor.seconds() - worker.started
        deaths = 0 if lived >= HEALTHY_AFTER else self._deaths.get(worker.number, 0)
        self._deaths[worker.number] = deaths + 1
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2**deaths)
        _log.error(
            "worker {number} (pid {pid}) {status} after {lived:.1f} s; "
            "starting it again in {delay:g} s",
            number=worker.number, pid=worker.pid, status=status, lived=lived, delay=delay,
        )
        self._restarts[worker.number] = self._reactor.callLater(delay, self._start, worker.number)


class _Worker(ProcessProtocol):
    """One worker process: its output copied to the log, its end reported."""

    def __init__(self, number: int, output: _LogCopy, started: float) -> None:
        self.number = number
        self.started = started
        self.pid: int | None = None
        #: Fires with how the process ended ("exited with status 0", ...).
        self.ended: Deferred[str] = Deferred()
        self._output = output
        self._partial = {1: b"", 2: b""}

    def connectionMade(self) -> None:
        transport: Any = self.transport
        self.pid = transport.pid
        # The worker reads nothing: its standard input is at end of file.
        transport.closeStdin()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD not in self._partial:
            return
        data = self._partial[childFD] + data
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) > MAX_LINE:
            cut = len(data)
        self._partial[childFD] = data[cut:]
        if cut:
            self._output.write(self.number, childFD, data[:cut])

    def flush(self) -> None:
        for fd, rest in self._partial.items():
            if rest:
                self._output.write(self.number, fd, rest + b"\n")
        self._partial = {1: b"", 2: b""}

    def signal(self, name: str) -> None:
        transport: Any = self.transport
        try:
            transport.signalProcess(name)
        except Exception:  # already gone
            pass

    def processEnded(self, reason: Failure) -> None:
        self.flush()
        value = reason.value
        code = getattr(value, "exitCode", None)
        sig = getattr(value, "signal", None)
        if sig is not None:
            status = f"killed by {signal.Signals(sig).name}"
        else:
            status = f"exited with status {code or 0}"
        self.ended.callback(status)


class _LogCopy:
    """
    Where the workers' lines go: straight into the supervisor's log file
    when logging is twistd's one text file (the lines are already formatted
    as the file's observer formats them, with the worker's number); as log
    events, one per line, otherwise.  A worker's standard error (a crash
    before its logging began) is always logged as events.
    """

    def __init__(self) -> None:
        self._observer: Any = None
        self._out: Any = None

    def attach(self) -> None:
        found = _twisted_shim.sole_text_log_file()
        if found is not None:
            self._observer, self._out = found

    def write(self, number: int, fd: int, data: bytes) -> None:
        text = data.decode("utf-8", "replace")
        if fd == 1 and self._out is not None and _twisted_shim.still_sole_observer(self._observer):
            self._out.write(text)
            self._out.flush()
            return
        for line in text.splitlines():
            if fd == 1:
                _log.info("{line}", line=line)
            else:
                _log.error("worker {number}: {line}", number=number, line=line)

    def flush_all(self, workers: Iterable[_Worker]) -> None:
        for worker in workers:
            worker.flush()


def _worker_environment() -> dict[str, str]:
    """
    The supervisor's environment, with its module search path: a worker
    imports smtpsession, the handler and what the handler imports from
    where the supervisor did (a handler module found in the current
    directory, a checkout put on the path by its runner).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p or os.curdir for p in sys.path)
    return env


def reactor_name(reactor: Any) -> str | None:
    """The twistd name of C{reactor}'s kind (C{epoll}, C{asyncio}...), for the workers."""
    module = type(reactor).__module__
    kind: Any
    for kind in getReactorTypes():
        if kind.moduleName == module:
            return str(kind.shortName)
    return None
