# -*- test-case-name: tests.unit.test_connection -*-
"""
The commands that keep no state of their own: NOOP, RSET, QUIT, HELP,
VRFY, and STARTTLS (whose handshake the driver runs).
"""

from __future__ import annotations

from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.events import StartTLS
from smtpsession._core.state import CLOSING, HANDSHAKE, TLS, SessionState

__all__ = ["noop", "rset", "quit", "help_", "vrfy", "starttls"]


def noop(st: SessionState, arg: bytes) -> None:
    st.out.append(R.OK[st.esc])
    return None


def rset(st: SessionState, arg: bytes) -> Any:
    ev = st.abort_body("RSET")
    st.reset_transaction()
    st.out.append(R.FLUSHED[st.esc])
    return ev


def quit(st: SessionState, arg: bytes) -> Any:
    ev = st.abort_body("QUIT")
    st.out.append(R.BYE[st.esc])
    st.phase = CLOSING
    return ev


def help_(st: SessionState, arg: bytes) -> None:
    st.out.append(R.HELP[st.esc])
    return None


def vrfy(st: SessionState, arg: bytes) -> None:
    if not arg.strip():
        st.error(R.VRFY_SYNTAX)
    else:
        st.out.append(R.VRFY[st.esc])
    return None


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
