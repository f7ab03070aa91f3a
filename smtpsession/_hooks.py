# -*- test-case-name: tests.protocol.test_hooks -*-
"""
Finding a handler's hooks once, and calling them whatever they return.

A hook may return a value, a Deferred or a coroutine.  L{call_hook} runs the
continuation synchronously when the result is already there (a plain value,
a fired Deferred, a coroutine that never awaited anything pending): that is
the fast path every default-ish handler takes, and it costs no Deferred and
no reactor turn.  Otherwise it reports that the result is pending and calls
the continuation later.
"""

from __future__ import annotations

import contextvars
import inspect
import warnings
from collections.abc import Callable
from types import CoroutineType, GeneratorType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from smtpsession.handler import Handler
from smtpsession.interfaces import ISMTPHandler

__all__ = ["HookTable", "call_hook", "HOOK_NAMES"]

HOOK_NAMES = tuple(ISMTPHandler.names())

Continuation = Callable[[Any, Failure | None], None]


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
    ready).  Only L{CoroutineDriver} understands it; to anything else it
    is an ordinary unfired Deferred (see L{smtpsession.stream}).
    """


_NOTHING = object()


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
    """

    __slots__ = ("_coro", "_ctx", "_now", "_later", "_sync", "_got", "finished")

    def __init__(self, coro: Any, now: Continuation, later: Continuation) -> None:
        self._coro = coro
        self._ctx = contextvars.copy_context()
        self._now = now
        self._later = later
        self._sync = True
        self._got: Any = _NOTHING
        self.finished = False

    def start(self) -> bool:
        """Run until the first real wait; C{True} if it already finished."""
        self._run(None, None)
        self._sync = False
        return self.finished

    def resume(self, value: Any) -> None:
        """Resume with C{value} as the result of the pending await."""
        self._run(value, None)

    def throw(self, exc: BaseException) -> None:
        """Resume by raising C{exc} at the pending await."""
        self._run(None, exc)

    def _run(self, value: Any, exc: BaseException | Failure | None) -> None:
        coro = self._coro
        run = self._ctx.run
        while True:
            try:
                if exc is None:
                    awaited = run(coro.send, value)
                elif isinstance(exc, Failure):
                    awaited = run(exc.throwExceptionIntoGenerator, coro)
                else:
                    awaited = run(coro.throw, exc)
            except StopIteration as e:
                self._finish(e.value, None)
                return
            except BaseException:
                self._finish(None, Failure())
                return
            if isinstance(awaited, Parked):
                awaited.park(self)  # type: ignore[attr-defined]
                return
            d = _as_deferred(awaited)
            if d is None:
                value = None
                exc = TypeError(
                    f"a smtpsession hook awaited {awaited!r}; await Deferreds "
                    "(or asyncio futures under the asyncio reactor)"
                )
                continue
            self._got = _NOTHING
            waiting = [True]

            def got(result: Any, waiting: list[bool] = waiting) -> None:
                if waiting[0]:
                    self._got = result
                elif isinstance(result, Failure):
                    self._run(None, result)
                else:
                    self._run(result, None)

            d.addBoth(got)
            result = self._got
            if result is _NOTHING:
                waiting[0] = False
                return
            self._got = _NOTHING
            waiting[0] = False
            if isinstance(result, Failure):
                value, exc = None, result
            else:
                value, exc = result, None

    def _finish(self, value: Any, failure: Failure | None) -> None:
        self.finished = True
        self._coro = None
        if self._sync:
            self._now(value, failure)
        else:
            self._later(value, failure)


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
) -> bool:
    """
    Call C{fn(*args)} and hand its outcome to a continuation
    C{(value, failure)}: C{now} if the outcome is already known when the
    call returns, else C{later} (default: C{now}) when it arrives.

    @return: C{True} if C{now} has run, C{False} if C{later} will run.
    """
    try:
        result = fn(*args)
    except Exception:
        now(None, Failure())
        return True
    t = type(result)
    if t is CoroutineType or t is GeneratorType:
        return CoroutineDriver(result, now, later or now).start()
    if result is None or t is str or t is bool or t is list:
        now(result, None)
        return True
    if not isinstance(result, Deferred):
        if inspect.isawaitable(result):
            return CoroutineDriver(_await(result), now, later or now).start()
        now(result, None)
        return True
    box = _Box()
    result.addCallbacks(box.ok, box.err)
    if box.done:
        now(box.value, box.failure)
        return True
    box.late = later if later is not None else now
    return False
