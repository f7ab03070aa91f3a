"""
The objects handlers see (C{smtpsession.session}) and how the core keeps
them: fresh envelopes per transaction, fields that persist, and the RFC 3848
transmission types.
"""

from __future__ import annotations

import pytest

from smtpsession.session import (
    Address,
    Envelope,
    EnvelopeDSN,
    RecipientDSN,
    Session,
    transmission_type,
)
from tests.unit.coreclient import CoreClient


def test_defaults() -> None:
    """A new session has the documented defaults."""
    s = Session(id="x")
    assert (s.remote_address, s.remote_port, s.local_address, s.local_port) == ("", 0, "", 0)
    assert s.host_name_appears_as is None and s.opening_command is None
    assert s.secure is False and s.tls_options is None and s.servername is None
    assert s.user is None and s.error is None
    assert s.transaction == 1 and s.transmission_type == "SMTP"
    assert s.envelope == Envelope()
    assert s.x_client == {} and s.x_forward == {}


def test_envelope_defaults_and_independence() -> None:
    """Each envelope has its own recipient list and DSN record."""
    a, b = Envelope(), Envelope()
    a.rcpt_to.append(Address("x@example.com"))
    assert b.rcpt_to == []
    assert a.mail_from is None and a.body_type == "7bit"
    assert a.smtp_utf8 is False and a.require_tls is False
    assert a.dsn == EnvelopeDSN(None, None)
    assert a.dsn is not b.dsn


def test_address_fields_and_equality() -> None:
    """Addresses compare by value and are unhashable (they are mutable)."""
    a = Address("a@example.com", {"NOTIFY": "SUCCESS"}, RecipientDSN(("SUCCESS",), None))
    assert a == Address("a@example.com", {"NOTIFY": "SUCCESS"}, RecipientDSN(("SUCCESS",)))
    assert a != Address("a@example.com")
    assert Address("").address == "" and Address("").args == {}
    with pytest.raises(TypeError):
        hash(a)
    assert "a@example.com" in repr(a)


@pytest.mark.parametrize(
    ("lmtp", "opening", "secure", "user", "expected"),
    [
        (False, None, False, None, "SMTP"),
        (False, "HELO", False, None, "SMTP"),
        (False, "EHLO", False, None, "ESMTP"),
        (False, "EHLO", True, None, "ESMTPS"),
        (False, "EHLO", False, "u", "ESMTPA"),
        (False, "EHLO", True, "u", "ESMTPSA"),
        (False, "HELO", True, None, "SMTPS"),
        (True, "LHLO", False, None, "LMTP"),
        (True, "LHLO", True, None, "LMTPS"),
        (True, "LHLO", False, "u", "LMTPA"),
        (True, "LHLO", True, "u", "LMTPSA"),
    ],
)
def test_transmission_type(
    lmtp: bool, opening: str | None, secure: bool, user: object, expected: str
) -> None:
    """RFC 3848 keywords: base protocol, then S for TLS, then A for AUTH."""
    assert transmission_type(lmtp, opening, secure, user) == expected


def test_custom_attributes_persist_across_transactions() -> None:
    """A handler's own session attributes survive RSET, EHLO and whole transactions."""
    c = CoreClient()
    c.session.custom_data = {"greylisted": False}  # type: ignore[attr-defined]
    c.ehlo()
    c.transaction()
    c.lines("RSET", "EHLO again.example")
    c.transaction()
    assert c.session.custom_data == {"greylisted": False}  # type: ignore[attr-defined]
    assert c.session.transaction == 3


def test_each_transaction_gets_a_fresh_envelope() -> None:
    """A handler keeping the envelope of one message keeps a consistent snapshot."""
    c = CoreClient()
    c.ehlo()
    c.transaction("a@example.com", ["b@example.com"])
    c.transaction("c@example.com", ["d@example.com"])
    first, second = c.envelopes
    assert first is not second
    assert first.mail_from == Address("a@example.com")
    assert [a.address for a in first.rcpt_to] == ["b@example.com"]
    assert second.mail_from == Address("c@example.com")
    assert c.session.envelope.mail_from is None


def test_transmission_type_follows_the_session() -> None:
    """transmission_type is recomputed on HELO, EHLO, TLS and AUTH."""
    c = CoreClient()
    assert c.session.transmission_type == "SMTP"
    c.lines("EHLO c.example")
    assert c.session.transmission_type == "ESMTP"
    c.lines("HELO c.example")
    assert c.session.transmission_type == "SMTP"
    c.session.secure = True
    c.conn.secure_changed()
    assert c.session.transmission_type == "SMTPS"
    lmtp = CoreClient(lmtp=True)
    lmtp.lines("LHLO c.example")
    assert lmtp.session.transmission_type == "LMTP"
