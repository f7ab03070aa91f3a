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


# ---------------------------------------------------------------------------
# More of the protocol through a real client


def options(**kw: object) -> SMTPServerOptions:
    base: dict[str, object] = {"name": "mx.test", "disable_reverse_lookup": True}
    base.update(kw)
    return SMTPServerOptions(**base)  # type: ignore[arg-type]


def test_smtputf8_8bitmime_and_dsn_parameters() -> None:
    """smtplib's mail/rcpt options arrive decoded in the envelope."""
    handler = RecordingHandler()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        client.ehlo("c.example")
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        assert client.has_extn("dsn")
        refused = client.sendmail(
            "üser@exämple.com",
            ["δοκιμή@example.com"],
            "Subject: ünïcode\r\n\r\nbody ✓\r\n".encode(),
            mail_options=["SMTPUTF8", "BODY=8BITMIME", "RET=HDRS", "ENVID=id+2B1"],
            rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;x+40example.com"],
        )
        assert refused == {}
    [m] = handler.messages
    assert m.mail_from == "üser@exämple.com"
    assert m.rcpt_to == ["δοκιμή@example.com"]
    assert (m.envelope.smtp_utf8, m.envelope.body_type) == (True, "8bitmime")
    assert (m.envelope.dsn.ret, m.envelope.dsn.envid) == ("HDRS", "id+1")
    rcpt = m.envelope.rcpt_to[0]
    assert rcpt.dsn is not None
    assert rcpt.dsn.notify == ("SUCCESS", "FAILURE")
    assert rcpt.dsn.orcpt == "rfc822;x@example.com"
    assert m.data == "Subject: ünïcode\r\n\r\nbody ✓\r\n".encode()


def test_declared_size_over_limit() -> None:
    """smtplib declares SIZE= when the server advertises SIZE; too big is 552 at MAIL."""
    with serve(RecordingHandler(), options(size=1000)) as server:
        with smtplib.SMTP(*server.address) as client:
            client.ehlo("c")
            assert client.esmtp_features["size"] == "1000"
            with pytest.raises(smtplib.SMTPSenderRefused) as info:
                client.sendmail("a@example.com", ["b@example.com"], b"x" * 2000)
            assert info.value.smtp_code == 552
            assert info.value.smtp_error == (
                b"5.3.4 Error: message exceeds fixed maximum message size 1000"
            )


def test_rejected_message_and_sender() -> None:
    """on_mail_from / on_data errors reach smtplib as its exceptions, with our codes."""

    class Picky(Handler):
        def on_mail_from(self, address, session):
            if address.address.startswith("spammer"):
                raise SMTPError(550, "Go away")

        async def on_data(self, stream, session):
            body = await stream.read()
            if b"viagra" in body:
                raise SMTPError(554, "Content rejected", "5.7.1")
            return "Queued as 7"

    with serve(Picky()) as server, smtplib.SMTP(*server.address) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as sender:
            client.sendmail("spammer@example.com", ["b@example.com"], b"hi\r\n")
        assert (sender.value.smtp_code, sender.value.smtp_error) == (550, b"5.7.1 Go away")
        with pytest.raises(smtplib.SMTPDataError) as data:
            client.sendmail("a@example.com", ["b@example.com"], b"buy viagra\r\n")
        assert (data.value.smtp_code, data.value.smtp_error) == (554, b"5.7.1 Content rejected")
        client.mail("a@example.com")
        client.rcpt("b@example.com")
        assert client.data(b"fine\r\n") == (250, b"2.6.0 Queued as 7")


def test_helo_client_gets_no_enhanced_codes() -> None:
    """A client that says HELO sees plain replies (RFC 2034)."""
    with serve(RecordingHandler()) as server, smtplib.SMTP(*server.address) as client:
        assert client.helo("old.example")[0] == 250
        assert client.mail("a@example.com") == (250, b"Accepted")
        assert client.rcpt("<>") == (501, b"Error: Bad recipient address syntax")


def test_simple_commands() -> None:
    """NOOP, RSET, HELP, VRFY, unknown and unimplemented commands."""
    with serve(RecordingHandler()) as server, smtplib.SMTP(*server.address) as client:
        client.ehlo("c")
        assert client.noop() == (250, b"2.0.0 OK")
        assert client.rset() == (250, b"2.0.0 Flushed")
        assert client.help() == b"2.0.0 See https://www.rfc-editor.org/rfc/rfc5321 for details"
        assert client.verify("someone") == (252, b"2.1.5 Try to send something. No promises though")
        assert client.docmd("XYZZY") == (500, b"5.5.2 Error: command not recognized")
        assert client.docmd("EXPN", "list") == (502, b"5.5.1 Error: command not implemented")


def test_large_message_with_dots() -> None:
    """A 5 MB message with leading dots on many lines arrives byte for byte."""
    handler = RecordingHandler()
    body = b"".join(
        (b"." if i % 3 == 0 else b"") + b"line %d of a large message\r\n" % i
        for i in range(180_000)
    )
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        client.sendmail("a@example.com", ["b@example.com"], body)
    assert handler.messages[0].data == body


def test_max_clients_refuses_extra_connection() -> None:
    """The connection over max_clients gets 421 and smtplib reports it."""
    with serve(RecordingHandler(), options(max_clients=1)) as server:
        with smtplib.SMTP(*server.address) as first:
            first.noop()
            with pytest.raises(smtplib.SMTPConnectError) as info:
                smtplib.SMTP(*server.address)
            assert info.value.smtp_code == 421
            assert first.noop()[0] == 250


def test_idle_timeout_on_a_real_socket() -> None:
    """A silent client gets 421 Timeout and the server hangs up."""
    with serve(RecordingHandler(), options(socket_timeout=0.3)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220")
            assert f.readline() == b"421 Timeout - closing connection\r\n"
            assert f.read() == b""


def test_graceful_close_with_real_clients() -> None:
    """factory.close(): an idle client is told 421 at once; one mid-transaction finishes first."""
    from smtpsession.testing import call_in_reactor

    handler = RecordingHandler()
    with serve(handler, close_timeout=10) as server:
        idle = smtplib.SMTP(*server.address)
        busy = smtplib.SMTP(*server.address)
        idle.ehlo("idle")
        busy.ehlo("busy")
        busy.mail("a@example.com")
        closing = []
        call_in_reactor(lambda: closing.append(server.factory.close()))
        assert idle.getreply() == (421, b"4.4.2 Server shutting down")
        assert busy.rcpt("b@example.com")[0] == 250
        assert busy.data(b"last one\r\n")[0] == 250
        assert busy.getreply() == (421, b"4.4.2 Server shutting down")
        idle.close()
        busy.close()
    assert [m.data for m in handler.messages] == [b"last one\r\n"]


def test_ipv6_loopback() -> None:
    """A server on ::1 sees IPv6 addresses, without brackets or zone."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1 on this machine")
    handler = RecordingHandler()
    with serve(handler, endpoint="tcp6:0:interface=\\:\\:1") as server:
        with smtplib.SMTP("::1", server.port) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"v6\r\n")
    session = handler.sessions[0]
    assert session.remote_address == "::1"
    assert session.local_address == "::1"
    assert session.client_hostname == "[::1]"


def test_bdat_on_a_real_socket() -> None:
    """CHUNKING end to end (smtplib has no BDAT): two chunks make one message."""
    handler = RecordingHandler()
    with serve(handler) as server, socket.create_connection(server.address, timeout=10) as sock:
        f = sock.makefile("rb")
        f.readline()
        sock.sendall(b"EHLO c\r\n")
        while f.readline()[3:4] == b"-":
            pass
        sock.sendall(
            b"MAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
            b"BDAT 6\r\nbin\x00\n\rBDAT 3 LAST\r\nary"
        )
        replies = [f.readline() for _ in range(4)]
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221")
    assert replies == [
        b"250 2.1.0 Accepted\r\n",
        b"250 2.1.5 Accepted\r\n",
        b"250 2.0.0 OK: 6 octets received\r\n",
        b"250 2.6.0 OK: message queued\r\n",
    ]
    assert handler.messages[0].data == b"bin\x00\n\rary"


def test_many_simultaneous_connections() -> None:
    """Twenty clients connected at once, each sending in turn: all delivered, sessions apart."""
    handler = RecordingHandler()
    with serve(handler) as server:
        clients = [smtplib.SMTP(*server.address) for _ in range(20)]
        try:
            for i, client in enumerate(clients):
                client.sendmail("a@example.com", [f"r{i}@example.com"], f"n={i}\r\n")
        finally:
            for client in clients:
                client.quit()
    assert sorted(m.data for m in handler.messages) == sorted(
        f"n={i}\r\n".encode() for i in range(20)
    )
    assert len({s.id for s in handler.sessions}) == 20


def test_all_clients_leave_at_once() -> None:
    """Fifty connections dropped together: each gets on_close once, none is left behind."""
    import time

    from smtpsession.testing import call_in_reactor

    closed: list[str] = []

    class Track(RecordingHandler):
        def on_close(self, session):
            closed.append(session.id)

    handler = Track()
    with serve(handler, options(max_clients=0)) as server:
        socks = [socket.create_connection(server.address, timeout=10) for _ in range(50)]
        for s in socks:
            assert s.recv(100).startswith(b"220")
        for s in socks:
            s.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not call_in_reactor(lambda: len(server.factory.connections)) and len(closed) == 50:
                break
            time.sleep(0.02)
    assert sorted(closed) == sorted(s.id for s in handler.sessions)
    assert len(closed) == 50
