"""
C{factory.close()} as API.md "Shutdown" describes: idle sessions get
C{421 4.4.2 Server shutting down} at once, transactions in progress may
finish until the timeout, then everyone gets 421; new connections are
refused; the Deferred fires when the last connection is gone.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from smtpsession import Handler
from tests.protocol.harness import FakeServer, codes

SHUTTING_DOWN = "421 4.4.2 Server shutting down"


class Closes(Handler):
    def __init__(self) -> None:
        self.closed: list[Any] = []

    def on_close(self, session: Any) -> Any:
        self.closed.append(session)


def test_close_without_connections_fires_at_once() -> None:
    """Nothing to drain: the Deferred has already fired."""
    d = FakeServer().factory.close()
    assert d.called


def test_idle_sessions_told_at_once() -> None:
    """Sessions without a transaction get 421 now; the Deferred fires once they are gone."""
    handler = Closes()
    server = FakeServer(handler)
    greeted = server.connect()
    greeted.lines("EHLO c")
    fresh = server.connect()
    d = server.factory.close()
    assert greeted.replies() == [SHUTTING_DOWN]
    assert fresh.replies() == ["421 Server shutting down"]
    assert not d.called
    server.clock.advance(0)
    assert not greeted.connected and not fresh.connected
    assert d.called
    assert len(handler.closed) == 2


def test_transaction_in_progress_may_finish() -> None:
    """A session inside a transaction may complete it, then gets 421 after its final reply."""
    server = FakeServer(close_timeout=30)
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    d = server.factory.close()
    assert c.replies() == []
    assert codes(c.lines("RCPT TO:<b@example.com>", "NOOP", "DATA")) == [250, 250, 354]
    assert c.send(b"hello\r\n.\r\n") == ["250 2.6.0 OK: message queued", SHUTTING_DOWN]
    c.advance(0)
    assert not c.connected
    assert d.called


def test_new_commands_refused_during_shutdown() -> None:
    """During the drain, a command that does not finish the transaction gets 421."""
    server = FakeServer()
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    server.factory.close()
    assert c.lines("MAIL FROM:<b@example.com>") == [SHUTTING_DOWN]


def test_body_in_progress_may_finish() -> None:
    """A message in the middle of DATA completes and is accepted."""
    bodies: list[bytes] = []

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            bodies.append(await stream.read())

    server = FakeServer(H())
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    c.send(b"first half ")
    server.factory.close()
    assert c.send(b"second half\r\n.\r\n") == ["250 2.6.0 OK: message queued", SHUTTING_DOWN]
    assert bodies == [b"first half second half\r\n"]


def test_grace_period_then_everyone_closed() -> None:
    """After close_timeout, remaining sessions get 421 and the Deferred fires."""
    handler = Closes()
    server = FakeServer(handler, close_timeout=10)
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    d = server.factory.close()
    assert c.advance(9) == []
    assert not d.called
    assert c.advance(1) == [SHUTTING_DOWN]
    c.advance(0)
    assert not c.connected
    assert d.called
    assert handler.closed == [c.session]


def test_explicit_timeout_overrides_close_timeout() -> None:
    """close(timeout=...) replaces the option for this shutdown."""
    server = FakeServer(close_timeout=100)
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    d = server.factory.close(timeout=2)
    assert c.advance(2) == [SHUTTING_DOWN]
    c.advance(0)
    assert d.called


def test_grace_period_over_while_a_hook_is_pending() -> None:
    """A hook still pending at the deadline: 421; its late answer is ignored, not an error."""
    pending: list[Deferred[None]] = []

    class H(Handler):
        def on_rcpt_to(self, address: Any, session: Any) -> Any:
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

    server = FakeServer(H(), close_timeout=5)
    c = server.connect()
    # The client does not read, so the socket lingers after our 421.
    c.transport.loseConnection = lambda: setattr(c.transport, "disconnecting", True)  # type: ignore[method-assign]
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    d = server.factory.close()
    assert c.advance(5) == [SHUTTING_DOWN]
    errors: list[Any] = []
    pending[0].callback(None)
    pending[0].addErrback(errors.append)
    assert errors == []
    assert c.replies() == []
    c.advance(5)
    assert c.transport.aborted
    c.transport.gone()
    assert d.called


def test_hook_pending_when_shutdown_starts() -> None:
    """Shutdown while a MAIL hook is pending: its answer decides (refused → 421 follows)."""
    pending: list[Deferred[Any]] = []

    class H(Handler):
        def on_mail_from(self, address: Any, session: Any) -> Any:
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d

    server = FakeServer(H())
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    server.factory.close()
    assert c.replies() == []
    pending[0].callback(False)
    assert c.replies() == ["550 5.7.1 Error: sender rejected", SHUTTING_DOWN]


def test_new_connections_refused() -> None:
    """Connections arriving during the drain are refused with 421 and never reach on_close."""
    handler = Closes()
    server = FakeServer(handler)
    busy = server.connect()
    busy.lines("EHLO c", "MAIL FROM:<a@example.com>")
    server.factory.close()
    late = server.connect(read_greeting=False)
    assert late.replies() == ["421 mx.example Server shutting down"]
    late.advance(0)
    assert not late.connected
    assert handler.closed == []


def test_close_twice() -> None:
    """Both Deferreds fire when the drain ends."""
    server = FakeServer()
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    d1 = server.factory.close()
    d2 = server.factory.close()
    c.disconnect()
    assert d1.called and d2.called
