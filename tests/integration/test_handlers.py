"""
The small built-in handlers: LogHandler shows each message's envelope and
headers (never its body) and accepts it; SinkHandler accepts and discards.
"""

from __future__ import annotations

import io
import smtplib

from twisted.logger import globalLogPublisher

from smtpsession import SMTPServerOptions
from smtpsession.handlers import LogHandler, SinkHandler
from smtpsession.testing import serve

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"Subject: testing \x1b[31mred\r\n"
    b"\r\n"
    b"SECRET BODY TEXT\r\n"
)


def options() -> SMTPServerOptions:
    return SMTPServerOptions(name="dev.test", disable_reverse_lookup=True)


def test_log_handler_prints_envelope_and_headers() -> None:
    """Printed: the sender, the recipients, the size, each header line (with
    control characters neutralised); not printed: the body."""
    out = io.StringIO()
    with serve(LogHandler(out), options()) as server, smtplib.SMTP(*server.address) as client:
        refused = client.sendmail("alice@example.org", ["bob@example.com", "eve@example.com"], MESSAGE)
    assert refused == {}
    text = out.getvalue()
    assert "message from <alice@example.org> to <bob@example.com>, <eve@example.com>" in text
    assert f"({len(MESSAGE)} bytes, ESMTP from [127.0.0.1] 127.0.0.1)" in text
    assert "    From: Alice <alice@example.org>\n" in text
    assert "    Subject: testing ?[31mred\n" in text
    assert "SECRET" not in text


def test_log_handler_logs_by_default() -> None:
    """Without an output it emits one twisted.logger event per message,
    carrying the session id."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with serve(LogHandler(), options()) as server, smtplib.SMTP(*server.address) as client:
            client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
    finally:
        globalLogPublisher.removeObserver(events.append)
    [event] = [e for e in events if "text" in e and "SECRET" not in str(e["text"])]
    assert "Subject: testing" in str(event["text"])
    assert isinstance(event["session_id"], str) and len(event["session_id"]) >= 16


def test_log_handler_header_limit() -> None:
    """A header section longer than max_header_bytes is cut there."""
    out = io.StringIO()
    long_header = b"X-Long: " + b"a" * 5000 + b"\r\n\r\nbody\r\n"
    with serve(LogHandler(out, max_header_bytes="100"), options()) as server:
        with smtplib.SMTP(*server.address) as client:
            client.sendmail("a@example.org", ["b@example.com"], long_header)
    assert "X-Long: " + "a" * 92 in out.getvalue()
    assert "a" * 93 not in out.getvalue()


def test_sink_accepts_and_discards() -> None:
    """The sink says 250 to everything and overrides no hook (so the server
    skips every hook call)."""
    from smtpsession._hooks import HookTable

    handler = SinkHandler()
    table = HookTable(handler)
    assert all(getattr(table, name) is None for name in ("on_mail_from", "on_rcpt_to", "on_data"))
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        assert client.sendmail("a@example.org", ["b@example.com"], MESSAGE) == {}
