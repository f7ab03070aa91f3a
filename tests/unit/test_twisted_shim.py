"""
The Twisted internals smtpsession relies on (smtpsession._twisted_shim)
are still there and behave as assumed.  When a Twisted release changes
them, these tests fail loudly: smtpsession would then fall back to the
public (slower) ways, and the benchmark figures would no longer hold.
"""

from __future__ import annotations

import ast
import socket
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import tcp
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOProtocol

from smtpsession import _twisted_shim as shim

PACKAGE = Path(__file__).resolve().parents[2] / "smtpsession"


class TestTCPServerInternals:
    """What send_directly and set_read_size read and write on tcp.Server."""

    def test_write_queue_attributes(self) -> None:
        server = tcp.Server.__new__(tcp.Server)
        # Connection.__init__ sets these; their names are what we read.
        tcp.Connection.__init__(server, socket.socket(), None, reactor=None)  # type: ignore[arg-type]
        try:
            assert server.dataBuffer == b""
            assert server._tempDataBuffer == []
            assert hasattr(server, "socket")
            assert callable(server.doWrite)
            assert isinstance(tcp.Server.bufferSize, int)
        finally:
            server.socket.close()

    def test_can_send_directly_only_on_plain_tcp(self) -> None:
        server = tcp.Server.__new__(tcp.Server)
        tcp.Connection.__init__(server, socket.socket(), None, reactor=None)  # type: ignore[arg-type]
        try:
            assert shim.can_send_directly(server)
            server.TLS = True
            assert not shim.can_send_directly(server)
        finally:
            server.socket.close()
        assert not shim.can_send_directly(object())


class FakeTCP:
    """A tcp.Server as send_directly sees it, over a real socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.dataBuffer = b""
        self._tempDataBuffer: list[bytes] = []
        self.connected = True
        self.disconnecting = False
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_send_directly_uses_the_socket_when_the_queue_is_empty() -> None:
    a, b = socket.socketpair()
    try:
        t = FakeTCP(a)
        shim.send_directly(t, b"250 OK\r\n")
        assert b.recv(100) == b"250 OK\r\n"
        assert t.written == []
        # Something queued: the reply must not overtake it.
        t._tempDataBuffer.append(b"earlier")
        shim.send_directly(t, b"250 later\r\n")
        assert t.written == [b"250 later\r\n"]
    finally:
        a.close()
        b.close()


def test_tls_writer_uses_the_unbuffered_write() -> None:
    """
    TLSMemoryBIOProtocol.write is the unbuffered write; the TLS transport
    Twisted hands out (BufferingTLSTransport) aggregates small writes for a
    reactor turn, which is what tls_writer goes around.
    """
    assert "write" in vars(TLSMemoryBIOProtocol)
    assert issubclass(BufferingTLSTransport, TLSMemoryBIOProtocol)
    assert "_aggregator" in BufferingTLSTransport.__annotations__
    assert shim.tls_writer(object()) is None


def test_set_read_size_sets_the_recv_size() -> None:
    class T:
        bufferSize = 65536

    t: Any = T()
    shim.set_read_size(t, 262144)
    assert t.bufferSize == 262144


def test_tcp_listen_address_reads_what_serverfromstring_parsed() -> None:
    """The port and interface of parsed TCP endpoints (the daemon probes them
    before twistd forks); other endpoints have none."""
    from twisted.internet.endpoints import serverFromString
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    assert shim.tcp_listen_address(serverFromString(reactor, "tcp:2525")) == ("", 2525, False)
    assert shim.tcp_listen_address(
        serverFromString(reactor, "tcp:port=26:interface=127.0.0.1")
    ) == ("127.0.0.1", 26, False)
    assert shim.tcp_listen_address(
        serverFromString(reactor, r"tcp6:25:interface=\:\:1")
    ) == ("::1", 25, True)
    assert shim.tcp_listen_address(serverFromString(reactor, "unix:/nonexistent/sock")) is None


def test_no_other_module_touches_twisted_internals() -> None:
    """
    Outside the shim, no module reads a private attribute of a Twisted
    object or imports a private Twisted module.
    """
    private_attrs = {
        "_tempDataBuffer", "dataBuffer", "doWrite", "bufferSize", "_connection", "_port", "_interface",
    }  # fmt: skip
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_twisted_shim.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in private_attrs:
                offenders.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("twisted"):
                if any(part.startswith("_") for part in node.module.split(".")):
                    offenders.append(f"{path.name}:{node.lineno} from {node.module}")
    assert offenders == []


@pytest.mark.parametrize("name", shim.__all__)
def test_the_shim_says_what_it_touches(name: str) -> None:
    assert getattr(shim, name).__doc__


def test_stop_accepting_keeps_a_listening_socket_open_and_unread() -> None:
    """--workers: the supervisor opens each port as its endpoint says, then
    hands the socket to its workers and never accepts on it itself."""
    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    port = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=reactor)  # type: ignore[arg-type]
    port.startListening()
    try:
        assert port in reactor.getReaders()
        fd = shim.stop_accepting(port)
        assert fd == port.socket.fileno()
        assert port not in reactor.getReaders()
        # Still listening: a client is queued for whoever accepts.
        with socket.create_connection(port.socket.getsockname(), timeout=5):
            pass
    finally:
        port.socket.close()
    assert shim.stop_accepting(object()) is None


def test_closing_a_port_that_stopped_accepting_leaves_the_shared_socket_listening() -> None:
    """The supervisor of --workers closes its copy of each listening socket
    at shutdown; Twisted's Port would shutdown() it first, which stops it
    listening in the workers too (their accept fails with EINVAL).  After
    stop_accepting, closing the port leaves a shared copy listening."""
    import os

    from twisted.internet.protocol import Factory
    from twisted.internet.testing import MemoryReactor

    reactor = MemoryReactor()
    port = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=reactor)  # type: ignore[arg-type]
    port.startListening()
    assert tcp.Port._shouldShutdown is True  # the internal attribute the shim sets
    address = port.socket.getsockname()
    shared = socket.socket(fileno=os.dup(port.fileno()))  # a worker's copy
    try:
        shim.stop_accepting(port)
        port.connectionLost(None)  # what stopListening ends in
        with socket.create_connection(address, timeout=5):
            conn, _ = shared.accept()  # EINVAL if the socket had been shut down
            conn.close()
    finally:
        shared.close()


class TestDispatchWithoutLogContext:
    """The daemon's epoll reactor calls each ready socket's doRead/doWrite
    without twisted.python.log.callWithLogger around it."""

    def test_doPoll_still_dispatches_as_the_shim_replaces(self) -> None:
        """The loop the shim replaces is the one it was written against: a
        Twisted release that changes EPollReactor.doPoll fails here, so
        that someone reads the new one before the shim hides it."""
        import inspect

        from twisted.internet.epollreactor import EPollReactor

        source = inspect.getsource(EPollReactor.doPoll)
        assert shim.EPOLL_DISPATCH in source
        assert "self._poller.poll(timeout, len(self._selectables))" in source
        assert "_drdw = self._doReadOrWrite" in source
        assert EPollReactor.doIteration is EPollReactor.doPoll

    def _reactor(self) -> Any:
        from twisted.internet.epollreactor import EPollReactor

        return EPollReactor()

    def test_reads_writes_and_disconnects_are_dispatched(self) -> None:
        from twisted.internet.abstract import FileDescriptor

        reactor = self._reactor()
        assert shim.dispatch_without_log_context(reactor)
        ours, theirs = socket.socketpair()
        events: list[object] = []

        class Reader(FileDescriptor):
            def fileno(self) -> int:
                return ours.fileno()

            def doRead(self) -> None:
                events.append(ours.recv(100))

            def connectionLost(self, reason: Any) -> None:
                events.append("lost")

        reader = Reader(reactor)
        try:
            reactor.addReader(reader)
            theirs.send(b"hello")
            reactor.doIteration(0)
            assert events == [b"hello"]
            reactor.doIteration(0)  # nothing ready: nothing called
            assert events == [b"hello"]
            theirs.close()
            reader.doRead = lambda: "gone"  # type: ignore[method-assign]
            reactor.doIteration(0)  # a reason from doRead: disconnected
            assert events == [b"hello", "lost"]
            assert reader not in reactor.getReaders()
        finally:
            ours.close()
            theirs.close()
            reactor._poller.close()

    def test_an_exception_from_the_dispatch_is_logged_not_raised(self) -> None:
        """callWithLogger logged and swallowed what escaped _doReadOrWrite
        (an exception from connectionLost, say); so does the shim."""
        from twisted.logger import globalLogPublisher

        def broken_dispatch(selectable: Any, fd: int, event: int) -> None:
            raise RuntimeError("boom")

        reactor = self._reactor()
        reactor._doReadOrWrite = broken_dispatch
        shim.dispatch_without_log_context(reactor)
        ours, theirs = socket.socketpair()
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        try:
            reactor._selectables[ours.fileno()] = object()
            reactor._poller.register(ours.fileno(), 1)  # EPOLLIN
            theirs.send(b"x")
            reactor.doIteration(0)
        finally:
            globalLogPublisher.removeObserver(logged.append)
            ours.close()
            theirs.close()
            reactor._poller.close()
        failures = [e for e in logged if "log_failure" in e]
        assert len(failures) == 1
        assert failures[0]["log_failure"].check(RuntimeError)

    def test_other_reactors_are_left_alone(self) -> None:
        from twisted.internet.selectreactor import SelectReactor
        from twisted.internet.testing import MemoryReactor

        assert not shim.dispatch_without_log_context(MemoryReactor())
        select = SelectReactor()
        assert not shim.dispatch_without_log_context(select)
        assert "doIteration" not in vars(select)

    def test_applying_twice_changes_nothing(self) -> None:
        reactor = self._reactor()
        assert shim.dispatch_without_log_context(reactor)
        first = reactor.doIteration
        assert shim.dispatch_without_log_context(reactor)
        assert reactor.doIteration is first
        reactor._poller.close()
