"""
The message stream handed to C{on_data}, driven through the protocol:
C{async for}, C{read()}, C{write_to(consumer)} with backpressure, the live
C{byte_length}/C{size_exceeded}, draining of unread bodies, early answers,
and bodies that end badly.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import pytest
from twisted.internet.defer import Deferred, ensureDeferred, getDebugging, setDebugging, succeed
from twisted.internet.interfaces import IConsumer
from zope.interface import implementer
from zope.interface.verify import verifyObject

from smtpsession import Handler, SMTPError
from smtpsession.interfaces import IMessageStream
from smtpsession.stream import HIGH_WATER, MessageStream, StreamAborted
from tests.protocol.harness import FakeConnection, FakeServer, codes

LINE = b"x" * 1022 + b"\r\n"  # 1 KiB


def open_data(c: FakeConnection) -> None:
    assert codes(
        c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    ) == [250, 250, 250, 354]


@implementer(IConsumer)
class Consumer:
    """An IConsumer that records writes and can push back."""

    def __init__(self, pause_after: int | None = None) -> None:
        self.data: list[bytes] = []
        self.producer: Any = None
        self.unregistered = False
        self.pause_after = pause_after

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert streaming
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.unregistered = True

    def write(self, data: bytes) -> None:
        self.data.append(data)
        if self.pause_after is not None and len(self.data) >= self.pause_after:
            self.producer.pauseProducing()


def test_async_for_with_live_counters() -> None:
    """async for yields the body in chunks; byte_length and size_exceeded move as it arrives."""
    seen: list[tuple[int, int, bool]] = []
    streams: list[Any] = []

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            streams.append(stream)
            async for chunk in stream:
                seen.append((len(chunk), stream.byte_length, stream.size_exceeded))

    c = FakeServer(H(), size=3000, reject_oversized=False).connect()
    open_data(c)
    for _ in range(4):
        c.send(LINE)
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert sum(n for n, _, _ in seen) == 4096
    # byte_length is the running total at every chunk, size_exceeded flips
    # as soon as it passes the limit.
    total = 0
    for n, length, exceeded in seen:
        total += n
        assert length == total
        assert exceeded == (total > 3000)
    assert len(seen) >= 4
    assert streams[0].byte_length == 4096 and streams[0].size_exceeded
    assert verifyObject(IMessageStream, streams[0])


def test_read_returns_the_whole_body() -> None:
    """read() fires with the whole body once it has ended (Deferred style)."""
    bodies: list[bytes] = []

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return stream.read().addCallback(bodies.append)

    c = FakeServer(H()).connect()
    open_data(c)
    c.send(b"Subject: a\r\n\r\n")
    c.send(b"..body\r\n")
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert bodies == [b"Subject: a\r\n\r\n.body\r\n"]


def test_write_to_consumer_with_backpressure() -> None:
    """write_to: a consumer that pauses stops the client; resuming flushes and resumes."""
    consumer = Consumer(pause_after=1)
    done: list[Any] = []

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return stream.write_to(consumer).addCallback(done.append)

    c = FakeServer(H()).connect()
    open_data(c)
    c.send(LINE)
    assert b"".join(consumer.data) == LINE[:-2]  # the CRLF may still end the body
    assert c.producer_state == "paused"
    # Whatever the transport had already read is queued, not lost.
    c.send(LINE)
    consumer.pause_after = None
    consumer.producer.resumeProducing()
    assert c.producer_state == "producing"
    assert b"".join(consumer.data) == (LINE * 2)[:-2]
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert b"".join(consumer.data) == LINE * 2
    assert done == [None] and consumer.unregistered


def test_consumer_that_stops_gets_nothing_more() -> None:
    """
    A consumer calling stopProducing: write_to's Deferred fails (the body was
    not all written), the rest of the body is drained, the reply follows.
    """
    consumer = Consumer()
    outcomes: list[Any] = []

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            stream.write_to(consumer).addBoth(outcomes.append)
            return None

    c = FakeServer(H()).connect()
    open_data(c)
    c.send(LINE)
    assert outcomes == []
    consumer.producer.stopProducing()
    [failure] = outcomes
    assert failure.check(StreamAborted)
    c.send(LINE * 3)
    assert b"".join(consumer.data) == LINE[:-2]
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]


def test_unread_body_is_drained() -> None:
    """A handler that returns without reading: the body is drained, never buffered, then 250."""
    streams: list[MessageStream] = []

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            streams.append(stream)

    c = FakeServer(H()).connect()
    open_data(c)
    for _ in range(50):
        c.send(LINE * 64)  # 3.2 MB in 64 KiB writes
        assert c.producer_state == "producing"
        assert streams[0]._queued == 0
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert streams[0].byte_length == 50 * 64 * 1024


def test_early_answer_waits_for_the_end_of_data() -> None:
    """A handler that refuses before the body ends: the reply comes after the end, then the session goes on."""

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            raise SMTPError(554, "Rejected now")

    c = FakeServer(H()).connect()
    open_data(c)
    assert c.send(LINE * 10) == []
    assert c.send(b".\r\n") == ["554 5.6.0 Rejected now"]
    assert codes(c.lines("NOOP")) == [250]


def test_slow_reader_pauses_the_client() -> None:
    """Chunks pile up past the high-water mark only until the client is paused."""
    gate: Deferred[None] = Deferred()
    streams: list[MessageStream] = []
    received: list[int] = []

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            streams.append(stream)
            await gate
            async for chunk in stream:
                received.append(len(chunk))

    c = FakeServer(H()).connect()
    open_data(c)
    writes = 0
    while c.producer_state == "producing" and writes < 1000:
        c.send(LINE * 16)
        writes += 1
    assert c.producer_state == "paused"
    assert HIGH_WATER < streams[0]._queued <= HIGH_WATER + len(LINE) * 16
    gate.callback(None)
    assert c.producer_state == "producing"
    assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert sum(received) == writes * 16 * len(LINE)


def test_reading_two_ways_is_refused() -> None:
    """A stream is read one way only: mixing them raises RuntimeError in the handler."""
    errors: list[Exception] = []

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            stream.read()
            try:
                stream.write_to(Consumer())
            except RuntimeError as e:
                errors.append(e)

    c = FakeServer(H()).connect()
    open_data(c)
    assert c.send(b"x\r\n.\r\n") == ["250 2.6.0 OK: message queued"]
    assert len(errors) == 1


@pytest.mark.parametrize("runner", ["driver", "ensureDeferred"])
def test_connection_lost_mid_data(runner: str) -> None:
    """
    The reader gets StreamAborted at its wait, whether smtpsession's driver
    runs it or the handler runs it itself with ensureDeferred; nothing is
    replied; on_close still runs.
    """
    outcomes: list[Any] = []
    closed: list[Any] = []

    async def reader(stream: Any) -> None:
        try:
            async for _ in stream:
                pass
        except StreamAborted as e:
            outcomes.append(e)
            raise
        outcomes.append("complete")

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            coro = reader(stream)
            return coro if runner == "driver" else ensureDeferred(coro)

        def on_close(self, session: Any) -> Any:
            closed.append(session)

    c = FakeServer(H()).connect()
    open_data(c)
    c.send(b"partial body\r\n")
    c.disconnect()
    assert len(outcomes) == 1 and isinstance(outcomes[0], StreamAborted)
    assert c.replies() == []
    assert len(closed) == 1


@pytest.mark.parametrize("style", ["read", "iterate", "consumer"])
def test_connection_lost_fails_every_reading_style(style: str) -> None:
    """read(), iteration and write_to all report the aborted body as a failure."""
    failures: list[Any] = []

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            if style == "read":
                d = stream.read()
            elif style == "consumer":
                d = stream.write_to(Consumer())
            else:

                async def drain() -> None:
                    async for _ in stream:
                        pass

                d = Deferred.fromCoroutine(drain())
            d.addErrback(failures.append)
            return None

    c = FakeServer(H()).connect()
    open_data(c)
    c.send(b"partial")
    c.disconnect()
    assert len(failures) == 1 and failures[0].check(StreamAborted)


@pytest.mark.parametrize("runner", ["fromCoroutine", "ensureDeferred"])
def test_coroutine_run_by_the_handler_reads_every_chunk(runner: str) -> None:
    """
    A reader the handler runs itself (not under smtpsession's driver) awaits
    the stream's waits as ordinary Deferreds, chunk after chunk, to the end.
    """
    received: list[bytes] = []

    async def reader(stream: Any) -> str:
        async for chunk in stream:
            received.append(chunk)
            await succeed(None)
        return "Stored"

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            if runner == "fromCoroutine":
                return Deferred.fromCoroutine(reader(stream))
            return ensureDeferred(reader(stream))

    c = FakeServer(H()).connect()
    open_data(c)
    for n in range(3):
        assert c.send(b"line %d\r\n" % n) == []
    assert c.send(b".\r\n") == ["250 2.6.0 Stored"]
    assert b"".join(received) == b"line 0\r\nline 1\r\nline 2\r\n"
    assert len(received) >= 3
    # The same server, the next message, read the same way.
    received.clear()
    assert codes(c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")) == [
        250,
        250,
        354,
    ]
    assert c.send(b"again\r\n.\r\n") == ["250 2.6.0 Stored"]
    assert received == [b"again\r\n"]


def test_context_variables_belong_to_one_hook_call() -> None:
    """
    A context variable set in on_data keeps its value across every chunk
    the hook waits for, and leaks neither into later hook calls nor out.
    """
    var: ContextVar[str] = ContextVar("var", default="unset")
    seen: list[tuple[str, str]] = []

    class H(Handler):
        async def on_mail_from(self, address: Any, session: Any) -> Any:
            seen.append(("mail", var.get()))
            var.set("mail")

        async def on_data(self, stream: Any, session: Any) -> Any:
            seen.append(("data", var.get()))
            var.set("data")
            async for _ in stream:
                seen.append(("chunk", var.get()))
                var.set("data")
            seen.append(("end", var.get()))

    c = FakeServer(H()).connect()
    c.lines("EHLO c")
    for _ in range(2):
        c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
        c.send(b"one\r\n")
        c.send(b"two\r\n")
        assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    assert var.get() == "unset"
    assert [s for s in seen if s[0] in ("mail", "data")] == [
        ("mail", "unset"),
        ("data", "unset"),
    ] * 2
    assert {v for k, v in seen if k in ("chunk", "end")} == {"data"}
    assert len([s for s in seen if s[0] == "chunk"]) >= 4


def test_coroutine_run_by_the_handler_under_deferred_debugging() -> None:
    """With Deferred debugging on, the stream's waits still work as Deferreds."""
    received: list[bytes] = []

    async def reader(stream: Any) -> None:
        async for chunk in stream:
            received.append(chunk)

    class H(Handler):
        def on_data(self, stream: Any, session: Any) -> Any:
            return ensureDeferred(reader(stream))

    was = getDebugging()
    setDebugging(True)
    try:
        c = FakeServer(H()).connect()
        open_data(c)
        c.send(b"one\r\n")
        assert c.send(b".\r\n") == ["250 2.6.0 OK: message queued"]
    finally:
        setDebugging(was)
    assert b"".join(received) == b"one\r\n"
