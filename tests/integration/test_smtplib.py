"""
Python's smtplib against a real smtpsession server on 127.0.0.1.
"""

from __future__ import annotations

import smtplib
import socket

import pytest

from smtpsession import Handler, SMTPError, SMTPServerOptions
from smtpsession.testing import RecordingHandler, serve


def test_send_one_message() -> None:
    """A message sent with smtplib arrives whole, with its envelope."""
    handler = RecordingHandler()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        code, _ = client.ehlo("client.example")
        assert code == 250
        assert client.has_extn("pipelining")
        assert client.has_extn("enhancedstatuscodes")
        refused = client.sendmail(
            "alice@example.com",
            ["bob@example.com", "carol@example.com"],
            b"Subject: hello\r\n\r\nHi Bob.\r\n.leading dot\r\n",
        )
        assert refused == {}
    [message] = handler.messages
    assert message.mail_from == "alice@example.com"
    assert message.rcpt_to == ["bob@example.com", "carol@example.com"]
    assert message.data == b"Subject: hello\r\n\r\nHi Bob.\r\n.leading dot\r\n"
    assert message.transmission_type == "ESMTP"


def test_several_messages_one_connection() -> None:
    """Transactions on one connection are counted and kept apart."""
    handler = RecordingHandler()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        for i in range(3):
            client.sendmail("a@example.com", [f"r{i}@example.com"], f"n={i}\r\n")
    assert [m.data for m in handler.messages] == [b"n=0\r\n", b"n=1\r\n", b"n=2\r\n"]
    assert handler.sessions[0].transaction == 4


def test_lmtp_one_reply_per_recipient() -> None:
    """smtplib.LMTP gets one reply per recipient, in order, from the list."""

    class Deliver(Handler):
        async def on_data(self, stream, session):
            async for _ in stream:
                pass
            return [
                None if a.address.startswith("ok") else SMTPError(550, "No such user")
                for a in session.envelope.rcpt_to
            ]

    options = SMTPServerOptions(lmtp=True, name="lmtp.test", disable_reverse_lookup=True)
    with serve(Deliver(), options) as server:
        # smtplib.LMTP.sendmail reads a single DATA reply (an smtplib
        # limitation), so the per-recipient replies are read here.
        client = smtplib.LMTP(server.host, server.port)
        try:
            assert client.ehlo("c.example")[0] == 250  # smtplib.LMTP sends LHLO
            assert client.mail("a@example.com")[0] == 250
            for rcpt in ["ok1@example.com", "bad@example.com", "ok2@example.com"]:
                assert client.rcpt(rcpt)[0] == 250
            replies = [client.data(b"Subject: x\r\n\r\nbody\r\n")]
            replies += [client.getreply(), client.getreply()]
            assert client.noop()[0] == 250
        finally:
            client.quit()
    assert replies == [
        (250, b"2.6.0 OK: message accepted"),
        (550, b"5.1.1 No such user"),
        (250, b"2.6.0 OK: message accepted"),
    ]


def test_rejected_recipient() -> None:
    """An SMTPError from on_rcpt_to becomes the reply; the others go on."""

    class OnlyBob(RecordingHandler):
        def on_rcpt_to(self, address, session):
            if address.address != "bob@example.com":
                raise SMTPError(550, "No such user here", "5.1.1")

    handler = OnlyBob()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        refused = client.sendmail(
            "a@example.com", ["bob@example.com", "eve@example.com"], b"x\r\n"
        )
    assert refused == {"eve@example.com": (550, b"5.1.1 No such user here")}
    assert handler.messages[0].rcpt_to == ["bob@example.com"]


def test_pipelined_replies_in_order_with_slow_async_hook() -> None:
    """
    MAIL, RCPT (whose hook waits), RCPT, DATA in one write: the replies come
    back in order, the slow hook's reply first.
    """
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    class Slow(RecordingHandler):
        async def on_rcpt_to(self, address, session):
            if address.address.startswith("slow"):
                await deferLater(reactor, 0.3, lambda: None)
                raise SMTPError(450, "Try again later", "4.2.0")

    handler = Slow()
    with serve(handler) as server:
        sock = socket.create_connection(server.address, timeout=10)
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.sendall(b"EHLO c\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        sock.sendall(
            b"MAIL FROM:<a@example.com>\r\nRCPT TO:<slow@example.com>\r\n"
            b"RCPT TO:<fast@example.com>\r\nDATA\r\n"
        )
        replies = [f.readline() for _ in range(4)]
        sock.sendall(b"hello\r\n.\r\nQUIT\r\n")
        replies += [f.readline(), f.readline()]
        sock.close()
    assert [r[:3] for r in replies] == [b"250", b"450", b"250", b"354", b"250", b"221"]
    assert replies[1] == b"450 4.2.0 Try again later\r\n"
    assert handler.messages[0].rcpt_to == ["fast@example.com"]


@pytest.mark.parametrize("family", ["ipv4"])
def test_session_addresses(family: str) -> None:
    """The session knows both ends of the connection."""
    handler = RecordingHandler()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        client.noop()
        local_port = client.sock.getsockname()[1]
    [session] = handler.sessions
    assert session.remote_address == "127.0.0.1"
    assert session.remote_port == local_port
    assert session.local_port == server.port
    assert session.client_hostname == "[127.0.0.1]"
    assert len(session.id) == 32
