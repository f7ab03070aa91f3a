"""
The optional hooks C{on_helo}, C{on_vrfy}, C{on_expn} and C{on_rset}, on
the in-memory server: what each answer means on the wire (accept, C{False},
L{SMTPError}, another exception, a Deferred, a coroutine, C{hook_timeout}),
pipelined commands waiting for a slow hook, filters defining them, and the
replies of a handler without them, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed
from twisted.logger import LogEvent, globalLogPublisher

from smtpsession import Address, Handler, SMTPError
from smtpsession.pipeline import Filter
from tests.protocol.harness import FakeServer, codes

TIMED_OUT = "451 4.3.0 Error: timed out, try again later"
INTERNAL = "451 4.3.0 Error: internal server error"
EHLO_OK = 250
VRFY_DEFAULT = "252 2.1.5 Try to send something. No promises though"
EXPN_DEFAULT = "502 5.5.1 Error: command not implemented"
FLUSHED = "250 2.0.0 Flushed"


@pytest.fixture
def failures() -> Iterator[list[tuple[str, Any]]]:
    """The hook failures logged during the test: (hook, exception type)."""
    seen: list[tuple[str, Any]] = []

    def observe(event: LogEvent) -> None:
        if "log_failure" in event and "hook" in event:
            seen.append((event["hook"], event["log_failure"].type))

    globalLogPublisher.addObserver(observe)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(observe)


class Hooks(Handler):
    """A handler whose optional hooks do what the test says (the others: None)."""

    def __init__(self, **answers: Callable[..., Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, Any]] = []

    def _answer(self, name: str, arg: Any, session: Any) -> Any:
        answer = self.answers.get(name)
        if answer is None:
            return None  # not under test: the default
        self.calls.append((name, arg))
        return answer(arg, session)

    def on_helo(self, hostname: Any, session: Any) -> Any:
        return self._answer("helo", hostname, session)

    def on_vrfy(self, address: Any, session: Any) -> Any:
        return self._answer("vrfy", address, session)

    def on_expn(self, name: Any, session: Any) -> Any:
        return self._answer("expn", name, session)

    def on_rset(self, session: Any) -> Any:
        return self._answer("rset", None, session)


def raise_(error: BaseException) -> Callable[..., Any]:
    def hook(*args: Any) -> Any:
        raise error

    return hook


def value(v: Any) -> Callable[..., Any]:
    return lambda *args: v


# ---------------------------------------------------------------------------
# Without the hooks: today's replies, and nothing to call
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [None, Handler(), object()], ids=["default", "Handler", "object"])
def test_without_the_hooks_the_replies_are_unchanged(handler: Any) -> None:
    """HELO/EHLO 250, VRFY 252, EXPN 502 5.5.1, RSET 250: as before the hooks existed."""
    c = FakeServer(handler).connect()
    assert codes(c.lines("HELO client.example")) == [250]
    assert c.lines("VRFY someone") == ["252 Try to send something. No promises though"]
    assert c.lines("EXPN staff") == ["502 Error: command not implemented"]
    assert c.lines("RSET") == ["250 Flushed"]
    c.ehlo()
    assert c.lines("VRFY <a@example.com>", "EXPN staff", "RSET", "VRFY") == [
        VRFY_DEFAULT,
        EXPN_DEFAULT,
        FLUSHED,
        "501 5.5.4 Error: Syntax: VRFY address",
    ]


def test_without_the_hooks_the_core_asks_nothing() -> None:
    """No chain, no event: the core answers itself (the hooks cost nothing unused)."""
    server = FakeServer(Handler())
    pipeline = server.factory.pipeline
    assert pipeline.on_helo is None and pipeline.on_vrfy is None
    assert pipeline.on_expn is None and pipeline.on_rset is None
    cfg = server.connect().proto._conn.cfg
    assert not (cfg.helo_hook or cfg.vrfy_hook or cfg.expn_hook or cfg.rset_hook)
    assert b"EXPN" not in cfg.commands


def test_with_the_hooks_the_core_asks() -> None:
    """Control for the test above: defining the hooks turns the flags on."""
    c = FakeServer(Hooks()).connect()
    cfg = c.proto._conn.cfg
    assert cfg.helo_hook and cfg.vrfy_hook and cfg.expn_hook and cfg.rset_hook
    assert b"EXPN" in cfg.commands


# ---------------------------------------------------------------------------
# on_helo
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
@pytest.mark.parametrize("answer", [None, True, "anything"])
def test_helo_accepted(verb: str, answer: Any) -> None:
    """Any answer but False accepts: the normal 250 (capabilities after EHLO)."""
    handler = Hooks(helo=value(answer))
    c = FakeServer(handler).connect()
    [reply] = c.lines(f"{verb} Client.Example")
    assert reply.startswith("250")
    assert ("PIPELINING" in reply) == (verb == "EHLO")
    assert handler.calls == [("helo", "client.example")]
    assert c.session.host_name_appears_as == "client.example"
    assert c.session.opening_command == verb


def test_helo_is_asked_for_lhlo() -> None:
    handler = Hooks(helo=value(False))
    c = FakeServer(handler, lmtp=True).connect()
    assert c.lines("LHLO bad.example") == ["550 Error: hostname rejected"]
    assert c.lines("MAIL FROM:<a@example.com>") == ["503 Error: send LHLO first"]
    assert handler.calls == [("helo", "bad.example")]


def test_helo_is_not_asked_for_a_bad_hello() -> None:
    """The core refuses the syntax first (and HELO/EHLO in LMTP): no call."""
    handler = Hooks(helo=value(None))
    c = FakeServer(handler).connect()
    assert codes(c.lines("EHLO", "HELO a b")) == [501, 501]
    assert handler.calls == []
    lmtp = FakeServer(handler, lmtp=True).connect()
    assert codes(lmtp.lines("EHLO x", "HELO x")) == [500, 500]
    assert handler.calls == []


def test_helo_refused_leaves_no_greeting() -> None:
    """False: 550 (no enhanced code: none was advertised), and the session is not greeted."""
    handler = Hooks(helo=value(False))
    c = FakeServer(handler).connect()
    assert c.lines("EHLO bad.example", "MAIL FROM:<a@example.com>") == [
        "550 Error: hostname rejected",
        "503 Error: send HELO/EHLO first",
    ]
    assert c.session.opening_command is None
    assert c.session.host_name_appears_as is None
    assert c.session.error == "503 Error: send HELO/EHLO first"


def test_helo_refused_keeps_the_earlier_greeting_and_transaction() -> None:
    """RFC 5321 §4.1.4: after a refused EHLO the state is what it was before it."""
    handler = Hooks(helo=lambda name, s: name != "bad.example")
    c = FakeServer(handler).connect()
    c.ehlo("good.example")
    assert c.lines(
        "MAIL FROM:<a@example.com>", "EHLO bad.example", "RCPT TO:<b@example.com>"
    ) == [
        "250 2.1.0 Accepted",
        "550 5.7.1 Error: hostname rejected",
        "250 2.1.5 Accepted",
    ]
    assert c.session.host_name_appears_as == "good.example"
    assert c.session.opening_command == "EHLO"
    assert c.session.envelope.mail_from is not None


def test_helo_smtp_error() -> None:
    """An SMTPError is the reply; its enhanced code only once EHLO advertised them."""
    def hook(name: str, session: Any) -> None:
        if name != "ok":
            raise SMTPError(554, "Not a hostname you may use", "5.7.1")

    c = FakeServer(Hooks(helo=hook)).connect()
    assert c.lines("HELO bad") == ["554 Not a hostname you may use"]
    c.ehlo("ok")
    assert c.lines("EHLO bad") == ["554 5.7.1 Not a hostname you may use"]


def test_helo_421_closes() -> None:
    c = FakeServer(Hooks(helo=raise_(SMTPError(421, "Go away")))).connect()
    assert c.lines("EHLO x", "NOOP") == ["421 Go away"]
    c.advance(0)
    assert not c.connected


def test_helo_other_exception(failures: list[tuple[str, Any]]) -> None:
    """A bug is 451 4.3.0 (no greeting), logged with the hook's name."""
    c = FakeServer(Hooks(helo=raise_(KeyError("bug")))).connect()
    assert c.lines("EHLO x", "MAIL FROM:<a@example.com>") == [
        "451 Error: internal server error",
        "503 Error: send HELO/EHLO first",
    ]
    assert failures == [("on_helo", KeyError)]


def test_helo_deferred_and_pipelining() -> None:
    """A pending on_helo holds the pipelined commands; their replies follow in order."""
    pending: list[Deferred[Any]] = []

    def later(name: str, session: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        return d

    c = FakeServer(Hooks(helo=later)).connect()
    assert c.lines("EHLO x", "MAIL FROM:<a@example.com>", "NOOP") == []
    assert c.producer_state == "paused"
    pending[0].callback(None)
    replies = c.replies()
    assert codes(replies) == [250, 250, 250]
    assert c.producer_state == "producing"


def test_helo_coroutine() -> None:
    gate: Deferred[None] = Deferred()

    class Slow(Handler):
        async def on_helo(self, hostname: Any, session: Any) -> Any:
            await gate
            return hostname != "bad"

    c = FakeServer(Slow()).connect()
    assert c.lines("EHLO bad", "NOOP") == []
    gate.callback(None)
    assert c.replies() == ["550 Error: hostname rejected", "250 OK"]
    assert c.lines("EHLO good") and c.session.opening_command == "EHLO"


def test_helo_timeout() -> None:
    c = FakeServer(Hooks(helo=value(Deferred())), hook_timeout=5).connect()
    assert c.lines("EHLO x", "NOOP") == []
    assert c.advance(4.9) == []
    assert c.advance(0.2) == ["451 Error: timed out, try again later", "250 OK"]
    assert c.session.opening_command is None


def test_helo_between_bdat_chunks_aborts_the_body_once_accepted() -> None:
    """An accepted EHLO between BDAT chunks ends the body as before; a refused one does not."""
    seen: list[str] = []

    class Reader(Handler):
        def on_helo(self, hostname: Any, session: Any) -> Any:
            return hostname != "bad"

        async def on_data(self, stream: Any, session: Any) -> Any:
            try:
                async for _ in stream:
                    pass
            except Exception as e:
                seen.append(type(e).__name__)
                raise
            seen.append("complete")

    c = FakeServer(Reader()).connect()
    c.ehlo()
    assert codes(c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")) == [250, 250]
    assert codes(c.send(b"BDAT 3\r\nabc")) == [250]
    assert c.lines("EHLO bad") == ["550 5.7.1 Error: hostname rejected"]
    assert seen == []
    assert codes(c.lines("EHLO good")) == [250]
    assert seen and seen[0] != "complete"
    assert c.session.envelope.mail_from is None


def test_helo_runs_again_after_starttls_reset() -> None:
    """The session forgets the hello at STARTTLS; a new EHLO asks again (unit-level: the core)."""
    from smtpsession._core.connection import ServerConnection
    from smtpsession._core.events import Helo, StartTLS
    from smtpsession.options import SMTPServerOptions
    from smtpsession.session import Session

    conn = ServerConnection(
        SMTPServerOptions(name="mx.example"), Session(id="t"), tls_available=True, helo_hook=True
    )
    conn.greet()
    conn.receive_data(b"EHLO a\r\n")
    assert isinstance(conn.next_event(), Helo)
    conn.helo_result()
    conn.receive_data(b"STARTTLS\r\n")
    assert isinstance(conn.next_event(), StartTLS)
    conn.tls_established()
    conn.receive_data(b"EHLO a\r\n")
    ev = conn.next_event()
    assert isinstance(ev, Helo) and ev.hostname == "a"


# ---------------------------------------------------------------------------
# on_vrfy
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reply"),
    [
        (None, VRFY_DEFAULT),
        (True, VRFY_DEFAULT),
        ("Alice <alice@example.com>", "250 2.1.5 Alice <alice@example.com>"),
        (Address("alice@example.com"), "250 2.1.5 <alice@example.com>"),
        (["Al <a1@example.com>", "Al <a2@example.com>"],
         "250-2.1.5 Al <a1@example.com>\n250 2.1.5 Al <a2@example.com>"),
        (False, "550 5.1.1 Error: no such user"),
        (succeed("Alice <alice@example.com>"), "250 2.1.5 Alice <alice@example.com>"),
    ],
    ids=["None", "True", "str", "Address", "list", "False", "fired-deferred"],
)
def test_vrfy_answers(answer: Any, reply: str) -> None:
    handler = Hooks(vrfy=value(answer))
    c = FakeServer(handler).connect()
    c.ehlo()
    assert c.lines("VRFY alice") == [reply]
    assert handler.calls == [("vrfy", "alice")]


def test_vrfy_without_enhanced_codes_after_helo() -> None:
    c = FakeServer(Hooks(vrfy=value("Alice <alice@example.com>"))).connect()
    c.lines("HELO x")
    assert c.lines("VRFY alice") == ["250 Alice <alice@example.com>"]


@pytest.mark.parametrize(
    ("argument", "seen"),
    [
        ("alice", "alice"),
        ("<Alice@Example.COM>", "Alice@Example.COM"),
        ("alice@example.com", "alice@example.com"),
        ("<postmaster>", "postmaster"),
        ("Alice Smith", "Alice Smith"),
        ("<not an address", "<not an address"),
        ("a@@b", "a@@b"),
    ],
)
def test_vrfy_argument(argument: str, seen: str) -> None:
    """A mailbox (bracketed or not) is handed on as the mailbox; anything else as sent."""
    handler = Hooks(vrfy=value(None))
    c = FakeServer(handler).connect()
    c.lines(f"VRFY {argument}")
    assert handler.calls == [("vrfy", seen)]


def test_vrfy_syntax_is_checked_first() -> None:
    handler = Hooks(vrfy=value(None))
    c = FakeServer(handler).connect()
    assert codes(c.lines("VRFY", "VRFY  ")) == [501, 501]
    assert codes(c.send(b"VRFY \xff\xfe\r\n")) == [501]
    assert handler.calls == []


def test_vrfy_smtp_error() -> None:
    """Any code: a refusal sets session.error, a positive answer (252, 251) does not."""
    c = FakeServer(Hooks(vrfy=raise_(SMTPError(553, "User ambiguous")))).connect()
    c.ehlo()
    assert c.lines("VRFY al") == ["553 5.1.3 User ambiguous"]
    assert c.session.error == "553 5.1.3 User ambiguous"
    c = FakeServer(Hooks(vrfy=raise_(SMTPError(252, "Cannot say")))).connect()
    c.ehlo()
    assert c.lines("VRFY al") == ["252 2.1.5 Cannot say"]
    assert c.session.error is None


def test_vrfy_other_exception(failures: list[tuple[str, Any]]) -> None:
    c = FakeServer(Hooks(vrfy=raise_(RuntimeError("directory down")))).connect()
    c.ehlo()
    assert c.lines("VRFY al", "NOOP") == [INTERNAL, "250 2.0.0 OK"]
    assert failures == [("on_vrfy", RuntimeError)]


def test_vrfy_coroutine_and_pipelining() -> None:
    gate: Deferred[None] = Deferred()

    class Directory(Handler):
        async def on_vrfy(self, address: Any, session: Any) -> Any:
            await gate
            return f"<{address}@example.com>"

    c = FakeServer(Directory()).connect()
    c.ehlo()
    assert c.lines("VRFY al", "NOOP", "VRFY bo") == []
    gate.callback(None)
    assert c.replies() == [
        "250 2.1.5 <al@example.com>",
        "250 2.0.0 OK",
        "250 2.1.5 <bo@example.com>",
    ]


def test_vrfy_timeout() -> None:
    c = FakeServer(Hooks(vrfy=value(Deferred())), hook_timeout=2).connect()
    c.ehlo()
    assert c.lines("VRFY al") == []
    assert c.advance(2.1) == [TIMED_OUT]


def test_vrfy_disabled_stays_refused() -> None:
    handler = Hooks(vrfy=value("x"))
    c = FakeServer(handler, disabled_commands=["VRFY"]).connect()
    assert c.lines("VRFY al") == ["500 Error: command not recognized"]
    assert handler.calls == []


# ---------------------------------------------------------------------------
# on_expn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reply"),
    [
        (["Al <al@example.com>", Address("bo@example.com")],
         "250-2.1.5 Al <al@example.com>\n250 2.1.5 <bo@example.com>"),
        (("<al@example.com>",), "250 2.1.5 <al@example.com>"),
        ("<al@example.com>", "250 2.1.5 <al@example.com>"),
        (False, "550 5.1.1 Error: no such mailing list"),
        ([], "550 5.1.1 Error: no such mailing list"),
        (None, EXPN_DEFAULT),
        (True, EXPN_DEFAULT),
    ],
    ids=["list", "tuple", "str", "False", "empty", "None", "True"],
)
def test_expn_answers(answer: Any, reply: str) -> None:
    handler = Hooks(expn=value(answer))
    c = FakeServer(handler).connect()
    c.ehlo()
    assert c.lines("EXPN Staff List") == [reply]
    assert handler.calls == [("expn", "Staff List")]


def test_expn_needs_an_argument() -> None:
    handler = Hooks(expn=value(["x"]))
    c = FakeServer(handler).connect()
    c.ehlo()
    assert c.lines("EXPN", "EXPN   ") == ["501 5.5.4 Error: Syntax: EXPN name"] * 2
    assert handler.calls == []


def test_expn_disabled_stays_refused() -> None:
    """disabled_commands wins over the hook: EXPN stays 500, the hook is not called."""
    handler = Hooks(expn=value(["x"]))
    c = FakeServer(handler, disabled_commands=["EXPN"]).connect()
    assert c.lines("EXPN staff") == ["500 Error: command not recognized"]
    assert handler.calls == []


def test_expn_smtp_error_and_exception(failures: list[tuple[str, Any]]) -> None:
    answers = iter([SMTPError(550, "Access denied to you", "5.7.1"), ValueError("bug")])

    def hook(name: str, session: Any) -> Any:
        raise next(answers)

    c = FakeServer(Hooks(expn=hook)).connect()
    c.ehlo()
    assert c.lines("EXPN staff", "EXPN staff") == ["550 5.7.1 Access denied to you", INTERNAL]
    assert failures == [("on_expn", ValueError)]


def test_expn_deferred_pipelining_and_timeout() -> None:
    pending: list[Deferred[Any]] = []

    def later(name: str, session: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        pending.append(d)
        return d

    c = FakeServer(Hooks(expn=later), hook_timeout=3).connect()
    c.ehlo()
    assert c.lines("EXPN a", "EXPN b", "NOOP") == []
    pending[0].callback(["<a@example.com>"])
    assert c.replies() == ["250 2.1.5 <a@example.com>"]
    assert c.advance(3.1) == [TIMED_OUT, "250 2.0.0 OK"]


def test_expn_coroutine() -> None:
    class Lists(Handler):
        async def on_expn(self, name: Any, session: Any) -> Any:
            await succeed(None)
            return [f"<{name}-{i}@example.com>" for i in range(2)]

    c = FakeServer(Lists()).connect()
    c.ehlo()
    assert c.lines("EXPN x") == ["250-2.1.5 <x-0@example.com>\n250 2.1.5 <x-1@example.com>"]


def test_expn_default_counts_as_unrecognized() -> None:
    """A hook that declines (None) is EXPN as before: 502, and it counts toward the limit."""
    c = FakeServer(Hooks(expn=value(None)), max_unrecognized_commands=2).connect()
    assert c.lines("EXPN a", "EXPN b") == [
        "502 Error: command not implemented",
        "421 Error: too many unrecognized commands",
    ]


# ---------------------------------------------------------------------------
# on_rset
# ---------------------------------------------------------------------------


def test_rset_is_called_after_the_reset() -> None:
    seen: list[Any] = []

    def hook(arg: Any, session: Any) -> Any:
        seen.append(session.envelope.mail_from)
        return False  # ignored: RSET is always 250

    handler = Hooks(rset=hook)
    c = FakeServer(handler).connect()
    c.ehlo()
    assert c.lines("MAIL FROM:<a@example.com>", "RSET", "RCPT TO:<b@example.com>") == [
        "250 2.1.0 Accepted",
        FLUSHED,
        "503 5.5.1 Error: need MAIL command",
    ]
    assert seen == [None]


@pytest.mark.parametrize(
    "error", [SMTPError(550, "No"), KeyError("bug")], ids=["SMTPError", "bug"]
)
def test_rset_failure_is_logged_and_still_250(
    error: BaseException, failures: list[tuple[str, Any]]
) -> None:
    c = FakeServer(Hooks(rset=raise_(error))).connect()
    c.ehlo()
    assert c.lines("MAIL FROM:<a@example.com>", "RSET", "MAIL FROM:<a@example.com>") == [
        "250 2.1.0 Accepted",
        FLUSHED,
        "250 2.1.0 Accepted",
    ]
    assert failures == [("on_rset", type(error))]


def test_rset_pending_holds_the_next_command() -> None:
    """The 250 and the next command wait for on_rset (cleanup done before MAIL)."""
    gate: Deferred[None] = Deferred()

    class Cleanup(Handler):
        async def on_rset(self, session: Any) -> None:
            await gate

    c = FakeServer(Cleanup()).connect()
    c.ehlo()
    assert c.lines("RSET", "MAIL FROM:<a@example.com>") == []
    assert c.producer_state == "paused"
    gate.callback(None)
    assert c.replies() == [FLUSHED, "250 2.1.0 Accepted"]


def test_rset_timeout_is_still_250(failures: list[tuple[str, Any]]) -> None:
    c = FakeServer(Hooks(rset=value(Deferred())), hook_timeout=2).connect()
    c.ehlo()
    assert c.lines("RSET", "NOOP") == []
    assert c.advance(2.1) == [FLUSHED, "250 2.0.0 OK"]
    assert failures == []  # the timeout has its own log line, not a failure


def test_rset_between_bdat_chunks() -> None:
    """The body in progress is aborted before on_rset runs."""
    order: list[str] = []

    class H(Handler):
        def on_rset(self, session: Any) -> None:
            order.append("rset")

        async def on_data(self, stream: Any, session: Any) -> Any:
            try:
                async for _ in stream:
                    pass
            except Exception:
                order.append("aborted")
                raise

    c = FakeServer(H()).connect()
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    assert codes(c.send(b"BDAT 3\r\nabc")) == [250]
    assert c.lines("RSET") == [FLUSHED]
    assert order == ["aborted", "rset"]


def test_rset_not_called_for_implicit_resets() -> None:
    handler = Hooks(rset=value(None), helo=value(None))
    c = FakeServer(handler).connect()
    c.ehlo()
    c.send_message()
    c.lines("EHLO again")
    assert [name for name, _ in handler.calls] == ["helo", "helo"]


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------


class Policy(Filter):
    """Defines the four hooks in front of a handler that has none."""

    def __init__(self) -> None:
        self.resets = 0

    def on_helo(self, hostname: Any, session: Any, next: Any) -> Any:
        if hostname.endswith(".invalid"):
            raise SMTPError(550, "Bad hostname")
        return next(hostname, session)

    def on_vrfy(self, address: Any, session: Any, next: Any) -> Any:
        if address == "root":
            return False
        return next(address, session)

    async def on_expn(self, name: Any, session: Any, next: Any) -> Any:
        if name == "staff":
            return ["<al@example.com>"]
        return await next(name, session)

    def on_rset(self, session: Any, next: Any) -> Any:
        self.resets += 1
        return next(session)


def test_filters_define_the_hooks() -> None:
    """A filter alone turns a hook on; passing on reaches the default (today's reply)."""
    policy = Policy()
    c = FakeServer(Handler(), filters=[policy]).connect()
    assert c.lines("EHLO x.invalid") == ["550 Bad hostname"]
    c.ehlo("ok.example")
    assert c.lines("VRFY root", "VRFY al", "EXPN staff", "EXPN other", "RSET") == [
        "550 5.1.1 Error: no such user",
        VRFY_DEFAULT,
        "250 2.1.5 <al@example.com>",
        EXPN_DEFAULT,
        FLUSHED,
    ]
    assert policy.resets == 1


def test_filters_in_front_of_the_handlers_hooks() -> None:
    """The filter passes on; the handler's hook answers."""
    handler = Hooks(
        helo=value(False), vrfy=value("Al <al@example.com>"), expn=value(["<x@example.com>"]),
        rset=value(None),
    )
    policy = Policy()
    c = FakeServer(handler, filters=[policy]).connect()
    assert c.lines("EHLO ok.example") == ["550 Error: hostname rejected"]
    assert c.lines("VRFY al", "EXPN other", "RSET") == [
        "250 Al <al@example.com>",
        "250 <x@example.com>",
        "250 Flushed",
    ]
    assert [name for name, _ in handler.calls] == ["helo", "vrfy", "expn", "rset"]
    assert policy.resets == 1
