"""
MessageStream.write_to with a consumer that applies backpressure (what the
relay handler does with its upstream transport): when the body ends while
the consumer has the stream paused, the client must not stay paused.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IConsumer
from zope.interface import implementer

from smtpsession.stream import MessageStream


@implementer(IConsumer)
class FullConsumer:
    """A consumer whose buffer fills on the first write (like a transport)."""

    def __init__(self) -> None:
        self.producer: Any = None
        self.written: list[bytes] = []

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        self.written.append(data)
        self.producer.pauseProducing()


def make_stream() -> tuple[MessageStream, list[str]]:
    calls: list[str] = []
    stream = MessageStream(0, lambda: calls.append("pause"), lambda: calls.append("resume"))
    return stream, calls


def test_body_ends_while_consumer_is_paused() -> None:
    """The last chunk fills the consumer, then the body ends: write_to's
    Deferred fires and the client is resumed (a stream left paused would
    stop the connection from ever reading its next command)."""
    stream, calls = make_stream()
    consumer = FullConsumer()
    done = stream.write_to(consumer)
    stream.feed(b"the whole body\r\n")
    assert calls == ["pause"]
    stream.end()
    assert done.called
    assert consumer.written == [b"the whole body\r\n"]
    assert consumer.producer is None
    assert calls == ["pause", "resume"]


def test_consumer_resumes_after_the_end() -> None:
    """Chunks queued while the consumer was paused are written when it
    resumes; then the Deferred fires and the client is not left paused."""
    stream, calls = make_stream()
    consumer = FullConsumer()
    done = stream.write_to(consumer)
    stream.feed(b"one\r\n")  # written; the consumer pauses
    stream.feed(b"two\r\n")  # queued
    stream.end()
    assert not done.called
    producer = consumer.producer
    consumer.write = consumer.written.append  # type: ignore[method-assign]
    producer.resumeProducing()
    assert done.called
    assert consumer.written == [b"one\r\n", b"two\r\n"]
    assert calls[-1] == "resume" and calls.count("pause") == calls.count("resume")
