# -*- test-case-name: tests.unit.test_sasl -*-
"""
AUTH (RFC 4954): the command, the SASL exchange lines that follow it, and
the application's verdict on the credentials.

The mechanisms themselves (PLAIN, LOGIN, CRAM-MD5, XOAUTH2) are step
machines in L{smtpsession._core.sasl}; this module decides when AUTH may
start, feeds them the client's lines and words the outcome.
"""

from __future__ import annotations

from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.events import Auth
from smtpsession._core.sasl import AuthRequest, Challenge, SaslExchange, xoauth2_error_challenge
from smtpsession._core.state import AUTH_ANSWER, SessionState
from smtpsession._core.verdicts import render
from smtpsession.errors import SMTPError

__all__ = ["auth", "sasl_line", "auth_answered"]

_USAGE = {
    "PLAIN": R.pair(501, "Error: syntax: AUTH PLAIN token"),
    "LOGIN": R.pair(501, "Error: syntax: AUTH LOGIN"),
    "XOAUTH2": R.pair(501, "Error: syntax: AUTH XOAUTH2 token"),
    "CRAM-MD5": R.pair(501, "Error: syntax: AUTH CRAM-MD5"),
}


def auth(st: SessionState, arg: bytes) -> Any:
    s = st.session
    options = st.cfg.options
    if not s.secure and not options.allow_insecure_auth:
        st.error(R.AUTH_NEED_TLS)
        return None
    if s.user is not None:
        st.error(R.AUTH_ALREADY)
        return None
    if st.in_transaction:
        st.error(R.AUTH_IN_TRANSACTION)
        return None
    parts = arg.split()
    if not parts:
        st.error(R.AUTH_SYNTAX)
        return None
    method = parts[0].upper().decode("ascii", "replace")
    if method not in options.auth_methods:
        st.error(R.AUTH_UNKNOWN)
        return None
    if len(parts) > 2:
        st.error(_USAGE[method])
        return None
    exchange = SaslExchange(method, st.cfg.name)
    st.sasl = exchange
    return _outcome(st, exchange.start(parts[1] if len(parts) == 2 else None))


def sasl_line(st: SessionState, line: bytes) -> Any:
    """A line of the client's during a SASL exchange."""
    failure = st.xoauth2_failure
    if failure is not None:
        # Whatever the client answers to the XOAUTH2 error challenge, the
        # exchange fails (RFC 7628 §3.2.3).
        st.xoauth2_failure = None
        st.send_error(failure)
        return None
    exchange = st.sasl
    assert exchange is not None
    return _outcome(st, exchange.step(line.strip(b" ")))


def _outcome(st: SessionState, outcome: Any) -> Any:
    if isinstance(outcome, Challenge):
        st.out.append(outcome.line)
        return None
    st.sasl = None
    if isinstance(outcome, AuthRequest):
        st.pending_auth = outcome
        st.pause_for(AUTH_ANSWER)
        return Auth(outcome)
    st.error(outcome)
    return None


def auth_answered(st: SessionState, user: Any, error: SMTPError | None) -> bool:
    """
    The verdict on the credentials: a truthy C{user} authenticates; a falsy
    one, or an L{SMTPError}, refuses (for XOAUTH2, after the error
    challenge).  Returns whether the client is now authenticated.
    """
    st.expect(AUTH_ANSWER)
    request = st.pending_auth
    st.pending_auth = None
    assert request is not None
    if error is None and user:
        st.session.user = user
        st.update_transmission_type()
        st.out.append(R.AUTH_OK[st.esc])
        st.after_answer()
        return True
    if error is None or (error.code or 535) == 535:
        st.auth_failures += 1
        limit = st.cfg.max_auth_failures
        if limit and st.auth_failures >= limit:
            # Guessing: the Nth failure ends the session.
            st.close_with(R.TOO_MANY_AUTH_FAILURES)
            return False
    if error is None:
        final = R.AUTH_XOAUTH2_FAILED if request.method == "XOAUTH2" else R.AUTH_FAILED
        final_bytes = final[st.esc]
    else:
        final_bytes = render(error, 535, "AUTH", st.esc)
    if request.method == "XOAUTH2" and final_bytes[:1] in (b"4", b"5"):
        # RFC 7628 §3.2.2 shape: a 334 with the error, the client's (empty)
        # answer, then the failure.
        st.out.append(xoauth2_error_challenge(request.error_data))
        st.xoauth2_failure = final_bytes
        return False
    st.send_error(final_bytes)
    st.after_answer()
    return False

