# -*- test-case-name: tests.protocol.test_hooks,tests.protocol.test_deadlines -*-
"""
Asking the application: calling a hook's chain for a core event, holding
the session while the answer is due (under C{hook_timeout}), and handing
the answer back to the core as it came.

These are functions over the protocol (an L{AskingHost}), not a class of
their own: the only state they need, the hook whose answer is due, is one
slot of the protocol, and an idle client should carry no more objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.python.failure import Failure

from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import Auth, Expn, Helo, MailFrom, RcptTo, Rset, Vrfy
from smtpsession._hooks import call_hook
from smtpsession._server import Server
from smtpsession._transaction import HookCall
from smtpsession.errors import AuthUnavailable, HookTimeout, SMTPError
from smtpsession.session import Session
from smtpsession.stream import StreamAborted

__all__ = [
    "AskingHost",
    "ask",
    "outcome",
    "mail_from",
    "rcpt_to",
    "auth",
    "helo",
    "vrfy",
    "expn",
    "rset",
    "on_secure",
    "closed",
    "QUESTIONS",
]

Continuation = Callable[[Any, Failure | None], None]


class AskingHost(Protocol):
    """What asking the application needs of the protocol."""

    session: Session | None

    @property
    def server(self) -> Server: ...

    @property
    def conn(self) -> ServerConnection | None: ...

    @property
    def gone(self) -> bool: ...

    @property
    def pending_hook(self) -> HookCall | None: ...

    def hold(self, hook: HookCall) -> None: ...

    def release(self) -> None: ...

    def process(self) -> None: ...

    def flush(self) -> None: ...


def ask(host: AskingHost, fn: Any, args: tuple[Any, ...], name: str, cont: Continuation) -> None:
    """
    Call a hook's chain; C{cont} gets its answer at once or when it comes
    (or a L{HookTimeout} failure when C{hook_timeout} gives up on it).
    While it is pending the session is held: nothing is read or parsed.
    """

    def later(value: Any, failure: Failure | None) -> None:
        hook = host.pending_hook
        if hook is None or hook.late is not later or hook.timing_out:
            return  # the connection went, or a timeout answers instead
        host.release()
        conn = host.conn
        if host.gone or conn is None or conn.closed:
            return
        try:
            cont(value, failure)
        finally:
            host.process()

    pending = call_hook(fn, args, cont, later)
    if pending is not None:
        host.hold(HookCall(pending, name, later))


def timed_out(host: AskingHost) -> None:
    """The pending hook's deadline passed: cancel it, answer L{HookTimeout}."""
    hook = host.pending_hook
    if hook is None:
        return
    host.server.log_lines.hook_timed_out(host.session, hook.name, hook.seconds)
    hook.time_out(HookTimeout(f"{hook.name} did not answer within {hook.seconds:g} s"))


def outcome(host: AskingHost, failure: Failure | None, hook: str) -> BaseException | None:
    """The exception a hook failed with, for the core; logged if unexpected."""
    if failure is None:
        return None
    if not failure.check(SMTPError, AuthUnavailable, StreamAborted, HookTimeout):
        host.server.log_lines.hook_failed(host.session, hook, failure)
    return failure.value


# -- the events that ask (the protocol's dispatch table points here) --------------------


def mail_from(host: AskingHost, ev: MailFrom) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        host.conn.mail_from_result(outcome(host, failure, "on_mail_from"), value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_mail_from, (ev.address, host.session), "on_mail_from", answer)


def rcpt_to(host: AskingHost, ev: RcptTo) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        host.conn.rcpt_to_result(outcome(host, failure, "on_rcpt_to"), value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_rcpt_to, (ev.address, host.session), "on_rcpt_to", answer)


def auth(host: AskingHost, ev: Auth) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        ok = host.conn.auth_result(value, outcome(host, failure, "on_auth"))  # type: ignore[union-attr]
        username = ev.request.username
        host.server.log_lines.authenticated(host.session, ok, username)  # type: ignore[arg-type]

    ask(host, host.server.pipeline.on_auth, (ev.request, host.session), "on_auth", answer)


def helo(host: AskingHost, ev: Helo) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        host.conn.helo_result(outcome(host, failure, "on_helo"), value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_helo, (ev.hostname, host.session), "on_helo", answer)


def vrfy(host: AskingHost, ev: Vrfy) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        host.conn.vrfy_result(outcome(host, failure, "on_vrfy"), value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_vrfy, (ev.address, host.session), "on_vrfy", answer)


def expn(host: AskingHost, ev: Expn) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        host.conn.expn_result(outcome(host, failure, "on_expn"), value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_expn, (ev.name, host.session), "on_expn", answer)


def rset(host: AskingHost, ev: Rset) -> None:
    def answer(value: Any, failure: Failure | None) -> None:
        # on_rset cannot change the reply: even an SMTPError is a handler
        # bug worth a log line (a timeout has had its own already).
        if failure is not None and not failure.check(HookTimeout):
            host.server.log_lines.hook_failed(host.session, "on_rset", failure)
        error = None if failure is None else failure.value
        host.conn.rset_result(error, value)  # type: ignore[union-attr]

    ask(host, host.server.pipeline.on_rset, (host.session,), "on_rset", answer)


#: The core's events that ask a hook, and who asks it (the protocol's
#: dispatch table includes this one).
QUESTIONS: dict[type, Callable[[Any, Any], None]] = {
    MailFrom: mail_from,
    RcptTo: rcpt_to,
    Auth: auth,
    Helo: helo,
    Vrfy: vrfy,
    Expn: expn,
    Rset: rset,
}


def on_secure(host: AskingHost, then: Callable[[], None]) -> None:
    """Call C{on_secure}; C{then()} if it agrees, else its refusal and close."""
    fn = host.server.pipeline.on_secure
    if fn is None:
        then()
        return

    def secured(value: Any, failure: Failure | None) -> None:
        conn = host.conn
        if host.gone or conn is None or conn.closed:
            return
        if not conn.secure_result(outcome(host, failure, "on_secure")):
            host.flush()
            return
        then()

    ask(host, fn, (host.session,), "on_secure", secured)


def closed(host: AskingHost) -> None:
    """The connection is gone: C{on_close} (its answer goes nowhere), the log line."""
    session = host.session
    assert session is not None
    server = host.server
    fn = server.pipeline.on_close
    if fn is not None:

        def done(value: Any, failure: Failure | None) -> None:
            if failure is not None:
                server.log_lines.hook_failed(session, "on_close", failure)

        call_hook(fn, (session,), done)
    server.log_lines.closed(session)
