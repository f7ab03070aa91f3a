"""
STARTTLS command injection (CVE-2011-0411 and its kin: aiosmtpd
CVE-2024-34083, still present in Twisted's own ESMTP): commands a client
pipelines in the clear after STARTTLS must never run, inside TLS or out.
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.testing import RecordingHandler, serve
from tests.tlsutil import CA, Dialog, Identity, make_ca


class Watcher(RecordingHandler):
    """Records every MAIL FROM and AUTH the application is asked about."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.mail_from: list[str] = []
        self.auth: list[str] = []

    def on_mail_from(self, address: Any, session: Any) -> None:
        self.mail_from.append(address.address)

    def on_auth(self, auth: Any, session: Any) -> Any:
        self.auth.append(auth.username)
        return auth.username


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Identity]:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("server", ["mail.example.test"])


def options(pki: tuple[CA, Identity]) -> SMTPServerOptions:
    return SMTPServerOptions(
        name="mail.example.test",
        disable_reverse_lookup=True,
        tls_cert=str(pki[1].cert),
        tls_key=str(pki[1].key),
        allow_insecure_auth=True,
        auth_optional=True,
    )


def context(pki: tuple[CA, Identity]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki[0].path))


def test_pipelined_mail_after_starttls_is_discarded(pki: tuple[CA, Identity]) -> None:
    """
    STARTTLS and MAIL FROM in one write: the MAIL is dropped, never parsed,
    so it neither reaches on_mail_from nor opens a transaction inside TLS.
    """
    handler = Watcher()
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.send(b"STARTTLS\r\nMAIL FROM:<x@y>\r\n")
        assert d.reply() == (220, "2.0.0 Ready to start TLS")
        d.sock = context(pki).wrap_socket(d.sock, server_hostname="mail.example.test")
        # Had the MAIL run, it would have answered by now, or RCPT would work.
        assert d.command("EHLO client.example")[0] == 250
        assert d.command("RCPT TO:<victim@example.com>") == (503, "5.5.1 Error: need MAIL command")
        assert d.command("MAIL FROM:<real@example.com>")[0] == 250
        d.command("QUIT")
    assert handler.mail_from == ["real@example.com"]


def test_pipelined_auth_and_data_after_starttls_is_discarded(pki: tuple[CA, Identity]) -> None:
    """A whole injected transaction (AUTH, MAIL, RCPT, DATA, body) is dropped unread."""
    handler = Watcher()
    token = base64.b64encode(b"\0mallory\0pw").decode()
    injected = (
        f"STARTTLS\r\nAUTH PLAIN {token}\r\nMAIL FROM:<x@y>\r\nRCPT TO:<v@example.com>\r\n"
        "DATA\r\nSubject: injected\r\n\r\nevil\r\n.\r\n"
    ).encode()
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.send(injected)
        assert d.reply()[0] == 220
        d.sock = context(pki).wrap_socket(d.sock, server_hostname="mail.example.test")
        d.ehlo()
        assert d.command("NOOP") == (250, "2.0.0 OK")
        d.command("QUIT")
    assert (handler.auth, handler.mail_from, handler.messages) == ([], [], [])
    assert handler.sessions[0].user is None


def test_plaintext_between_starttls_and_handshake_kills_the_connection(
    pki: tuple[CA, Identity],
) -> None:
    """Cleartext sent after the 220 (a separate write) is not TLS: the handshake fails."""
    handler = Watcher()
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        assert d.command("STARTTLS")[0] == 220
        d.send(b"MAIL FROM:<x@y>\r\n")
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls = context(pki).wrap_socket(d.sock, server_hostname="mail.example.test")
            tls.sendall(b"NOOP\r\n")
            if not tls.recv(100):
                raise ConnectionError("closed")
    assert handler.mail_from == []
