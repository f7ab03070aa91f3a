"""
The optional hooks (C{on_helo}, C{on_vrfy}, C{on_expn}, C{on_rset}) on real
sockets, accepted and refused, and the replies of a server without them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from smtpsession import Handler, SMTPError
from smtpsession.testing import RunningServer, serve
from tests.conftest import options
from tests.rawsmtp import RawClient

USERS = {"alice@example.com": "Alice Liddell", "bob@example.com": "Bob Builder"}
LISTS = {"staff": ["alice@example.com", "bob@example.com"]}


class Directory(Handler):
    """Knows its users and lists; refuses hellos that name .invalid hosts."""

    def __init__(self) -> None:
        self.resets = 0

    def on_helo(self, hostname: Any, session: Any) -> Any:
        if hostname.endswith(".invalid"):
            return False
        if hostname == "blocked.example":
            raise SMTPError(554, "You are not welcome", "5.7.1")
        if hostname == "broken.example":
            raise RuntimeError("directory down")
        return None

    def on_vrfy(self, address: Any, session: Any) -> Any:
        name = USERS.get(address)
        if name is not None:
            return f"{name} <{address}>"
        if "@" in address:
            return False
        return None  # a bare name: the default 252

    async def on_expn(self, name: Any, session: Any) -> Any:
        d: Deferred[None] = Deferred()
        from twisted.internet import reactor

        reactor.callLater(0.01, d.callback, None)  # type: ignore[attr-defined]
        await d
        members = LISTS.get(name.lower())
        if members is None:
            return False
        return [f"{USERS[m]} <{m}>" for m in members]

    def on_rset(self, session: Any) -> Any:
        self.resets += 1


@pytest.fixture
def server() -> Iterator[tuple[RunningServer, Directory]]:
    handler = Directory()
    with serve(handler, options()) as running:
        yield running, handler


@pytest.fixture
def client(server: tuple[RunningServer, Directory]) -> Iterator[RawClient]:
    c = RawClient(*server[0].address)
    try:
        yield c
    finally:
        c.close()


def test_helo_accepted_and_refused(client: RawClient) -> None:
    code, text = client.command("EHLO host.invalid")
    assert (code, text) == (550, "Error: hostname rejected")
    assert client.command("MAIL FROM:<a@example.org>") == (503, "Error: send HELO/EHLO first")
    assert client.command("HELO blocked.example") == (554, "You are not welcome")
    assert client.command("EHLO broken.example") == (451, "Error: internal server error")
    code, text = client.command("EHLO good.example")
    assert code == 250 and "PIPELINING" in text
    assert client.command("EHLO again.invalid") == (550, "5.7.1 Error: hostname rejected")
    assert client.command("MAIL FROM:<a@example.org>")[0] == 250  # the earlier EHLO stands


def test_vrfy(client: RawClient) -> None:
    client.command("EHLO c.example")
    assert client.command("VRFY <alice@example.com>") == (
        250,
        "2.1.5 Alice Liddell <alice@example.com>",
    )
    assert client.command("VRFY nobody@example.com") == (550, "5.1.1 Error: no such user")
    assert client.command("VRFY alice") == (252, "2.1.5 Try to send something. No promises though")


def test_expn(client: RawClient) -> None:
    client.command("EHLO c.example")
    assert client.command("EXPN Staff") == (
        250,
        "2.1.5 Alice Liddell <alice@example.com>\n2.1.5 Bob Builder <bob@example.com>",
    )
    assert client.command("EXPN nobody") == (550, "5.1.1 Error: no such mailing list")
    assert client.command("EXPN") == (501, "5.5.4 Error: Syntax: EXPN name")


def test_pipelined_behind_a_slow_expn(client: RawClient) -> None:
    """EXPN answers after a reactor turn; the commands pipelined behind it wait, in order."""
    client.command("EHLO c.example")
    client.send(b"EXPN staff\r\nVRFY bob@example.com\r\nEXPN none\r\nNOOP\r\n")
    assert [client.reply()[0] for _ in range(4)] == [250, 250, 550, 250]


def test_rset(server: tuple[RunningServer, Directory], client: RawClient) -> None:
    client.command("EHLO c.example")
    assert client.command("MAIL FROM:<a@example.org>")[0] == 250
    assert client.command("RSET") == (250, "2.0.0 Flushed")
    assert client.command("RCPT TO:<b@example.com>") == (503, "5.5.1 Error: need MAIL command")
    assert client.command("QUIT")[0] == 221
    assert server[1].resets == 1


def test_without_the_hooks_the_replies_are_unchanged() -> None:
    with serve(Handler(), options()) as running:
        client = RawClient(*running.address)
        try:
            assert client.command("EHLO anything.invalid")[0] == 250
            assert client.command("VRFY nobody@example.com") == (
                252,
                "2.1.5 Try to send something. No promises though",
            )
            assert client.command("EXPN staff") == (502, "5.5.1 Error: command not implemented")
            assert client.command("RSET") == (250, "2.0.0 Flushed")
        finally:
            client.close()


def test_disabled_expn_stays_refused_with_the_hook() -> None:
    with serve(Directory(), options(disabled_commands=["EXPN", "VRFY"])) as running:
        client = RawClient(*running.address)
        try:
            client.command("EHLO c.example")
            assert client.command("EXPN staff") == (500, "5.5.2 Error: command not recognized")
            assert client.command("VRFY alice@example.com") == (
                500,
                "5.5.2 Error: command not recognized",
            )
        finally:
            client.close()
