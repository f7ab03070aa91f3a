# -*- test-case-name: tests.protocol.test_limits -*-
"""
The filters smtpsession puts in front of every handler, from the options:
what bounds a client that abuses the server, as opposed to what a
handler decides.

Only what needs a clock is here.  The counts are kept where the thing
counted lives: failed AUTHs and transactions per connection in the core
(C{max_auth_failures}, C{max_transactions}), connections per address in
the server's registry (C{max_connections_per_ip}, checked once the
address is final: after the PROXY header, and on an implicit-TLS port after
the handshake, so that the refusal can be read; always before the reverse
lookup and the hooks).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.pipeline import Filter

__all__ = ["AuthFailureDelay", "builtin_filters"]


class AuthFailureDelay(Filter):
    """
    A tarpit for password guessing: every failed AUTH waits C{delay}
    seconds before its reply (the session is held meanwhile, so a guesser
    cannot pipeline the next try).  A success is answered at once.
    """

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self.clock = clock
        self.delay = delay

    def on_auth(self, auth: Any, session: Any, next: Any) -> Deferred[Any]:
        def wait(result: Any) -> Deferred[Any]:
            return deferLater(self.clock, self.delay, lambda: result)

        def failed(failure: Any) -> Any:
            error = failure.value
            if isinstance(error, SMTPError) and (error.code or 535) == 535:
                return deferLater(self.clock, self.delay, failure.raiseException)
            return failure

        d: Deferred[Any] = next(auth, session)
        d.addCallback(lambda user: user if user else wait(user))
        d.addErrback(failed)
        return d


def builtin_filters(options: SMTPServerOptions, clock: IReactorTime) -> list[Filter]:
    """The filters the options ask for, outermost first."""
    filters: list[Filter] = []
    if options.auth_failure_delay:
        filters.append(AuthFailureDelay(clock, options.auth_failure_delay))
    return filters
