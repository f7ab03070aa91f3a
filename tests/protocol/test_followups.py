"""
Regressions for defects found in review: body order under backpressure,
C{False} from C{on_data}, the logged result of a refused body.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IConsumer
from twisted.logger import LogEvent, globalLogPublisher
from zope.interface import implementer

from smtpsession import Handler
from smtpsession.stream import HIGH_WATER, MessageStream
from tests.protocol.harness import FakeServer, codes


@implementer(IConsumer)
class PausingConsumer:
    """Pauses the stream on its first write; records everything it gets."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.producer: Any = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        first = not self.data
        self.data.append(data)
        if first:
            self.producer.pauseProducing()


def test_chunks_keep_their_order_when_the_client_resumes_mid_flush() -> None:
    """
    While the stream flushes its queue to a consumer, resuming the client can
    deliver a new chunk at once; it must come after the queued ones.
    """
    stream: MessageStream | None = None
    late_sent = []

    def resume() -> None:
        # What the protocol does when the client is resumed: process input
        # it already has, which feeds the stream synchronously.
        if not late_sent:
            late_sent.append(True)
            assert stream is not None
            stream.feed(b"LATE")

    stream = MessageStream(0, lambda: None, resume)
    consumer = PausingConsumer()
    done: list[Any] = []
    stream.write_to(consumer).addBoth(done.append)
    chunks = [b"%05d" % i + b"x" * 8000 for i in range(80)]  # > HIGH_WATER queued
    for chunk in chunks:
        stream.feed(chunk)
    assert sum(map(len, chunks)) > HIGH_WATER
    assert len(consumer.data) == 1
    consumer.producer.resumeProducing()
    stream.end()
    assert late_sent
    assert consumer.data == [*chunks, b"LATE"]
    assert done == [None]


def test_on_data_returning_false_refuses() -> None:
    """on_data returning False refuses the message (450), never "250 False"."""

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return False

    c = FakeServer(H()).connect()
    assert codes(c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")) == [
        250,
        250,
        250,
        354,
    ]
    assert c.send(b"hi\r\n.\r\n") == ["450 4.2.1 Error: message rejected"]


def test_transaction_log_shows_the_core_refusal() -> None:
    """A body refused by the core (bare LF) is logged with the 554 the client got."""
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:

        class Reader(Handler):
            async def on_data(self, stream: Any, session: Any) -> Any:
                async for _ in stream:
                    pass

        c = FakeServer(Reader()).connect()
        c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
        replies = c.send(b"bare\nline\r\n.\r\n")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert replies[0].startswith("554 5.6.0")
    results = [e.get("result") for e in events if "result" in e]
    assert results and str(results[-1]).startswith("554"), results
