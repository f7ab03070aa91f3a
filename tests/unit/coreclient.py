"""
A scripted client for L{ServerConnection}: no sockets, no reactor.

Unit tests of the core feed it bytes and read back replies; the hooks are
answered synchronously by small policies (accept everything unless told
otherwise), and every event and body chunk is recorded so tests can check
what the application would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Auth,
    BodyRejected,
    DataAborted,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
    StartTLS,
)
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Address, Session
from smtpsession.testing.memory import codes, split_replies

__all__ = ["CoreClient", "codes", "split_replies"]

Verdict = SMTPError | None
DataVerdict = Sequence[SMTPError | str | None]


class CoreClient:
    """
    One L{ServerConnection} and the application around it.

    @ivar mail: policy for MAIL FROM: address → C{None} (accept) or an
        L{SMTPError}.
    @ivar rcpt: the same for RCPT TO.
    @ivar data: policy for the end of a body: (body bytes, session) →
        results for C{data_result}.
    @ivar auth: policy for AUTH: request → user (truthy accepts).
    @ivar hold: when true, MAIL/RCPT/AUTH/DATA events are left unanswered
        (tests then answer them by hand).
    """

    def __init__(
        self,
        options: SMTPServerOptions | None = None,
        *,
        greet: bool = True,
        tls_available: bool = False,
        auth_enabled: bool = False,
        secure: bool = False,
        **option_values: Any,
    ) -> None:
        if options is None:
            option_values.setdefault("name", "mx.example")
            options = SMTPServerOptions(**option_values)
        self.options = options
        self.session = Session(
            id="test-session",
            remote_address="192.0.2.1",
            remote_port=40000,
            local_address="192.0.2.25",
            local_port=25,
            client_hostname="[192.0.2.1]",
            secure=secure,
        )
        self.conn = ServerConnection(
            options,
            self.session,
            tls_available=tls_available,
            auth_enabled=auth_enabled,
        )
        if secure:
            self.conn.secure_changed()
        self.mail: Callable[[Address], Verdict] = lambda a: None
        self.rcpt: Callable[[Address], Verdict] = lambda a: None
        self.data: Callable[[bytes, Session], DataVerdict] = lambda b, s: [None]
        self.auth: Callable[[Any], Any] = lambda request: None
        self.hold = False
        self.events: list[Any] = []
        self.bodies: list[bytes] = []
        self.chunks: list[bytes] = []
        self.rejections: list[BodyRejected] = []
        self.aborted: list[DataAborted] = []
        self.envelopes: list[Any] = []
        self.pending: Any = None
        self.last: Any = None
        if greet:
            self.conn.greet()
            self.greeting = self.conn.data_to_send().decode()

    # ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def send(self, data: bytes | str) -> list[str]:
        """Feed C{data}, run the application's answers; return the replies."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.conn.receive_data(data)
        self.run()
        return split_replies(self.conn.data_to_send())

    def lines(self, *lines: str) -> list[str]:
        """Send each string as one CRLF-terminated line, in one write."""
        return self.send("".join(line + "\r\n" for line in lines))

    def run(self) -> None:
        """Pull events until the core needs data, waits, or closes."""
        conn = self.conn
        while True:
            ev = conn.next_event()
            self.last = ev
            if type(ev) is bytes:
                self.chunks.append(ev)
                continue
            if ev is NEED_DATA or ev is CLOSED:
                return
            if ev is PAUSED:
                return
            self.events.append(ev)
            self._answer(ev)

    def _answer(self, ev: Any) -> None:
        conn = self.conn
        if isinstance(ev, DataStart):
            self.chunks = []
            return
        if isinstance(ev, BodyRejected):
            self.rejections.append(ev)
            return
        if isinstance(ev, DataAborted):
            self.aborted.append(ev)
            self.chunks = []
            return
        if isinstance(ev, StartTLS):
            self.pending = ev
            return
        if self.hold:
            self.pending = ev
            return
        if isinstance(ev, MailFrom):
            conn.mail_from_result(self.mail(ev.address))
        elif isinstance(ev, RcptTo):
            conn.rcpt_to_result(self.rcpt(ev.address))
        elif isinstance(ev, DataEnd):
            body = b"".join(self.chunks)
            self.chunks = []
            if ev.rejected is None:
                self.bodies.append(body)
            self.envelopes.append(self.session.envelope)
            conn.data_result(self.data(body, self.session))
        elif isinstance(ev, Auth):
            conn.auth_result(self.auth(ev.request))
        else:  # pragma: no cover - a new event type needs a policy here
            raise AssertionError(f"unexpected event {ev!r}")

    def ehlo(self, name: str = "client.example") -> list[str]:
        """EHLO and return the capability keywords."""
        [reply] = self.lines(f"EHLO {name}")
        assert reply.startswith("250"), reply
        return [line[4:] for line in reply.split("\n")[1:]]

    def transaction(
        self, sender: str = "a@example.com", rcpts: Sequence[str] = ("b@example.com",),
        body: bytes = b"Subject: t\r\n\r\nhello\r\n",
    ) -> list[str]:
        """A whole MAIL/RCPT/DATA transaction in one write; its replies."""
        head = "".join(
            [f"MAIL FROM:<{sender}>\r\n"] + [f"RCPT TO:<{r}>\r\n" for r in rcpts] + ["DATA\r\n"]
        ).encode()
        return self.send(head + body + b".\r\n")
