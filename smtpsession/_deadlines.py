# -*- test-case-name: tests.protocol.test_deadlines,tests.protocol.test_limits -*-
"""
Which of a connection's deadlines has passed, decided in one place.

A connection has three, checked once a second by the server's sweep:

  - C{session_timeout}: the whole session, whatever the client does;
  - C{data_timeout}: a message body, from DATA (or the first BDAT) to its
    end (the wait for C{on_data}'s answer after it is C{hook_timeout}'s);
  - C{socket_timeout}: time without progress (a complete command line, or
    a piece of body: a line of DATA, a kilobyte, the end of a chunk; bytes
    alone are not progress, or a client trickling a byte a second would
    never be idle, in a command or in a body).  It runs while a hook is pending,
    and stops only while the body's reader lags: then the server stopped
    reading, not the client.
"""

from __future__ import annotations

from smtpsession.options import SMTPServerOptions

__all__ = ["SESSION", "BODY", "IDLE", "READER_LAGS", "passed"]

SESSION = "session"
BODY = "body"
IDLE = "idle"
#: No deadline passed, and the idle clock must restart (the reader lags).
READER_LAGS = "reader lags"


def passed(
    options: SMTPServerOptions,
    now: float,
    started: float,
    last_progress: float,
    body_started: float | None,
    reader_lags: bool,
) -> str | None:
    """
    The deadline that has passed (L{SESSION}, L{BODY}, L{IDLE}), or
    L{READER_LAGS}, or C{None}.

    @param body_started: when the body being received began, or C{None}
        (no body, or it has ended).
    """
    if options.session_timeout and now - started >= options.session_timeout:
        return SESSION
    if (
        options.data_timeout
        and body_started is not None
        and now - body_started >= options.data_timeout
    ):
        return BODY
    if reader_lags:
        return READER_LAGS
    if now - last_progress >= options.socket_timeout:
        return IDLE
    return None
