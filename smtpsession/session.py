# -*- test-case-name: tests.unit.test_session -*-
"""
The objects handlers see: L{Session}, L{Envelope}, L{Address}.

They mirror the Session object of nodemailer's smtp-server in Python's
idiom (snake_case, C{None} instead of C{false}).  This module is stdlib-only:
the sans-IO core fills these objects in, the Twisted layer fills in what only
it can know (addresses, TLS details), and handlers read them.

C{Session} deliberately keeps a C{__dict__} so that handlers can hang their
own attributes on it (C{session.custom_data = ...}); the envelope and
addresses are slotted because one is built per transaction or command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "Address",
    "DeliverBy",
    "Envelope",
    "EnvelopeDSN",
    "RecipientDSN",
    "RRVS",
    "Session",
    "transmission_type",
]


class RecipientDSN:
    """
    The RFC 3461 parameters of one RCPT TO.

    ``notify`` is a tuple of upper-case keywords (``("SUCCESS", "DELAY")``)
    or empty when NOTIFY was not given; ``orcpt`` is the decoded
    ``addr-type;address`` string or ``None``.
    """

    __slots__ = ("notify", "orcpt")

    def __init__(self, notify: tuple[str, ...] = (), orcpt: str | None = None) -> None:
        self.notify = notify
        self.orcpt = orcpt

    def __repr__(self) -> str:
        return f"RecipientDSN(notify={self.notify!r}, orcpt={self.orcpt!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecipientDSN):
            return NotImplemented
        return (self.notify, self.orcpt) == (other.notify, other.orcpt)


class EnvelopeDSN:
    """
    The RFC 3461 parameters of MAIL FROM: ``ret`` (``"FULL"``, ``"HDRS"`` or
    ``None``) and the xtext-decoded ``envid`` (or ``None``).
    """

    __slots__ = ("ret", "envid")

    def __init__(self, ret: str | None = None, envid: str | None = None) -> None:
        self.ret = ret
        self.envid = envid

    def __repr__(self) -> str:
        return f"EnvelopeDSN(ret={self.ret!r}, envid={self.envid!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EnvelopeDSN):
            return NotImplemented
        return (self.ret, self.envid) == (other.ret, other.envid)


class RRVS:
    """
    The RFC 7293 ``RRVS`` parameter of one RCPT TO (with
    C{SMTPServerOptions.enable} listing RRVS): ``since``, the time (an aware
    C{datetime}) since which the sender knows the mailbox to belong to the
    intended recipient, and ``action``: ``"C"`` (continue), ``"R"``
    (reject) or ``None`` when the client gave none.
    """

    __slots__ = ("since", "action")

    def __init__(self, since: datetime, action: str | None = None) -> None:
        self.since = since
        self.action = action

    def __repr__(self) -> str:
        return f"RRVS(since={self.since!r}, action={self.action!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RRVS):
            return NotImplemented
        return (self.since, self.action) == (other.since, other.action)

    __hash__ = None  # type: ignore[assignment]


class DeliverBy:
    """
    The RFC 2852 ``BY`` parameter of MAIL FROM (with
    C{SMTPServerOptions.enable} listing DELIVERBY): ``seconds`` (the
    by-time, may be zero or negative with mode N), ``mode`` (``"R"``:
    return the message if it cannot be delivered in time; ``"N"``: notify,
    with a delayed DSN) and ``trace`` (the ``T`` flag).
    """

    __slots__ = ("seconds", "mode", "trace")

    def __init__(self, seconds: int, mode: str, trace: bool = False) -> None:
        self.seconds = seconds
        self.mode = mode
        self.trace = trace

    def __repr__(self) -> str:
        return f"DeliverBy(seconds={self.seconds!r}, mode={self.mode!r}, trace={self.trace!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeliverBy):
            return NotImplemented
        return (self.seconds, self.mode, self.trace) == (other.seconds, other.mode, other.trace)

    __hash__ = None  # type: ignore[assignment]


class Address:
    """
    A reverse-path or forward-path as the client sent it.

    ``address`` is the mailbox (``""`` for the null sender ``<>``), with any
    source route removed and IPv6 literals normalised.  ``args`` maps each
    ESMTP parameter, upper-cased, to its xtext-decoded value, or to ``True``
    for keywords without a value.  ``dsn`` is set on recipients that carried
    NOTIFY or ORCPT, else ``None``; ``rrvs`` on recipients that carried RRVS
    (when enabled), else ``None``.
    """

    __slots__ = ("address", "args", "dsn", "rrvs")

    def __init__(
        self,
        address: str,
        args: dict[str, str | bool] | None = None,
        dsn: RecipientDSN | None = None,
        rrvs: RRVS | None = None,
    ) -> None:
        self.address = address
        self.args = {} if args is None else args
        self.dsn = dsn
        self.rrvs = rrvs

    def __repr__(self) -> str:
        more = "" if self.rrvs is None else f", rrvs={self.rrvs!r}"
        return (
            f"Address(address={self.address!r}, args={self.args!r}, dsn={self.dsn!r}{more})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Address):
            return NotImplemented
        return (self.address, self.args, self.dsn, self.rrvs) == (
            other.address,
            other.args,
            other.dsn,
            other.rrvs,
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def domain(self) -> str:
        """The domain as sent (after the last C{@}); C{""} for C{<>} or C{postmaster}."""
        return self.address.rpartition("@")[2] if "@" in self.address else ""

    @property
    def domain_ascii(self) -> str:
        """
        The domain normalised for comparison and lookups: lower case, with
        U-labels turned into A-labels (IDNA 2008 with the UTS #46 mapping,
        the C{idna} package), so C{Bücher.example} and
        C{xn--bcher-kva.example} give the same string.  An address literal
        (C{[192.0.2.1]}) is returned as is.  Computed when read.
        """
        return _idna_form(self.domain, to_ascii=True)

    @property
    def domain_unicode(self) -> str:
        """The domain with A-labels turned into U-labels (for display), lower case."""
        return _idna_form(self.domain, to_ascii=False)


def _idna_form(domain: str, to_ascii: bool) -> str:
    """
    C{domain} in IDNA's ASCII or Unicode form; the lower-cased domain when
    it is an address literal or (an A-label the core did not check) not
    valid IDNA.  idna is imported only for a domain that needs it.
    """
    if not domain or domain.startswith("["):
        return domain
    lowered = domain.lower()
    if lowered.isascii() and (to_ascii or "xn--" not in lowered):
        return lowered
    import idna

    try:
        if to_ascii:
            return str(idna.encode(domain, uts46=True).decode("ascii"))
        return str(idna.decode(lowered, uts46=True))
    except (idna.IDNAError, UnicodeError):
        return lowered


class Envelope:
    """
    The current mail transaction.  A fresh one is made on every reset (RSET,
    HELO/EHLO/LHLO, end of DATA, STARTTLS), so a handler that keeps a
    reference keeps a consistent snapshot.

    ``mail_from`` is the accepted sender (or ``None``), ``rcpt_to`` the
    accepted recipients in order (an address given twice, in any case, is
    kept once), ``body_type`` ``"7bit"``, ``"8bitmime"`` or
    ``"binarymime"``, ``smtp_utf8`` and ``require_tls`` the MAIL flags,
    ``dsn`` the MAIL DSN parameters, and (for the extensions of
    C{SMTPServerOptions.enable}) ``deliver_by`` (a L{DeliverBy} or
    ``None``), ``priority`` (MT-PRIORITY, -9 to 9, or ``None``) and
    ``rrvs`` (recipient address → L{RRVS}).
    """

    __slots__ = (
        "mail_from",
        "rcpt_to",
        "body_type",
        "smtp_utf8",
        "require_tls",
        "dsn",
        "deliver_by",
        "priority",
    )

    def __init__(
        self,
        mail_from: Address | None = None,
        rcpt_to: list[Address] | None = None,
        body_type: str = "7bit",
        smtp_utf8: bool = False,
        require_tls: bool = False,
        dsn: EnvelopeDSN | None = None,
        deliver_by: DeliverBy | None = None,
        priority: int | None = None,
    ) -> None:
        self.mail_from = mail_from
        self.rcpt_to = [] if rcpt_to is None else rcpt_to
        self.body_type = body_type
        self.smtp_utf8 = smtp_utf8
        self.require_tls = require_tls
        self.dsn = EnvelopeDSN() if dsn is None else dsn
        self.deliver_by = deliver_by
        self.priority = priority

    @property
    def rrvs(self) -> dict[str, RRVS]:
        """
        The RRVS parameters of the accepted recipients that carried one,
        by recipient address (as in C{rcpt_to}); computed from
        C{Address.rrvs} when read, so it costs nothing when unused.
        """
        return {a.address: a.rrvs for a in self.rcpt_to if a.rrvs is not None}

    def __repr__(self) -> str:
        more = ""
        if self.deliver_by is not None:
            more += f", deliver_by={self.deliver_by!r}"
        if self.priority is not None:
            more += f", priority={self.priority!r}"
        return (
            f"Envelope(mail_from={self.mail_from!r}, rcpt_to={self.rcpt_to!r}, "
            f"body_type={self.body_type!r}, smtp_utf8={self.smtp_utf8!r}, "
            f"require_tls={self.require_tls!r}, dsn={self.dsn!r}{more})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Envelope):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def transmission_type(
    lmtp: bool, opening_command: str | None, secure: bool, user: Any, utf8: bool = False
) -> str:
    """
    The RFC 3848 ``with`` keyword of a C{Received} header.

    SMTP after HELO (or before any greeting), ESMTP after EHLO, LMTP after
    LHLO; then ``S`` when TLS is on and ``A`` when the client authenticated.
    In a transaction whose MAIL carried ``SMTPUTF8`` (C{utf8}), RFC 6531
    §3.7.3's ``UTF8SMTP`` or ``UTF8LMTP`` instead of the first part.
    """
    if utf8:
        base = "UTF8LMTP" if lmtp else "UTF8SMTP"
    elif lmtp:
        base = "LMTP"
    elif opening_command == "EHLO":
        base = "ESMTP"
    else:
        base = "SMTP"
    if secure:
        base += "S"
    if user:
        base += "A"
    return base


def new_session_id() -> str:
    """32 random characters from 0–9 and a–f (128 bits, from the OS CSPRNG)."""
    return os.urandom(16).hex()


class _SessionId:
    """
    C{Session.id}, made the first time it is read: a server with logging
    off never reads the ids of its idle clients, and 10,000 of them then
    hold no 32-character strings.  Any id given (or set) is kept as is.
    """

    def __get__(self, obj: Any, objtype: Any = None) -> str:
        if obj is None:
            return ""  # the dataclass default, meaning "make one"
        value: str = obj._id
        if not value:
            value = obj._id = new_session_id()
        return value

    def __set__(self, obj: Any, value: str) -> None:
        obj._id = value


@dataclass(eq=False)
class Session:
    """
    One client connection, from accept to close.

    The same object is passed to every hook of a connection, so attributes
    a handler sets on it persist across transactions.  See the field list in
    the docs (``docs/reference/session.rst``).
    """

    id: str = _SessionId()  # type: ignore[assignment]
    remote_address: str = ""
    remote_port: int = 0
    local_address: str = ""
    local_port: int = 0
    client_hostname: str = ""
    host_name_appears_as: str | None = None
    opening_command: str | None = None
    secure: bool = False
    tls_options: dict[str, Any] | None = None
    servername: str | None = None
    user: Any = None
    transaction: int = 1
    transmission_type: str = "SMTP"
    # These three are made on first use (see _Lazy below): an idle client
    # should not carry an empty envelope and two empty dicts.
    envelope: Envelope = field(init=False)
    x_client: dict[str, Any] = field(init=False)
    x_forward: dict[str, Any] = field(init=False)
    error: str | None = None
    #: The PROXY protocol header the connection started with, if any (its
    #: C{version}, C{source}, C{destination} and v2 C{tlvs}).
    proxy: Any = None


class _Lazy:
    """
    A value made the first time it is read and then kept in the instance's
    C{__dict__} (a non-data descriptor, so reading it later costs nothing
    and assigning it works as for any attribute).
    """

    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        if obj is None:
            return self
        value = self.factory()
        # setattr, not obj.__dict__: touching __dict__ would make CPython
        # build a real dict for the instance (~100 bytes per connection).
        setattr(obj, self.name, value)
        return value


for _name, _factory in (("envelope", Envelope), ("x_client", dict), ("x_forward", dict)):
    _lazy = _Lazy(_factory)
    _lazy.name = _name
    setattr(Session, _name, _lazy)
del _name, _factory, _lazy


def reset_envelope(session: Session) -> None:
    """Start a new transaction: the next read of C{envelope} makes a fresh one."""
    try:
        del session.envelope
    except AttributeError:
        pass  # never read since the last reset
