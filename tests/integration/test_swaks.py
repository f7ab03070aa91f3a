"""
swaks, the SMTP swiss-army knife, against a real server on 127.0.0.1:
plain ESMTP, PIPELINING, LMTP, HELO-only sessions, dot-stuffed bodies and
the exit codes swaks gives for our refusals.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from smtpsession import Handler, SMTPError, SMTPServerOptions
from smtpsession.testing import RecordingHandler, serve
from tests.conftest import require_program

pytestmark = pytest.mark.external


def swaks(port: int, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run swaks against 127.0.0.1:port (bounded by a timeout); capture its transcript."""
    exe = require_program("swaks")
    return subprocess.run(
        [exe, "--server", "127.0.0.1", "--port", str(port), "--timeout", "20", *args],
        input=input,
        capture_output=True,
        timeout=60,
        check=False,
        text=input is None,
    )


def options(**kw: Any) -> SMTPServerOptions:
    kw.setdefault("name", "mx.test")
    kw.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**kw)


def test_plain_delivery() -> None:
    """A default swaks message is accepted; envelope, headers and EHLO name arrive."""
    handler = RecordingHandler()
    with serve(handler) as server:
        result = swaks(server.port, "--from", "alice@example.com", "--to", "bob@example.com",
                       "--ehlo", "client.example", "--header", "Subject: swaks test")
    assert result.returncode == 0, result.stdout
    assert "250 2.6.0 OK: message queued" in result.stdout
    [m] = handler.messages
    assert (m.mail_from, m.rcpt_to) == ("alice@example.com", ["bob@example.com"])
    assert b"Subject: swaks test\r\n" in m.data
    assert m.session.host_name_appears_as == "client.example"
    assert m.transmission_type == "ESMTP"


def test_pipelining() -> None:
    """--pipeline: swaks sends MAIL/RCPT/DATA in one go and gets its replies in order."""
    handler = RecordingHandler()
    with serve(handler) as server:
        result = swaks(server.port, "--pipeline", "--from", "a@example.com",
                       "--to", "b@example.com,c@example.com")
    assert result.returncode == 0, result.stdout
    assert handler.messages[0].rcpt_to == ["b@example.com", "c@example.com"]


def test_lmtp() -> None:
    """--protocol LMTP: LHLO, then one DATA reply per recipient."""
    handler = RecordingHandler()
    with serve(handler, options(lmtp=True)) as server:
        result = swaks(server.port, "--protocol", "LMTP", "--from", "a@example.com",
                       "--to", "b@example.com,c@example.com")
    assert result.returncode == 0, result.stdout
    assert "LHLO" in result.stdout
    assert result.stdout.count("250 2.6.0 OK: message accepted") == 2
    assert handler.messages[0].transmission_type == "LMTP"


def test_helo_only_session() -> None:
    """--protocol SMTP uses HELO: no enhanced codes in the replies."""
    handler = RecordingHandler()
    with serve(handler) as server:
        result = swaks(server.port, "--protocol", "SMTP", "--from", "a@example.com",
                       "--to", "b@example.com")
    assert result.returncode == 0, result.stdout
    assert "<-  250 OK: message queued" in result.stdout
    assert handler.messages[0].transmission_type == "SMTP"


def test_dot_stuffed_body(tmp_path: Path) -> None:
    """A body with lines starting with dots (and a lone dot) arrives unstuffed, intact."""
    handler = RecordingHandler()
    body = "first\r\n.\r\n..two dots\r\n.one dot\r\nlast\r\n"
    data = tmp_path / "message.eml"
    data.write_bytes(b"Subject: dots\r\n\r\n" + body.encode())
    with serve(handler) as server:
        result = swaks(server.port, "--from", "a@example.com", "--to", "b@example.com",
                       "--data", str(data))
    assert result.returncode == 0, result.stdout
    # swaks stuffs the dots on the wire and adds a final empty line.
    assert handler.messages[0].data == b"Subject: dots\r\n\r\n" + body.encode() + b"\r\n"


def test_refusals_give_swaks_exit_codes() -> None:
    """Sender refused → 23, no recipient accepted → 24, message refused → 26."""

    class Refuse(Handler):
        def on_mail_from(self, address: Any, session: Any) -> Any:
            if address.address.startswith("bad"):
                raise SMTPError(550, "Sender refused")

        def on_rcpt_to(self, address: Any, session: Any) -> Any:
            if address.address.startswith("nobody"):
                raise SMTPError(550, "No such user")

        def on_data(self, stream: Any, session: Any) -> Any:
            raise SMTPError(554, "Message refused", "5.7.1")

    with serve(Refuse()) as server:
        sender = swaks(server.port, "--from", "bad@example.com", "--to", "b@example.com")
        rcpt = swaks(server.port, "--from", "a@example.com", "--to", "nobody@example.com")
        data = swaks(server.port, "--from", "a@example.com", "--to", "b@example.com")
    assert sender.returncode == 23 and "550 5.7.1 Sender refused" in sender.stdout
    assert rcpt.returncode == 24 and "550 5.1.1 No such user" in rcpt.stdout
    assert data.returncode == 26 and "554 5.7.1 Message refused" in data.stdout


def test_quit_after_rcpt() -> None:
    """--quit-after RCPT: the transaction is abandoned, nothing is delivered."""
    handler = RecordingHandler()
    with serve(handler) as server:
        result = swaks(server.port, "--from", "a@example.com", "--to", "b@example.com",
                       "--quit-after", "RCPT")
    assert result.returncode == 0, result.stdout
    assert "221 2.0.0 Bye" in result.stdout
    assert handler.messages == []
