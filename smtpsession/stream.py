# -*- test-case-name: tests.protocol.test_stream -*-
"""
L{MessageStream}: the body of one message, handed to C{on_data}.

The stream is fed by the protocol as the core releases body chunks and is
read by the handler in one of three ways (async iteration, C{read()}, or
pushing into an C{IConsumer}).  It never holds the body whole unless the
handler asks for it with C{read()}: chunks are handed straight to a waiting
reader, and when they pile up past L{HIGH_WATER} the stream asks the
protocol to stop reading from the socket until the reader catches up.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession._hooks import Parked
from smtpsession.interfaces import IMessageStream

__all__ = ["MessageStream", "HIGH_WATER", "LOW_WATER", "StreamAborted"]

#: Queued bytes above which the client is paused.
HIGH_WATER = 256 * 1024
#: Queued bytes below which it is resumed.
LOW_WATER = 64 * 1024

#: Sent to a parked reader at the end of the body: its wait raises
#: StopAsyncIteration itself, which costs less than throwing one into the
#: coroutine from outside.
_END = object()


class _Wait(Deferred[Any], Parked):
    """
    What C{async for} waits on when no chunk is ready.  Under
    L{CoroutineDriver} (how smtpsession runs coroutine hooks) it parks the
    driver, which the stream then resumes directly with the chunk; anywhere
    else (a coroutine the handler runs itself with C{ensureDeferred}) it is
    an ordinary Deferred that fires with the next chunk.

    A waiter that was only ever parked was never used as a Deferred, so the
    stream hands it out again for the next wait: one per message, not one
    per chunk.
    """


class StreamAborted(Exception):
    """
    The body will not arrive in full: the client disconnected or ended the
    transaction (RSET, QUIT, EHLO, STARTTLS) in the middle of it.  Nothing
    of this message may be kept.
    """


@implementer(IMessageStream, IPushProducer)
class MessageStream:
    """
    A message body as it arrives.

    @ivar byte_length: body bytes received so far (after dot-unstuffing).
    @ivar size_exceeded: whether C{byte_length} is above the server's
        C{size} option (always C{False} when there is no limit).
    """

    # Slots, all set in __init__: a stream is made per message, and slot
    # stores and loads are the cheapest attribute access there is.  (Class
    # defaults would make fewer stores, but instances that then set their
    # attributes in varying orders get a real dict built on CPython 3.11.)
    # __dict__ and __weakref__ keep handlers free to annotate a stream.
    __slots__ = (
        "byte_length",
        "size_exceeded",
        "_limit",
        "_pause_cb",
        "_resume_cb",
        "_chunks",
        "_queued",
        "_paused",
        "_waiter",
        "_spare",
        "_ended",
        "_error",
        "_mode",
        "_whole",
        "_read_d",
        "_consumer",
        "_consumer_paused",
        "_done_d",
        "_map",
        "__dict__",
        "__weakref__",
    )

    def __init__(
        self,
        size_limit: int,
        pause: Callable[[], None],
        resume: Callable[[], None],
    ) -> None:
        self.byte_length = 0
        self.size_exceeded = False
        self._limit = size_limit
        self._pause_cb = pause
        self._resume_cb = resume
        self._chunks: deque[bytes] = deque()
        self._queued = 0
        self._paused = False  # we asked the protocol to stop reading
        self._waiter: _Wait | None = None  # the reader waiting for a chunk
        self._spare: _Wait | None = None  # a waiter that may be handed out again
        self._ended = False
        self._error: Failure | None = None
        self._mode: str | None = None
        self._whole: list[bytes] | None = None
        self._read_d: Deferred[bytes] | None = None
        self._consumer: Any = None
        self._consumer_paused = False
        self._done_d: Deferred[None] | None = None
        self._map: Callable[[bytes], bytes] | None = None

    def __repr__(self) -> str:
        state = "ended" if self._ended else "open"
        return f"<MessageStream {state} byte_length={self.byte_length}>"

    # ------------------------------------------------------------------
    # The reader's side
    # ------------------------------------------------------------------

    def __aiter__(self) -> MessageStream:
        if self._mode != "iter":
            self._claim("iter")
        return self

    # A generator-based coroutine (not "async def"): a ready chunk costs no
    # coroutine object and no awaitable wrapper, and a wait costs no
    # Deferred round trip when CoroutineDriver runs the hook (see _Wait).
    @types.coroutine
    def __anext__(self) -> Generator[Any, Any, bytes]:
        if self._chunks:
            return self._pop()
        if self._error is not None:
            self._error.raiseException()
        if self._ended:
            raise StopAsyncIteration
        waiter = self._waiter
        if waiter is None:
            waiter = self._spare
            if waiter is None:
                waiter = self._spare = _Wait()
            self._waiter = waiter
        while True:
            # The driver sends the chunk (or _END); Deferred-style runners
            # send the waiter's result, or throw its failure in here.
            value = yield waiter
            if value is not None:
                if value is _END:
                    raise StopAsyncIteration
                return value
            if waiter.called and not waiter.paused:
                result = waiter.result
                if isinstance(result, Failure):
                    waiter.result = None  # consumed here, never "unhandled"
                    result.raiseException()
                return cast(bytes, result)

    def read(self) -> Deferred[bytes]:
        """
        The whole body, once it has arrived.  This is the one way of reading
        that holds the body in memory: prefer iteration for large messages.
        """
        self._claim("read")
        self._whole = list(self._chunks)
        self._chunks.clear()
        self._queued = 0
        self._maybe_resume()
        d: Deferred[bytes] = Deferred()
        if self._error is not None:
            d.errback(self._error)
        elif self._ended:
            d.callback(b"".join(self._whole))
        else:
            self._read_d = d
        return d

    def write_to(self, consumer: IConsumer) -> Deferred[None]:
        """
        Write the body into C{consumer}, pausing the client whenever the
        consumer pauses this stream.  The Deferred fires (with C{None}) when
        the body has been written, or fails (L{StreamAborted}) if it did not
        arrive in full or the consumer stopped it with C{stopProducing}.
        """
        self._claim("consumer")
        self._consumer = consumer
        consumer.registerProducer(self, True)
        self._done_d = Deferred()
        done = self._done_d
        while self._chunks and not self._consumer_paused:
            consumer.write(self._pop())
        if self._error is not None:
            self._finish_consumer(self._error)
        elif self._ended and not self._chunks:
            self._finish_consumer(None)
        return done

    # ------------------------------------------------------------------
    # For filters: change what the next stage reads
    # ------------------------------------------------------------------

    def prepend(self, data: bytes) -> None:
        """
        Put C{data} before the body (a header line, say): the reader gets
        it first.  Only before anyone reads the stream.
        """
        self._not_read_yet("prepend")
        if data:
            self._chunks.appendleft(data)
            self._queued += len(data)
            self.byte_length += len(data)

    def map(self, transform: Callable[[bytes], bytes]) -> None:
        """
        Pass every chunk of the body through C{transform} before the reader
        gets it (chunks already received included).  Chunk boundaries are
        wherever the network put them.  Only before anyone reads the
        stream; several maps apply in the order they were added.
        """
        self._not_read_yet("map")
        previous = self._map
        if previous is None:
            self._map = transform
        else:
            self._map = lambda chunk: transform(previous(chunk))
        if self._chunks:
            old = list(self._chunks)
            self._chunks.clear()
            self._queued = 0
            for chunk in old:
                chunk = transform(chunk)
                self._chunks.append(chunk)
                self._queued += len(chunk)

    def _not_read_yet(self, what: str) -> None:
        if self._mode is not None:
            raise RuntimeError(f"{what}() must come before the stream is read")

    def _claim(self, mode: str) -> None:
        if self._mode is not None and self._mode != mode:
            raise RuntimeError(
                f"this stream is already being read ({self._mode}); "
                "read a message body one way only"
            )
        self._mode = mode

    def _pop(self) -> bytes:
        chunk = self._chunks.popleft()
        self._queued -= len(chunk)
        if self._paused and self._queued <= LOW_WATER:
            self._resume_client()
        return chunk

    def _maybe_resume(self) -> None:
        if self._queued <= LOW_WATER:
            self._resume_client()

    def _pause_client(self) -> None:
        """Ask the protocol to stop reading (once)."""
        if not self._paused:
            self._paused = True
            self._pause_cb()

    def _resume_client(self) -> None:
        """Let the protocol read again, if we had stopped it."""
        if self._paused:
            self._paused = False
            self._resume_cb()

    # -- IPushProducer, for write_to() ---------------------------------------

    def pauseProducing(self) -> None:
        """The consumer is full: stop the client."""
        if not self._consumer_paused:
            self._consumer_paused = True
            self._pause_client()

    def resumeProducing(self) -> None:
        """The consumer wants more: flush what is queued, resume the client."""
        self._consumer_paused = False
        consumer = self._consumer
        while self._chunks and not self._consumer_paused:
            consumer.write(self._pop())
        if self._consumer_paused:
            return
        if self._ended and not self._chunks and self._done_d is not None:
            self._finish_consumer(self._error)
            return
        self._resume_client()

    def stopProducing(self) -> None:
        """
        The consumer gave up: drain the rest of the body, and fail
        C{write_to}'s Deferred, since the body did not all get written.
        """
        self._consumer_paused = False
        self._mode = "drain"
        self._chunks.clear()
        self._queued = 0
        self._resume_client()
        if self._done_d is not None:
            self._finish_consumer(Failure(StreamAborted("the consumer stopped reading")))

    def _finish_consumer(self, error: Failure | None) -> None:
        consumer = self._consumer
        done = self._done_d
        self._done_d = None
        self._consumer_paused = False
        # The consumer may have paused us with its last write; it will never
        # resume a producer it unregisters, so the client must be resumed
        # here or its connection stops reading for good.
        self._resume_client()
        if consumer is not None:
            consumer.unregisterProducer()
        if done is not None:
            if error is None:
                done.callback(None)
            else:
                done.errback(error)

    # ------------------------------------------------------------------
    # The protocol's side
    # ------------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        """A chunk of body arrived."""
        transform = self._map
        if transform is not None:
            chunk = transform(chunk)
        self.byte_length += len(chunk)
        if self._limit and self.byte_length > self._limit:
            self.size_exceeded = True
        mode = self._mode
        if mode == "drain":
            return
        if self._waiter is not None:
            self._wake(chunk)
            return
        if mode == "read":
            assert self._whole is not None
            self._whole.append(chunk)
            return
        if mode == "consumer" and not self._consumer_paused and not self._chunks:
            # Straight through only when nothing older is queued: a flush in
            # resumeProducing can resume the client, whose next chunk must
            # not overtake the ones still waiting.
            self._consumer.write(chunk)
            return
        self._chunks.append(chunk)
        self._queued += len(chunk)
        if self._queued > HIGH_WATER:
            self._pause_client()

    def _wake(self, value: Any, exc: BaseException | None = None) -> None:
        """
        Give the waiting reader a chunk, the end (L{_END}) or an error
        (C{exc}): straight into a parked coroutine, else by firing the
        waiter as the Deferred it then is.  Only a waiter that was parked
        and got a chunk may serve the next wait; any other is spent.
        """
        waiter = self._waiter
        assert waiter is not None
        self._waiter = None
        driver = waiter.driver
        if driver is None or value is _END or exc is not None:
            self._spare = None
        if driver is not None:
            waiter.driver = None
            if exc is None:
                driver.resume(value)
            else:
                driver.throw(exc)
        elif exc is not None:
            waiter.errback(Failure(exc))
        elif value is _END:
            waiter.errback(Failure(StopAsyncIteration()))
        else:
            waiter.callback(value)

    def end(self) -> None:
        """The body is complete."""
        if self._ended:
            return
        self._ended = True
        if self._waiter is not None:
            self._wake(_END)
        read_d = self._read_d
        if read_d is not None:
            self._read_d = None
            assert self._whole is not None
            read_d.callback(b"".join(self._whole))
            self._whole = None
        if self._done_d is not None and not self._chunks:
            self._finish_consumer(None)

    def fail(self, exc: BaseException) -> None:
        """
        The body will not be complete (or the server refuses it): readers
        get C{exc} instead of the end.
        """
        if self._ended:
            return
        self._ended = True
        failure = Failure(exc)
        self._error = failure
        self._chunks.clear()
        self._queued = 0
        if self._waiter is not None:
            self._wake(None, exc)
        read_d = self._read_d
        if read_d is not None:
            self._read_d = None
            self._whole = None
            read_d.errback(failure)
        if self._done_d is not None:
            self._finish_consumer(failure)
        self._resume_client()

    def drain(self) -> None:
        """
        The handler has answered: whatever else arrives is discarded
        (unless it asked for the body to be pushed or collected).
        """
        if self._mode in ("read", "consumer"):
            return
        self._mode = "drain"
        self._chunks.clear()
        self._queued = 0
        self._resume_client()
