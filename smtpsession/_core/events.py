# -*- test-case-name: tests.unit.test_connection -*-
"""
What the core asks of the application.

L{smtpsession._core.connection.ServerConnection.next_event} returns one of
these (or a body chunk as plain C{bytes}, or a sentinel).  Each event that
needs an answer names the method the driver must call; until it does, the
connection stays paused, which is what keeps pipelined replies in order.
"""

from __future__ import annotations

from smtpsession._core.sasl import AuthRequest
from smtpsession.errors import SMTPError
from smtpsession.session import Address

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "CLOSED",
    "Event",
    "MailFrom",
    "RcptTo",
    "DataStart",
    "BodyRejected",
    "DataEnd",
    "DataAborted",
    "StartTLS",
    "Auth",
    "Helo",
    "Vrfy",
    "Expn",
    "Rset",
]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


#: More input is needed before anything else can happen.
NEED_DATA = _Sentinel("NEED_DATA")
#: The connection waits for the application (an answer, or a TLS handshake).
PAUSED = _Sentinel("PAUSED")
#: The connection is finished: flush what is pending, then close.
CLOSED = _Sentinel("CLOSED")


class Event:
    """Base class of the events; they carry data, never behaviour."""

    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in names)
        return f"{type(self).__name__}({fields})"


class MailFrom(Event):
    """Call C{on_mail_from}; answer with C{mail_from_result}."""

    __slots__ = ("address",)

    def __init__(self, address: Address) -> None:
        self.address = address


class RcptTo(Event):
    """Call C{on_rcpt_to}; answer with C{rcpt_to_result}."""

    __slots__ = ("address",)

    def __init__(self, address: Address) -> None:
        self.address = address


class DataStart(Event):
    """
    A body begins (DATA accepted, or the first BDAT): call C{on_data} with a
    fresh stream.  Body chunks follow as C{bytes} events, then L{DataEnd}
    (or L{DataAborted}).  No answer is due now.
    """

    __slots__ = ("chunking",)

    def __init__(self, chunking: bool) -> None:
        self.chunking = chunking


class BodyRejected(Event):
    """
    The core refuses the body being received (bare CR/LF, size): end the
    stream with C{error} now; no more chunks follow, the rest of the body
    is drained, and L{DataEnd} will carry the final reply: the same, or
    the bare CR/LF refusal if one shows up in a body refused for its size
    (a bare CR/LF decides, whatever the segments).
    """

    __slots__ = ("error",)

    def __init__(self, error: SMTPError) -> None:
        self.error = error


class DataEnd(Event):
    """
    The body is complete: end the stream, wait for C{on_data}'s result and
    answer with C{data_result}.  C{rejected} is the core's own verdict
    (after a L{BodyRejected}), which wins over the handler's.
    """

    __slots__ = ("byte_length", "rejected")

    def __init__(self, byte_length: int, rejected: BodyRejected | None) -> None:
        self.byte_length = byte_length
        self.rejected = rejected


class DataAborted(Event):
    """
    The transaction ended before its body did (RSET, QUIT, a hello or
    STARTTLS between BDAT chunks, a DATA after BDAT): fail the stream and
    ignore C{on_data}'s result.  No answer.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class StartTLS(Event):
    """
    The 220 to STARTTLS is queued: send it, start TLS, and call
    C{tls_established} after the handshake (and C{on_secure}).
    """

    __slots__ = ()


class Auth(Event):
    """Call C{on_auth}; answer with C{auth_result}."""

    __slots__ = ("request",)

    def __init__(self, request: AuthRequest) -> None:
        self.request = request


class Helo(Event):
    """
    HELO, EHLO or LHLO was valid and the application has C{on_helo}: call
    it with C{hostname}; answer with C{helo_result}.  Nothing of the hello
    has happened yet: a refusal leaves the session as it was.
    """

    __slots__ = ("hostname",)

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname


class Vrfy(Event):
    """Call C{on_vrfy} with C{address}; answer with C{vrfy_result}."""

    __slots__ = ("address",)

    def __init__(self, address: str) -> None:
        self.address = address


class Expn(Event):
    """Call C{on_expn} with C{name}; answer with C{expn_result}."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class Rset(Event):
    """
    RSET has reset the transaction and the application has C{on_rset}:
    call it; answer with C{rset_result} (the reply is 250 whatever it says).
    """

    __slots__ = ()
