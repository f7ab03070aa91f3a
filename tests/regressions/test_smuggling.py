"""
SMTP smuggling (CVE-2023-51764/51765/51766 and relatives): only
CRLF . CRLF ends DATA, so a message can never end early and carry a second,
forged message; a body with a bare LF or bare CR is refused with a 5xx after
the end of data (the handler never sees it complete), unless
C{lenient_line_endings} accepts it verbatim.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

from smtpsession import Handler, SMTPError
from smtpsession.testing import serve
from tests.protocol.harness import FakeServer, codes

SMUGGLED = (
    b"MAIL FROM:<admin@victim.example>\r\nRCPT TO:<target@victim.example>\r\nDATA\r\n"
    b"From: admin@victim.example\r\n\r\nforged\r\n"
)

# Fake end-of-data sequences used by smuggling attacks.
FAKE_ENDS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r", b"\n.\r"]


class Collect(Handler):
    """Records complete bodies and the way incomplete ones ended."""

    def __init__(self) -> None:
        self.complete: list[bytes] = []
        self.failed: list[BaseException] = []
        self.senders: list[str] = []

    def on_mail_from(self, address: Any, session: Any) -> Any:
        self.senders.append(address.address)

    async def on_data(self, stream: Any, session: Any) -> Any:
        chunks = []
        try:
            async for chunk in stream:
                chunks.append(chunk)
        except SMTPError as e:
            self.failed.append(e)
            raise
        self.complete.append(b"".join(chunks))


def session(handler: Handler, **options: Any) -> Any:
    c = FakeServer(handler, **options).connect()
    assert codes(
        c.lines("EHLO attacker.example", "MAIL FROM:<user@attacker.example>",
                "RCPT TO:<friend@victim.example>", "DATA")
    ) == [250, 250, 250, 354]
    return c


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=repr)
def test_fake_end_of_data_is_refused(fake_end: bytes) -> None:
    """A fake terminator never ends DATA; the message is refused with 554 5.6.0; nothing is forged."""
    handler = Collect()
    c = session(handler)
    replies = c.send(b"Subject: hi\r\n\r\nhello" + fake_end + SMUGGLED + b".\r\n")
    assert replies == [
        "554 5.6.0 Error: message contains a bare <CR> or <LF>; lines must end with <CR><LF>"
    ]
    assert handler.complete == []
    assert len(handler.failed) == 1 and handler.failed[0].code == 554
    assert handler.senders == ["user@attacker.example"]
    # The session goes on normally.
    assert codes(c.lines("NOOP")) == [250]
    assert c.session.error.startswith("554")


@pytest.mark.parametrize("fake_end", FAKE_ENDS, ids=repr)
def test_fake_end_of_data_is_body_when_lenient(fake_end: bytes) -> None:
    """With lenient_line_endings the fake terminator and the forged commands are message text."""
    handler = Collect()
    c = session(handler, lenient_line_endings=True)
    body = b"Subject: hi\r\n\r\nhello" + fake_end + SMUGGLED
    assert c.send(body + b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert len(handler.complete) == 1
    assert b"MAIL FROM:<admin@victim.example>" in handler.complete[0]
    assert handler.senders == ["user@attacker.example"]


def test_bare_lf_anywhere_in_the_body_is_refused() -> None:
    """One bare LF in a long body is enough: 554 after the end, never a partial delivery."""
    handler = Collect()
    c = session(handler)
    c.send(b"line\r\n" * 5000)
    c.send(b"sneaky\nline\r\n")
    c.send(b"line\r\n" * 5000)
    assert codes(c.send(b".\r\n")) == [554]
    assert handler.complete == []


def test_bare_lf_commands_never_execute() -> None:
    """Commands terminated by bare LF (how smuggled commands look) are answered 500, not run."""
    handler = Collect()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    replies = c.send(b"MAIL FROM:<admin@victim.example>\nRCPT TO:<x@victim.example>\n")
    assert codes(replies) == [500, 500]
    assert handler.senders == []


def test_terminator_split_across_writes() -> None:
    """A real CRLF.CRLF split over several writes still ends the message exactly there."""
    handler = Collect()
    c = session(handler)
    for piece in [b"hello\r", b"\n", b".", b"\r", b"\nNO", b"OP\r\n"]:
        replies = c.send(piece)
        if piece == b"\nNO":
            assert replies == ["250 2.6.0 OK: message queued"]
    assert replies == ["250 2.0.0 OK"]
    assert handler.complete == [b"hello\r\n"]


def test_smuggling_on_a_real_socket() -> None:
    """End to end on 127.0.0.1: a <LF>.<LF> smuggling attempt gets 554 and forges nothing."""
    handler = Collect()
    with serve(handler) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220")
            sock.sendall(b"EHLO attacker.example\r\n")
            while f.readline()[3:4] == b"-":
                pass
            sock.sendall(
                b"MAIL FROM:<user@attacker.example>\r\nRCPT TO:<friend@victim.example>\r\nDATA\r\n"
                b"Subject: hi\r\n\r\nhello\n.\n" + SMUGGLED + b".\r\nQUIT\r\n"
            )
            replies = [f.readline() for _ in range(5)]
    assert [r[:3] for r in replies] == [b"250", b"250", b"354", b"554", b"221"]
    assert handler.complete == []
    assert handler.senders == ["user@attacker.example"]
