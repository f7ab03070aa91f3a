"""
Calling hooks (C{smtpsession._hooks}): plain values, Deferreds and
coroutines all work, synchronously when their result is already there;
handlers need not subclass L{Handler}; hooks left at their default are
skipped; a misspelled hook is reported.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from smtpsession import Handler, SMTPError
from smtpsession._hooks import HookTable, call_hook
from tests.protocol.harness import FakeServer, codes


def run(fn: Any) -> tuple[bool, list[tuple[Any, Failure | None]], list[tuple[Any, Failure | None]]]:
    now: list[tuple[Any, Failure | None]] = []
    later: list[tuple[Any, Failure | None]] = []
    sync = call_hook(fn, (), lambda v, f: now.append((v, f)), lambda v, f: later.append((v, f))) is None
    return sync, now, later


@pytest.mark.parametrize("value", [None, "text", True, False, 42, ["a", None]])
def test_plain_values_are_synchronous(value: Any) -> None:
    """A plain return value goes to the 'now' continuation."""
    assert run(lambda: value) == (True, [(value, None)], [])


def test_fired_deferred_is_synchronous() -> None:
    """A Deferred that already has its result costs no extra turn."""
    assert run(lambda: succeed("x")) == (True, [("x", None)], [])
    sync, now, later = run(lambda: fail(SMTPError(550, "no")))
    assert sync and not later and now[0][1] is not None and now[0][1].check(SMTPError)


def test_coroutine_that_never_waits_is_synchronous() -> None:
    """A coroutine finishing without a real wait answers at once."""

    async def hook() -> str:
        await succeed(None)
        return "done"

    assert run(hook) == (True, [("done", None)], [])


def test_pending_deferred_and_coroutine_answer_later() -> None:
    """A pending result goes to the 'later' continuation when it arrives."""
    d: Deferred[str] = Deferred()
    sync, now, later = run(lambda: d)
    assert (sync, now, later) == (False, [], [])
    d.callback("late")
    assert later == [("late", None)]

    gate: Deferred[None] = Deferred()

    async def hook() -> str:
        await gate
        raise SMTPError(451, "later")

    sync, now, later = run(hook)
    assert (sync, now, later) == (False, [], [])
    gate.callback(None)
    assert later[0][0] is None and later[0][1] is not None and later[0][1].check(SMTPError)


def test_exceptions_become_failures() -> None:
    """A hook raising synchronously is reported as a failure, never propagated."""

    def hook() -> None:
        raise KeyError("bug")

    sync, now, later = run(hook)
    assert sync and not later
    assert now[0][1] is not None and now[0][1].check(KeyError)


def test_coroutine_awaiting_something_odd_fails_clearly() -> None:
    """Awaiting a non-Deferred (e.g. an asyncio sleep without the asyncio reactor) is a TypeError."""

    class Odd:
        def __await__(self) -> Any:
            yield "not a deferred"

    async def hook() -> None:
        await Odd()

    sync, now, _ = run(hook)
    assert sync and now[0][1] is not None and now[0][1].check(TypeError)


def test_a_bare_yield_goes_on_at_once() -> None:
    """asyncio.sleep(0) yields nothing (a bare yield, "let others run"):
    the hook goes on instead of failing (issue 17, point 2)."""

    class BareYield:
        def __await__(self) -> Any:
            yield
            return "after"

    gate: Deferred[None] = Deferred()

    async def hook() -> str:
        first = await BareYield()
        await gate
        second = await BareYield()
        return f"{first} {second}"

    sync, now, later = run(hook)
    assert (sync, now) == (False, [])
    gate.callback(None)
    assert later == [("after after", None)]
    assert run(lambda: BareYield()) == (True, [("after", None)], [])


def test_awaitables_and_generator_coroutines_are_run() -> None:
    """
    A hook may return any awaitable (not only a native coroutine) or a
    generator-based coroutine that yields Deferreds: both are run to the
    end, now or later, like coroutines.
    """
    gate: Deferred[str] = Deferred()

    class Waits:
        def __await__(self) -> Any:
            value = yield from gate
            return value + "!"

    sync, now, later = run(Waits)
    assert (sync, now, later) == (False, [], [])
    gate.callback("done")
    assert later == [("done!", None)]

    def generator_hook() -> Any:
        value = yield succeed(20)
        return value + 1

    sync, now, later = run(generator_hook)
    assert sync and now == [(21, None)] and later == []


def test_default_hooks_are_skipped() -> None:
    """Hooks a handler does not override are None in the table (the server skips them)."""

    class Partial(Handler):
        def on_rcpt_to(self, address: Any, session: Any) -> Any:
            return None

    table = HookTable(Partial())
    assert table.on_rcpt_to is not None
    assert table.on_mail_from is None and table.on_data is None and table.on_auth is None


def test_any_object_is_a_handler() -> None:
    """A handler need not subclass Handler: missing hooks behave like the defaults."""
    seen: list[str] = []

    class Duck:
        def on_mail_from(self, address: Any, session: Any) -> Any:
            seen.append(address.address)

    c = FakeServer(Duck()).connect()
    assert codes(c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>",
                         "DATA")) == [250, 250, 250, 354]
    assert c.send(b"x\r\n.\r\n") == ["250 2.6.0 OK: message queued"]
    assert seen == ["a@example.com"]
    assert not any("AUTH" in r for r in c.lines("EHLO c"))


def test_misspelled_hook_warns() -> None:
    """An on_* method that is not a hook is reported (it would never be called)."""

    class Typo(Handler):
        def on_rcpt(self, address: Any, session: Any) -> Any:
            return None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HookTable(Typo())
    assert any("on_rcpt" in str(w.message) for w in caught)


def test_non_callable_hook_is_refused() -> None:
    """A hook attribute that is not callable is a configuration error at start-up."""

    class Bad:
        on_data = "not a function"

    with pytest.raises(TypeError):
        HookTable(Bad())
