"""
MAIL/RCPT parameters as a handler sees them through the protocol: SIZE (and
the stream's live counters), BODY, SMTPUTF8, REQUIRETLS, DSN (RET, ENVID,
NOTIFY, ORCPT; xtext-decoded) — smtp-server's C{dsn-test.js} and
C{mail-parameters-test.js}.
"""

from __future__ import annotations

from typing import Any

from smtpsession import Handler
from smtpsession.session import EnvelopeDSN, RecipientDSN
from tests.protocol.harness import FakeServer, codes


class Seen(Handler):
    def __init__(self) -> None:
        self.mail: list[Any] = []
        self.rcpt: list[Any] = []
        self.envelopes: list[Any] = []
        self.sizes: list[tuple[int, bool]] = []

    def on_mail_from(self, address: Any, session: Any) -> Any:
        self.mail.append(address)

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        self.rcpt.append(address)

    async def on_data(self, stream: Any, session: Any) -> Any:
        self.envelopes.append(session.envelope)
        async for _ in stream:
            pass
        self.sizes.append((stream.byte_length, stream.size_exceeded))


def test_dsn_parameters_reach_the_handler_decoded() -> None:
    """RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT are validated, decoded and recorded."""
    handler = Seen()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    replies = c.send(
        b"MAIL FROM:<a@example.com> RET=HDRS ENVID=QQ+2B314159\r\n"
        b"RCPT TO:<b@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40example.com\r\n"
        b"RCPT TO:<c@example.com> NOTIFY=NEVER\r\nDATA\r\nx\r\n.\r\n"
    )
    assert codes(replies) == [250, 250, 250, 354, 250]
    assert handler.mail[0].args == {"RET": "HDRS", "ENVID": "QQ+314159"}
    b, cc = handler.rcpt
    assert b.dsn == RecipientDSN(("SUCCESS", "FAILURE"), "rfc822;b@example.com")
    assert cc.dsn == RecipientDSN(("NEVER",), None)
    env = handler.envelopes[0]
    assert env.dsn == EnvelopeDSN("HDRS", "QQ+314159")
    assert [a.dsn for a in env.rcpt_to] == [b.dsn, cc.dsn]


def test_dsn_advertised_by_default_and_hideable() -> None:
    """DSN is advertised by default (deviation 2); hide_dsn removes it and its checks."""
    c = FakeServer().connect()
    assert "250-DSN" in c.lines("EHLO c")[0].split("\n")
    c = FakeServer(hide_dsn=True).connect()
    assert "DSN" not in c.lines("EHLO c")[0]
    assert codes(c.lines("MAIL FROM:<a@example.com> RET=WHATEVER")) == [250]


def test_size_declared_and_actual() -> None:
    """SIZE is checked at MAIL; the stream tells the handler the real size as it goes."""
    handler = Seen()
    c = FakeServer(handler, size=100, reject_oversized=False).connect()
    assert "250-SIZE 100" in c.lines("EHLO c")[0].split("\n")
    assert c.lines("MAIL FROM:<a@example.com> SIZE=101") == [
        "552 5.3.4 Error: message exceeds fixed maximum message size 100"
    ]
    # A client that lies about SIZE is caught by the stream (or reject_oversized).
    replies = c.send(
        b"MAIL FROM:<a@example.com> SIZE=10\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
        + b"y" * 150 + b"\r\n.\r\n"
    )
    assert codes(replies) == [250, 250, 354, 250]
    assert handler.sizes == [(152, True)]


def test_reject_oversized_through_the_protocol() -> None:
    """reject_oversized: 552 whatever the handler says; the reader is told why."""
    errors: list[Any] = []

    class H(Handler):
        async def on_data(self, stream: Any, session: Any) -> Any:
            try:
                async for _ in stream:
                    pass
            except Exception as e:
                errors.append(e)
            return "accepted anyway"

    c = FakeServer(H(), size=100, reject_oversized=True).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    assert c.send(b"z" * 200 + b"\r\n.\r\n") == [
        "552 5.3.4 Error: message exceeds fixed maximum message size 100"
    ]
    assert len(errors) == 1 and getattr(errors[0], "code", None) == 552


def test_body_smtputf8_requiretls_in_the_envelope() -> None:
    """BODY, SMTPUTF8 and REQUIRETLS (on a secure session) are in the envelope at DATA time."""
    handler = Seen()
    c = FakeServer(handler, secured=True, hide_requiretls=False).connect()
    assert "250-REQUIRETLS" in c.lines("EHLO c")[0].split("\n")
    c.send(
        b"MAIL FROM:<\xc3\xbcser@example.com> BODY=8BITMIME SMTPUTF8 REQUIRETLS\r\n"
        b"RCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n"
    )
    env = handler.envelopes[0]
    assert (env.body_type, env.smtp_utf8, env.require_tls) == ("8bitmime", True, True)
    assert env.mail_from.address == "üser@example.com"


def test_envelope_initialised_for_each_transaction() -> None:
    """Fields from one transaction never leak into the next."""
    handler = Seen()
    c = FakeServer(handler).connect()
    c.lines("EHLO c")
    c.send(b"MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8 RET=FULL\r\nRCPT TO:<b@example.com>\r\n"
           b"DATA\r\nx\r\n.\r\n")
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nx\r\n.\r\n")
    first, second = handler.envelopes
    assert (first.body_type, first.smtp_utf8, first.dsn.ret) == ("8bitmime", True, "FULL")
    assert (second.body_type, second.smtp_utf8, second.dsn) == ("7bit", False, EnvelopeDSN())


def test_requiretls_refused_on_cleartext() -> None:
    """REQUIRETLS on a cleartext session: 530 5.7.10."""
    c = FakeServer().connect()
    c.lines("EHLO c")
    assert c.lines("MAIL FROM:<a@example.com> REQUIRETLS") == [
        "530 5.7.10 REQUIRETLS not permitted on non-TLS connections"
    ]
