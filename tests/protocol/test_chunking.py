"""
CHUNKING and BINARYMIME (RFC 3030) through the protocol: BDAT chunks feed
the same message stream as DATA, with one reply per chunk and the message
reply after the LAST chunk.
"""

from __future__ import annotations

from typing import Any

from smtpsession import Handler, SMTPError
from smtpsession.stream import StreamAborted
from tests.protocol.harness import FakeConnection, FakeServer, codes

ENVELOPE = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"


class Collect(Handler):
    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.envelopes: list[Any] = []
        self.errors: list[BaseException] = []

    async def on_data(self, stream: Any, session: Any) -> Any:
        self.envelopes.append(session.envelope)
        try:
            self.bodies.append(b"".join([chunk async for chunk in stream]))
        except Exception as e:
            self.errors.append(e)
            raise


def ehlo(handler: Handler | None = None, **options: Any) -> FakeConnection:
    c = FakeServer(handler, **options).connect()
    c.lines("EHLO c")
    return c


def test_chunks_make_one_message() -> None:
    """BDAT n replies per chunk; BDAT n LAST ends the message; the body is the chunks joined."""
    handler = Collect()
    c = ehlo(handler)
    replies = c.send(ENVELOPE + b"BDAT 7\r\nhello\r\nBDAT 7 LAST\r\nworld\r\n")
    assert replies == [
        "250 2.1.0 Accepted",
        "250 2.1.5 Accepted",
        "250 2.0.0 OK: 7 octets received",
        "250 2.6.0 OK: message queued",
    ]
    assert handler.bodies == [b"hello\r\nworld\r\n"]
    assert c.session.transaction == 2


def test_chunk_split_across_writes_and_dots_are_data() -> None:
    """Chunk octets may arrive in any pieces; dots and CRLF.CRLF are plain data in BDAT."""
    handler = Collect()
    c = ehlo(handler)
    c.send(ENVELOPE + b"BDAT 12 LAST\r\n.\r\n")
    c.send(b"..\r\n")
    assert c.send(b".\r\n\r\n") == ["250 2.6.0 OK: message queued"]
    assert handler.bodies == [b".\r\n..\r\n.\r\n\r\n"]


def test_empty_last_chunk() -> None:
    """BDAT 0 LAST ends a message (also one with no earlier chunk)."""
    handler = Collect()
    c = ehlo(handler)
    assert codes(c.send(ENVELOPE + b"BDAT 3\r\nabcBDAT 0 LAST\r\n")) == [250, 250, 250, 250]
    assert codes(c.send(ENVELOPE + b"BDAT 0 LAST\r\n")) == [250, 250, 250]
    assert handler.bodies == [b"abc", b""]


def test_binarymime_body_is_untouched() -> None:
    """BODY=BINARYMIME: any octets, bare CR/LF included, reach the handler as sent."""
    handler = Collect()
    c = ehlo(handler)
    body = bytes(range(256))
    c.send(b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n")
    assert c.send(b"BDAT 256 LAST\r\n" + body) == ["250 2.6.0 OK: message queued"]
    assert handler.bodies == [body]
    assert handler.envelopes[0].body_type == "binarymime"


def test_bare_line_endings_rejected_in_bdat() -> None:
    """A non-BINARYMIME BDAT body with a bare LF is refused after LAST; the reader gets the error."""
    handler = Collect()
    c = ehlo(handler)
    replies = c.send(ENVELOPE + b"BDAT 4\r\na\nb\rBDAT 2 LAST\r\n\r\n")
    assert replies[-1].startswith("554 5.6.0")
    assert handler.bodies == []
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], SMTPError)


def test_cr_lf_split_between_chunks_is_not_bare() -> None:
    """A CR ending one chunk and an LF starting the next are one CRLF."""
    handler = Collect()
    c = ehlo(handler)
    assert c.send(ENVELOPE + b"BDAT 2\r\na\rBDAT 1 LAST\r\n\n")[-1] == "250 2.6.0 OK: message queued"
    assert handler.bodies == [b"a\r\n"]


def test_refused_bdat_swallows_its_octets() -> None:
    """A BDAT refused before MAIL still consumes its chunk, so the octets are never commands."""
    c = ehlo()
    chunk = b"MAIL FROM:<x@y.example>\r\n"
    assert c.send(b"BDAT %d\r\n" % len(chunk) + chunk + b"NOOP\r\n") == [
        "503 5.5.1 Error: need MAIL command",
        "250 2.0.0 OK",
    ]
    c = FakeServer().connect()
    assert c.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n") == ["503 Error: send HELO/EHLO first", "250 OK"]


def test_bdat_syntax_error_closes() -> None:
    """BDAT without a size: the chunk's end is unknowable, so the connection is closed."""
    c = ehlo()
    assert c.send(ENVELOPE + b"BDAT lots\r\nbody\r\n")[-1] == "501 5.5.4 Error: syntax: BDAT size [LAST]"
    c.advance(0)
    assert not c.connected


def test_rset_between_chunks_aborts_the_stream() -> None:
    """RSET after some chunks: the reader gets StreamAborted, the result is ignored."""
    handler = Collect()
    c = ehlo(handler)
    c.send(ENVELOPE + b"BDAT 5\r\nhello")
    assert c.lines("RSET") == ["250 2.0.0 Flushed"]
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], StreamAborted)
    assert c.session.transaction == 1
    assert codes(c.send(ENVELOPE + b"BDAT 2 LAST\r\nok")) == [250, 250, 250]
    assert handler.bodies == [b"ok"]


def test_data_and_bdat_do_not_mix() -> None:
    """DATA after BDAT in one transaction is refused (RFC 3030 §2) and the transaction ends."""
    handler = Collect()
    c = ehlo(handler)
    replies = c.send(ENVELOPE + b"BDAT 3\r\nabcDATA\r\n")
    assert replies[-1] == "503 5.5.1 Error: DATA not allowed after BDAT"
    assert c.lines("RCPT TO:<b@example.com>") == ["503 5.5.1 Error: need MAIL command"]


def test_binarymime_with_data_refused() -> None:
    """BODY=BINARYMIME requires BDAT."""
    c = ehlo()
    replies = c.send(b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert replies[-1] == "503 5.5.1 Error: BODY=BINARYMIME requires BDAT"


def test_chunking_in_lmtp() -> None:
    """LMTP with BDAT: one reply per recipient after LAST."""
    handler = Collect()
    c = FakeServer(handler, lmtp=True).connect()
    c.lines("LHLO c")
    replies = c.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<x@example.com>\r\nRCPT TO:<y@example.com>\r\n"
        b"BDAT 4 LAST\r\nhi\r\n"
    )
    assert replies[-2:] == ["250 2.6.0 OK: message accepted"] * 2


def test_chunking_can_be_hidden() -> None:
    """hide_chunking: BDAT is an unknown command."""
    c = ehlo(hide_chunking=True)
    assert c.send(ENVELOPE + b"BDAT 2 LAST\r\n")[-1] == "500 5.5.2 Error: command not recognized"
