"""
hook_timeout: a hook (with the filters in front of it) that does not answer
in time is cancelled, the client gets 451 4.3.0 (once per recipient in
LMTP; 421 and close for on_connect) and the session goes on.  No handler
can hold a connection for ever.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred

from smtpsession import Handler
from tests.protocol.harness import FakeServer, codes

TIMED_OUT = "451 4.3.0 Error: timed out, try again later"


class Stuck(Handler):
    """Every hook it has waits on a Deferred the test holds (and may never fire)."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []
        self.cancelled: list[str] = []

    def _wait(self, name: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.addErrback(lambda f: self.cancelled.append(name) if f.check(CancelledError) else f)
        self.pending.append(d)
        return d

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        if address.address.startswith("stuck"):
            return self._wait("rcpt")
        return None


def test_a_deferred_that_never_fires() -> None:
    handler = Stuck()
    c = FakeServer(handler, hook_timeout=10).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>")
    assert c.lines("RCPT TO:<stuck@example.com>", "RCPT TO:<b@example.com>") == []
    assert c.producer_state == "paused"
    assert c.advance(9.9) == []
    assert c.advance(0.2) == [TIMED_OUT, "250 2.1.5 Accepted"]
    assert handler.cancelled == ["rcpt"]
    assert c.producer_state == "producing"
    assert [a.address for a in c.session.envelope.rcpt_to] == ["b@example.com"]


def test_a_coroutine_is_cancelled_where_it_waits() -> None:
    seen = []

    class Slow(Handler):
        async def on_mail_from(self, address: Any, session: Any) -> None:
            try:
                await Deferred()
            except CancelledError:
                seen.append("cancelled")
                raise

    c = FakeServer(Slow(), hook_timeout=3).connect()
    c.lines("EHLO c")
    assert c.lines("MAIL FROM:<a@example.org>") == []
    assert c.advance(3.1) == [TIMED_OUT]
    assert seen == ["cancelled"]
    assert c.lines("NOOP") == ["250 2.0.0 OK"]


def test_a_late_answer_goes_nowhere() -> None:
    """A hook that shrugs off the cancellation and answers later: its answer is ignored."""
    gate: Deferred[None] = Deferred()

    class Stubborn(Handler):
        async def on_mail_from(self, address: Any, session: Any) -> None:
            try:
                await Deferred()
            except CancelledError:
                pass
            await gate

    c = FakeServer(Stubborn(), hook_timeout=1).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>")
    assert c.advance(1.1) == [TIMED_OUT]
    gate.callback(None)
    assert c.replies() == []
    assert c.session.envelope.mail_from is None
    assert c.lines("NOOP") == ["250 2.0.0 OK"]


def test_on_data_gets_its_time_from_the_end_of_the_body() -> None:
    """The deadline starts when the body has arrived, however long that took."""

    class Reader(Handler):
        async def on_data(self, stream: Any, session: Any) -> None:
            async for _ in stream:
                pass
            await Deferred()

    c = FakeServer(Reader(), hook_timeout=5, socket_timeout=60).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<b@example.com>", "DATA")
    for _ in range(4):
        c.advance(4)  # a slow client: the body takes 16 s
        c.send(b"line\r\n")
    assert c.send(b".\r\n") == []
    assert c.advance(4.9) == []
    assert c.advance(0.2) == [TIMED_OUT]
    assert c.session.transaction == 2
    assert c.lines("QUIT") == ["221 2.0.0 Bye"]


def test_lmtp_on_data_times_out_once_per_recipient() -> None:
    class Never(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return Deferred()

    c = FakeServer(Never(), lmtp=True, hook_timeout=2).connect()
    c.lines("LHLO c")
    c.send_message(recipients=["x@example.com", "y@example.com"])
    assert c.advance(2.1) == [TIMED_OUT, TIMED_OUT]


def test_on_connect_that_never_answers_gets_421() -> None:
    class Never(Handler):
        def on_connect(self, session: Any) -> Any:
            return Deferred()

    server = FakeServer(Never(), hook_timeout=4)
    c = server.connect(read_greeting=False)
    assert c.advance(3.9) == []
    assert c.advance(0.2) == ["421 mx.example Error: timed out, closing connection"]
    c.advance(0)
    assert not c.connected


def test_a_client_that_talks_while_on_connect_is_pending_is_still_refused() -> None:
    """on_connect does not stop the reading: an early talker is caught at once."""

    class Never(Handler):
        def on_connect(self, session: Any) -> Any:
            return Deferred()

    c = FakeServer(Never()).connect(read_greeting=False)
    assert c.send(b"EHLO c\r\n") == ["421 mx.example You talk too soon"]


@pytest.mark.parametrize("timeout", [0, 120])
def test_without_a_hook_timeout_the_idle_timeout_still_ends_it(timeout: float) -> None:
    """hook_timeout 0 (or longer than the idle timeout): the idle timeout ends a stuck session."""
    handler = Stuck()
    c = FakeServer(handler, hook_timeout=timeout, socket_timeout=30).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<stuck@example.com>")
    assert c.advance(29) == []
    assert c.advance(2) == ["421 4.4.2 Timeout - closing connection"]
    c.advance(6)
    assert not c.connected


def test_the_default_bounds_every_hook() -> None:
    """With default options a hook gets 30 s, then 451: a public MX never hangs on a handler."""
    handler = Stuck()
    c = FakeServer(handler).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>", "RCPT TO:<stuck@example.com>")
    assert codes(c.advance(30.1)) == [451]
