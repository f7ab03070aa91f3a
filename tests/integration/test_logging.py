"""
Structured logging: one twisted.logger event per transaction (sender,
recipients, size, result, duration), events about a session carry its id,
nothing is logged per command, and the transaction log can be turned off.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from smtpsession import Handler, SMTPServerOptions
from smtpsession.testing import RecordingHandler, serve


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted while the test runs."""
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def options(**kw: Any) -> SMTPServerOptions:
    return SMTPServerOptions(name="log.test", disable_reverse_lookup=True, **kw)


def ours(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if str(e.get("log_namespace", "")).startswith("smtpsession")]


def test_one_line_per_transaction(events: list[dict[str, Any]]) -> None:
    """Three messages on one connection: three transaction events with
    sender, recipients, size, result and duration, and no event per
    command (only the connection's own two debug events besides)."""
    handler = RecordingHandler()
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        for i in range(3):
            client.sendmail("a@example.org", ["b@example.com", "c@example.com"], f"n: {i}\r\n\r\nx\r\n")
            client.noop()
            client.rset()
    session_id = handler.sessions[0].id
    mine = [e for e in ours(events) if e.get("session_id") == session_id]
    lines = [e for e in mine if "mail_from" in e]
    assert len(lines) == 3
    for e in lines:
        assert e["log_level"] == LogLevel.info
        assert e["mail_from"] == "a@example.org"
        assert e["rcpt_to"] == "<b@example.com>,<c@example.com>"
        assert e["result"] == "250"
        assert e["size"] == len(b"n: 0\r\n\r\nx\r\n")
        assert isinstance(e["duration"], float) and e["duration"] >= 0
        text = formatEvent(e)
        assert text.startswith(f"[{session_id}] from=<a@example.org> to=<b@example.com>,<c@example.com> ")
        assert " result=250 duration=" in text and text.endswith("s client=127.0.0.1")
    assert [e["log_level"] for e in mine if "mail_from" not in e] == [LogLevel.debug, LogLevel.debug]


def test_refusals_are_logged_with_their_code(events: list[dict[str, Any]]) -> None:
    """A refused message is logged with the code the client got."""
    from smtpsession import SMTPError

    class Refuse(Handler):
        async def on_data(self, stream: Any, session: Any) -> None:
            async for _ in stream:
                pass
            raise SMTPError(554, "No thanks", "5.7.1")

    with serve(Refuse(), options()) as server, smtplib.SMTP(*server.address) as client:
        with pytest.raises(smtplib.SMTPDataError):
            client.sendmail("a@example.org", ["b@example.com"], b"x\r\n")
    [line] = [e for e in ours(events) if "mail_from" in e]
    assert line["result"] == "554"


def test_transaction_log_off(events: list[dict[str, Any]]) -> None:
    """transaction_log=False: no per-transaction or per-connection events."""
    with serve(RecordingHandler(), options(transaction_log=False)) as server:
        with smtplib.SMTP(*server.address) as client:
            client.sendmail("a@example.org", ["b@example.com"], b"x\r\n")
    assert [e for e in ours(events) if "session_id" in e] == []


def test_failures_carry_the_session_id(events: list[dict[str, Any]]) -> None:
    """A hook that raises is logged (with its traceback) under the id of
    the session it happened in; the client gets 451."""

    class Broken(Handler):
        def on_rcpt_to(self, address: Any, session: Any) -> None:
            raise RuntimeError("bug in the handler")

    handler = RecordingHandler()

    class Both(Broken):
        def on_connect(self, session: Any) -> None:
            handler.sessions.append(session)

    with serve(Both(), options()) as server, smtplib.SMTP(*server.address) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.com")[0] == 451
    [failure] = [e for e in ours(events) if "log_failure" in e]
    assert failure["session_id"] == handler.sessions[0].id
    assert "bug in the handler" in str(failure["log_failure"].value)
