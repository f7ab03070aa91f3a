"""
L{SMTPServerProtocol} on an in-memory transport and a fake clock: hooks
returning values, Deferreds and coroutines; pipelining order and flow
control while a hook is pending; timeouts; connection limits; hook errors;
LMTP; the session fields the driver fills in.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import capturedLogs

from smtpsession import Handler, SMTPError
from smtpsession.protocol import HALF_CLOSE_TIMEOUT
from tests.protocol.harness import FakeServer, codes

MAIL_RCPT_RCPT_DATA = (
    b"MAIL FROM:<a@example.com>\r\nRCPT TO:<slow@example.com>\r\n"
    b"RCPT TO:<fast@example.com>\r\nDATA\r\n"
)


class Recorder(Handler):
    """Accepts everything, records what it saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.bodies: list[bytes] = []
        self.closed: list[Any] = []

    def on_connect(self, session: Any) -> Any:
        self.calls.append(("connect", session.id))

    def on_mail_from(self, address: Any, session: Any) -> Any:
        self.calls.append(("mail", address.address))

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        self.calls.append(("rcpt", address.address))

    async def on_data(self, stream: Any, session: Any) -> Any:
        self.bodies.append(b"".join([chunk async for chunk in stream]))

    def on_close(self, session: Any) -> Any:
        self.closed.append(session)


# --------------------------------------------------------------------------
# Pipelining with pending hooks (acceptance 5)


class SlowDeferred(Recorder):
    """on_rcpt_to for "slow…" returns a Deferred the test fires."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[Any]] = []

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        super().on_rcpt_to(address, session)
        if address.address.startswith("slow"):
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            return d
        return None


class SlowCoroutine(SlowDeferred):
    """The same, as a coroutine awaiting the Deferred."""

    async def on_rcpt_to(self, address: Any, session: Any) -> Any:  # type: ignore[override]
        d = SlowDeferred.on_rcpt_to(self, address, session)
        if d is not None:
            await d


@pytest.mark.parametrize("handler_class", [SlowDeferred, SlowCoroutine])
def test_pipelined_replies_wait_for_a_pending_hook(handler_class: type[SlowDeferred]) -> None:
    """MAIL, RCPT (slow hook), RCPT, DATA in one write: replies in order, reading paused meanwhile."""
    handler = handler_class()
    server = FakeServer(handler)
    c = server.connect()
    c.lines("EHLO c")
    assert c.send(MAIL_RCPT_RCPT_DATA) == ["250 2.1.0 Accepted"]
    # The slow hook holds everything after it, and the client is not read.
    assert c.producer_state == "paused"
    assert ("rcpt", "fast@example.com") not in handler.calls
    c.advance(20)  # under hook_timeout and socket_timeout
    assert c.replies() == []
    handler.pending[0].callback(None)
    assert c.replies() == [
        "250 2.1.5 Accepted",
        "250 2.1.5 Accepted",
        "354 End data with <CR><LF>.<CR><LF>",
    ]
    assert c.producer_state == "producing"
    assert codes(c.send(b"hello\r\n.\r\nQUIT\r\n")) == [250, 221]
    assert handler.bodies == [b"hello\r\n"]
    assert [a for k, a in handler.calls if k == "rcpt"] == ["slow@example.com", "fast@example.com"]


@pytest.mark.parametrize("handler_class", [SlowDeferred, SlowCoroutine])
def test_pending_hook_failing_with_smtp_error(handler_class: type[SlowDeferred]) -> None:
    """A Deferred that fails with SMTPError gives that reply, still in order."""
    handler = handler_class()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    c.send(MAIL_RCPT_RCPT_DATA)
    handler.pending[0].errback(SMTPError(450, "Greylisted, try later", "4.7.1"))
    assert c.replies() == [
        "450 4.7.1 Greylisted, try later",
        "250 2.1.5 Accepted",
        "354 End data with <CR><LF>.<CR><LF>",
    ]


def test_synchronous_hooks_never_pause_reading() -> None:
    """Hooks that answer at once cost no pause/resume of the transport."""
    states: list[str] = []

    class Watch(Recorder):
        def on_rcpt_to(self, address: Any, session: Any) -> Any:
            states.append(c.producer_state)
            return succeed(None)

    c = FakeServer(Watch()).connect()
    c.lines("EHLO c")
    assert codes(c.send(MAIL_RCPT_RCPT_DATA)) == [250, 250, 250, 354]
    assert states == ["producing", "producing"]


# --------------------------------------------------------------------------
# Hook results and errors


@pytest.mark.parametrize(
    ("result", "reply"),
    [
        (None, "250 2.1.0 Accepted"),
        (True, "250 2.1.0 Accepted"),
        (False, "550 5.7.1 Error: sender rejected"),
        (succeed(None), "250 2.1.0 Accepted"),
        (succeed(False), "550 5.7.1 Error: sender rejected"),
        (fail(SMTPError(553, "Sender address rejected", "5.1.8")), "553 5.1.8 Sender address rejected"),
        (fail(SMTPError(message="Spammer")), "550 5.7.1 Spammer"),
        (fail(ValueError("bug")), "451 4.3.0 Error: internal server error"),
    ],
)
def test_mail_hook_results(result: Any, reply: str) -> None:
    """Values, Deferreds and failures from on_mail_from map to replies (False refuses)."""

    class H(Handler):
        def on_mail_from(self, address: Any, session: Any) -> Any:
            return result

    c = FakeServer(H()).connect()
    c.lines("EHLO c")
    with capturedLogs():
        assert c.lines("MAIL FROM:<a@example.com>") == [reply]


@pytest.mark.parametrize("hook", ["on_mail_from", "on_rcpt_to", "on_data"])
@pytest.mark.parametrize("style", ["raise", "coroutine"])
def test_hook_exception_is_451_and_logged_and_session_continues(hook: str, style: str) -> None:
    """Any non-SMTPError exception: 451 4.3.0, traceback logged, session goes on."""

    def boom(*args: Any) -> Any:
        raise RuntimeError("handler bug")

    async def aboom(*args: Any) -> Any:
        raise RuntimeError("handler bug")

    handler = Handler()
    setattr(handler, hook, boom if style == "raise" else aboom)
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    with capturedLogs() as events:
        replies = c.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
        )
    assert "451 4.3.0 Error: internal server error" in replies
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1
    assert failures[0]["log_failure"].check(RuntimeError)
    assert failures[0]["hook"] == hook
    # Still usable.
    assert codes(c.lines("RSET", "NOOP")) == [250, 250]
    assert c.connected


def test_data_hook_errors_and_results() -> None:
    """on_data: None → 250, str → 250 text, SMTPError → its reply (default 450)."""
    results: list[Any] = ["Queued as ABC", SMTPError(message="Try later"),
                          SMTPError(554, "Spam", "5.7.1"), None]

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            await stream.read()
            r = results.pop(0)
            if isinstance(r, SMTPError):
                raise r
            return r

    c = FakeServer(H()).connect()
    c.lines("EHLO c")
    wire = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
    assert [c.send(wire)[-1] for _ in range(4)] == [
        "250 2.6.0 Queued as ABC",
        "450 4.2.1 Try later",
        "554 5.7.1 Spam",
        "250 2.6.0 OK: message queued",
    ]


def test_on_connect_refusal() -> None:
    """on_connect raising SMTPError: that reply instead of the greeting, then close (default 554)."""

    class H(Handler):
        def on_connect(self, session: Any) -> Any:
            if session.remote_address == "192.0.2.66":
                raise SMTPError(message="Blocked")
            raise SMTPError(421, "Too busy")

    server = FakeServer(H())
    c = server.connect("192.0.2.66", read_greeting=False)
    assert c.replies() == ["554 Blocked"]
    c.advance(0)
    assert not c.connected
    c = server.connect("192.0.2.67", read_greeting=False)
    assert c.replies() == ["421 Too busy"]


def test_on_connect_waits_and_early_talker_refused() -> None:
    """A slow on_connect delays the greeting; a client that talks first gets 421."""
    pending: list[Deferred[None]] = []

    class H(Handler):
        def on_connect(self, session: Any) -> Any:
            d: Deferred[None] = Deferred()
            pending.append(d)
            return d

    server = FakeServer(H())
    polite = server.connect(read_greeting=False)
    rude = server.connect(read_greeting=False)
    assert polite.replies() == [] and rude.replies() == []
    assert rude.send(b"EHLO spammer\r\n") == ["421 mx.example You talk too soon"]
    pending[0].callback(None)
    pending[1].callback(None)
    assert polite.replies() == ["220 mx.example ESMTP"]
    assert rude.replies() == []
    rude.advance(0)
    assert not rude.connected


# --------------------------------------------------------------------------
# on_close


def test_on_close_called_once_per_connection() -> None:
    """on_close runs exactly once, after QUIT or a client disconnect, with the session."""
    handler = Recorder()
    server = FakeServer(handler)
    a = server.connect()
    a.lines("QUIT")
    a.advance(0)
    b = server.connect()
    b.disconnect()
    b.disconnect()
    a.advance(10)
    assert handler.closed == [a.session, b.session]


def test_on_close_error_is_logged_not_raised() -> None:
    """An on_close that fails is logged; nothing else happens."""

    class H(Handler):
        def on_close(self, session: Any) -> Any:
            raise RuntimeError("cleanup bug")

    c = FakeServer(H()).connect()
    with capturedLogs() as events:
        c.disconnect()
    assert [e["log_failure"].type for e in events if "log_failure" in e] == [RuntimeError]


# --------------------------------------------------------------------------
# Limits and timeouts


def test_max_clients() -> None:
    """Connections beyond max_clients get 421 and are closed; on_close is not called for them."""
    handler = Recorder()
    server = FakeServer(handler, max_clients=2)
    first = server.connect()
    server.connect()
    extra = server.connect(read_greeting=False)
    assert extra.replies() == ["421 mx.example Too many connected clients, try again in a moment"]
    extra.advance(0)
    assert not extra.connected
    assert len(handler.closed) == 0
    assert [k for k, _ in handler.calls].count("connect") == 2
    # A slot frees when a client leaves.
    first.disconnect()
    server.connect()


def test_idle_timeout() -> None:
    """socket_timeout of silence: 421 Timeout and close; activity resets the timer."""
    server = FakeServer(socket_timeout=30)
    c = server.connect()
    c.lines("EHLO c")
    assert c.advance(20) == []
    c.lines("NOOP")
    assert c.advance(20) == []
    assert c.advance(11) == ["421 4.4.2 Timeout - closing connection"]
    c.advance(0)
    assert not c.connected


def test_idle_timeout_runs_while_a_hook_is_pending() -> None:
    """
    A hook that never answers cannot hold its connection for ever: without
    a hook timeout, the idle timeout still ends the session (API.md: the
    idle socket_timeout keeps running while a hook is pending).
    """
    handler = SlowDeferred()
    server = FakeServer(handler, socket_timeout=30, hook_timeout=0)
    c = server.connect()
    c.lines("EHLO c")
    c.send(MAIL_RCPT_RCPT_DATA)
    assert c.advance(29) == []
    assert c.advance(2) == ["421 4.4.2 Timeout - closing connection"]
    c.advance(HALF_CLOSE_TIMEOUT + 1)
    assert not c.connected
    # The answer that comes too late goes nowhere.
    handler.pending[0].callback(None)
    assert c.replies() == []


def test_client_gets_a_whole_idle_timeout_after_a_slow_hook() -> None:
    """The idle clock restarts when a slow hook answers: the client waited for us."""
    handler = SlowDeferred()
    server = FakeServer(handler, socket_timeout=30, hook_timeout=0)
    c = server.connect()
    c.lines("EHLO c")
    c.send(MAIL_RCPT_RCPT_DATA)
    assert c.advance(25) == []
    handler.pending[0].callback(None)
    assert codes(c.replies()) == [250, 250, 354]
    assert c.advance(29) == []
    assert c.advance(2) == ["421 4.4.2 Timeout - closing connection"]


def test_idle_timeout_suspended_while_the_body_reader_lags() -> None:
    """When we stop reading because on_data is slow, the client is not timed out."""
    gate: Deferred[None] = Deferred()

    class Slow(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            await gate
            async for _ in stream:
                pass

    server = FakeServer(Slow(), socket_timeout=30)
    c = server.connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    line = b"x" * 998 + b"\r\n"
    for _ in range(400):
        c.send(line)
    assert c.producer_state == "paused"
    assert c.advance(500) == []  # under data_timeout, which bounds even this
    gate.callback(None)
    assert c.producer_state == "producing"
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]


def test_half_closed_client_is_aborted() -> None:
    """After our 421, a client that keeps the socket open is cut off after a bound."""
    server = FakeServer(socket_timeout=30)
    c = server.connect()
    c.transport.loseConnection = lambda: setattr(c.transport, "disconnecting", True)  # type: ignore[method-assign]
    c.lines("QUIT")
    assert not c.transport.aborted
    c.advance(HALF_CLOSE_TIMEOUT)
    assert c.transport.aborted


def test_ten_unknown_commands_close_the_connection() -> None:
    """Nine 500s, then 421 and the transport is closed."""
    c = FakeServer().connect()
    replies = c.lines(*["XYZZY"] * 10)
    assert codes(replies) == [500] * 9 + [421]
    c.advance(0)
    assert not c.connected


def test_too_long_line_closes_the_connection() -> None:
    """A command line over the limit: 421 and the transport is closed."""
    c = FakeServer().connect()
    assert c.send(b"NOOP " + b"x" * 20000) == ["421 Error: Command line too long"]
    c.advance(0)
    assert not c.connected


def test_nothing_after_close_is_processed() -> None:
    """Input after QUIT (pipelined in the same write or later) is never executed."""
    handler = Recorder()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    assert c.lines("QUIT", "MAIL FROM:<a@example.com>") == ["221 2.0.0 Bye"]
    assert c.lines("MAIL FROM:<b@example.com>") == []
    assert not any(k == "mail" for k, _ in handler.calls)


# --------------------------------------------------------------------------
# LMTP


def test_lmtp_per_recipient_replies_from_a_list() -> None:
    """LMTP: the handler's list gives one reply per recipient, in order."""

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            await stream.read()
            return [
                None if a.address.startswith("ok") else SMTPError(550, "No such user")
                for a in session.envelope.rcpt_to
            ]

    c = FakeServer(H(), lmtp=True).connect()
    c.lines("LHLO c")
    replies = c.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<ok1@example.com>\r\nRCPT TO:<bad@example.com>\r\n"
        b"RCPT TO:<ok2@example.com>\r\nDATA\r\nhi\r\n.\r\n"
    )
    assert replies[-3:] == [
        "250 2.6.0 OK: message accepted",
        "550 5.1.1 No such user",
        "250 2.6.0 OK: message accepted",
    ]
    assert c.session.transmission_type == "LMTP"


@pytest.mark.parametrize("result", [[None], [None, None, None], []])
def test_lmtp_list_of_the_wrong_length(result: list[Any]) -> None:
    """A list that does not match the recipients: 451 for each, and an error is logged."""

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return result

    c = FakeServer(H(), lmtp=True).connect()
    c.lines("LHLO c")
    with capturedLogs() as events:
        replies = c.send(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
            b"DATA\r\nhi\r\n.\r\n"
        )
    assert replies[-2:] == ["451 4.3.0 Error: internal server error"] * 2
    assert any("LMTP recipients" in e.get("log_format", "") for e in events)


def test_lmtp_error_repeated_per_recipient() -> None:
    """LMTP: a raised SMTPError is the reply for every recipient."""

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            raise SMTPError(452, "Mailbox full")

    c = FakeServer(H(), lmtp=True).connect()
    c.lines("LHLO c")
    replies = c.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
        b"DATA\r\nhi\r\n.\r\n"
    )
    assert replies[-2:] == ["452 4.2.2 Mailbox full"] * 2
    assert codes(c.lines("NOOP")) == [250]


def test_smtp_list_result_is_one_reply() -> None:
    """SMTP: a list from on_data still gives a single reply (no desync)."""

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return ["Delivered to a", SMTPError(550, "No such user")]

    c = FakeServer(H()).connect()
    c.lines("EHLO c")
    replies = c.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
        b"DATA\r\nhi\r\n.\r\nNOOP\r\n"
    )
    assert replies[-2:] == ["550 5.7.1 No such user", "250 2.0.0 OK"]


# --------------------------------------------------------------------------
# Session fields


def test_session_fields() -> None:
    """Addresses, ports, id, hostname and greeting fields as the handler sees them."""
    handler = Recorder()
    c = FakeServer(handler).connect("192.0.2.1", 40001)
    s = c.session
    assert re.fullmatch(r"[a-z0-9]{32}", s.id)
    assert (s.remote_address, s.remote_port) == ("192.0.2.1", 40001)
    assert (s.local_address, s.local_port) == ("192.0.2.25", 25)
    assert s.client_hostname == "[192.0.2.1]"
    assert s.opening_command is None and s.transmission_type == "SMTP"
    c.lines("EHLO Client.Example")
    assert s.host_name_appears_as == "client.example"
    assert s.opening_command == "EHLO" and s.transmission_type == "ESMTP"
    assert s.secure is False and s.tls_options is None and s.user is None


def test_session_ids_are_unique() -> None:
    """Every connection gets its own random id."""
    server = FakeServer()
    ids = {server.connect().session.id for _ in range(50)}
    assert len(ids) == 50
    # Fixed width: no id is shortened by leading zeros.
    assert {len(i) for i in ids} == {32}


def test_ipv4_mapped_ipv6_is_normalised() -> None:
    """A client on an IPv6 socket with an IPv4-mapped address is seen as plain IPv4."""
    c = FakeServer().connect("::ffff:192.0.2.7", 5000)
    assert c.session.remote_address == "192.0.2.7"
    assert c.session.client_hostname == "[192.0.2.7]"
    c6 = FakeServer().connect("2001:db8::1", 5000)
    assert c6.session.remote_address == "2001:db8::1"


def test_secured_option_marks_sessions_secure() -> None:
    """secured: TLS terminated in front, sessions report secure (ESMTPS) and may REQUIRETLS."""
    c = FakeServer(secured=True).connect()
    c.lines("EHLO c")
    assert c.session.secure is True
    assert c.session.transmission_type == "ESMTPS"
    assert codes(c.lines("MAIL FROM:<a@example.com> REQUIRETLS")) == [250]
    assert c.session.envelope.require_tls is True


def test_on_secure_not_called_for_cleartext() -> None:
    """on_secure runs only after a TLS handshake, never on a plain connection."""
    calls: list[Any] = []

    class H(Handler):
        def on_secure(self, session: Any) -> Any:
            calls.append(session)

    c = FakeServer(H()).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "QUIT")
    c.advance(0)
    assert calls == []
