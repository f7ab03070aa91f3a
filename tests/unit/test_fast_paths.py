"""
MAIL and RCPT have fast paths (one regular expression for their common
shapes).  They must answer exactly as the general parser does: every line
here goes through the core twice, once as is and once with the general
parsers in the command table, and the replies and envelopes must be the
same.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpsession._core import envelope
from smtpsession._core.events import MailFrom, RcptTo
from smtpsession._core.machine import Verb
from tests.unit.coreclient import CoreClient

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


def slow_only(client: CoreClient) -> None:
    """Make C{client}'s core parse MAIL and RCPT with the general parser only.

    The command table is data in the connection's configuration, so this
    works on the compiled core too (monkeypatching a compiled module's
    globals changes nothing there).
    """
    commands = client.conn.cfg.commands
    for verb, parser in ((b"MAIL", envelope.slow_mail), (b"RCPT", envelope.slow_rcpt)):
        row = commands[verb]
        commands[verb] = Verb(
            parser,
            needs_hello=row.needs_hello,
            needs_auth=row.needs_auth,
            in_shutdown=row.in_shutdown,
        )


def run(line: bytes, fast: bool, **options: Any) -> Any:
    client = CoreClient(**options)
    if not fast:
        slow_only(client)
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
def test_fast_path_answers_like_the_parser(line: bytes, size: int) -> None:
    fast = run(line, True, size=size)
    slow = run(line, False, size=size)
    assert fast == slow


def test_slow_only_client_uses_the_general_parser() -> None:
    """The comparison above really compares two parsers."""
    client = CoreClient()
    slow_only(client)
    assert client.conn.cfg.commands[b"MAIL"].run is envelope.slow_mail
    assert client.conn.cfg.commands[b"RCPT"].run is envelope.slow_rcpt
    assert CoreClient().conn.cfg.commands[b"MAIL"].run is envelope.mail


def never(st: object, arg: bytes) -> None:
    raise AssertionError(f"the general parser was asked about {arg!r}")


def test_fast_path_is_taken() -> None:
    """
    The common shapes are decided by the fast paths, without the general
    parser (given here as one that fails the test).  Calling the compiled
    functions directly makes this hold on both builds.
    """
    client = CoreClient()
    client.send(b"EHLO c\r\n")
    st = client.conn
    ev = envelope.mail(st, b"FROM:<a@example.com> SIZE=1000 BODY=8BITMIME", never)
    assert isinstance(ev, MailFrom)
    st.mail_from_result(None)
    assert st.session.envelope.body_type == "8bitmime"
    assert st.session.envelope.mail_from.args == {"SIZE": "1000", "BODY": "8BITMIME"}
    ev = envelope.rcpt(st, b"TO:<b@example.com>", never)
    assert isinstance(ev, RcptTo)
    st.rcpt_to_result(None)
    assert [r.address for r in st.session.envelope.rcpt_to] == ["b@example.com"]


@pytest.mark.parametrize(
    "arg",
    [
        b'FROM:<"quoted"@example.com>',
        b"FROM:<a@example.com> RET=FULL",
        b"FROM:<a@[192.0.2.1]>",
        b"FROM:<a@example.com> SIZE=1 SIZE=2",
    ],
)
def test_fast_path_leaves_the_rest_to_the_parser(arg: bytes) -> None:
    """Shapes outside the fast path's pattern go to the general parser untouched."""
    client = CoreClient()
    client.send(b"EHLO c\r\n")
    asked = []
    envelope.mail(client.conn, arg, lambda st, a: asked.append(a))
    assert asked == [arg]
    assert client.conn.data_to_send() == b""
