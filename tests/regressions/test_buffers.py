"""
Every buffer the server keeps for a client is bounded, whatever the client
sends: the partial command line, input pipelined while a hook is pending or
during a TLS handshake, the DATA framer's carry, BDAT chunks, the queue of
body chunks waiting for a slow reader, and the recipient list.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from smtpsession import Handler
from smtpsession._core.connection import MAX_PENDING
from smtpsession._core.events import StartTLS
from smtpsession.options import SMTPServerOptions
from smtpsession.stream import HIGH_WATER
from tests.protocol.harness import FakeServer
from tests.unit.coreclient import CoreClient, codes, split_replies

PIECE = b"x" * 65536


def unparsed(c: CoreClient) -> int:
    return c.conn.unparsed


def test_partial_command_line() -> None:
    """A line without end is held only up to max_command_length, then 421."""
    c = CoreClient(max_command_length=16384)
    largest = 0
    for _ in range(100):
        c.send(b"y" * 1000)
        largest = max(largest, unparsed(c))
        if c.closed:
            break
    assert c.closed
    assert largest <= 16384 + 1000


def test_input_pipelined_while_waiting() -> None:
    """While the application has not answered, unparsed input is capped at MAX_PENDING."""
    c = CoreClient()
    c.ehlo()
    c.hold = True
    c.lines("MAIL FROM:<a@example.com>")
    for _ in range(MAX_PENDING // len(PIECE) + 2):
        c.conn.receive_data(PIECE)
        if c.closed:
            break
        assert unparsed(c) <= MAX_PENDING
    assert c.closed
    assert split_replies(c.conn.data_to_send()) == ["421 4.4.2 Error: too much pipelined input"]


def test_input_during_tls_handshake() -> None:
    """Cleartext after STARTTLS is dropped, and what follows is capped too."""
    c = CoreClient(tls_available=True)
    c.ehlo()
    c.send(b"STARTTLS\r\n" + PIECE)
    assert isinstance(c.pending, StartTLS)
    assert unparsed(c) == 0  # the pipelined cleartext is gone
    for _ in range(MAX_PENDING // len(PIECE) + 2):
        c.conn.receive_data(PIECE)
        if c.closed:
            break
    assert c.closed


def test_data_body_is_never_accumulated_by_the_core() -> None:
    """DATA: the core releases the body as it comes and keeps at most a few bytes."""
    c = CoreClient(size=0)
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    for _ in range(160):  # 10 MiB of body, one line
        c.conn.receive_data(PIECE)
        c.run()
        assert unparsed(c) == 0
        assert len(c.conn.framer._carry) <= 4  # type: ignore[union-attr]
        c.chunks.clear()  # the application consumed them
    assert codes(c.send(b"\r\n.\r\n")) == [250]


def test_bdat_chunk_is_never_accumulated_by_the_core() -> None:
    """BDAT: a 10 MiB chunk passes through without being held."""
    c = CoreClient()
    c.ehlo()
    size = 160 * len(PIECE)
    c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    c.send(b"BDAT %d LAST\r\n" % size)
    for _ in range(160):
        c.conn.receive_data(PIECE)
        c.run()
        assert unparsed(c) == 0
        c.chunks.clear()
    assert split_replies(c.conn.data_to_send()) == ["250 2.6.0 OK: message queued"]


def test_refused_bdat_is_skipped_not_stored() -> None:
    """The octets of a refused BDAT are discarded as they arrive."""
    c = CoreClient()
    c.ehlo()
    c.send(b"BDAT 10000000\r\n")
    for _ in range(100):
        c.send(PIECE)
        assert unparsed(c) == 0
    assert codes(c.send(b"x" * (10000000 - 100 * len(PIECE)) + b"NOOP\r\n")) == [250]


def test_recipients_are_limited_by_default() -> None:
    """The recipient list has a default cap (1000), so RCPT floods cannot exhaust memory."""
    assert SMTPServerOptions().max_recipients == 1000
    c = CoreClient()
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>")
    replies = c.send(b"".join(b"RCPT TO:<r%d@example.com>\r\n" % i for i in range(1005)))
    assert codes(replies) == [250] * 1000 + [452] * 5
    assert len(c.session.envelope.rcpt_to) == 1000


def test_body_queue_for_a_slow_reader() -> None:
    """Chunks waiting for a slow on_data stop at the high-water mark: the client is paused."""
    gate: Deferred[None] = Deferred()
    streams: list[Any] = []

    class Slow(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            streams.append(stream)
            await gate
            async for _ in stream:
                pass

    c = FakeServer(Slow()).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    for _ in range(100):
        if c.producer_state == "paused":
            break
        c.send(PIECE)
    assert c.producer_state == "paused"
    assert streams[0]._queued <= HIGH_WATER + len(PIECE)
    gate.callback(None)
    assert c.send(b"\r\n.\r\n") == ["250 2.6.0 OK: message queued"]


def test_reading_stops_while_a_hook_is_pending() -> None:
    """A pending hook pauses the transport: the client's next writes wait in the kernel."""
    gate: Deferred[None] = Deferred()

    class Slow(Handler):
        def on_mail_from(self, address: Any, session: Any) -> Any:
            return gate

    c = FakeServer(Slow()).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>")
    assert c.producer_state == "paused"
    gate.callback(None)
    assert c.producer_state == "producing"
