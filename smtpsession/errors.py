# -*- test-case-name: tests.unit.test_errors -*-
"""
The one exception a handler raises to choose the reply.

It lives in its own stdlib-only module because both the sans-IO core (which
formats replies) and the Twisted layer (which catches hook failures) need it.
"""

from __future__ import annotations

__all__ = ["SMTPError", "HookTimeout", "AuthUnavailable"]


class SMTPError(Exception):
    """
    Raise (or fail a Deferred with) this from a hook to send a specific reply.

    ``code`` is the three-digit SMTP reply code.  It may be ``None``, in which
    case the hook's default applies (554 for ``on_connect``/``on_secure``, 535
    for ``on_auth``, 550 for ``on_mail_from``/``on_rcpt_to``, 450 for
    ``on_data``), so ``raise SMTPError(message="no such user")`` is enough.

    ``enhanced`` is an RFC 3463 status code such as ``"5.7.1"``.  When it is
    ``None`` the server picks one that fits the code and the command.  It is
    only sent to clients that said EHLO/LHLO (RFC 2034).

    ``message`` may contain newlines: each line becomes one line of a
    multi-line reply.
    """

    def __init__(
        self,
        code: int | None = None,
        message: str | None = None,
        enhanced: str | None = None,
    ) -> None:
        if code is not None and not (200 <= int(code) <= 599):
            raise ValueError(f"SMTP reply code out of range: {code!r}")
        if enhanced is not None:
            _check_enhanced(enhanced, code)
        super().__init__(code, message, enhanced)
        self.code = None if code is None else int(code)
        self.message = message
        self.enhanced = enhanced

    def __str__(self) -> str:
        parts = [str(p) for p in (self.code, self.enhanced, self.message) if p]
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"SMTPError(code={self.code!r}, message={self.message!r}, "
            f"enhanced={self.enhanced!r})"
        )


class HookTimeout(Exception):
    """
    A hook (or a filter in front of it) did not answer within
    C{hook_timeout}.  Its Deferred was cancelled; the client is told
    C{451 4.3.0} (C{421} and closed for C{on_connect}).  Filters may catch
    it from C{await next(...)} to log or count, and re-raise it.
    """


class AuthUnavailable(Exception):
    """
    Raise from C{on_auth} when the credentials cannot be checked now (the
    user database is down): the client gets C{454 4.7.0} "Temporary
    authentication failure" (RFC 4954 §6) instead of C{535}, and may try
    again later.  The C{twisted.cred} bridge raises it for a checker that
    fails with anything but a refusal.
    """


def _check_enhanced(enhanced: str, code: int | None) -> None:
    """
    Refuse malformed enhanced codes early, at the raise site, where the
    traceback points at the handler's bug rather than at the reply writer.
    """
    parts = enhanced.split(".")
    if (
        len(parts) != 3
        or parts[0] not in ("2", "4", "5")
        or not all(p.isdigit() and 1 <= len(p) <= 3 for p in parts[1:])
    ):
        raise ValueError(f"malformed enhanced status code: {enhanced!r}")
    if code is not None and str(code)[0] != parts[0]:
        raise ValueError(
            f"enhanced status code {enhanced!r} does not match reply code {code}"
        )
