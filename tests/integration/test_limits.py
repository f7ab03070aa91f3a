"""
The limits and deadlines of a public MX (API.md, "Policy and abuse
limits") through real sockets on 127.0.0.1: smtplib, raw sockets and
swaks against a server started with L{smtpsession.testing.serve}.

One test per option at least (``hook_timeout``, ``max_connections_per_ip``
with ``limits_exempt``, ``max_auth_failures``, ``auth_failure_delay``,
``max_transactions``, ``pregreet_delay``, ``session_timeout``,
``data_timeout``, ``socket_timeout``, ``size`` with ``reject_oversized``),
plus the two promises of the defaults: no single client address holds
more than its share, and no handler can hang a connection for ever.  The
fast, clock-driven versions of these tests are in
tests/protocol/test_limits.py and tests/protocol/test_deadlines.py; here
the timeouts are short (seconds) and every wait is bounded.
"""

from __future__ import annotations

import base64
import math
import smtplib
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from twisted.internet.defer import CancelledError, Deferred

from smtpsession import Handler, SMTPServerOptions
from smtpsession.testing import RecordingHandler, RunningServer, serve
from tests.conftest import connections, options, require_program, wait_until
from tests.rawsmtp import RawClient

TOO_MANY = (421, "4.7.0 Too many connections from your address")
TIMED_OUT = (451, "4.3.0 Error: timed out, try again later")
IDLE = (421, "4.4.2 Timeout - closing connection")
IDLE_BEFORE_EHLO = (421, "Timeout - closing connection")
BODY = b"Subject: limits\r\n\r\nHello.\r\n"


def raw_from(server: RunningServer, source: str) -> RawClient:
    """A raw client connecting from C{source} (127.0.0.x), greeted (or refused)."""
    return RawClient(*server.address, timeout=10, source=source)


def wait_closed(client: RawClient, timeout: float = 10.0) -> bool:
    """Whether the server closed the connection within C{timeout} seconds (a bound)."""
    client.sock.settimeout(timeout)
    try:
        return client.closed()
    except TimeoutError:
        return False


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


# ---------------------------------------------------------------------------
# hook_timeout: no handler can hang a connection for ever
# ---------------------------------------------------------------------------


class Hanging(RecordingHandler):
    """Hooks that never answer for addresses starting with "hang" (or a body saying HANG)."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled: list[str] = []

    def _never(self, name: str) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        d.addErrback(lambda f: self.cancelled.append(name) if f.check(CancelledError) else f)
        return d

    def on_mail_from(self, address: Any, session: Any) -> Any:
        return self._never("mail") if address.address.startswith("hang") else None

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        return self._never("rcpt") if address.address.startswith("hang") else None

    async def on_data(self, stream: Any, session: Any) -> None:
        body = await stream.read()
        if b"HANG" in body:
            await self._never("data")
            return
        await super().on_data(_Replay(body), session)


class _Replay:
    """A body already read, as an async iterable (for RecordingHandler.on_data)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __aiter__(self) -> _Replay:
        return self

    async def __anext__(self) -> bytes:
        if self.body is None:
            raise StopAsyncIteration
        body, self.body = self.body, None  # type: ignore[assignment]
        return body


def test_default_hook_timeout_is_finite() -> None:
    """By default a hook may take 30 s, not for ever (0 would mean no limit)."""
    default = SMTPServerOptions().hook_timeout
    assert 0 < default < math.inf
    assert default == 30.0


def test_hook_timeout_on_rcpt_to_and_mail_from() -> None:
    """A hook that never answers: the client gets 451 4.3.0 after hook_timeout,
    the hook is cancelled and the session goes on to deliver a message."""
    handler = Hanging()
    with serve(handler, options(hook_timeout=1)) as server:
        with smtplib.SMTP(*server.address, timeout=20) as client:
            client.ehlo("client.test")
            assert client.mail("hang@example.org") == (451, TIMED_OUT[1].encode())
            assert client.mail("a@example.org")[0] == 250
            assert client.rcpt("hang@example.com") == (451, TIMED_OUT[1].encode())
            assert client.rcpt("b@example.com")[0] == 250
            assert client.data(BODY)[0] == 250
            assert client.noop()[0] == 250
    assert handler.cancelled == ["mail", "rcpt"]
    [message] = handler.messages
    assert message.rcpt_to == ["b@example.com"]


def test_hook_timeout_on_data() -> None:
    """on_data that never answers: 451 4.3.0 after the body, nothing
    accepted, and the next message on the same connection is delivered."""
    handler = Hanging()
    with serve(handler, options(hook_timeout=1)) as server:
        with smtplib.SMTP(*server.address, timeout=20) as client:
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("a@example.org", ["b@example.com"], b"Subject: HANG\r\n\r\nx\r\n")
            assert (info.value.smtp_code, info.value.smtp_error) == (451, TIMED_OUT[1].encode())
            assert client.sendmail("a@example.org", ["c@example.com"], BODY) == {}
    assert handler.cancelled == ["data"]
    assert [m.rcpt_to for m in handler.messages] == [["c@example.com"]]


def test_hook_timeout_on_connect() -> None:
    """on_connect that never answers: 421 (no greeting) and the connection closed."""

    class HangingConnect(Handler):
        def on_connect(self, session: Any) -> Any:
            return Deferred()

    with serve(HangingConnect(), options(hook_timeout=1)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            assert client.greeting == (421, "mx.test Error: timed out, closing connection")
            assert wait_closed(client)
        finally:
            client.close()
        wait_until(lambda: connections(server) == 0)


# ---------------------------------------------------------------------------
# max_connections_per_ip and limits_exempt
# ---------------------------------------------------------------------------


def test_max_connections_per_ip() -> None:
    """limits_exempt=(): the fourth connection from 127.0.0.2 gets 421 4.7.0
    and is closed; another address is not affected; a freed slot can be
    taken again."""
    with serve(None, options(max_connections_per_ip=3, limits_exempt=())) as server, ExitStack() as stack:
        held = [stack.enter_context(_closing(raw_from(server, "127.0.0.2"))) for _ in range(3)]
        assert [c.greeting[0] for c in held] == [220, 220, 220]  # type: ignore[index]
        extra = stack.enter_context(_closing(raw_from(server, "127.0.0.2")))
        assert extra.greeting == TOO_MANY
        assert wait_closed(extra)
        other = stack.enter_context(_closing(raw_from(server, "127.0.0.3")))
        assert other.greeting is not None and other.greeting[0] == 220
        # The held ones still work.
        assert held[0].command("EHLO held.test")[0] == 250
        assert held[1].command("QUIT")[0] == 221
        assert wait_closed(held[1])
        wait_until(lambda: connections(server) == 3)
        again = stack.enter_context(_closing(raw_from(server, "127.0.0.2")))
        assert again.greeting is not None and again.greeting[0] == 220


def test_per_address_slots_are_given_back() -> None:
    """However connections from one address end (QUIT, a reset before the
    greeting or in the middle of DATA, the idle timeout, a refusal by the
    limit itself), every slot comes back: 120 such connections later, the
    address may again hold exactly max_connections_per_ip."""

    def reset(client: RawClient) -> None:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()

    opts = options(max_connections_per_ip=3, limits_exempt=(), socket_timeout=1)
    with serve(None, opts) as server, ExitStack() as stack:
        for i in range(30):
            quitter = raw_from(server, "127.0.0.2")
            quitter.command("QUIT")
            quitter.close()
            reset(RawClient(*server.address, read_greeting=False, source="127.0.0.2"))
            mid_data = raw_from(server, "127.0.0.2")
            mid_data.start_message("a@example.org", ["b@example.com"])
            mid_data.send(b"Subject: cut\r\n\r\nhalf")
            reset(mid_data)
            if i % 10 == 0:
                idle = [raw_from(server, "127.0.0.2") for _ in range(3)]
                refused = raw_from(server, "127.0.0.2")
                assert refused.greeting == TOO_MANY
                refused.close()
                for c in idle:  # the idle timeout
                    assert c.reply() == IDLE_BEFORE_EHLO
                    assert wait_closed(c)
                    c.close()
        wait_until(lambda: connections(server) == 0)
        held = [stack.enter_context(_closing(raw_from(server, "127.0.0.2"))) for _ in range(3)]
        assert {c.greeting[0] for c in held} == {220}  # type: ignore[index]
        assert raw_from(server, "127.0.0.2").greeting == TOO_MANY


def test_default_share_per_address() -> None:
    """The default options (with nothing exempt): one address holds 50
    connections, the 51st is refused, another address still gets in."""
    defaults = options(limits_exempt=())
    assert defaults.max_connections_per_ip == 50
    with serve(None, defaults) as server, ExitStack() as stack:
        held = [stack.enter_context(_closing(raw_from(server, "127.0.0.2"))) for _ in range(50)]
        assert {c.greeting[0] for c in held} == {220}  # type: ignore[index]
        extra = stack.enter_context(_closing(raw_from(server, "127.0.0.2")))
        assert extra.greeting == TOO_MANY
        other = stack.enter_context(_closing(raw_from(server, "127.0.0.3")))
        assert other.greeting is not None and other.greeting[0] == 220


def test_loopback_is_exempt_by_default() -> None:
    """limits_exempt's default covers loopback: a local MTA may open more
    than max_connections_per_ip connections."""
    assert [str(n) for n in SMTPServerOptions().limits_exempt] == ["127.0.0.0/8", "::1/128"]
    with serve(None, options(max_connections_per_ip=2)) as server, ExitStack() as stack:
        clients = [stack.enter_context(_closing(RawClient(*server.address))) for _ in range(5)]
        assert {c.greeting[0] for c in clients} == {220}  # type: ignore[index]


@contextmanager
def _closing(client: RawClient) -> Iterator[RawClient]:
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------------------
# max_auth_failures and auth_failure_delay
# ---------------------------------------------------------------------------


def auth_options(**kw: Any) -> SMTPServerOptions:
    return options(allow_insecure_auth=True, auth_methods=["PLAIN", "LOGIN"], **kw)


def test_max_auth_failures() -> None:
    """The third wrong password (max_auth_failures=3) is answered 421 4.7.0
    and the connection is closed; a new connection may log in."""
    handler = RecordingHandler(users={"alice": "secret"})
    with serve(handler, auth_options(max_auth_failures=3, auth_failure_delay=0.1)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO guesser.test")
            answers = [client.command(f"AUTH PLAIN {plain('alice', f'guess{i}')}") for i in range(3)]
            assert [a[0] for a in answers] == [535, 535, 421]
            assert answers[2][1] == "4.7.0 Error: too many failed authentications"
            assert wait_closed(client)
        finally:
            client.close()
        with smtplib.SMTP(*server.address, timeout=20) as good:
            good.login("alice", "secret")
            assert good.sendmail("alice@example.org", ["b@example.com"], BODY) == {}


def test_guessing_is_bounded_by_default() -> None:
    """Default max_auth_failures (5; insecure AUTH allowed and a short
    tarpit for the test): the fifth wrong password ends the session."""
    assert SMTPServerOptions().max_auth_failures == 5
    handler = RecordingHandler(users={"alice": "secret"})
    with serve(handler, auth_options(auth_failure_delay=0.05)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO guesser.test")
            codes = []
            for i in range(10):
                try:
                    codes.append(client.command(f"AUTH PLAIN {plain('alice', f'guess{i}')}")[0])
                except (ConnectionError, OSError):
                    break
            assert codes == [535, 535, 535, 535, 421]
            assert wait_closed(client)
        finally:
            client.close()


def test_auth_failure_delay() -> None:
    """auth_failure_delay=1.5: a wrong password is answered no sooner than
    1.5 s later (a lower bound: the tarpit), a right one is not held."""
    assert SMTPServerOptions().auth_failure_delay == 1.0
    handler = RecordingHandler(users={"alice": "secret"})
    with serve(handler, auth_options(auth_failure_delay=1.5)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO guesser.test")
            client.send(f"AUTH PLAIN {plain('alice', 'wrong')}\r\nNOOP\r\n".encode())
            # Nothing comes back while the tarpit holds the session (the
            # pipelined NOOP waits too).
            client.sock.settimeout(1.0)
            with pytest.raises(TimeoutError):
                client.reply()
            client.sock.settimeout(20)
            assert client.reply()[0] == 535
            assert client.reply()[0] == 250
            assert client.command(f"AUTH PLAIN {plain('alice', 'secret')}")[0] == 235
        finally:
            client.close()


# ---------------------------------------------------------------------------
# max_transactions
# ---------------------------------------------------------------------------


def test_max_transactions() -> None:
    """max_transactions=2: two messages, then MAIL gets 421 4.7.0 and the
    connection is closed."""
    assert SMTPServerOptions().max_transactions == 0  # no limit by default
    handler = RecordingHandler()
    with serve(handler, options(max_transactions=2)) as server:
        with smtplib.SMTP(*server.address, timeout=20) as client:
            for i in range(2):
                assert client.sendmail("a@example.org", [f"r{i}@example.com"], BODY) == {}
            assert client.mail("a@example.org") == (
                421,
                b"4.7.0 Error: too many messages in one session",
            )
            with pytest.raises(smtplib.SMTPServerDisconnected):
                client.noop()
    assert len(handler.messages) == 2


# ---------------------------------------------------------------------------
# pregreet_delay
# ---------------------------------------------------------------------------


def test_pregreet_delay() -> None:
    """pregreet_delay=1: a client that waits is greeted and delivers; one
    that talks first gets 554 5.5.1 and is closed."""
    assert SMTPServerOptions().pregreet_delay == 0  # off by default
    handler = RecordingHandler()
    with serve(handler, options(pregreet_delay=1)) as server:
        with smtplib.SMTP(*server.address, timeout=20) as patient:
            assert patient.sendmail("a@example.org", ["b@example.com"], BODY) == {}
        early = RawClient(*server.address, timeout=20, read_greeting=False)
        try:
            early.send(b"EHLO bot.test\r\n")
            assert early.reply() == (554, "5.5.1 Error: talking before the greeting")
            assert wait_closed(early)
        finally:
            early.close()
    assert len(handler.messages) == 1


def trickle(client: RawClient, data: bytes) -> tuple[Any, int]:
    """Send C{data} one byte every 0.25 s until the server answers (or the
    connection breaks): that reply (or C{None}) and the bytes sent."""
    client.sock.settimeout(0.25)
    sent = 0
    for byte in data:
        try:
            client.sock.sendall(bytes([byte]))
        except OSError:
            break
        sent += 1
        try:
            return client.reply(), sent
        except TimeoutError:
            continue
    return None, sent


# ---------------------------------------------------------------------------
# Deadlines: socket_timeout, session_timeout, data_timeout
# ---------------------------------------------------------------------------


def test_socket_timeout_cuts_a_client_trickling_bytes() -> None:
    """socket_timeout=2: a client sending one byte every 0.25 s, never a
    whole line, is cut with 421 after a bounded number of bytes."""
    assert SMTPServerOptions().socket_timeout == 60.0
    with serve(None, options(socket_timeout=2)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO slow.test")
            reply, sent = trickle(client, b"MAIL FROM:<" + b"x" * 200)
            assert reply == IDLE
            # 2 s (plus one sweep tick) at 4 bytes a second; 200 is far beyond.
            assert sent < 100
        finally:
            client.close()


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_socket_timeout_cuts_a_body_trickled_byte_by_byte(verb: str) -> None:
    """socket_timeout=2 (data_timeout off): a body sent one byte every
    0.25 s is cut with 421 like a trickled command, and nothing is stored."""
    handler = RecordingHandler()
    with serve(handler, options(socket_timeout=2, data_timeout=0)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            if verb == "DATA":
                client.start_message("a@example.org", ["b@example.com"])
            else:
                client.command("EHLO slow.test")
                client.command("MAIL FROM:<a@example.org>")
                client.command("RCPT TO:<b@example.com>")
                client.send(b"BDAT 100000 LAST\r\n")
            reply, sent = trickle(client, b"x" * 200)
            assert reply == IDLE
            assert sent < 100
        finally:
            client.close()
        wait_until(lambda: connections(server) == 0)
    assert handler.messages == []


def test_socket_timeout_spares_a_client_that_makes_progress() -> None:
    """Whole commands are progress: NOOP every 0.5 s for 4 s (twice the
    socket timeout) keeps the session open."""
    with serve(None, options(socket_timeout=2)) as server:
        with smtplib.SMTP(*server.address, timeout=20) as client:
            for _ in range(8):
                assert client.noop()[0] == 250
                time.sleep(0.5)
            assert client.noop()[0] == 250


def test_session_timeout() -> None:
    """session_timeout=3: a client that keeps sending NOOPs (progress) is
    cut with 421 all the same, after a bounded number of them."""
    assert SMTPServerOptions().session_timeout == 1800.0
    with serve(None, options(socket_timeout=2, session_timeout=3)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            replies = []
            for _ in range(100):
                try:
                    replies.append(client.command("NOOP"))
                except (ConnectionError, OSError):
                    break
                if replies[-1][0] != 250:
                    break
                time.sleep(0.2)
            assert replies[-1] == (421, "Error: session too long - closing connection")
            assert len(replies) < 50
            assert wait_closed(client)
        finally:
            client.close()


def test_data_timeout() -> None:
    """data_timeout=2: a body that keeps coming, a line every 0.2 s (so the
    idle timer never fires), is cut with 421 4.4.2 and nothing is stored."""
    assert SMTPServerOptions().data_timeout == 600.0
    handler = RecordingHandler()
    with serve(handler, options(socket_timeout=30, data_timeout=2)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.start_message("a@example.org", ["b@example.com"])
            client.sock.settimeout(0.2)
            reply = None
            for i in range(200):
                try:
                    client.send(b"line %d of a body that never ends\r\n" % i)
                except OSError:
                    break
                try:
                    reply = client.reply()
                    break
                except TimeoutError:
                    continue
            assert reply == (421, "4.4.2 Error: message took too long - closing connection")
            client.sock.settimeout(10)
            assert wait_closed(client)
        finally:
            client.close()
        wait_until(lambda: connections(server) == 0)
    assert handler.messages == []


# ---------------------------------------------------------------------------
# size and reject_oversized
# ---------------------------------------------------------------------------


def test_default_size_is_advertised_and_enforced() -> None:
    """Default size: SIZE 10485760 in EHLO; a body over it gets 552 whatever
    the handler says (reject_oversized), and the session goes on."""
    defaults = SMTPServerOptions()
    assert (defaults.size, defaults.reject_oversized) == (10 * 1024 * 1024, True)
    handler = RecordingHandler()
    with serve(handler, options()) as server:
        with smtplib.SMTP(*server.address, timeout=60) as client:
            client.ehlo("client.test")
            assert client.esmtp_features["size"] == "10485760"
            big = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 10_600
            client.mail("a@example.org")  # no SIZE= declared: found during DATA
            client.rcpt("b@example.com")
            code, text = client.data(big)
            assert (code, text) == (552, b"5.3.4 Error: message exceeds fixed maximum message size 10485760")
            assert client.sendmail("a@example.org", ["b@example.com"], BODY) == {}
    assert [len(m.data) for m in handler.messages] == [len(BODY)]


def test_bdat_over_the_size_is_refused_and_closed() -> None:
    """BDAT 100000000000 LAST: 552 at once and the connection closed,
    before a byte of the chunk is read."""
    handler = RecordingHandler()
    with serve(handler, options()) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO client.test")
            assert client.command("MAIL FROM:<a@example.org>")[0] == 250
            assert client.command("RCPT TO:<b@example.com>")[0] == 250
            assert client.command("BDAT 100000000000 LAST") == (
                552,
                "5.3.4 Error: message exceeds fixed maximum message size 10485760",
            )
            assert wait_closed(client)
        finally:
            client.close()
        wait_until(lambda: connections(server) == 0)
    assert handler.messages == []


def test_bdat_chunks_within_the_size_are_accepted() -> None:
    """Control: chunks that add up to less than size are delivered."""
    handler = RecordingHandler()
    with serve(handler, options(size=1000)) as server:
        client = RawClient(*server.address, timeout=20)
        try:
            client.command("EHLO client.test")
            client.command("MAIL FROM:<a@example.org>")
            client.command("RCPT TO:<b@example.com>")
            client.send(b"BDAT 500\r\n" + b"y" * 500)
            assert client.reply()[0] == 250
            client.send(b"BDAT 499 LAST\r\n" + b"z" * 499)
            assert client.reply()[0] == 250
            client.send(b"MAIL FROM:<a@example.org>\r\n")
            assert client.reply()[0] == 250
            client.command("RCPT TO:<b@example.com>")
            assert client.command("BDAT 1001 LAST")[0] == 552
        finally:
            client.close()
    assert [len(m.data) for m in handler.messages] == [999]


@pytest.mark.external
def test_size_with_swaks() -> None:
    """swaks sending a body over size=2000 sees 552; one under it gets 250."""
    swaks = require_program("swaks")
    handler = RecordingHandler()
    with serve(handler, options(size=2000)) as server:

        def send(body: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [
                    swaks, "--server", f"127.0.0.1:{server.port}", "--from", "a@example.org",
                    "--to", "b@example.com", "--body", body, "--timeout", "20",
                ],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        big = send("x" * 3000)
        assert big.returncode != 0
        assert "<** 552 5.3.4 Error: message exceeds fixed maximum message size 2000" in big.stdout
        small = send("small")
        assert small.returncode == 0, small.stdout + small.stderr
    assert len(handler.messages) == 1
