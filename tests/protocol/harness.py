"""
SMTPServerProtocol on an in-memory transport and a fake clock.

L{FakeServer} builds an L{SMTPServerFactory} on a C{MemoryReactorClock};
L{FakeServer.connect} attaches a protocol to a L{FakeTransport}, a
C{StringTransport} that, like a real one, reports the connection lost on the
next reactor turn after C{loseConnection} (advance the clock to see it).
Nothing here touches a socket or the global reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from smtpsession.factory import SMTPServerFactory
from smtpsession.handler import Handler
from smtpsession.options import SMTPServerOptions
from smtpsession.protocol import SMTPServerProtocol
from tests.unit.coreclient import codes, split_replies

__all__ = ["FakeConnection", "FakeServer", "FakeTransport", "codes", "options"]


def options(**kw: Any) -> SMTPServerOptions:
    """Test options: a fixed name and no DNS, unless overridden."""
    kw.setdefault("name", "mx.example")
    kw.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**kw)


class FakeTransport(StringTransport):
    """
    A StringTransport whose C{loseConnection} ends the connection one clock
    tick later, as a TCP transport does once its buffer is written.
    """

    def __init__(self, clock: MemoryReactorClock, peer: Any, host: Any) -> None:
        super().__init__(hostAddress=host, peerAddress=peer, lenient=True)
        self.clock = clock
        self.protocol: Any = None
        self.aborted = False

    def loseConnection(self) -> None:
        if not self.disconnecting:
            self.disconnecting = True
            self.clock.callLater(0, self.gone, ConnectionDone())

    def abortConnection(self) -> None:
        self.aborted = True
        self.loseConnection()

    def gone(self, reason: Exception | None = None) -> None:
        """The connection is over (closed by us, or by the client)."""
        if self.connected:
            self.connected = False
            self.protocol.connectionLost(Failure(reason or ConnectionLost()))


class FakeConnection:
    """One client connection: write bytes, read back parsed replies."""

    def __init__(self, server: FakeServer, proto: SMTPServerProtocol, transport: FakeTransport):
        self.server = server
        self.proto = proto
        self.transport = transport
        self._read = 0

    @property
    def session(self) -> Any:
        return self.proto.session

    @property
    def producer_state(self) -> str:
        """Whether the server is reading from this client ("producing"/"paused")."""
        return self.transport.producerState

    @property
    def connected(self) -> bool:
        return self.transport.connected

    def replies(self) -> list[str]:
        """Replies written since the last call."""
        data = self.transport.value()
        new = data[self._read :]
        self._read = len(data)
        return split_replies(new)

    def send(self, data: bytes | str) -> list[str]:
        """Deliver C{data} to the server; return the replies it wrote."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.proto.dataReceived(data)
        return self.replies()

    def lines(self, *lines: str) -> list[str]:
        """Send the lines (CRLF-terminated) in one write."""
        return self.send("".join(line + "\r\n" for line in lines))

    def disconnect(self) -> None:
        """The client goes away."""
        self.transport.gone(ConnectionLost())

    def advance(self, seconds: float = 0) -> list[str]:
        """Let time pass; return replies written meanwhile."""
        self.server.clock.advance(seconds)
        return self.replies()


class FakeServer:
    """A factory on a fake clock, and the connections made to it."""

    def __init__(
        self,
        handler: object | None = None,
        opts: SMTPServerOptions | None = None,
        **option_values: Any,
    ) -> None:
        self.clock = MemoryReactorClock()
        if opts is None:
            opts = options(**option_values)
        self.handler = handler if handler is not None else Handler()
        self.factory = SMTPServerFactory(self.handler, opts, reactor=self.clock)

    def connect(
        self, peer: str = "192.0.2.1", port: int = 40000, *, read_greeting: bool = True
    ) -> FakeConnection:
        """Open a connection; by default the greeting is read and checked."""
        cls = IPv6Address if ":" in peer else IPv4Address
        peer_address = cls("TCP", peer, port)
        host_address = cls("TCP", "::1" if ":" in peer else "192.0.2.25", 25)
        proto = self.factory.buildProtocol(peer_address)
        transport = FakeTransport(self.clock, peer_address, host_address)
        transport.protocol = proto
        proto.makeConnection(transport)
        conn = FakeConnection(self, proto, transport)
        if read_greeting:
            [greeting] = conn.replies()
            assert greeting.startswith("220 "), greeting
        return conn
