# -*- test-case-name: tests.protocol.test_protocol,tests.protocol.test_deadlines -*-
"""
The driver's small state holders for what is in flight: L{HookCall}, a
hook whose answer is due (and its deadline), and L{Transaction}, a message
body on its way to C{on_data}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from smtpsession._hooks import Pending
from smtpsession.stream import MessageStream

__all__ = ["HookCall", "Transaction"]

Continuation = Callable[[Any, Failure | None], None]


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


class Transaction:
    """
    One message body, from DATA (or the first BDAT) to the final reply:
    the stream C{on_data} reads, C{on_data}'s answer once it has one, and
    whether the body has ended and the answer is now awaited.
    """

    __slots__ = ("stream", "outcome", "waiting", "pending", "started", "big_reads")

    def __init__(self, stream: MessageStream, started: float) -> None:
        self.stream = stream
        #: C{on_data}'s (value, failure), once it answered.
        self.outcome: tuple[Any, Failure | None] | None = None
        #: The body has ended and the answer is awaited.
        self.waiting = False
        #: C{on_data}'s pending result (to cancel on timeout).
        self.pending: Pending | None = None
        #: When the body began (for the transaction log's duration).
        self.started = started
        #: The socket is read in bigger bites while this body streams in.
        self.big_reads = False
