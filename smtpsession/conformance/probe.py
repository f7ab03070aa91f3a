"""
What every case gets: a L{Probe}, which opens fresh connections to the
target (one case's trouble cannot leak into the next), knows the
extensions the server advertised, and performs the usual openings of a
session (greeting, EHLO or LHLO, a transaction that a case can build on).

A case is a function C{(probe) -> (Result, detail)}; it raises L{Skip}
when the server lacks what the case needs (an extension, an accepted
recipient).  Failures are only for violated requirements: a behaviour the
RFCs leave open passes, with a note in the detail.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from smtpsession.conformance.client import Connection, Reply

__all__ = [
    "CaseFunction",
    "Outcome",
    "Probe",
    "Result",
    "Skip",
    "Target",
    "failed",
    "passed",
]


class Result(enum.StrEnum):
    """The result of one case, as the JSON report spells it."""

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


Outcome = tuple[Result, str]


class Skip(Exception):
    """The case cannot run against this server; the message says why."""


def passed(detail: str = "") -> Outcome:
    return Result.PASS, detail


def failed(detail: str) -> Outcome:
    return Result.FAIL, detail


@dataclass
class Target:
    """The server under test and how to talk to it."""

    host: str
    port: int
    lmtp: bool = False
    mail_from: str = "sender@example.org"
    rcpt_to: str = "postmaster@example.com"
    #: Bound on each read.
    timeout: float = 5.0
    #: How long the line must stay quiet before "no further reply" is believed.
    settle: float = 1.0
    #: Bound on one case, all its connections together.
    case_timeout: float = 10.0

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass
class Probe:
    """One case's access to the target."""

    target: Target
    #: EHLO (LHLO) keywords in upper case, each with its parameters.
    extensions: dict[str, str] = field(default_factory=dict)
    deadline: float = 0.0

    @property
    def lmtp(self) -> bool:
        return self.target.lmtp

    @property
    def settle(self) -> float:
        return self.target.settle

    @property
    def hello_verb(self) -> str:
        return "LHLO" if self.lmtp else "EHLO"

    def require(self, keyword: str) -> str:
        """The parameters of an advertised extension; L{Skip} if it is not."""
        if keyword not in self.extensions:
            raise Skip(f"{keyword} is not advertised")
        return self.extensions[keyword]

    @contextmanager
    def connect(self, *, greet: bool = True) -> Iterator[Connection]:
        """A new connection (greeting read unless C{greet} is false), closed afterwards."""
        conn = Connection(
            self.target.host, self.target.port, timeout=self.target.timeout, deadline=self.deadline
        )
        try:
            if greet:
                greeting = conn.reply()
                if greeting.kind != 2:
                    raise Skip(f"the server refuses service: {greeting}")
            yield conn
        finally:
            conn.close()

    def hello(self, conn: Connection) -> Reply:
        """EHLO (LHLO in LMTP); L{Skip} if refused, since every later step needs it."""
        reply = conn.command(f"{self.hello_verb} conformance.example")
        if reply.code != 250:
            raise Skip(f"{self.hello_verb} refused: {reply}")
        return reply

    def mail_line(self, params: str = "") -> str:
        return f"MAIL FROM:<{self.target.mail_from}>" + (f" {params}" if params else "")

    def rcpt_line(self, address: str | None = None) -> str:
        return f"RCPT TO:<{address or self.target.rcpt_to}>"

    def transaction(self, conn: Connection, *, mail_params: str = "", hello: bool = True) -> None:
        """
        (EHLO,) MAIL and one RCPT, both accepted, or L{Skip}: a server that
        takes no mail from this sender to this recipient cannot show how
        it reads a message (give C{--mail-from}/C{--rcpt-to}).
        """
        if hello:
            self.hello(conn)
        reply = conn.command(self.mail_line(mail_params))
        if reply.kind != 2:
            raise Skip(f"MAIL refused: {reply} (see --mail-from)")
        reply = conn.command(self.rcpt_line())
        if reply.kind != 2:
            raise Skip(f"RCPT refused: {reply} (see --rcpt-to)")

    def start_data(self, conn: Connection) -> None:
        reply = conn.command("DATA")
        if reply.code != 354:
            raise Skip(f"DATA refused: {reply}")


def parse_extensions(reply: Reply) -> dict[str, str]:
    """The keywords of an EHLO reply (its first line is the greeting text)."""
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = params
    return found


CaseFunction = Callable[[Probe], Outcome]


def message(subject: str, *body_lines: str) -> bytes:
    """A small well-formed message ending in CRLF (without the end of data)."""
    lines = [
        "From: <sender@example.org>",
        "To: <postmaster@example.com>",
        f"Subject: {subject}",
        f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}",
        "Message-ID: <conformance@checker.example>",
        "",
        *body_lines,
    ]
    return "\r\n".join(lines).encode("utf-8") + b"\r\n"
