# -*- test-case-name: tests.unit.test_verdicts -*-
"""
What the application's answers mean on the wire: the one place where a
hook's outcome becomes a reply code, an enhanced code and a text.

The driver hands the core what a hook (or the filters in front of it)
produced, untouched: a value, or the exception it raised or failed with.
This module decides what that is worth:

  - an L{SMTPError}: that reply, with the hook's default code when it
    names none and an enhanced code that fits the command when it gives
    none (or a wrong one);
  - L{HookTimeout}: C{451 4.3.0}, or C{421} where the session cannot go
    on without the answer (C{on_connect});
  - L{AuthUnavailable} from C{on_auth}: C{454 4.7.0} (RFC 4954 §6);
  - any other exception: C{451 4.3.0} — mail is never half-accepted;
  - C{False}: the hook's default refusal.

C{on_vrfy} and C{on_expn} may also answer with something to show
(L{lookup_result}): a string, or a list of entries, becomes a C{250}.

It also words the refusals that happen before a connection has a core of
its own (L{connection_refusal}): a full server, a shutdown, a client with
too many connections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.replies import default_enhanced, format_reply
from smtpsession.errors import AuthUnavailable, HookTimeout, SMTPError
from smtpsession.session import Address

__all__ = [
    "as_error",
    "lookup_result",
    "render",
    "data_results",
    "connection_refusal",
    "INTERNAL",
    "TIMED_OUT",
    "SHUTTING_DOWN",
    "TOO_MANY_CLIENTS",
    "TOO_MANY_FROM_ADDRESS",
]

#: Any hook failure that is not an SMTPError.
INTERNAL = SMTPError(451, "Error: internal server error", "4.3.0")
#: A hook that did not answer within C{hook_timeout}.
TIMED_OUT = SMTPError(451, "Error: timed out, try again later", "4.3.0")
#: A credentials checker that could not answer (RFC 4954 §6).
AUTH_UNAVAILABLE = SMTPError(454, "Error: Temporary authentication failure", "4.7.0")
#: The default refusal of a hook that returned C{False} (its code is the
#: hook's default).
REFUSED = SMTPError()

# The reasons a connection is refused before it has a session.
SHUTTING_DOWN = "shutting down"
TOO_MANY_CLIENTS = "too many clients"
TOO_MANY_FROM_ADDRESS = "too many from address"

#: The refusals, by reason: the server's own state is told with its name
#: (as smtp-server does); the client's own excess with the enhanced code,
#: although no EHLO has asked for one yet, because this is the reply
#: operators grep for (Postfix words it the same way).
_REFUSALS = {
    SHUTTING_DOWN: ("Server shutting down", None),
    TOO_MANY_CLIENTS: ("Too many connected clients, try again in a moment", None),
    TOO_MANY_FROM_ADDRESS: ("Too many connections from your address", "4.7.0"),
}

_TIMED_OUT_AT_OPENING = "Error: timed out, closing connection"

#: A hook's default reply text, by the command it answers.
_DEFAULT_TEXT = {
    "MAIL": "Error: sender rejected",
    "RCPT": "Error: recipient rejected",
    "DATA": "Error: message rejected",
    "LMTP": "Error: message rejected",
    "AUTH": "Error: Authentication credentials invalid",
    "CONNECT": "Error: connection refused",
    "SECURE": "Error: TLS refused",
    "HELO": "Error: hostname rejected",
    "VRFY": "Error: no such user",
    "EXPN": "Error: no such mailing list",
}


def as_error(value: Any, error: BaseException | None, stage: str) -> SMTPError | None:
    """
    A hook's outcome as the reply it stands for: C{None} accepts.

    @param stage: the command context (C{"MAIL"}, C{"RCPT"}, C{"AUTH"},
        C{"CONNECT"}, ...): only C{AUTH} gives L{AuthUnavailable} its
        meaning.
    """
    if error is None:
        return REFUSED if value is False else None
    if isinstance(error, SMTPError):
        return error
    if isinstance(error, HookTimeout):
        return TIMED_OUT
    if isinstance(error, AuthUnavailable) and stage == "AUTH":
        return AUTH_UNAVAILABLE
    return INTERNAL


def lookup_result(value: Any, error: BaseException | None, context: str) -> SMTPError | str | None:
    """
    The outcome of C{on_vrfy} (C{context="VRFY"}) or C{on_expn} (C{"EXPN"}):
    C{None} for the command's default reply (C{None} or C{True} returned);
    an L{SMTPError} for a refusal (C{False}, an empty list, or what
    L{as_error} makes of an exception); else the text of a C{250}: a
    string as it is, a list one line per entry, an L{Address} as
    C{<mailbox>}.
    """
    if error is not None:
        return as_error(None, error, context)
    if value is None or value is True:
        return None
    if value is False:
        return REFUSED
    if isinstance(value, (list, tuple)):
        if not value:
            return REFUSED
        return "\n".join([_entry(v) for v in value])
    return _entry(value)


def _entry(value: Any) -> str:
    """One line of a VRFY or EXPN answer."""
    if isinstance(value, Address):
        return f"<{value.address}>"
    return str(value)


def render(error: SMTPError, default_code: int, context: str, esc: int) -> bytes:
    """
    The bytes of an application's refusal: its code or C{default_code}, its
    text or the context's, and (when C{esc}, i.e. after EHLO/LHLO) its
    enhanced code if it fits the reply code, else one that does.
    """
    code = error.code or default_code
    message = error.message or _DEFAULT_TEXT.get(context, "Error")
    enhanced = None
    if esc:
        enhanced = error.enhanced or default_enhanced(code, context)
        if enhanced[0] != str(code)[0]:
            enhanced = default_enhanced(code, context)
    return format_reply(code, message, enhanced)


def _data_item(value: Any) -> SMTPError | str | None:
    if value is None or isinstance(value, SMTPError):
        return value
    if value is False:
        # As for on_mail_from/on_rcpt_to, False refuses (never "250 False").
        return REFUSED
    if isinstance(value, BaseException):
        return INTERNAL
    return str(value)


def data_results(
    value: Any, error: BaseException | None, lmtp: bool, recipients: int
) -> tuple[list[SMTPError | str | None], int | None]:
    """
    C{on_data}'s outcome as one result per reply: one in SMTP, one per
    accepted recipient in LMTP.  Also returns, for the driver to log as
    the handler bug it is, the length of an LMTP list that does not match
    the recipients (else C{None}).
    """
    if error is not None:
        return [as_error(None, error, "DATA")], None
    if isinstance(value, (list, tuple)):
        results = [_data_item(v) for v in value]
        if lmtp and len(results) != recipients:
            # Never guess which recipient a result belongs to: 451 for all.
            return [INTERNAL] * recipients, len(results)
        return results, None
    return [_data_item(value)], None


def fit_results(
    results: Sequence[SMTPError | str | None], lmtp: bool, recipients: int
) -> Sequence[SMTPError | str | None]:
    """
    Exactly one result per reply due: SMTP has one reply per transaction
    (smtp-server sends one per element and desyncs the client, its bug 6);
    LMTP one per recipient, a single result standing for all.
    """
    n = recipients if lmtp else 1
    if len(results) == n:
        return results
    if len(results) == 1:
        return list(results) * n
    if not lmtp:
        errors = [r for r in results if isinstance(r, SMTPError)]
        if errors:
            return [errors[0]]
        if results:
            return [results[0]]
    # Nothing to say is a handler bug (never guess "accepted"), and so is an
    # LMTP list of the wrong length (never guess which recipient got what).
    return [INTERNAL] * n


def opening_refusal(error: BaseException | None, stage: str, name: str) -> bytes | None:
    """
    The reply that ends a session whose C{on_connect} (C{stage="CONNECT"})
    or C{on_secure} (C{"SECURE"}) did not agree, or C{None} to go on.  No
    enhanced code: the client has not asked for them yet.
    """
    if error is None:
        return None
    if isinstance(error, HookTimeout):
        return format_reply(421, f"{name} {_TIMED_OUT_AT_OPENING}")
    refusal = as_error(None, error, stage)
    assert refusal is not None
    return format_reply(refusal.code or 554, refusal.message or _DEFAULT_TEXT[stage])


def connection_refusal(name: str, reason: str) -> bytes:
    """The 421 that refuses a connection before its greeting."""
    text, enhanced = _REFUSALS[reason]
    if enhanced is None:
        return format_reply(421, f"{name} {text}")
    return format_reply(421, text, enhanced)


def proxy_refusal(name: str) -> R.Pair:
    """The 421 for a connection whose PROXY header is malformed."""
    return R.pair(421, f"{name} Invalid PROXY header")
