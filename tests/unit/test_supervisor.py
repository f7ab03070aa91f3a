"""
The supervisor of C{--workers} (smtpsession._supervisor) on a fake
reactor: restarts with backoff, the drain on stop, SIGKILL for a worker
that does not stop, and the workers' output copied a whole line at a time.
The real processes are in tests/integration/test_workers.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure

from smtpsession import SMTPServerFactory, SMTPServerOptions
from smtpsession._supervisor import BACKOFF_MAX, KILL_MARGIN, WorkerSupervisor, _Worker
from smtpsession.handlers import SinkHandler


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.stdin_closed = False

    def closeStdin(self) -> None:
        self.stdin_closed = True

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class ProcessReactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[_Worker, FakeProcess, list[str], dict[int, Any]]] = []

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any = None,
                     path: Any = None, uid: Any = None, gid: Any = None, usePTY: Any = 0,
                     childFDs: Any = None) -> FakeProcess:  # fmt: skip
        process = FakeProcess(1000 + len(self.spawned))
        protocol.makeConnection(process)
        self.spawned.append((protocol, process, args, childFDs))
        return process


def supervisor(count: int = 2) -> tuple[WorkerSupervisor, ProcessReactor]:
    reactor = ProcessReactor()
    factory = SMTPServerFactory(SinkHandler(), SMTPServerOptions(close_timeout=5), reactor=reactor)
    s = WorkerSupervisor(factory, ["tcp:0"], count, ["--handler", "sink"], reactor=reactor)
    s._fds = {0: 7}  # as if listening on a socket with descriptor 7
    s._listening = True
    s.startService()
    reactor.run()  # callWhenRunning: the workers start
    return s, reactor


def die(worker: _Worker, code: int | None = 1, signal: int | None = None) -> None:
    if code == 0 and signal is None:
        worker.processEnded(Failure(ProcessDone(0)))
    else:
        worker.processEnded(Failure(ProcessTerminated(code, signal)))


def test_workers_get_the_sockets_and_the_flags() -> None:
    s, reactor = supervisor(2)
    assert len(reactor.spawned) == 2
    _, process, args, fds = reactor.spawned[0]
    assert fds == {0: "w", 1: "r", 2: "r", 3: 7}
    assert args[args.index("--worker") + 1] == "1"
    assert args[args.index("--sockets") + 1] == "3"
    assert args[-2:] == ["--handler", "sink"]
    assert process.stdin_closed
    assert set(s.workers) == {1, 2}


def test_a_dead_worker_is_restarted_with_backoff() -> None:
    s, reactor = supervisor(2)
    waits = []
    for _ in range(9):
        die(s.workers[1], signal=9)
        assert 1 not in s.workers
        [restart] = [c for c in reactor.getDelayedCalls() if c.func == s._start]
        waits.append(restart.getTime() - reactor.seconds())
        spawned = len(reactor.spawned)
        reactor.advance(waits[-1])
        assert len(reactor.spawned) == spawned + 1
    assert waits == [0.25, 0.5, 1, 2, 4, 8, 16, BACKOFF_MAX, BACKOFF_MAX]
    # A worker that ran for a minute died "for the first time" again.
    reactor.advance(61)
    spawned = len(reactor.spawned)
    die(s.workers[1])
    reactor.advance(0.3)
    assert len(reactor.spawned) == spawned + 1
    assert 2 in s.workers  # the other one was never touched


def test_stop_drains_the_workers_and_kills_stragglers() -> None:
    s, reactor = supervisor(2)
    one, two = s.workers[1], s.workers[2]
    done = s.stopService()
    fired: list[object] = []
    done.addCallback(fired.append)
    for worker in (one, two):
        assert worker.transport.signals == ["TERM"]  # type: ignore[union-attr]
    die(one, 0)
    reactor.advance(1)
    assert reactor.spawned[-1][0] is two  # no restart while stopping
    assert not fired
    reactor.advance(5 + KILL_MARGIN)
    assert two.transport.signals == ["TERM", "KILL"]  # type: ignore[union-attr]
    die(two, None, 9)
    assert fired == [None]


@pytest.mark.parametrize("pieces", [[b"a li", b"ne\nand ", b"another\n"], [b"a line\nand another\n"]])
def test_output_is_copied_a_whole_line_at_a_time(pieces: list[bytes]) -> None:
    written: list[tuple[int, int, bytes]] = []

    class Output:
        def write(self, number: int, fd: int, data: bytes) -> None:
            written.append((number, fd, data))

    worker = _Worker(4, Output(), 0.0)  # type: ignore[arg-type]
    for piece in pieces:
        worker.childDataReceived(1, piece)
    assert b"".join(d for _, _, d in written) == b"a line\nand another\n"
    assert all(d.endswith(b"\n") for _, _, d in written)
    worker.childDataReceived(2, b"Traceback without an end")
    worker.flush()
    assert written[-1] == (4, 2, b"Traceback without an end\n")
