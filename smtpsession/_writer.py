# -*- test-case-name: tests.unit.test_turn_sender,tests.regressions.test_turn_sender -*-
"""
Where a connection's replies go: L{ReplyWriter}, one per connection, and
L{TurnSender}, one per reactor, which sends the replies of a reactor turn
together.

A reply leaves by one of three ways:

  - on a plain TCP connection, it waits for the end of the reactor turn
    (L{TurnSender}) and then goes straight to the socket
    (L{smtpsession._twisted_shim.send_directly});
  - on a connection Twisted's TLS layer encrypts, it goes through that
    layer's unbuffered write (L{smtpsession._twisted_shim.tls_writer});
  - anywhere else (a UNIX socket, a test transport), C{transport.write}.

smtpsession's own TLS layer encrypts before the writer sees the bytes, so
its ciphertext takes the first way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from smtpsession._twisted_shim import can_send_directly, send_directly, tls_writer

__all__ = ["ReplyWriter", "TurnSender"]


class TurnSender:
    """
    Sends the replies of one reactor turn together, once the turn has
    handled every socket that was ready.

    Why: when the client is on the same host (a proxy in front of us, a
    local MTA delivering over LMTP, a load generator), the kernel delivers
    a reply inside our C{send} and wakes the client there, on our system
    time.  A reply sent the moment it is made usually finds the client
    asleep (it has long dealt with the previous one): under 50 busy
    sessions on loopback that cost about 7 us of a 1 KB message's 60.  Sent
    at the end of the turn, the replies to every client served in that turn
    go out back to back and mostly find their reader awake.  The wait is
    what that turn still had to do, never a timer: the flush is the first
    thing the reactor runs after the sockets (C{callLater(0)}), the way
    Redis writes its replies just before it polls again.

    With a single busy client there is nothing to send along, and the
    C{callLater} per turn would cost a tenth of its messages per second:
    replies then go out at once.  Holding back starts again when a second
    connection writes, and stops after L{_ALONE} turns that had only one.
    """

    __slots__ = ("_reactor", "_due", "_call", "_holding", "_alone", "_last")

    log = Logger()

    #: Turns in a row with one connection's replies before we stop holding.
    _ALONE = 8

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._due: list[ReplyWriter] = []
        self._call: Any = None
        self._holding = False
        self._alone = 0
        self._last: object = None  # the writer that sent last, while not holding

    def add(self, writer: ReplyWriter) -> None:
        if not self._holding:
            if writer is self._last:
                writer.flush()
                return
            self._holding = True  # a second client: hold back from here
            self._alone = 0
            self._last = None
        self._due.append(writer)
        if self._call is None:
            self._call = self._reactor.callLater(0, self._run)

    def forget(self, writer: ReplyWriter) -> None:
        """A connection is gone: keep no reference to it."""
        if self._last is writer:
            self._last = None

    def _run(self) -> None:
        self._call = None
        due, self._due = self._due, []
        if len(due) == 1:
            self._alone += 1
            if self._alone >= self._ALONE:
                self._holding = False
                self._last = due[0]
        else:
            self._alone = 0
        for writer in due:
            try:
                writer.flush()
            except Exception:
                # Not one client's broken socket for everyone's replies.
                self.log.failure("Could not send replies")
                writer.abort()


class ReplyWriter:
    """
    The way out of one connection (see the module docstring).  The
    protocol writes whole batches of replies; this decides how they leave.
    """

    __slots__ = ("_transport", "_sender", "_pending", "_tls_write", "_lost")

    def __init__(self, transport: Any, senders: Callable[[Any], TurnSender]) -> None:
        self._transport = transport
        #: The reactor turn's sender, on a plain TCP socket; else None.
        self._sender: TurnSender | None = None
        if can_send_directly(transport):
            self._sender = senders(transport.reactor)
        self._pending = b""  # replies waiting for the end of the turn
        self._tls_write: Callable[[bytes], None] | None = None
        self._lost = False

    def write(self, data: bytes) -> None:
        """Send C{data} (plaintext, or ciphertext of our own TLS layer)."""
        tls_write = self._tls_write
        if tls_write is not None:
            tls_write(data)
            return
        sender = self._sender
        if sender is not None:
            if self._pending:
                self._pending += data
            else:
                self._pending = data
                sender.add(self)
            return
        self._transport.write(data)

    def flush(self) -> None:
        """Send what L{write} kept back for the end of the turn, now."""
        data = self._pending
        if not data:
            return
        self._pending = b""
        if not self._lost:
            send_directly(self._transport, data)

    def twisted_tls_started(self) -> None:
        """
        Twisted's TLS layer is about to wrap the transport: what is still
        held back (the 220 to STARTTLS) goes out in the clear first, and
        from now on writes go through the layer.
        """
        self.flush()
        self._sender = None

    def twisted_tls_established(self, transport: Any) -> None:
        """The handshake through Twisted's TLS layer is done: use its fast write."""
        self._tls_write = tls_writer(transport)

    @property
    def direct(self) -> bool:
        """Whether replies go straight to a TCP socket (see L{TurnSender})."""
        return self._sender is not None

    def abort(self) -> None:
        if not self._lost:
            self._transport.abortConnection()

    def lost(self) -> None:
        """The connection is gone: send nothing more, hold no reference."""
        self._lost = True
        self._pending = b""
        if self._sender is not None:
            self._sender.forget(self)
