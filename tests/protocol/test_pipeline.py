"""
The hook pipeline (smtpsession.pipeline): filters in front of the handler
that refuse, change what the next stage sees (the envelope, the body),
observe, and alter verdicts; chains built once per hook.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from smtpsession import Address, Handler, SMTPError
from smtpsession.pipeline import Filter
from tests.protocol.harness import FakeServer, codes


class Observer(Filter):
    """Outermost: sees every call of three hooks, their outcome and their duration."""

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.seen: list[tuple[str, str, float]] = []

    async def _watch(self, name: str, next: Any, *args: Any) -> Any:
        start = self.clock.seconds()
        try:
            result = await next(*args)
        except SMTPError as e:
            self.seen.append((name, f"refused {e.code}", self.clock.seconds() - start))
            raise
        self.seen.append((name, "accepted", self.clock.seconds() - start))
        return result

    def on_mail_from(self, address: Address, session: Any, next: Any) -> Any:
        return self._watch("mail", next, address, session)

    def on_rcpt_to(self, address: Address, session: Any, next: Any) -> Any:
        return self._watch("rcpt", next, address, session)

    def on_data(self, stream: Any, session: Any, next: Any) -> Any:
        return self._watch("data", next, stream, session)


class Policy(Filter):
    """Refuses a sender, rewrites an alias, stamps and transforms the body."""

    def on_mail_from(self, address: Address, session: Any, next: Any) -> Any:
        if address.address.endswith("@spam.example"):
            raise SMTPError(550, "Not from there", "5.7.1")
        return next(address, session)

    def on_rcpt_to(self, address: Address, session: Any, next: Any) -> Any:
        if address.address == "alias@example.com":
            return next(Address("real@example.com", address.args), session)
        return next(address, session)

    def on_data(self, stream: Any, session: Any, next: Any) -> Any:
        stream.prepend(b"X-Filtered: yes\r\n")
        stream.map(lambda chunk: chunk.replace(b"secret", b"******"))
        return next(stream, session)


class Inbox(Handler):
    def __init__(self) -> None:
        self.senders: list[str] = []
        self.recipients: list[str] = []
        self.bodies: list[bytes] = []
        self.gate: Deferred[None] | None = None

    def on_mail_from(self, address: Address, session: Any) -> None:
        self.senders.append(address.address)

    def on_rcpt_to(self, address: Address, session: Any) -> Any:
        self.recipients.append(address.address)
        if address.address.startswith("nobody@"):
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream: Any, session: Any) -> str:
        body = await stream.read()
        if self.gate is not None:
            await self.gate
        self.bodies.append(body)
        return "stored"


def test_two_filters_and_a_handler() -> None:
    """Refusal, envelope and body changes, observation, through two filters and a handler."""
    inbox = Inbox()
    observer = Observer(None)
    server = FakeServer(inbox, filters=[observer, Policy()])
    observer.clock = server.clock
    c = server.connect()
    c.lines("EHLO c")

    # Refusal: the policy answers, the handler is never asked.
    assert c.lines("MAIL FROM:<x@spam.example>") == ["550 5.7.1 Not from there"]
    assert inbox.senders == []

    # Envelope: the handler sees the rewritten recipient, and so does the envelope.
    assert codes(c.lines("MAIL FROM:<a@example.org>", "RCPT TO:<alias@example.com>")) == [250, 250]
    assert inbox.recipients == ["real@example.com"]
    assert [a.address for a in c.session.envelope.rcpt_to] == ["real@example.com"]
    # The handler's own refusal still comes through the filters.
    assert c.lines("RCPT TO:<nobody@example.com>") == ["550 5.1.1 No such user here"]

    # Body: the handler reads what the policy made of it, after the handler took its time.
    inbox.gate = Deferred()
    c.send(b"DATA\r\nSubject: x\r\n\r\nthe secret word\r\n.\r\n")
    c.advance(2)
    inbox.gate.callback(None)
    assert c.replies() == ["250 2.6.0 stored"]
    assert inbox.bodies == [b"X-Filtered: yes\r\nSubject: x\r\n\r\nthe ****** word\r\n"]

    # Observation: the outermost filter saw every outcome, and how long it took.
    assert observer.seen == [
        ("mail", "refused 550", 0.0),
        ("mail", "accepted", 0.0),
        ("rcpt", "accepted", 0.0),
        ("rcpt", "refused 550", 0.0),
        ("data", "accepted", 2.0),
    ]


def test_a_filter_alters_a_verdict() -> None:
    """As Haraka's delay_deny does: a filter catches the next stage's refusal and answers otherwise."""

    class Soften(Filter):
        async def on_rcpt_to(self, address: Address, session: Any, next: Any) -> Any:
            try:
                return await next(address, session)
            except SMTPError as e:
                if e.code == 550:
                    raise SMTPError(450, "Try again later", "4.2.1") from None
                raise

    c = FakeServer(Inbox(), filters=[Soften()]).connect()
    c.lines("EHLO c")
    assert c.lines("MAIL FROM:<a@example.org>", "RCPT TO:<nobody@example.com>") == [
        "250 2.1.0 Accepted",
        "450 4.2.1 Try again later",
    ]


def test_a_filter_may_accept_without_the_handler() -> None:
    """A filter that returns without calling next answers for the rest of the chain."""

    class AllowListed(Filter):
        def on_rcpt_to(self, address: Address, session: Any, next: Any) -> Any:
            if address.address.startswith("nobody@"):
                return None  # accepted here; the handler is not asked
            return next(address, session)

    inbox = Inbox()
    c = FakeServer(inbox, filters=[AllowListed()]).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>")
    assert c.lines("RCPT TO:<nobody@example.com>") == ["250 2.1.5 Accepted"]
    assert inbox.recipients == []


def test_hooks_no_filter_touches_cost_nothing() -> None:
    """A chain is built per hook: untouched hooks call the handler's method directly."""
    inbox = Inbox()
    server = FakeServer(inbox, filters=[Policy()])
    pipeline = server.factory.pipeline
    assert pipeline.on_connect is None  # nobody answers: the call is skipped
    assert pipeline.on_mail_from is not inbox.on_mail_from  # the policy is in front
    plain = FakeServer(inbox).factory.pipeline
    assert plain.on_mail_from == inbox.on_mail_from


def test_a_filter_on_a_hook_the_handler_lacks() -> None:
    """Behind the last filter, a missing hook behaves as Handler's default."""
    seen = []

    class Counter(Filter):
        def on_connect(self, session: Any, next: Any) -> Any:
            seen.append(session.remote_address)
            return next(session)

    c = FakeServer(Handler(), filters=[Counter()]).connect()
    assert seen == ["192.0.2.1"]
    assert c.connected


def test_next_returns_a_deferred_whatever_the_stage_returns() -> None:
    results = []

    class Look(Filter):
        def on_mail_from(self, address: Address, session: Any, next: Any) -> Any:
            d = next(address, session)
            assert isinstance(d, Deferred)
            return d.addCallback(lambda value: results.append(value) or value)

    class Slow(Handler):
        def on_mail_from(self, address: Address, session: Any) -> Any:
            return succeed("ok")

    c = FakeServer(Slow(), filters=[Look()]).connect()
    c.lines("EHLO c")
    assert codes(c.lines("MAIL FROM:<a@example.org>")) == [250]
    assert results == ["ok"]


def test_hook_timeout_counts_the_whole_chain() -> None:
    """The deadline belongs to the chain: a slow filter times the hook out like a slow handler."""

    class Slow(Filter):
        async def on_rcpt_to(self, address: Address, session: Any, next: Any) -> Any:
            await Deferred()  # never fires

    c = FakeServer(Inbox(), filters=[Slow()], hook_timeout=5).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.org>")
    assert c.lines("RCPT TO:<b@example.com>") == []
    assert c.advance(4.9) == []
    assert c.advance(0.2) == ["451 4.3.0 Error: timed out, try again later"]
    # The session goes on.
    assert c.lines("NOOP") == ["250 2.0.0 OK"]
