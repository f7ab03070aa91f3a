"""
The ESMTP extensions of API.md's "Extensions and hooks" through real
sockets on 127.0.0.1 (a raw client against L{smtpsession.testing.serve}):
SMTPUTF8 (RFC 6531) with its refusals and transmission types, LIMITS
(RFC 9422), and RRVS (RFC 7293), DELIVERBY (RFC 2852) and MT-PRIORITY
(RFC 6710), off unless enabled.  The byte-exact versions, without sockets,
are in tests/unit/test_connection.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from smtpsession import SMTPError
from smtpsession.session import RRVS, Address, DeliverBy, Session
from smtpsession.testing import RecordingHandler, RunningServer, serve
from tests.conftest import options
from tests.rawsmtp import RawClient

BODY = b"Subject: extensions\r\n\r\nHello.\r\n.\r\n"


@contextmanager
def client(**opts: Any) -> Iterator[tuple[RunningServer, RawClient]]:
    """A server with C{opts} and a raw client that said EHLO to it."""
    with serve(None, options(**opts)) as server:
        c = RawClient(*server.address)
        try:
            code, _ = c.command("EHLO raw.client.test")
            assert code == 250
            yield server, c
        finally:
            c.close()


def ehlo_keywords(c: RawClient) -> list[str]:
    code, text = c.command("EHLO raw.client.test")
    assert code == 250
    return text.split("\n")[1:]


def send_body(c: RawClient) -> tuple[int, str]:
    assert c.command("DATA")[0] == 354
    c.send(BODY)
    return c.reply()


# -- SMTPUTF8 (RFC 6531) --------------------------------------------------------------


def test_utf8_sender_without_smtputf8_is_refused() -> None:
    """A UTF-8 mailbox without the SMTPUTF8 parameter: 553 5.6.7, the session goes on."""
    with client() as (_, c):
        code, text = c.command("MAIL FROM:<jürgen@bücher.example>")
        assert (code, text[:5]) == (553, "5.6.7")
        assert c.command("MAIL FROM:<a@example.com>")[0] == 250
        code, text = c.command("RCPT TO:<δοκιμή@example.com>")
        assert (code, text[:5]) == (553, "5.6.7")
        assert c.command("RCPT TO:<b@example.com>")[0] == 250


def test_utf8_transaction_and_its_transmission_type() -> None:
    """With SMTPUTF8: UTF-8 and A-label domains taken, UTF8SMTP for that transaction only."""
    with client() as (server, c):
        assert c.command("MAIL FROM:<jürgen@bücher.example> SMTPUTF8")[0] == 250
        assert c.command("RCPT TO:<δοκιμή@παράδειγμα.example>")[0] == 250
        assert c.command("RCPT TO:<b@xn--bcher-kva.example>")[0] == 250
        code, text = c.command("RCPT TO:<b@☃.example>")  # not valid IDNA
        assert (code, text[:5]) == (501, "5.1.3")
        assert send_body(c)[0] == 250
        assert c.command("MAIL FROM:<a@example.com>")[0] == 250
        assert c.command("RCPT TO:<b@example.com>")[0] == 250
        assert send_body(c)[0] == 250
        first, second = server.wait_for_messages(2)
        assert first.transmission_type == "UTF8SMTP"
        assert first.envelope.smtp_utf8 is True
        assert [r.address for r in first.envelope.rcpt_to] == [
            "δοκιμή@παράδειγμα.example",
            "b@xn--bcher-kva.example",
        ]
        assert second.transmission_type == "ESMTP"


def test_utf8_lmtp_transmission_type() -> None:
    """In LMTP mode the SMTPUTF8 transaction is UTF8LMTP."""
    with serve(None, options(lmtp=True)) as server:
        c = RawClient(*server.address)
        try:
            assert c.command("LHLO raw.client.test")[0] == 250
            assert c.command("MAIL FROM:<jürgen@bücher.example> SMTPUTF8")[0] == 250
            assert c.command("RCPT TO:<b@example.com>")[0] == 250
            assert send_body(c)[0] == 250
        finally:
            c.close()
        [message] = server.wait_for_messages(1)
        assert message.transmission_type == "UTF8LMTP"


# -- LIMITS (RFC 9422) ---------------------------------------------------------------------


def test_limits_advertised_and_enforced() -> None:
    """EHLO says LIMITS RCPTMAX=2 MAILMAX=1, and those are the limits applied."""
    with client(max_recipients=2, max_transactions=1) as (_, c):
        assert "LIMITS RCPTMAX=2 MAILMAX=1" in ehlo_keywords(c)
        assert c.command("MAIL FROM:<a@example.com>")[0] == 250
        assert c.command("RCPT TO:<1@example.com>")[0] == 250
        assert c.command("RCPT TO:<2@example.com>")[0] == 250
        assert c.command("RCPT TO:<3@example.com>")[0] == 452
        assert send_body(c)[0] == 250
        assert c.command("MAIL FROM:<a@example.com>")[0] == 421


def test_limits_default_and_hidden() -> None:
    """By default only RCPTMAX (max_transactions is off); hide_limits removes the keyword."""
    with client() as (_, c):
        assert [k for k in ehlo_keywords(c) if k.startswith("LIMITS")] == ["LIMITS RCPTMAX=1000"]
    with client(hide_limits=True, max_transactions=5) as (_, c):
        assert not [k for k in ehlo_keywords(c) if k.startswith("LIMITS")]


# -- RRVS (RFC 7293), DELIVERBY (RFC 2852), MT-PRIORITY (RFC 6710) ------------------------

ALL_THREE = ("RRVS", "DELIVERBY", "MT-PRIORITY")


class MailboxAges(RecordingHandler):
    """Refuses a recipient whose mailbox changed owner after its RRVS time."""

    def on_rcpt_to(self, address: Address, session: Session) -> None:
        if address.rrvs is not None and address.rrvs.since < CHANGED_OWNER:
            raise SMTPError(550, "Mailbox owner has changed", "5.7.17")


CHANGED_OWNER = datetime(2020, 1, 1, tzinfo=UTC)


def test_optional_extensions_off_by_default() -> None:
    """Not advertised, and their parameters are refused with 555 5.5.4."""
    with client() as (_, c):
        assert not set(ALL_THREE) & set(ehlo_keywords(c))
        for line in ("MAIL FROM:<a@example.com> BY=60;R", "MAIL FROM:<a@example.com> MT-PRIORITY=1"):
            code, text = c.command(line)
            assert (code, text[:5]) == (555, "5.5.4"), line
        assert c.command("MAIL FROM:<a@example.com>")[0] == 250
        code, text = c.command("RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00Z")
        assert (code, text[:5]) == (555, "5.5.4")


def test_optional_extensions_enabled_reach_the_envelope() -> None:
    """Enabled: advertised, bad values 501 5.5.4, good ones on the envelope at DATA."""
    with serve(MailboxAges(), options(enable=ALL_THREE)) as server:
        c = RawClient(*server.address)
        try:
            keywords = ehlo_keywords(c)
            assert {"DELIVERBY", "MT-PRIORITY", "RRVS"} <= set(keywords)
            for line in (
                "MAIL FROM:<a@example.com> BY=60;X",
                "MAIL FROM:<a@example.com> BY=0;R",
                "MAIL FROM:<a@example.com> MT-PRIORITY=12",
            ):
                code, text = c.command(line)
                assert (code, text[:5]) == (501, "5.5.4"), line
            assert c.command("MAIL FROM:<a@example.com> BY=86400;NT MT-PRIORITY=+5")[0] == 250
            code, text = c.command("RCPT TO:<b@example.com> RRVS=2014-04-03")
            assert (code, text[:5]) == (501, "5.5.4")
            code, text = c.command("RCPT TO:<old@example.com> RRVS=2014-04-03T23:01:00+02:00")
            assert (code, text[:6]) == (550, "5.7.17")  # the handler's verdict
            assert c.command("RCPT TO:<new@example.com> RRVS=2024-04-03T23:01:00Z;C")[0] == 250
            assert c.command("RCPT TO:<plain@example.com>")[0] == 250
            assert send_body(c)[0] == 250
        finally:
            c.close()
        [message] = server.wait_for_messages(1)
        env = message.envelope
        assert env.deliver_by == DeliverBy(86400, "N", True)
        assert env.priority == 5
        assert env.rrvs == {
            "new@example.com": RRVS(datetime(2024, 4, 3, 23, 1, 0, tzinfo=UTC), "C")
        }
        assert [r.address for r in env.rcpt_to] == ["new@example.com", "plain@example.com"]
