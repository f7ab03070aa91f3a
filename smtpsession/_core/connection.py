# -*- test-case-name: tests.unit.test_connection -*-
"""
L{ServerConnection}: one SMTP or LMTP server session, without I/O.

Theory of operation
===================

The driver (C{smtpsession.protocol}, or a test) owns the socket.  It pushes
received bytes in with L{ServerConnection.receive_data}, then pulls with
L{ServerConnection.next_event} until it gets C{NEED_DATA}, C{PAUSED} or
C{CLOSED}, and writes out L{ServerConnection.data_to_send} once per batch.

Rule 1: the core decides every reply.  It answers every question the RFCs
decide (syntax, sequence, limits, extensions) by queueing the reply itself,
and returns an event only where the application decides (a sender, a
recipient, credentials, a body) or where the driver must act (start TLS).
The application's answers come back through the C{*_result} methods
untouched — a value, or the exception a hook raised — and
L{smtpsession._core.verdicts} decides what they are worth on the wire.

Rule 2: after an event that needs an answer, C{next_event} returns
C{PAUSED} until the driver calls the matching C{*_result} method.  Input
that arrived meanwhile stays buffered and unparsed.  This is what keeps
replies in order under PIPELINING whatever the hooks do, and what makes
STARTTLS safe: at STARTTLS the rest of the buffer is dropped, and nothing is
parsed again until C{tls_established}.

Rule 3: framing is chosen by phase, at the exact byte where the phase
changes: command lines (and SASL lines), DATA bodies, BDAT chunks (see
L{smtpsession._core.machine}).  A line that is too long ends the
connection; it never switches modes.

Rule 4: every buffer is bounded: a command line by C{max_command_length},
unparsed pipelined input by L{MAX_PENDING}, a body by one read (bodies are
released as they arrive).

Where things are: the state and its phases in L{smtpsession._core.state};
the tables (input by phase, commands and when they may run) in
L{smtpsession._core.machine}; the commands in C{greeting} (HELO, EHLO,
LHLO), C{envelope} (MAIL, RCPT), C{body} (DATA, BDAT), C{auth},
C{xclient} (XCLIENT, XFORWARD) and C{basic} (the rest: NOOP, RSET,
QUIT, HELP, VRFY, EXPN, STARTTLS); what the application's answers mean
in C{verdicts}; the fixed replies in C{replies}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from smtpsession._core import auth, basic, body, envelope, greeting, machine, verdicts
from smtpsession._core import replies as R
from smtpsession._core.events import DataAborted
from smtpsession._core.settings import CoreConfig
from smtpsession._core.state import (
    CLOSING,
    COMMAND,
    GREETING,
    TLS,
    WAIT,
    SessionState,
)
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session

__all__ = ["ServerConnection", "MAX_PENDING"]

#: Unparsed input kept while the connection waits for the application.  A
#: well-behaved pipelining client never comes close; the driver pauses the
#: transport long before (Rule 4).
MAX_PENDING = 1024 * 1024

_READERS = machine.READERS
_ACCEPTED: list[SMTPError | str | None] = [None]


class ServerConnection(SessionState):
    """
    The protocol state of one connection, and the driver's interface to it.

    @param config: what the listener's configuration fixes
        (L{smtpsession._core.machine.configure}), shared by its
        connections; or, for tests and tools, the options themselves,
        with the keyword flags below.
    @param session: the session object the handlers see; the connection
        updates its protocol fields (greeting, envelope, user, error, ...).
    """

    __slots__ = ()

    def __init__(
        self,
        config: CoreConfig | SMTPServerOptions,
        session: Session,
        *,
        tls_available: bool = False,
        auth_enabled: bool = False,
        mail_hook: bool = True,
        rcpt_hook: bool = True,
        data_hook: bool = True,
        helo_hook: bool = False,
        vrfy_hook: bool = False,
        expn_hook: bool = False,
        rset_hook: bool = False,
    ) -> None:
        if not isinstance(config, CoreConfig):
            config = machine.configure(
                config,
                tls_available=tls_available,
                auth_enabled=auth_enabled,
                mail_hook=mail_hook,
                rcpt_hook=rcpt_hook,
                data_hook=data_hook,
                helo_hook=helo_hook,
                vrfy_hook=vrfy_hook,
                expn_hook=expn_hook,
                rset_hook=rset_hook,
            )
        super().__init__(config, session)

    # ------------------------------------------------------------------
    # Input and output
    # ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection must be closed once output is flushed."""
        return self.phase == CLOSING

    @property
    def waiting(self) -> bool:
        """Whether an answer from the application is due."""
        return self.phase == WAIT

    def receive_data(self, data: bytes) -> None:
        """Add received bytes.  Nothing is parsed until L{next_event}."""
        if self.phase == CLOSING or not data:
            return
        pos = self.pos
        buf = self.buf
        if pos >= len(buf):
            self.buf = data
        else:
            self.buf = buf[pos:] + data
        self.pos = 0
        if len(self.buf) > MAX_PENDING and (self.phase == WAIT or self.phase == TLS):
            self.close_with(R.TOO_MUCH_INPUT)

    @property
    def unparsed(self) -> int:
        """Bytes received and not parsed yet."""
        return len(self.buf) - self.pos

    def data_to_send(self) -> bytes:
        """The replies queued since the last call, as one string of bytes."""
        out = self.out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()  # the same list for the next batch: no allocation per reply
        return data

    def next_event(self) -> Any:
        """
        Parse as far as possible.

        @return: an L{Event}, a C{bytes} body chunk, or C{NEED_DATA},
            C{PAUSED}, C{CLOSED}.
        """
        queued = self.queued
        if queued:
            return queued.pop(0)
        while True:
            ev = _READERS[self.phase](self)
            if ev is not None:
                return ev

    # ------------------------------------------------------------------
    # The connection's life
    # ------------------------------------------------------------------

    def greet(self) -> None:
        """Send the 220 greeting (after C{on_connect} agreed)."""
        if self.phase != GREETING:
            return
        self.out.append(greeting.banner(self))
        self.phase = COMMAND

    def refuse(self, code: int, message: str) -> None:
        """Refuse the connection instead of greeting it (or go), then close."""
        self.send_error(R.format_reply(code, message))
        self.phase = CLOSING

    def connect_result(self, error: BaseException | None) -> bool:
        """
        Answer C{on_connect} (or C{on_secure}, C{stage="SECURE"}): whether
        the session may go on.  A refusal is sent (default 554) and the
        connection closes; a hook that timed out gets 421.
        """
        return self._opening_result(error, "CONNECT")

    def secure_result(self, error: BaseException | None) -> bool:
        """Answer C{on_secure}, as L{connect_result} does C{on_connect}."""
        return self._opening_result(error, "SECURE")

    def _opening_result(self, error: BaseException | None, stage: str) -> bool:
        if self.phase == CLOSING:
            return False
        refusal = verdicts.opening_refusal(error, stage, self.cfg.name)
        if refusal is None:
            return True
        self.send_error(refusal)
        self.phase = CLOSING
        self.sasl = None
        return False

    def refuse_connection(self, reason: str) -> None:
        """
        Refuse the session before its greeting for a reason of
        L{smtpsession._core.verdicts} (C{TOO_MANY_FROM_ADDRESS}, ...).
        """
        self.send_error(verdicts.connection_refusal(self.cfg.name, reason))
        self.phase = CLOSING

    def proxy_failed(self) -> None:
        """The PROXY header was malformed: 421 and close."""
        self.close_with(verdicts.proxy_refusal(self.cfg.name))

    def timeout(self) -> None:
        """The client was idle too long: 421 and close."""
        if self.phase != CLOSING:
            self.close_with(R.TIMEOUT)

    def session_expired(self) -> None:
        """The session lasted longer than C{session_timeout}: 421 and close."""
        if self.phase != CLOSING:
            self.close_with(R.SESSION_TOO_LONG)

    def body_expired(self) -> None:
        """The body took longer than C{data_timeout} to arrive: 421 and close."""
        if self.phase != CLOSING:
            self.abort_body("timeout")
            self.close_with(R.BODY_TOO_SLOW)

    def begin_shutdown(self) -> None:
        """
        The server is stopping.  A session with no transaction in progress
        is told 421 at once; one in a transaction (or waiting for the
        application) may finish (RCPT, DATA, BDAT, NOOP and QUIT still
        work) and is told 421 after its final reply.
        """
        self.shutting_down = True
        if (self.phase == COMMAND or self.phase == GREETING) and not self.in_transaction:
            self.close_with(R.SHUTTING_DOWN)

    def force_close(self) -> None:
        """The shutdown grace period is over: 421 now, whatever the state."""
        if self.phase != CLOSING:
            self.close_with(R.SHUTTING_DOWN)

    def connection_lost(self) -> DataAborted | None:
        """
        The transport is gone.  Returns a L{DataAborted} if a body was
        being received, so the driver can fail the stream.
        """
        aborted = None
        if self.body_open:
            aborted = DataAborted("connection lost")
            self.body_open = False
        self.phase = CLOSING
        self.buf = b""
        self.pos = 0
        return aborted

    def set_proxy_trust(self, xclient: bool, xforward: bool) -> None:
        """
        Whether this peer may use XCLIENT / XFORWARD.  The driver decides it
        once, from the address the connection really came from (or the
        PROXY header's), never from an address XCLIENT itself supplied.
        """
        self.xclient_trusted = xclient
        self.xforward_trusted = xforward

    def capabilities(self) -> list[str]:
        """The EHLO keywords this session would advertise now."""
        return greeting.capabilities(self)

    # ------------------------------------------------------------------
    # Answers from the application (Rule 1: values and exceptions as the
    # hooks produced them; the core decides what they mean)
    # ------------------------------------------------------------------

    def mail_from_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """Answer a L{MailFrom}: no error accepts (unless C{value} is False)."""
        if error is None and value is not False:
            envelope.mail_answered(self, None)
        else:
            envelope.mail_answered(self, verdicts.as_error(value, error, "MAIL"))

    def rcpt_to_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """Answer a L{RcptTo}: no error accepts (unless C{value} is False)."""
        if error is None and value is not False:
            envelope.rcpt_answered(self, None)
        else:
            envelope.rcpt_answered(self, verdicts.as_error(value, error, "RCPT"))

    def helo_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """
        Answer a L{Helo}: no error accepts (unless C{value} is False) and
        the hello takes effect; a refusal (default 550) changes nothing.
        """
        if error is None and value is not False:
            greeting.hello_answered(self, None)
        else:
            greeting.hello_answered(self, verdicts.as_error(value, error, "HELO"))

    def vrfy_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """Answer a L{Vrfy} (see L{verdicts.lookup_result}; the default is 252)."""
        basic.vrfy_answered(self, verdicts.lookup_result(value, error, "VRFY"))

    def expn_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """Answer an L{Expn} (see L{verdicts.lookup_result}; the default is 502)."""
        basic.expn_answered(self, verdicts.lookup_result(value, error, "EXPN"))

    def rset_result(self, error: BaseException | None = None, value: Any = None) -> None:
        """
        Answer a L{Rset}: the reply is 250 whatever C{on_rset} returned or
        raised (RFC 5321 §4.1.1.5); the transaction was reset already.
        """
        basic.rset_answered(self)

    def auth_result(self, user: Any, error: BaseException | None = None) -> bool:
        """
        Answer an L{Auth}: a truthy C{user} authenticates; a falsy one, or an
        error, refuses.  Returns whether the client is now authenticated.
        """
        return auth.auth_answered(self, user, verdicts.as_error(None, error, "AUTH"))

    def data_result(self, results: Sequence[SMTPError | str | None]) -> str:
        """
        Answer a L{DataEnd} with one result per reply: SMTP takes one, LMTP
        one per accepted recipient in order (a single result stands for
        all).  A result is C{None} (accepted), a C{str} (accepted, with that
        text) or an L{SMTPError}.  Returns the reply codes sent.
        """
        return body.data_answered(self, results)

    def data_outcome(self, value: Any, error: BaseException | None) -> tuple[str, int | None]:
        """
        Answer a L{DataEnd} with C{on_data}'s outcome as it came (its value,
        or the exception it raised).  Returns the reply codes sent and, when
        an LMTP list did not match the recipients (a handler bug to log),
        its length.
        """
        if value is None and error is None:
            return body.data_answered(self, _ACCEPTED), None  # the common case
        results, problem = verdicts.data_results(
            value, error, self.cfg.lmtp, len(self.session.envelope.rcpt_to)
        )
        return body.data_answered(self, results), problem

    def tls_established(self) -> None:
        """
        The TLS handshake is done.  RFC 3207 §4.2: forget everything learnt
        before TLS (the greeting, the user, the envelope); the client must
        EHLO again.  Call it before C{on_secure}, which must not see what
        the client said in the clear.
        """
        if self.phase != TLS:
            raise RuntimeError("no TLS handshake in progress")
        self.phase = COMMAND
        self.wait = -1
        s = self.session
        s.user = None
        s.host_name_appears_as = None
        s.opening_command = None
        self.esc = 0
        self.reset_transaction()
        self.update_transmission_type()

    def secure_changed(self) -> None:
        """C{session.secure} was set outside STARTTLS (implicit TLS, PROXY)."""
        self.update_transmission_type()

