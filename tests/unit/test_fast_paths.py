"""
MAIL and RCPT have fast paths (one regular expression for their common
shapes).  They must answer exactly as the general parser does: every line
here goes through the core twice, once as is and once with the fast paths
switched off, and the replies and envelopes must be the same.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

import smtpsession._core.connection as connection
from tests.unit.coreclient import CoreClient

NEVER = re.compile(rb"(?!)")

LINES = [
    b"MAIL FROM:<a@example.com>",
    b"MAIL FROM: <a@example.com>",
    b"mail from:<a@example.com> BODY=8BITMIME",
    b"MAIL FROM:<a@example.com> body=8bitmime",
    b"MAIL FROM:<a@example.com> BODY=7BIT",
    b"MAIL FROM:<a@example.com> SIZE=1000",
    b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME",
    b"MAIL FROM:<a@example.com> BODY=8BITMIME SIZE=1000",
    b"MAIL FROM:<a@example.com> SIZE=99999999999",
    b"MAIL FROM:<a@example.com> SIZE=10 SIZE=20",
    b"MAIL FROM:<a@example.com> BODY=8BITMIME BODY=7BIT",
    b"MAIL FROM:<a@example.com> BODY=BINARYMIME",
    b"MAIL FROM:<a@example.com>  BODY=8BITMIME",
    b"MAIL FROM:<a@example.com> SIZE=",
    b"MAIL FROM:<first.last+tag@sub.example.com> SIZE=0",
    b"MAIL FROM:<a@" + b"x" * 63 + b".example>",
    b"MAIL FROM:<a@" + b"x" * 64 + b".example>",
    b"MAIL FROM:<a@example." + b"x" * 64 + b">",
    b"MAIL FROM:<" + b"a" * 60 + b"@" + b"x" * 63 + b".example>",
    b"MAIL FROM:<a@-x.example>",
    b"MAIL FROM:<a@x-.example>",
    b"MAIL FROM:<a@x--y.example>",
    b"MAIL FROM:<a..b@example.com>",
    b"MAIL FROM:<" + b"a" * 64 + b"@" + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 61 + b">",
    b"MAIL FROM:<" + b"a" * 64 + b"@" + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 62 + b">",
]


def run(line: bytes, fast: bool, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Any:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(connection, "_FAST_FROM", NEVER)
            m.setattr(connection, "_FAST_TO", NEVER)
        client = CoreClient(**options)
        replies = client.send(b"EHLO c\r\n")
        replies += client.send(line + b"\r\n")
        replies += client.send(b"RCPT TO:<b@example.com>\r\n")
        # The same address as a recipient (RCPT has its own fast path).
        address = line.split(b"<", 1)[1].split(b">", 1)[0]
        replies += client.send(b"RCPT TO:<" + address + b">\r\n")
        replies += client.send(b"MAIL FROM:<again@example.com> SIZE=5\r\n")  # nested
        env = client.session.envelope
        mail = env.mail_from
        return (
            replies,
            None if mail is None else (mail.address, mail.args),
            env.body_type,
            [(r.address, r.args) for r in env.rcpt_to],
        )


@pytest.mark.parametrize("line", LINES)
@pytest.mark.parametrize("size", [0, 5000])
def test_fast_path_answers_like_the_parser(
    line: bytes, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = run(line, True, monkeypatch, size=size)
    slow = run(line, False, monkeypatch, size=size)
    assert fast == slow


def test_fast_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The common shapes do not reach the general parser."""
    calls = []
    real = connection.split_path
    monkeypatch.setattr(connection, "split_path", lambda *a: calls.append(a) or real(*a))
    client = CoreClient()
    client.send(b"EHLO c\r\n")
    client.send(b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME\r\n")
    client.send(b"RCPT TO:<b@example.com>\r\n")
    assert calls == []
    assert client.session.envelope.body_type == "8bitmime"
    assert client.session.envelope.mail_from.args == {"SIZE": "1000", "BODY": "8BITMIME"}
