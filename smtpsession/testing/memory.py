# -*- test-case-name: tests.protocol.test_memory_harness -*-
"""
Test a handler (and its filters) against a real smtpsession server with
no threads and no sockets: the server runs on a fake clock
(C{MemoryReactorClock}) and each client is an in-memory transport.  What
C{treq.testing.StubTreq} is for web clients, this is for SMTP handlers.

    from smtpsession.testing.memory import MemoryServer

    def test_unknown_users_are_refused():
        server = MemoryServer(Inbox())
        client = server.connect()
        client.ehlo()
        assert client.lines("MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.com>") == [
            "250 2.1.0 Accepted",
            "550 5.1.1 No such user here",
        ]

Replies come back as strings, one per reply (a multi-line reply has its
lines joined by ``\\n``).  Time passes only when you say so
(C{client.advance(60)}), so timeouts are tested in microseconds.  Hooks
that return Deferreds or coroutines work as in production; a Deferred the
test holds fires when the test fires it.

Unlike L{smtpsession.testing.serve} (a real server in a thread, for
end-to-end tests with real clients), nothing here touches the network or
the global reactor, so it is fast and deterministic, and works under any
test runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from smtpsession.factory import SMTPServerFactory
from smtpsession.handler import Handler
from smtpsession.options import SMTPServerOptions
from smtpsession.protocol import SMTPServerProtocol

__all__ = ["MemoryServer", "MemoryClient", "MemoryTransport", "codes", "split_replies", "options"]


def options(**values: Any) -> SMTPServerOptions:
    """Options for tests: a fixed name (C{mx.example}) and no DNS, unless given."""
    values.setdefault("name", "mx.example")
    values.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**values)


def split_replies(data: bytes) -> list[str]:
    """
    Group reply lines into whole replies (a multi-line reply becomes one
    string with ``\\n`` between its lines).  Every line must be a
    well-formed reply line (three digits, then a space or a hyphen, CRLF):
    anything else fails an assertion.
    """
    out: list[str] = []
    current: list[str] = []
    text = data.decode("utf-8")
    assert text == "" or text.endswith("\r\n"), f"reply not CRLF-terminated: {text!r}"
    for line in text.split("\r\n")[:-1]:
        assert "\r" not in line and "\n" not in line, line
        assert len(line) >= 3 and line[:3].isdigit(), f"malformed reply line {line!r}"
        assert line[3:4] in ("", " ", "-"), f"malformed reply line {line!r}"
        current.append(line)
        if line[3:4] != "-":
            out.append("\n".join(current))
            current = []
    assert not current, f"unterminated multi-line reply {current!r}"
    return out


def codes(replies: Sequence[str]) -> list[int]:
    """The reply code of each reply."""
    return [int(r[:3]) for r in replies]


class MemoryTransport(StringTransport):
    """
    A C{StringTransport} whose C{loseConnection} ends the connection one
    clock tick later, as a TCP transport does once its buffer is written.
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
        """The connection is over (closed by the server, or by the client)."""
        if self.connected:
            self.connected = False
            self.protocol.connectionLost(Failure(reason or ConnectionLost()))


class MemoryClient:
    """One client connection: write bytes or lines, read back the replies."""

    def __init__(
        self, server: MemoryServer, proto: SMTPServerProtocol, transport: MemoryTransport
    ) -> None:
        self.server = server
        self.proto = proto
        self.transport = transport
        self._read = 0

    @property
    def session(self) -> Any:
        """The server's L{smtpsession.Session} for this connection."""
        return self.proto.session

    @property
    def producer_state(self) -> str:
        """Whether the server reads from this client: C{"producing"} or C{"paused"}."""
        return self.transport.producerState

    @property
    def connected(self) -> bool:
        return bool(self.transport.connected)

    def replies(self) -> list[str]:
        """The replies written since the last call."""
        data = self.transport.value()
        new = data[self._read :]
        self._read = len(data)
        return split_replies(new)

    def send(self, data: bytes | str) -> list[str]:
        """Deliver C{data} to the server as one read; the replies it wrote."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.proto.dataReceived(data)
        return self.replies()

    def lines(self, *lines: str) -> list[str]:
        """Send the lines, each ended by CRLF, in one read; the replies."""
        return self.send("".join(line + "\r\n" for line in lines))

    def ehlo(self, name: str = "client.example") -> list[str]:
        """EHLO (LHLO on an LMTP server); the capability keywords advertised."""
        verb = "LHLO" if self.server.factory.options.lmtp else "EHLO"
        [reply] = self.lines(f"{verb} {name}")
        assert codes([reply]) == [250], reply
        return [line[4:] for line in reply.split("\n")[1:]]

    def send_message(
        self,
        sender: str = "a@example.com",
        recipients: Sequence[str] = ("b@example.com",),
        body: bytes = b"Subject: test\r\n\r\nHello\r\n",
    ) -> list[str]:
        """
        A whole transaction in one read (MAIL, RCPT..., DATA, the body
        dot-stuffed, the final dot); its replies, the hooks' answers
        included (advance the clock or fire Deferreds for pending ones).
        """
        head = "".join(
            [f"MAIL FROM:<{sender}>\r\n"]
            + [f"RCPT TO:<{r}>\r\n" for r in recipients]
            + ["DATA\r\n"]
        ).encode("utf-8")
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        if not stuffed.endswith(b"\r\n"):
            stuffed += b"\r\n"
        return self.send(head + stuffed + b".\r\n")

    def disconnect(self) -> None:
        """The client goes away."""
        self.transport.gone(ConnectionLost())

    def advance(self, seconds: float = 0) -> list[str]:
        """Let time pass on the server's clock; the replies written meanwhile."""
        self.server.clock.advance(seconds)
        return self.replies()


class MemoryServer:
    """
    A server on a fake clock, and the clients connected to it.

    @param handler: what L{SMTPServerFactory} takes (default: L{Handler},
        which accepts everything).
    @param opts: the options; or give them as keywords (C{size=1000}),
        on top of L{options}' test defaults.
    @param filters: the hook pipeline's filters.
    """

    def __init__(
        self,
        handler: object | None = None,
        opts: SMTPServerOptions | None = None,
        *,
        filters: Sequence[object] = (),
        **option_values: Any,
    ) -> None:
        self.clock = MemoryReactorClock()
        if opts is None:
            opts = options(**option_values)
        self.handler = handler if handler is not None else Handler()
        self.factory = SMTPServerFactory(self.handler, opts, reactor=self.clock, filters=filters)

    def connect(
        self, peer: str = "192.0.2.1", port: int = 40000, *, read_greeting: bool = True
    ) -> MemoryClient:
        """A new client from C{peer}; by default its 220 greeting is read and checked."""
        cls = IPv6Address if ":" in peer else IPv4Address
        peer_address = cls("TCP", peer, port)
        host_address = cls("TCP", "::1" if ":" in peer else "192.0.2.25", 25)
        proto = self.factory.buildProtocol(peer_address)
        transport = MemoryTransport(self.clock, peer_address, host_address)
        transport.protocol = proto
        proto.makeConnection(transport)
        client = MemoryClient(self, proto, transport)
        if read_greeting:
            [greeting] = client.replies()
            assert codes([greeting]) == [220], greeting
        return client

    def advance(self, seconds: float = 0) -> None:
        """Let time pass on the server's clock."""
        self.clock.advance(seconds)
