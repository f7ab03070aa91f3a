# -*- test-case-name: tests.protocol.test_pipeline -*-
"""
The hook pipeline: filters between the protocol and the handler.

Every hook call goes through an ordered chain of filters before it
reaches the handler, the last stage.  A filter is an object with methods
named like the handler's hooks, each taking the hook's arguments plus
C{next}, the rest of the chain::

    class NoFreeMail(Filter):
        def on_mail_from(self, address, session, next):
            if address.address.endswith("@free.example"):
                raise SMTPError(550, "Not from there")    # refuse
            return next(address, session)                 # or pass on

A filter may:

  - B{answer}: raise L{SMTPError} (refuse or tempfail), or return a
    value without calling C{next} (accept: the stages after it never run);
  - B{change what the next stage sees}: call C{next} with other arguments
    — an L{Address} with another mailbox (the envelope keeps what the
    handler finally saw), a session attribute, the message stream with
    C{stream.prepend(...)} or C{stream.map(...)} applied;
  - B{observe}: C{await next(...)} (or add callbacks to the Deferred it
    returns) and look at the result, the exception or the time taken;
  - B{alter a verdict}: catch the L{SMTPError} C{next} fails with and
    raise another, or return one later (Haraka's C{delay_deny}).

C{next(...)} returns a L{Deferred} of the next stage's result whatever
that stage returns (a value, a Deferred or a coroutine); filter methods
may themselves return a value, a Deferred or a coroutine, like hooks.
Stages a filter does not define cost nothing: a chain is built per hook,
once, from the filters that define it, and a hook no filter touches is
the handler's method itself.

Deadlines belong to the chain, not to each filter: C{hook_timeout}
counts from the call of the first stage to the answer of the chain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred

from smtpsession._hooks import HOOK_NAMES, HookTable, call_hook
from smtpsession.handler import Handler
from smtpsession.session import Address

__all__ = ["Filter", "Pipeline", "Next"]

Stage = Callable[..., Any]


class Filter:
    """
    The base class of filters (optional: any object with C{on_*} methods
    taking C{next} is a filter).  It defines no stage, so a subclass is
    inserted only into the chains of the hooks it overrides.
    """


class Next:
    """
    The rest of a chain, as a filter sees it: call it with the hook's
    arguments to run the next stage; it returns a L{Deferred} of that
    stage's result.
    """

    __slots__ = ("_stage", "_original")

    def __init__(self, stage: Stage, original: Address | None = None) -> None:
        self._stage = stage
        self._original = original

    def __call__(self, *args: Any) -> Deferred[Any]:
        original = self._original
        if original is not None and args and args[0] is not original:
            # A filter handed on another address: the envelope keeps the
            # object the core made, so that object takes the new values.
            new = args[0]
            if not isinstance(new, Address):
                raise TypeError(f"expected an Address, not {new!r}")
            original.address = new.address
            original.args = new.args
            original.dsn = new.dsn
            args = (original, *args[1:])
        d: Deferred[Any] = Deferred()

        def settle(value: Any, failure: Any) -> None:
            if failure is None:
                d.callback(value)
            else:
                d.errback(failure)

        call_hook(self._stage, args, settle)
        return d


def _link(method: Stage, rest: Stage, keeps_address: bool) -> Stage:
    """One filter's stage in front of C{rest}."""
    if keeps_address:

        def stage(*args: Any) -> Any:
            return method(*args, Next(rest, args[0]))

    else:

        def stage(*args: Any) -> Any:
            return method(*args, Next(rest))

    return stage


class Pipeline:
    """
    The chains of one server: for each hook name an attribute holding the
    callable to call (the first filter's stage, or the handler's method),
    or C{None} when neither the handler nor any filter has that hook (the
    server then skips the call entirely).

    @param handler: the application's handler (see L{ISMTPHandler}), or
        its L{HookTable} if one was made already.
    @param filters: in the order they see a call: the first is outermost.
    @param authenticator: what checks credentials when the handler has no
        C{on_auth} (the C{twisted.cred} bridge), or C{None}.
    """

    on_connect: Stage | None
    on_secure: Stage | None
    on_auth: Stage | None
    on_mail_from: Stage | None
    on_rcpt_to: Stage | None
    on_data: Stage | None
    on_close: Stage | None
    on_helo: Stage | None
    on_vrfy: Stage | None
    on_expn: Stage | None
    on_rset: Stage | None

    def __init__(
        self,
        handler: object,
        filters: Sequence[object] = (),
        authenticator: Stage | None = None,
    ) -> None:
        #: The handler's own hooks (C{None} where it keeps the default).
        self.hooks = handler if isinstance(handler, HookTable) else HookTable(handler)
        self.filters = tuple(filters)
        for name in HOOK_NAMES:
            chain: Stage | None = getattr(self.hooks, name)
            if name == "on_auth" and chain is None:
                chain = authenticator
            methods = [
                getattr(f, name) for f in self.filters if callable(getattr(f, name, None))
            ]
            if methods and chain is None:
                # The filters need a last stage: the default's behaviour.
                chain = getattr(Handler(), name)
            keeps_address = name in ("on_mail_from", "on_rcpt_to")
            for method in reversed(methods):
                assert chain is not None
                chain = _link(method, chain, keeps_address)
            setattr(self, name, chain)
