# -*- test-case-name: tests.protocol.test_hooks -*-
"""
Finding a handler's hooks once, and calling them whatever they return.

A hook may return a value, a Deferred or a coroutine.  L{call_hook} runs the
continuation synchronously when the result is already there (a plain value,
a fired Deferred, a coroutine that never awaited anything pending): that is
the fast path every default-ish handler takes, and it costs no Deferred and
no reactor turn.  Otherwise it returns what is pending (something with a
C{cancel()}: the Deferred, or the coroutine's driver) and calls the
continuation later; cancelling it is how a hook that takes too long is
stopped (C{hook_timeout}).
"""

from __future__ import annotations

import contextvars
import inspect
import warnings
from collections.abc import Callable
from types import CoroutineType, GeneratorType
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from smtpsession.handler import Handler
from smtpsession.interfaces import ISMTPHandler

__all__ = ["HookTable", "call_hook", "HOOK_NAMES", "Pending"]

HOOK_NAMES = tuple(ISMTPHandler.names())

Continuation = Callable[[Any, Failure | None], None]


class Pending(Protocol):
    """A hook's result that has not arrived yet: it can be cancelled."""

    def cancel(self) -> None: ...


class HookTable:
    """
    The hooks of one handler: each attribute is the bound method to call,
    or C{None} when the handler keeps the default (so the server can skip
    the call).
    """

    on_connect: Callable[..., Any] | None
    on_secure: Callable[..., Any] | None
    on_auth: Callable[..., Any] | None
    on_mail_from: Callable[..., Any] | None
    on_rcpt_to: Callable[..., Any] | None
    on_data: Callable[..., Any] | None
    on_close: Callable[..., Any] | None
    on_helo: Callable[..., Any] | None
    on_vrfy: Callable[..., Any] | None
    on_expn: Callable[..., Any] | None
    on_rset: Callable[..., Any] | None

    def __init__(self, handler: object) -> None:
        for name in HOOK_NAMES:
            setattr(self, name, _resolve(handler, name))
        for attr in dir(handler):
            if attr.startswith("on_") and attr not in HOOK_NAMES:
                if callable(getattr(handler, attr, None)):
                    warnings.warn(
                        f"{type(handler).__name__}.{attr} is not a smtpsession "
                        f"hook and will never be called (hooks: "
                        f"{', '.join(sorted(HOOK_NAMES))})",
                        stacklevel=3,
                    )


def _resolve(handler: object, name: str) -> Callable[..., Any] | None:
    fn = getattr(handler, name, None)
    if fn is None:
        return None
    if not callable(fn):
        raise TypeError(f"handler attribute {name} is not callable: {fn!r}")
    default = getattr(Handler, name)
    if getattr(fn, "__func__", None) is default:
        return None
    return fn


class _Box:
    """Collects a Deferred's result; calls the continuation if it is late."""

    __slots__ = ("done", "value", "failure", "late")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.failure: Failure | None = None
        self.late: Continuation | None = None

    def ok(self, value: Any) -> None:
        if self.late is not None:
            self.late(value, None)
        else:
            self.done = True
            self.value = value

    def err(self, failure: Failure) -> None:
        if self.late is not None:
            self.late(None, failure)
        else:
            self.done = True
            self.failure = failure


class Parked:
    """
    What a coroutine awaits when it waits for something that will resume
    it directly (a L{smtpsession.stream.MessageStream} with no chunk
    ready).  Only L{CoroutineDriver} understands it: it parks itself in
    C{driver}, for the stream to resume.  To anything else it is an
    ordinary unfired Deferred (see L{smtpsession.stream}).
    """

    driver: CoroutineDriver | None = None


_WAITING = object()
_RETURNED = object()


class CoroutineDriver:
    """
    Run a hook's coroutine on the reactor thread, as
    C{Deferred.fromCoroutine} does, but cheaply.

    C{fromCoroutine} resumes the coroutine through a Deferred callback
    chain and a context copy at every step; a message body read with
    C{async for} takes a step per chunk, so that cost is per chunk.  This
    driver copies the context once, resumes with C{send}/C{throw} directly,
    and lets a L{MessageStream} resume it without any Deferred at all.
    Anything else the coroutine awaits must be a Deferred (or an asyncio
    future, under the asyncio reactor), exactly as with C{fromCoroutine}.

    L{run_coroutine} takes the first step itself and makes a driver only
    for a coroutine that really waits; the driver then calls C{later} (or
    C{now}, while L{run_coroutine} has not returned) when it finishes.
    """

    __slots__ = ("_coro", "_send", "_run", "_cont", "_awaiting")

    def __init__(
        self,
        coro: Any,
        send: Callable[[Any], Any],
        run: Callable[..., Any],
        cont: Continuation,
    ) -> None:
        self._coro = coro
        # coro.send and ctx.run, bound once: each resume would otherwise
        # make both method objects again.
        self._send = send
        self._run = run
        self._cont = cont
        #: The Deferred the coroutine waits for, if any (not a stream).
        self._awaiting: Deferred[Any] | None = None

    def cancel(self) -> None:
        """
        Stop the coroutine where it waits: cancel the Deferred it awaits
        (it sees C{CancelledError} there, as with C{Deferred.fromCoroutine}),
        or raise C{CancelledError} at the stream read it is parked on.
        """
        if self._coro is None:
            return
        awaiting = self._awaiting
        if awaiting is not None:
            awaiting.cancel()
        else:
            self.resume(None, CancelledError())

    def throw(self, exc: BaseException) -> None:
        """Resume by raising C{exc} at the pending await."""
        self.resume(None, exc)

    def resume(self, value: Any, exc: BaseException | Failure | None = None) -> None:
        """
        Resume with C{value} as the result of the pending await (or by
        raising C{exc} there), and run until the next real wait.  The stream
        calls this directly for every chunk: it is the per-chunk cost.
        """
        if self._coro is None:
            return  # finished (cancelled) while a stream still held it
        run = self._run
        while True:
            try:
                if exc is None:
                    awaited = run(self._send, value)
                elif isinstance(exc, Failure):
                    awaited = run(exc.throwExceptionIntoGenerator, self._coro)
                else:
                    awaited = run(self._coro.throw, exc)
            except StopIteration as e:
                self._coro = None
                self._cont(e.value, None)
                return
            except BaseException:
                self._coro = None
                self._cont(None, Failure())
                return
            if isinstance(awaited, Parked):
                awaited.driver = self
                return
            outcome = self._wait_for(awaited)
            if outcome is None:
                return
            value, exc = outcome

    def _wait_for(self, awaited: Any) -> tuple[Any, BaseException | Failure | None] | None:
        """
        Wait for anything but a stream: C{None} if it is pending (L{resume}
        will be called when it fires), else its outcome, to go on with at
        once without growing the stack.
        """
        if awaited is None:
            # A bare yield: asyncio.sleep(0), "let others run".  Going on at
            # once is what it means here (the reactor turn is not ours to give).
            return None, None
        d = _as_deferred(awaited)
        if d is None:
            return None, TypeError(
                f"a smtpsession hook awaited {awaited!r}; await Deferreds "
                "(or asyncio futures under the asyncio reactor)"
            )
        state: list[Any] = [_WAITING]

        def got(result: Any) -> None:
            if state[0] is _WAITING:
                state[0] = result
                return
            self._awaiting = None
            if isinstance(result, Failure):
                self.resume(None, result)
            else:
                self.resume(result)

        d.addBoth(got)
        result = state[0]
        state[0] = _RETURNED
        if result is _WAITING:
            self._awaiting = d
            return None
        if isinstance(result, Failure):
            return None, result
        return result, None


def run_coroutine(coro: Any, now: Continuation, later: Continuation) -> CoroutineDriver | None:
    """
    Run C{coro} in a copy of the current context (so that context variables
    it sets stay its own) until it finishes or really waits.

    @return: C{None} if it finished and C{now} has run, else the
        L{CoroutineDriver} that will call C{later}.
    """
    send = coro.send
    run = contextvars.copy_context().run
    try:
        awaited = run(send, None)
    except StopIteration as e:
        now(e.value, None)
        return None
    except BaseException:
        now(None, Failure())
        return None
    driver = CoroutineDriver(coro, send, run, now)
    if isinstance(awaited, Parked):
        awaited.driver = driver
    else:
        outcome = driver._wait_for(awaited)
        if outcome is not None:
            driver.resume(*outcome)
            if driver._coro is None:
                return None
    driver._cont = later
    return driver


def _as_deferred(awaited: Any) -> Deferred[Any] | None:
    if isinstance(awaited, Deferred):
        return awaited
    try:
        import asyncio
    except ImportError:  # pragma: no cover
        return None
    if isinstance(awaited, asyncio.Future):
        return Deferred.fromFuture(awaited)
    return None


async def _await(awaitable: Any) -> Any:
    return await awaitable


def call_hook(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    now: Continuation,
    later: Continuation | None = None,
) -> Pending | None:
    """
    Call C{fn(*args)} and hand its outcome to a continuation
    C{(value, failure)}: C{now} if the outcome is already known when the
    call returns, else C{later} (default: C{now}) when it arrives.

    @return: C{None} if C{now} has run, else the pending result (cancel it
        to give up on the hook: C{later} then gets C{CancelledError}).
    """
    try:
        result = fn(*args)
    except Exception:
        now(None, Failure())
        return None
    t = type(result)
    if t is CoroutineType or t is GeneratorType:
        return run_coroutine(result, now, later or now)
    if result is None or t is str or t is bool or t is list:
        now(result, None)
        return None
    if not isinstance(result, Deferred):
        if inspect.isawaitable(result):
            return run_coroutine(_await(result), now, later or now)
        now(result, None)
        return None
    box = _Box()
    result.addCallbacks(box.ok, box.err)
    if box.done:
        now(box.value, box.failure)
        return None
    box.late = later if later is not None else now
    return result
