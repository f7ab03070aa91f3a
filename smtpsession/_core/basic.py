# -*- test-case-name: tests.unit.test_connection,tests.protocol.test_optional_hooks -*-
"""
The commands that keep no state of their own: NOOP, RSET, QUIT, HELP,
VRFY, EXPN, and STARTTLS (whose handshake the driver runs).

RSET, VRFY and EXPN ask the application only when it has the hook
(C{on_rset}, C{on_vrfy}, C{on_expn}); without one, RSET and VRFY are
answered here at once and EXPN is not in the command table at all (502).
"""

from __future__ import annotations

from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.addresses import AddressError, check_mailbox, split_path
from smtpsession._core.events import Expn, Rset, StartTLS, Vrfy
from smtpsession._core.replies import default_enhanced, format_reply
from smtpsession._core.state import (
    CLOSING,
    EXPN_ANSWER,
    HANDSHAKE,
    RSET_ANSWER,
    TLS,
    VRFY_ANSWER,
    SessionState,
)
from smtpsession._core.verdicts import render
from smtpsession.errors import SMTPError

__all__ = [
    "noop",
    "rset",
    "rset_answered",
    "quit",
    "help_",
    "vrfy",
    "vrfy_answered",
    "expn",
    "expn_answered",
    "starttls",
]


def noop(st: SessionState, arg: bytes) -> None:
    st.out.append(R.OK[st.esc])
    return None


def rset(st: SessionState, arg: bytes) -> Any:
    ev = st.abort_body("RSET")
    st.reset_transaction()
    if st.cfg.rset_hook:
        # The reset is done whatever on_rset says; its answer only decides
        # when the 250 goes out (and the next command is read).
        st.pause_for(RSET_ANSWER)
        if ev is not None:
            st.queued = [Rset()]
            return ev
        return Rset()
    st.out.append(R.FLUSHED[st.esc])
    return ev


def rset_answered(st: SessionState) -> None:
    """C{on_rset} answered: 250 (RFC 5321 §4.1.1.5), whatever it said."""
    st.expect(RSET_ANSWER)  # raises if no RSET is pending
    st.out.append(R.FLUSHED[st.esc])
    st.after_answer()


def quit(st: SessionState, arg: bytes) -> Any:
    ev = st.abort_body("QUIT")
    st.out.append(R.BYE[st.esc])
    st.phase = CLOSING
    return ev


def help_(st: SessionState, arg: bytes) -> None:
    st.out.append(R.HELP[st.esc])
    return None


def _text_argument(arg: bytes) -> str | None:
    """The argument as text, spaces around it removed; None if not UTF-8."""
    try:
        return arg.strip().decode("utf-8")
    except UnicodeDecodeError:
        return None


def _vrfy_argument(st: SessionState, text: str) -> str:
    """
    What C{on_vrfy} gets: the mailbox, normalised as MAIL and RCPT do,
    when the argument is one (with or without angle brackets); else the
    argument as sent (a user name, a full name).
    """
    candidate = text
    if text.startswith("<"):
        try:
            path, rest = split_path(text)
        except AddressError:
            return text
        if rest:
            return text
        candidate = path
    if "@" not in candidate:
        return candidate
    try:
        return check_mailbox(candidate, lenient=st.cfg.lenient_addresses)
    except AddressError:
        return text


def vrfy(st: SessionState, arg: bytes) -> Any:
    if not arg.strip():
        st.error(R.VRFY_SYNTAX)
        return None
    if not st.cfg.vrfy_hook:
        st.out.append(R.VRFY[st.esc])
        return None
    text = _text_argument(arg)
    if text is None:
        st.error(R.VRFY_SYNTAX)
        return None
    st.pause_for(VRFY_ANSWER)
    return Vrfy(_vrfy_argument(st, text))


def vrfy_answered(st: SessionState, result: SMTPError | str | None) -> None:
    """C{on_vrfy}'s answer: C{None} is the default 252, a C{str} a 250."""
    st.expect(VRFY_ANSWER)  # raises if no VRFY is pending
    if result is None:
        st.out.append(R.VRFY[st.esc])
    else:
        _lookup_reply(st, result, "VRFY")
    st.after_answer()


def expn(st: SessionState, arg: bytes) -> Any:
    """EXPN (only in the table when the application has C{on_expn})."""
    text = _text_argument(arg)
    if not text:
        st.error(R.EXPN_SYNTAX)
        return None
    st.pause_for(EXPN_ANSWER)
    return Expn(text)


def expn_answered(st: SessionState, result: SMTPError | str | None) -> None:
    """C{on_expn}'s answer: C{None} is the default 502, a C{str} a 250."""
    st.expect(EXPN_ANSWER)  # raises if no EXPN is pending
    if result is None:
        st.refuse_unrecognized(R.NOT_IMPLEMENTED)  # as without the hook
    else:
        _lookup_reply(st, result, "EXPN")
    st.after_answer()


def _lookup_reply(st: SessionState, result: SMTPError | str, context: str) -> None:
    """The reply to a VRFY or EXPN the application answered."""
    if isinstance(result, str):
        enhanced = default_enhanced(250, context) if st.esc else None
        st.out.append(format_reply(250, result, enhanced))
    elif result.code is not None and result.code < 400:
        # A positive answer given as an SMTPError (251, 252): no error.
        st.out.append(render(result, 550, context, st.esc))
    else:
        st.app_error(result, 550, context)


def starttls(st: SessionState, arg: bytes) -> Any:
    if arg.strip(b" "):
        st.error(R.STARTTLS_SYNTAX)
        return None
    if st.session.secure:
        st.error(R.TLS_ACTIVE)
        return None
    # TLS resets the session (RFC 3207 §4.2): a body in progress (between
    # BDAT chunks) is aborted now, and the driver told before StartTLS.
    ev = st.abort_body("STARTTLS")
    st.out.append(R.READY_TLS[st.esc])
    # RFC 3207 §4.2 / CVE-2011-0411: anything the client sent after
    # STARTTLS in the clear is dropped, never parsed.
    st.buf = b""
    st.pos = 0
    st.phase = TLS
    st.wait = HANDSHAKE
    if ev is not None:
        st.queued = [StartTLS()]
        return ev
    return StartTLS()
