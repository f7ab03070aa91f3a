"""
XCLIENT and XFORWARD (Postfix's proxy commands) in the sans-IO core, with
the replies of smtp-server's protocol tests (reference §4.3, §8.2).
"""

from __future__ import annotations

from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import NEED_DATA
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session


def connect(xclient: bool = True, xforward: bool = True) -> ServerConnection:
    options = SMTPServerOptions(name="mx.example", use_xclient=xclient, use_xforward=xforward)
    session = Session(id="s", remote_address="10.0.0.1", remote_port=1234,
                      client_hostname="[10.0.0.1]")
    conn = ServerConnection(options, session)
    conn.set_proxy_trust(xclient, xforward)
    conn.greet()
    conn.data_to_send()
    return conn


def say(conn: ServerConnection, *lines: str) -> list[str]:
    """Send lines (accepting every MAIL/RCPT); return the reply lines."""
    conn.receive_data("".join(line + "\r\n" for line in lines).encode())
    while True:
        ev = conn.next_event()
        name = type(ev).__name__
        if name == "MailFrom":
            conn.mail_from_result(None)
        elif name == "RcptTo":
            conn.rcpt_to_result(None)
        else:
            assert ev is NEED_DATA
            break
    return conn.data_to_send().decode().splitlines()


def codes(replies: list[str]) -> list[str]:
    """Final-line codes of each reply (multi-line replies count once)."""
    return [r[:3] for r in replies if r[3:4] == " "]


def test_not_enabled() -> None:
    """With the options off, both commands are refused with 550 5.7.0."""
    conn = connect(xclient=False, xforward=False)
    replies = say(conn, "EHLO c", "XCLIENT ADDR=192.0.2.1", "XFORWARD ADDR=192.0.2.1")
    assert replies[-2:] == ["550 5.7.0 Error: Not allowed"] * 2
    assert not any("XCLIENT" in r or "XFORWARD" in r for r in replies[:-2])


def test_xclient_regreets_and_rewrites_session() -> None:
    """XCLIENT answers with a new greeting (no enhanced code) and rewrites the session."""
    conn = connect()
    replies = say(
        conn,
        "EHLO c",
        "XCLIENT ADDR=198.51.100.7 NAME=client.example.com PORT=4321 PROTO=ESMTP HELO=h.example",
    )
    assert replies[-1] == "220 mx.example ESMTP"
    s = conn.session
    assert (s.remote_address, s.remote_port, s.client_hostname) == (
        "198.51.100.7",
        4321,
        "client.example.com",
    )
    assert s.x_client["ADDR:DEFAULT"] == "10.0.0.1"
    assert s.x_client["NAME:DEFAULT"] == "[10.0.0.1]"
    assert s.x_client["PORT:DEFAULT"] == 1234
    assert s.x_client["PROTO"] == "ESMTP"
    assert s.opening_command is None
    # The client must greet again; afterwards XCLIENT/XFORWARD are gone.
    replies = say(conn, "MAIL FROM:<a@example.com>")
    assert replies == ["503 Error: send HELO/EHLO first"]
    replies = say(conn, "EHLO c")
    assert replies[0] == "250-mx.example Nice to meet you, client.example.com"
    assert not any("XCLIENT" in r or "XFORWARD" in r for r in replies)
    assert say(conn, "XCLIENT ADDR=192.0.2.2") == ["550 5.7.0 Error: Not allowed"]
    assert say(conn, "XFORWARD ADDR=192.0.2.2") == ["550 5.7.0 Error: Not allowed"]
    assert s.remote_address == "198.51.100.7"


def test_xclient_errors() -> None:
    """Syntax, unknown attributes, bad values and open transactions are refused."""
    conn = connect()
    say(conn, "EHLO c")
    assert say(conn, "XCLIENT") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert say(conn, "XCLIENT FOO=bar") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert say(conn, "XCLIENT NAME=a=b") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert say(conn, "XCLIENT ADDR=not-an-ip") == [
        "501 5.5.4 Error: Bad command parameter syntax. Invalid address"
    ]
    assert say(conn, "XCLIENT NAME=bad_host..name") == [
        "501 5.5.4 Error: Bad command parameter syntax. Invalid hostname"
    ]
    assert say(conn, "XCLIENT NAME=" + "a" * 300) == [
        "501 5.5.4 Error: Bad command parameter syntax. Invalid hostname"
    ]
    assert say(conn, "XCLIENT NAME=ok+0Dbad") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert conn.session.x_client == {}
    say(conn, "MAIL FROM:<a@example.com>")
    assert say(conn, "XCLIENT ADDR=192.0.2.1") == ["503 5.5.1 Error: Mail transaction in progress"]
    assert say(conn, "XFORWARD ADDR=192.0.2.1") == ["503 5.5.1 Error: Mail transaction in progress"]


def test_xclient_unavailable_and_login() -> None:
    """[UNAVAILABLE]/[TEMPUNAVAIL] mean "not known"; LOGIN sets the user."""
    conn = connect()
    say(conn, "EHLO c")
    replies = say(conn, "XCLIENT NAME=[UNAVAILABLE] LOGIN=alice ADDR=IPV6:2001:db8::1")
    assert replies == ["220 mx.example ESMTP"]
    s = conn.session
    assert s.client_hostname == "[2001:db8::1]"
    assert s.user == "alice"
    assert s.x_client["NAME"] is None


def test_xforward_all_attributes() -> None:
    """XFORWARD with every attribute: 250, and the session shows the forwarded client."""
    conn = connect(xclient=False)
    say(conn, "EHLO c")
    replies = say(
        conn,
        "XFORWARD NAME=spike.porcupine.org ADDR=168.100.189.2 PORT=25 PROTO=ESMTP "
        "HELO=Spike.Porcupine.Org IDENT=123 SOURCE=REMOTE",
    )
    assert replies == ["250 2.0.0 OK"]
    s = conn.session
    assert s.remote_address == "168.100.189.2"
    assert s.client_hostname == "spike.porcupine.org"
    assert s.remote_port == 25
    assert s.host_name_appears_as == "spike.porcupine.org"
    assert s.x_forward["IDENT"] == "123"
    assert s.x_forward["ADDR:DEFAULT"] == "10.0.0.1"
    # XFORWARD keeps the session going: no new greeting needed.
    assert say(conn, "MAIL FROM:<a@example.com>") == ["250 2.1.0 Accepted"]


def test_xforward_unavailable_and_errors() -> None:
    """Only [UNAVAILABLE] is special for XFORWARD; [TEMPUNAVAIL] is not a host name."""
    conn = connect(xclient=False)
    say(conn, "EHLO c")
    assert say(conn, "XFORWARD NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE]") == ["250 2.0.0 OK"]
    assert say(conn, "XFORWARD NAME=[TEMPUNAVAIL]") == [
        "501 5.5.4 Error: Bad command parameter syntax. Invalid hostname"
    ]
    assert say(conn, "XFORWARD") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert say(conn, "XFORWARD LOGIN=x") == ["501 5.5.4 Error: Bad command parameter syntax"]
    assert say(conn, "XFORWARD ADDR=999.1.1.1") == [
        "501 5.5.4 Error: Bad command parameter syntax. Invalid address"
    ]


def test_xclient_then_xforward_keeps_xclient_address() -> None:
    """After XCLIENT ADDR, an XFORWARD is refused and the XCLIENT address stays."""
    conn = connect()
    say(conn, "EHLO c", "XCLIENT ADDR=192.0.2.50", "EHLO c")
    assert say(conn, "XFORWARD ADDR=192.0.2.99") == ["550 5.7.0 Error: Not allowed"]
    assert conn.session.remote_address == "192.0.2.50"


def test_capabilities_listed_when_trusted() -> None:
    """Trusted peers see the XCLIENT and XFORWARD lines, in smtp-server's order."""
    conn = connect()
    replies = say(conn, "EHLO c")
    assert replies[-2:] == [
        "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN",
        "250 XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE",
    ]
