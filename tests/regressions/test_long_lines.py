"""
Over-long lines never switch modes.  In DATA a line of any length is just
body (an attacker cannot make the server fall back to command mode and run
what follows); in command mode an over-long line ends the session with 421
and nothing after it is executed.
"""

from __future__ import annotations

import socket
from typing import Any

from smtpsession import Handler, SMTPServerOptions
from smtpsession.testing import serve
from tests.protocol.harness import FakeServer, codes

FORGED = b"\r\nMAIL FROM:<forged@victim.example>\r\nRCPT TO:<x@victim.example>\r\n"


class Collect(Handler):
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.senders: list[str] = []

    def on_mail_from(self, address: Any, session: Any) -> Any:
        self.senders.append(address.address)

    async def on_data(self, stream: Any, session: Any) -> Any:
        self.bodies.append(b"".join([chunk async for chunk in stream]))


def test_huge_line_in_data_is_body() -> None:
    """A 2 MB line, then what looks like commands: all body, one message, one sender."""
    handler = Collect()
    c = FakeServer(handler).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    line = b"x" * (2 * 1024 * 1024)
    for i in range(0, len(line), 65536):
        assert c.send(line[i : i + 65536]) == []
    assert c.send(FORGED + b"QUIT\r\n") == []
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert handler.bodies == [line + FORGED + b"QUIT\r\n"]
    assert handler.senders == ["a@example.com"]
    assert codes(c.lines("NOOP")) == [250]


def test_long_line_in_command_mode_ends_the_session() -> None:
    """An over-long command: 421, close, and the commands glued after it never run."""
    handler = Collect()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    replies = c.send(b"NOOP " + b"y" * 20000 + FORGED)
    assert replies == ["421 4.4.2 Error: Command line too long"]
    assert handler.senders == []
    c.advance(0)
    assert not c.connected


def test_long_line_detected_without_its_end() -> None:
    """A client trickling an endless line is cut off once it passes the limit, not at its end."""
    c = FakeServer(max_command_length=4096).connect()
    sent = 0
    replies: list[str] = []
    while not replies and sent < 1_000_000:
        replies = c.send(b"z" * 100)
        sent += 100
    assert replies == ["421 Error: Command line too long"]
    assert 4096 < sent <= 4096 + 100


def test_long_sasl_line_ends_the_session() -> None:
    """SASL continuation lines obey the same limit."""

    class Auth(Handler):
        def on_auth(self, auth: Any, session: Any) -> Any:
            return None

    c = FakeServer(Auth(), allow_insecure_auth=True).connect()
    c.lines("EHLO c")
    assert codes(c.lines("AUTH LOGIN")) == [334]
    assert codes(c.send(b"A" * 20000 + b"\r\n")) == [421]


def test_long_line_on_a_real_socket() -> None:
    """End to end: 17000 octets of NOOP get 421 and the server closes the socket."""
    options = SMTPServerOptions(name="mx.test", disable_reverse_lookup=True)
    with serve(Collect(), options) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220")
            sock.sendall(b"NOOP " + b"x" * 17000 + b"\r\nMAIL FROM:<a@b.example>\r\n")
            assert f.readline() == b"421 Error: Command line too long\r\n"
            assert f.read() == b""
