# -*- test-case-name: tests.protocol.test_protocol,tests.protocol.test_deadlines -*-
"""
What the driver has in flight: L{HookCall}, a hook whose answer is due
(and its deadline), and L{Transaction}, a message body on its way to
C{on_data} and C{on_data}'s answer on its way back to the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import BodyRejected, DataAborted, DataEnd, DataStart
from smtpsession._hooks import Pending, call_hook
from smtpsession._server import Server
from smtpsession._twisted_shim import set_read_size
from smtpsession.errors import HookTimeout, SMTPError
from smtpsession.session import Session
from smtpsession.stream import MessageStream, StreamAborted

__all__ = [
    "HookCall",
    "Transaction",
    "TransactionHost",
    "data_start",
    "body_rejected",
    "data_end",
    "data_aborted",
]

Continuation = Callable[[Any, Failure | None], None]

#: Twisted's TCP read size, and the one used while a large body streams in
#: (small reads must stay small: every recv() allocates its full size).
READ_SIZE = 65536
BODY_READ_SIZE = 262144


class HookCall:
    """
    A hook (its whole filter chain) whose answer is due: what to cancel,
    what to call with the answer, and the C{hook_timeout} timer.

    Made only for hooks that do not answer at once: a hook that returns a
    value (or a fired Deferred) costs no timer and no object.
    """

    __slots__ = ("pending", "name", "late", "seconds", "timing_out", "_timer")

    def __init__(self, pending: Pending | None, name: str, late: Continuation) -> None:
        self.pending = pending
        self.name = name
        #: Where the answer goes (the continuation given to call_hook).
        self.late = late
        self.seconds = 0.0
        #: Set while the timeout cancels the hook: answers meanwhile (the
        #: cancellation's own CancelledError included) are ignored.
        self.timing_out = False
        self._timer: IDelayedCall | None = None

    def start_timer(self, clock: IReactorTime, seconds: float, expired: Callable[[], None]) -> None:
        """Give the hook C{seconds} (0: no limit) before C{expired} runs."""
        if seconds > 0:
            self.seconds = seconds
            self._timer = clock.callLater(seconds, expired)

    def stop_timer(self) -> None:
        timer = self._timer
        self._timer = None
        if timer is not None and timer.active():
            timer.cancel()

    def time_out(self, error: BaseException) -> None:
        """
        The deadline passed: cancel the hook (its Deferred, or the coroutine
        where it waits) and answer with C{error} instead.
        """
        self._timer = None
        self.timing_out = True
        pending = self.pending
        if pending is not None:
            pending.cancel()
        self.timing_out = False
        self.late(None, Failure(error))


class TransactionHost(Protocol):
    """What a L{Transaction} asks of the protocol it serves."""

    session: Session | None
    transport: Any

    @property
    def conn(self) -> ServerConnection | None: ...

    @property
    def gone(self) -> bool: ...

    def pause_stream(self) -> None: ...

    def resume_stream(self) -> None: ...

    def hold(self, hook: HookCall) -> None: ...

    def release(self) -> None: ...

    def process(self) -> None: ...

    @property
    def server(self) -> Server: ...

    @property
    def transaction(self) -> Transaction | None: ...

    def transaction_began(self, tx: Transaction) -> None: ...

    def transaction_over(self, tx: Transaction) -> None: ...

    def outcome(self, failure: Failure | None, hook: str) -> BaseException | None: ...


class Transaction:
    """
    One message body, from DATA (or the first BDAT) to the final reply.

    C{on_data} is called when the body begins, with the stream the body's
    chunks are fed into as they arrive; its answer may come before the
    body ends (the rest is then drained) or after (the protocol holds the
    session meanwhile, under C{hook_timeout}).  Either way the core gets
    the answer only once the body has ended.
    """

    __slots__ = (
        "_host",
        "_server",
        "stream",
        "outcome",
        "waiting",
        "pending",
        "started",
        "big_reads",
        "over",
        "size",
        "_hook",
    )

    def __init__(self, host: TransactionHost, server: Server) -> None:
        self._host = host
        self._server = server
        self.stream = MessageStream(server.options.size, host.pause_stream, host.resume_stream)
        #: C{on_data}'s (value, failure), once it answered.
        self.outcome: tuple[Any, Failure | None] | None = None
        #: The body has ended and the answer is awaited.
        self.waiting = False
        #: C{on_data}'s pending result (to cancel on timeout).
        self.pending: Pending | None = None
        #: When the body began (data_timeout, the transaction log's duration).
        self.started = server.clock.seconds()
        #: The socket is read in bigger bites while this body streams in.
        self.big_reads = False
        #: Answered or aborted: whatever comes later goes nowhere.
        self.over = False
        #: The body's size as received (the core's count, once it has ended):
        #: what the log says, whoever read the body, and however.
        self.size = 0
        self._hook: HookCall | None = None

    def start(self) -> None:
        """The body begins: call C{on_data} (or drain, if nobody reads it)."""
        fn = self._server.pipeline.on_data
        if fn is None:
            self.stream.drain()
            self.outcome = (None, None)
            return
        self.pending = call_hook(fn, (self.stream, self._host.session), self._answered)

    def read_in_big_bites(self) -> None:
        """A large body streams in: fewer, bigger reads until it ends."""
        if not self.big_reads:
            self.big_reads = True
            set_read_size(self._host.transport, BODY_READ_SIZE)

    def _normal_reads(self) -> None:
        if self.big_reads:
            self.big_reads = False
            if not self._host.gone:
                set_read_size(self._host.transport, READ_SIZE)

    def ended(self, ev: DataEnd) -> None:
        """The body is complete (or refused by the core, C{ev.rejected})."""
        self._normal_reads()
        self.size = ev.byte_length
        if ev.rejected is None:
            self.stream.end()
        if self.outcome is not None:
            self._answer()
            return
        # on_data's answer is due from now on, under hook_timeout.
        self.waiting = True
        self._hook = HookCall(self.pending, "on_data", self._timed_out)
        self._host.hold(self._hook)

    def _timed_out(self, value: Any, failure: Failure | None) -> None:
        self._hook = None
        self._answered(None, failure)

    def _answered(self, value: Any, failure: Failure | None) -> None:
        host = self._host
        hook = self._hook
        if self.over or host.gone or (hook is not None and hook.timing_out):
            # Ended meanwhile (RSET, QUIT, lost, timed out): nobody to tell.
            if failure is not None and not failure.check(
                SMTPError, StreamAborted, HookTimeout, CancelledError
            ):
                host.outcome(failure, "on_data")
            return
        self.pending = None
        self.outcome = (value, failure)
        if not self.waiting:
            # Answered before the body ended: drain the rest.
            self.stream.drain()
            return
        self.waiting = False
        self._hook = None
        host.release()
        try:
            self._answer()
        finally:
            host.process()

    def _answer(self) -> None:
        """Hand C{on_data}'s answer to the core, and log the transaction."""
        host = self._host
        conn = host.conn
        session = host.session
        assert conn is not None and session is not None and self.outcome is not None
        self.over = True
        host.transaction_over(self)
        value, failure = self.outcome
        envelope = session.envelope
        error = None if failure is None else host.outcome(failure, "on_data")
        codes, wrong = conn.data_outcome(value, error)
        log = self._server.log_lines
        if wrong is not None:
            log.wrong_lmtp_results(session, wrong, len(envelope.rcpt_to))
        if log.transactions:
            log.transaction(session, envelope, self.size, codes, self.started)

    def abort(self, reason: str) -> None:
        """The body will not complete (RSET, QUIT, lost, timeout, shutdown)."""
        if self.over:
            return
        self.over = True
        self._normal_reads()
        if self.waiting:
            self.waiting = False
            self._hook = None
            self._host.release()
        self.stream.fail(StreamAborted(reason))


# -- the core's body events (the protocol's dispatch table points here) ------------------


def data_start(host: TransactionHost, ev: DataStart) -> None:
    tx = Transaction(host, host.server)
    host.transaction_began(tx)
    tx.start()


def body_rejected(host: TransactionHost, ev: BodyRejected) -> None:
    tx = host.transaction
    if tx is not None:
        tx.stream.fail(ev.error)


def data_end(host: TransactionHost, ev: DataEnd) -> None:
    tx = host.transaction
    assert tx is not None
    tx.ended(ev)


def data_aborted(host: TransactionHost, ev: DataAborted) -> None:
    tx = host.transaction
    if tx is not None:
        tx.abort(ev.reason)
