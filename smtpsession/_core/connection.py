# -*- test-case-name: tests.unit.test_connection -*-
"""
L{ServerConnection}: one SMTP or LMTP server session, without I/O.

Theory of operation
===================

The driver (C{smtpsession.protocol}, or a test) owns the socket.  It pushes
received bytes in with L{ServerConnection.receive_data}, then pulls with
L{ServerConnection.next_event} until it gets C{NEED_DATA}, C{PAUSED} or
C{CLOSED}, and writes out L{ServerConnection.data_to_send} once per batch.

Rule 1: the core answers every question the RFCs decide (syntax, sequence,
limits, extensions) by queueing the reply itself.  It returns an event only
where the application decides (a sender, a recipient, credentials, a body)
or where the driver must act (start TLS).

Rule 2: after an event that needs an answer, C{next_event} returns
C{PAUSED} until the driver calls the matching C{*_result} method.  Input
that arrived meanwhile stays buffered and unparsed.  This is what keeps
replies in order under PIPELINING whatever the hooks do, and what makes
STARTTLS safe: at STARTTLS the rest of the buffer is dropped, and nothing is
parsed again until C{tls_established}.

Rule 3: framing is chosen by phase, at the exact byte where the phase
changes: command lines (and SASL lines), DATA bodies (C{DataFramer}), BDAT
chunks (C{BdatFramer}).  A line that is too long ends the connection; it
never switches modes.

Rule 4: every buffer is bounded: a command line by C{max_command_length},
unparsed pipelined input by L{MAX_PENDING}, a body by one read (bodies are
released as they arrive).

State is kept in a few flat attributes rather than a transition table,
because the hot path (MAIL, RCPT, DATA, body) runs once per message and a
dict lookup per command is all it can afford:

  - C{_phase}: GREETING → COMMAND ⇄ DATA/BDAT, with WAIT (an answer is
    due), TLS (handshake in progress) and CLOSED;
  - flags that are orthogonal to the phase: greeted, secure, user, the
    open transaction (C{session.envelope.mail_from}), a SASL exchange,
    shutting down.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from sys import intern
from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.addresses import (
    MAX_ADDRESS_OCTETS,
    MAX_LABEL_OCTETS,
    AddressError,
    canonical_ip,
    check_mailbox,
    split_path,
    valid_hostname,
)
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
from smtpsession._core.framing import BdatFramer, DataFramer
from smtpsession._core.params import ParamError, is_xtext, parse_params, xtext_decode
from smtpsession._core.replies import default_enhanced, format_reply
from smtpsession._core.sasl import (
    MECHANISMS,
    AuthRequest,
    Challenge,
    SaslExchange,
    xoauth2_error_challenge,
)
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import (
    Address,
    EnvelopeDSN,
    RecipientDSN,
    Session,
    reset_envelope,
    transmission_type,
)

__all__ = ["ServerConnection", "MAX_PENDING"]

#: Unparsed input kept while the connection waits for the application.  A
#: well-behaved pipelining client never comes close; the driver pauses the
#: transport long before (Rule 4).
MAX_PENDING = 1024 * 1024

# Phases.
GREETING, COMMAND, DATA, BDAT, WAIT, TLS, CLOSED_ = range(7)

# What a WAIT phase waits for.
W_MAIL, W_RCPT, W_AUTH, W_DATA, W_TLS = range(5)

_HTTP = re.compile(rb"(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT) \S+ HTTP/\d\.\d\Z")
_HTTP_VERBS = frozenset(
    [b"OPTIONS", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"TRACE", b"CONNECT"]
)
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_BDAT_ARGS = re.compile(rb"([0-9]{1,15})(?: +(LAST))? *\Z", re.IGNORECASE)
_SIZE = re.compile(r"[0-9]{1,20}\Z")
_NOTIFY_VALUES = frozenset(["SUCCESS", "FAILURE", "DELAY"])
_ORCPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*;.+\Z", re.DOTALL)

# The common shapes of MAIL and RCPT (ASCII dot-atom @ host name, no
# parameters) in one regular expression, so the usual command costs one match;
# anything else takes the general parser, which gives the same answers.
_ATOM = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# Labels without a length bound: a bound made the pattern backtrack (twice
# the time); _fast_ok measures them instead, and only in long mailboxes.
_LABEL = rb"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"
_PLAIN_MAILBOX = _ATOM + rb"(?:\." + _ATOM + rb")*@" + _LABEL + rb"(?:\." + _LABEL + rb")*"
# MAIL may carry the two parameters real clients send with nearly every
# message (BODY=8BITMIME, SIZE=n); others take the general parser.
_FAST_FROM = re.compile(
    rb"(?i:from): ?<("
    + _PLAIN_MAILBOX
    + rb")>((?: (?:[Bb][Oo][Dd][Yy]=(?:7[Bb][Ii][Tt]|8[Bb][Ii][Tt][Mm][Ii][Mm][Ee])"
    + rb"|[Ss][Ii][Zz][Ee]=[0-9]{1,20})){0,2})\Z"
)
#: L{ServerConnection._fast_mail} could not decide: use the general parser.
_SLOW = object()
_FAST_TO = re.compile(rb"(?i:to): ?<(" + _PLAIN_MAILBOX + rb")>\Z")
#: The longest mailbox that cannot hold a label over 63 octets ("a@" + 63):
#: only a longer one has its labels measured on the fast path.
_SHORT_MAILBOX = 2 + MAX_LABEL_OCTETS


def _fast_ok(mailbox: bytes) -> bool:
    """Whether the fast path may take a mailbox its pattern matched."""
    n = len(mailbox)
    if n <= _SHORT_MAILBOX:
        return True
    if n > MAX_ADDRESS_OCTETS:
        return False
    domain = mailbox[mailbox.rindex(b"@") + 1 :]
    return all(len(label) <= MAX_LABEL_OCTETS for label in domain.split(b"."))


_XCLIENT_KEYS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN")
_XFORWARD_KEYS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
#: Verbs RFC 5321 names that this server deliberately does not implement.
_NOT_IMPLEMENTED = frozenset(
    [b"EXPN", b"TURN", b"ETRN", b"ATRN", b"SEND", b"SOML", b"SAML", b"BURL"]
)

#: The mail commands that need a greeting (and AUTH, when required).
_MAIL_COMMANDS = frozenset([b"MAIL", b"RCPT", b"DATA", b"BDAT"])


class _Settings:
    """
    What one configuration fixes (options, TLS and AUTH availability, which
    hooks exist), held once and shared by every connection made with it:
    an idle client carries one reference instead of fifteen fields.
    """

    __slots__ = (
        "options",
        "lmtp",
        "max_line",
        "lenient_endings",
        "size_limit",
        "reject_oversized",
        "max_rcpt",
        "tls_available",
        "disabled",
        "auth_enabled",
        "auth_required",
        "mail_hook",
        "rcpt_hook",
        "data_hook",
        "commands",
    )

    def __init__(
        self,
        options: SMTPServerOptions,
        tls_available: bool,
        auth_enabled: bool,
        mail_hook: bool,
        rcpt_hook: bool,
        data_hook: bool,
    ) -> None:
        disabled = _disabled_verbs(options.disabled_commands)
        auth_enabled = (
            auth_enabled
            and b"AUTH" not in disabled
            and any(m in MECHANISMS for m in options.auth_methods)
        )
        self.options = options
        self.lmtp: bool = options.lmtp
        self.max_line: int = options.max_command_length
        self.lenient_endings: bool = options.lenient_line_endings
        self.size_limit: int = options.size
        self.reject_oversized: bool = options.reject_oversized and options.size > 0
        self.max_rcpt: int = options.max_recipients
        self.tls_available = tls_available
        self.disabled = disabled
        self.auth_enabled = auth_enabled
        self.auth_required: bool = auth_enabled and not options.auth_optional
        # Without a hook there is nobody to ask: accept, no event.
        self.mail_hook = mail_hook
        self.rcpt_hook = rcpt_hook
        self.data_hook = data_hook
        self.commands: dict[bytes, Any] = _command_table(
            disabled, not options.hide_chunking, tls_available, auth_enabled
        )


#: The settings of recent configurations, by options object and flags.  The
#: entries hold their options object, so an id is not reused while cached;
#: the bound keeps a program that makes options objects by the thousand
#: from growing this for ever.
_SETTINGS: dict[tuple[int | bool, ...], _Settings] = {}
_SETTINGS_MAX = 64


def _settings_for(options: SMTPServerOptions, *flags: bool) -> _Settings:
    """The shared L{_Settings} for C{options} and C{_Settings}' flags."""
    key = (id(options), *flags)
    settings = _SETTINGS.get(key)
    if settings is None or settings.options is not options:
        if len(_SETTINGS) >= _SETTINGS_MAX:
            _SETTINGS.clear()
        settings = _SETTINGS[key] = _Settings(options, *flags)
    return settings


class ServerConnection:
    """
    The protocol state of one connection.

    @param options: the server's options.
    @param session: the session object the handlers see; the connection
        updates its protocol fields (greeting, envelope, user, error, ...).
    @param tls_available: STARTTLS can be offered (a certificate is
        configured and the transport can start TLS).
    @param auth_enabled: credentials can be checked (C{on_auth} or a
        C{twisted.cred} checker); AUTH is offered and, unless
        C{auth_optional}, required.
    """

    __slots__ = (
        "_cfg",
        "session",
        "_xclient_trusted",
        "_xforward_trusted",
        "_xclient_addr_used",
        "_buf",
        "_pos",
        "_skip",
        "_out",
        "_phase",
        "_wait",
        "_esc",
        "_unrecognized",
        "_unauthenticated",
        "_shutting_down",
        "_sasl",
        "_xoauth2_failure",
        "_pending_auth",
        "_pending_mail",
        "_pending_rcpt",
        "_rcpt_index",
        "_framer",
        "_bdat_framer",
        "_bdat_last",
        "_body_open",
        "_body_length",
        "_rejected",
        "_queued",
    )

    def __init__(
        self,
        options: SMTPServerOptions,
        session: Session,
        *,
        tls_available: bool = False,
        auth_enabled: bool = False,
        mail_hook: bool = True,
        rcpt_hook: bool = True,
        data_hook: bool = True,
    ) -> None:
        self._cfg = _settings_for(
            options, tls_available, auth_enabled, mail_hook, rcpt_hook, data_hook
        )
        self.session = session
        # XCLIENT/XFORWARD stay known even when off: a client that tries
        # them is told 550 "not allowed", not 500 "unknown".
        self._xclient_trusted = False
        self._xforward_trusted = False
        self._xclient_addr_used = False

        # Input.
        self._buf = b""
        self._pos = 0
        self._skip = 0  # octets of a refused BDAT chunk still to discard
        # Output.
        self._out: list[bytes] = []
        # State.
        self._phase = GREETING
        self._wait = -1
        self._esc = 0  # 1 once EHLO/LHLO was accepted (index into reply pairs)
        self._unrecognized = 0
        self._unauthenticated = 0
        self._shutting_down = False
        self._sasl: SaslExchange | None = None
        self._xoauth2_failure: bytes | None = None
        self._pending_auth: AuthRequest | None = None
        # Transaction.
        self._pending_mail: tuple[Address, str, bool, bool, EnvelopeDSN | None] | None = None
        self._pending_rcpt: Address | None = None
        # Built lazily: an idle connection should not carry empty containers.
        self._rcpt_index: dict[str, int] | None = None
        self._framer: DataFramer | None = None
        self._bdat_framer: BdatFramer | None = None
        self._bdat_last = False
        self._body_open = False  # on_data was started and has not ended
        self._body_length = 0
        self._rejected: BodyRejected | None = None
        self._queued: list[Any] | None = None

        self._update_transmission_type()

    # ------------------------------------------------------------------
    # Driver interface
    # ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection must be closed once output is flushed."""
        return self._phase == CLOSED_

    @property
    def in_transaction(self) -> bool:
        """Whether a mail transaction is open (MAIL accepted, not finished)."""
        return self.session.envelope.mail_from is not None or self._body_open

    @property
    def waiting(self) -> bool:
        """Whether an answer from the application is due."""
        return self._phase == WAIT

    def receive_data(self, data: bytes) -> None:
        """Add received bytes.  Nothing is parsed until L{next_event}."""
        if self._phase == CLOSED_ or not data:
            return
        pos = self._pos
        buf = self._buf
        if pos >= len(buf):
            self._buf = data
        else:
            self._buf = buf[pos:] + data
        self._pos = 0
        if len(self._buf) > MAX_PENDING and self._phase in (WAIT, TLS):
            self._close_with(R.TOO_MUCH_INPUT)

    def data_to_send(self) -> bytes:
        """The replies queued since the last call, as one string of bytes."""
        out = self._out
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
        queued = self._queued
        if queued:
            return queued.pop(0)
        while True:
            phase = self._phase
            if phase == COMMAND:
                if self._skip:
                    if not self._discard_skipped():
                        return NEED_DATA
                    continue
                buf = self._buf
                pos = self._pos
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    # A partial line may be one CR longer than the limit:
                    # its LF may be in the next segment.
                    n = len(buf) - pos
                    if n > self._cfg.max_line and (n > self._cfg.max_line + 1 or buf[-1] != 13):
                        self._close_with(R.LINE_TOO_LONG)
                        continue
                    return NEED_DATA
                self._pos = nl + 1
                if nl > pos and buf[nl - 1] == 13:  # CRLF
                    line = buf[pos : nl - 1]
                    bare = False
                else:
                    line = buf[pos:nl]
                    bare = True
                if len(line) > self._cfg.max_line:
                    self._close_with(R.LINE_TOO_LONG)
                    continue
                if bare and not self._cfg.lenient_endings:
                    self._bare_command()
                    continue
                if self._sasl is not None or self._xoauth2_failure is not None:
                    ev = self._sasl_line(line)
                else:
                    ev = self._command(line)
                if ev is not None:
                    return ev
            elif phase == DATA:
                ev = self._data_body()
                if ev is not None:
                    return ev
                return NEED_DATA
            elif phase == BDAT:
                ev = self._bdat_body()
                if ev is not None:
                    return ev
                if self._phase == BDAT:
                    return NEED_DATA
            elif phase == WAIT or phase == TLS:
                return PAUSED
            elif phase == CLOSED_:
                return CLOSED
            else:  # GREETING
                if len(self._buf) > self._pos:
                    self._close_with(
                        R.pair(421, f"{self._cfg.options.name} {R.TALK_TOO_SOON}")
                    )
                    continue
                return NEED_DATA

    # -- connection lifecycle ----------------------------------------------

    def greet(self) -> None:
        """Send the 220 greeting (after C{on_connect} agreed)."""
        if self._phase != GREETING:
            return
        self._out.append(self._greeting())
        self._phase = COMMAND

    def _greeting(self) -> bytes:
        """The 220 line: at connect, and again after XCLIENT."""
        proto = "LMTP" if self._cfg.lmtp else "ESMTP"
        banner = self._cfg.options.banner
        return format_reply(220, f"{self._cfg.options.name} {proto}" + (f" {banner}" if banner else ""))

    def refuse(self, code: int, message: str) -> None:
        """Refuse the connection instead of greeting it, then close."""
        self._send_error_reply(format_reply(code, message))
        self._phase = CLOSED_

    def timeout(self) -> None:
        """The client was idle too long: 421 and close."""
        if self._phase != CLOSED_:
            self._close_with(R.TIMEOUT)

    def begin_shutdown(self) -> None:
        """
        The server is stopping.  A session with no transaction in progress
        is told 421 at once; one in a transaction may finish it (RCPT, DATA,
        BDAT, NOOP and QUIT still work) and is told 421 after its final
        reply.
        """
        self._shutting_down = True
        if self._phase in (COMMAND, GREETING) and not self.in_transaction:
            self._close_with(R.SHUTTING_DOWN)

    def force_close(self) -> None:
        """The shutdown grace period is over: 421 now, whatever the state."""
        if self._phase != CLOSED_:
            self._close_with(R.SHUTTING_DOWN)

    def connection_lost(self) -> DataAborted | None:
        """
        The transport is gone.  Returns a L{DataAborted} if a body was
        being received, so the driver can fail the stream.
        """
        aborted = None
        if self._body_open:
            aborted = DataAborted("connection lost")
            self._body_open = False
        self._phase = CLOSED_
        self._buf = b""
        self._pos = 0
        return aborted

    # -- answers from the application -------------------------------------

    def mail_from_result(self, error: SMTPError | None) -> None:
        """Answer a L{MailFrom}: C{None} accepts, an L{SMTPError} refuses."""
        if self._phase != WAIT or self._wait != W_MAIL:
            self._expect(W_MAIL)
        self._phase = COMMAND
        self._wait = -1
        pending = self._pending_mail
        self._pending_mail = None
        assert pending is not None
        if error is not None:
            self._app_error(error, 550, "MAIL")
            self._after_answer()
            return
        address, body_type, smtp_utf8, require_tls, dsn = pending
        env = self.session.envelope
        env.mail_from = address
        env.body_type = body_type
        env.smtp_utf8 = smtp_utf8
        env.require_tls = require_tls
        if dsn is not None:
            env.dsn = dsn
        self._out.append(R.MAIL_OK[self._esc])

    def rcpt_to_result(self, error: SMTPError | None) -> None:
        """Answer a L{RcptTo}: C{None} accepts, an L{SMTPError} refuses."""
        if self._phase != WAIT or self._wait != W_RCPT:
            self._expect(W_RCPT)
        self._phase = COMMAND
        self._wait = -1
        address = self._pending_rcpt
        self._pending_rcpt = None
        assert address is not None
        if error is not None:
            self._app_error(error, 550, "RCPT")
            return
        rcpts = self.session.envelope.rcpt_to
        key = address.address.lower()
        index = self._rcpt_index
        if index is None:
            index = self._rcpt_index = {}
        i = index.get(key)
        if i is None:
            index[key] = len(rcpts)
            rcpts.append(address)
        else:
            rcpts[i] = address
        self._out.append(R.RCPT_OK[self._esc])

    def auth_result(self, user: Any, error: SMTPError | None = None) -> None:
        """
        Answer an L{Auth}: a truthy C{user} authenticates; a falsy one, or an
        L{SMTPError}, refuses (for XOAUTH2, after the error challenge).
        """
        self._expect(W_AUTH)
        request = self._pending_auth
        self._pending_auth = None
        assert request is not None
        if error is None and user:
            self.session.user = user
            self._update_transmission_type()
            self._out.append(R.AUTH_OK[self._esc])
            self._after_answer()
            return
        if error is None:
            final = R.AUTH_XOAUTH2_FAILED if request.method == "XOAUTH2" else R.AUTH_FAILED
            final_bytes = final[self._esc]
        else:
            final_bytes = self._render_app_error(error, 535, "AUTH")
        if request.method == "XOAUTH2" and final_bytes[:1] in (b"4", b"5"):
            # RFC 7628 §3.2.2 shape: a 334 with the error, the client's
            # (empty) answer, then the failure.
            self._out.append(xoauth2_error_challenge(request.error_data))
            self._xoauth2_failure = final_bytes
            return
        self._send_error_reply(final_bytes)
        self._after_answer()

    def _after_answer(self) -> None:
        """During shutdown, a session left without a transaction goes."""
        if self._shutting_down and self._phase == COMMAND and not self.in_transaction:
            self._close_with(R.SHUTTING_DOWN)

    def data_result(self, results: Sequence[SMTPError | str | None]) -> None:
        """
        Answer a L{DataEnd}.

        SMTP takes one result; LMTP takes one per accepted recipient, in
        order (a single result is applied to all).  A result is C{None}
        (accepted), a C{str} (accepted, with that text) or an L{SMTPError}.
        """
        self._expect(W_DATA)
        rejected = self._rejected
        n = len(self.session.envelope.rcpt_to) if self._cfg.lmtp else 1
        if rejected is not None:
            err = SMTPError(rejected.code, rejected.message, rejected.enhanced)
            results = [err] * n
        elif len(results) != n:
            if len(results) == 1:
                results = list(results) * n
            elif not self._cfg.lmtp:
                # An SMTP transaction has exactly one reply (smtp-server
                # sends one per element and desyncs the client, its bug 6).
                errors = [r for r in results if isinstance(r, SMTPError)]
                if errors:
                    results = [errors[0]]
                elif results:
                    results = [results[0]]
                else:
                    # Nothing to say is a handler bug: never guess "accepted".
                    results = [SMTPError(451, "Error: internal server error", "4.3.0")]
            else:
                # LMTP with a wrong count: never guess which recipient got
                # what; a temporary failure for all is the safe answer.
                results = [SMTPError(451, "Error: internal server error", "4.3.0")] * n
        default = R.MESSAGE_ACCEPTED if self._cfg.lmtp else R.MESSAGE_QUEUED
        for result in results:
            if result is None:
                self._out.append(default[self._esc])
            elif isinstance(result, SMTPError):
                self._app_error(result, 450, "LMTP" if self._cfg.lmtp else "DATA")
            else:
                text = str(result)
                self._out.append(
                    format_reply(250, text, "2.6.0" if self._esc else None)
                )
        self._end_transaction()

    def tls_established(self) -> None:
        """
        The TLS handshake is done (and C{on_secure} agreed).  RFC 3207 §4.2:
        forget everything learnt before TLS; the client must EHLO again.
        """
        if self._phase != TLS:
            raise RuntimeError("no TLS handshake in progress")
        self._phase = COMMAND
        self._wait = -1
        s = self.session
        s.user = None
        s.host_name_appears_as = None
        s.opening_command = None
        self._esc = 0
        self._reset_transaction()
        self._update_transmission_type()

    def secure_changed(self) -> None:
        """C{session.secure} was set outside STARTTLS (implicit TLS, PROXY)."""
        self._update_transmission_type()

    # ------------------------------------------------------------------
    # Replies
    # ------------------------------------------------------------------

    def _send_error_reply(self, reply: bytes) -> None:
        self._out.append(reply)
        text = reply.decode("utf-8", "replace").rstrip("\r\n")
        if "\r\n" in text:
            text = text.rsplit("\r\n", 1)[1]
        self.session.error = text

    def _error(self, pair: tuple[bytes, bytes]) -> None:
        self._send_error_reply(pair[self._esc])

    def _close_with(self, pair: tuple[bytes, bytes]) -> None:
        self._error(pair)
        self._phase = CLOSED_
        self._sasl = None

    def _render_app_error(
        self, error: SMTPError, default_code: int, context: str
    ) -> bytes:
        code = error.code or default_code
        message = error.message
        if not message:
            message = {
                "MAIL": "Error: sender rejected",
                "RCPT": "Error: recipient rejected",
                "DATA": "Error: message rejected",
                "AUTH": "Error: Authentication credentials invalid",
            }.get(context, "Error")
        esc = None
        if self._esc:
            esc = error.enhanced or default_enhanced(code, context)
            if esc[0] != str(code)[0]:
                esc = default_enhanced(code, context)
        return format_reply(code, message, esc)

    def _app_error(self, error: SMTPError, default_code: int, context: str) -> None:
        reply = self._render_app_error(error, default_code, context)
        self._send_error_reply(reply)
        if reply.startswith(b"421"):
            self._phase = CLOSED_

    def _expect(self, what: int) -> None:
        if self._phase != WAIT or self._wait != what:
            raise RuntimeError(
                f"no such answer expected now (phase {self._phase}, wait {self._wait})"
            )
        self._phase = COMMAND
        self._wait = -1

    def _pause_for(self, what: int) -> None:
        self._phase = WAIT
        self._wait = what

    # ------------------------------------------------------------------
    # Commands
    # ------------------------------------------------------------------

    def _bare_command(self) -> None:
        self._refuse_unrecognized(R.BARE_LF_COMMAND)

    def _refuse_unrecognized(self, reply: tuple[bytes, bytes]) -> None:
        """Send C{reply}, or 421 and close once too many commands were refused."""
        self._unrecognized += 1
        if self._unrecognized >= self._cfg.options.max_unrecognized_commands:
            self._close_with(R.TOO_MANY_UNRECOGNIZED)
        else:
            self._error(reply)

    def _command(self, line: bytes) -> Any:
        if self._shutting_down and not self._allowed_while_shutting_down(line):
            self._close_with(R.SHUTTING_DOWN)
            return None
        sp = line.find(b" ")
        verb = (line if sp < 0 else line[:sp]).upper()
        handler = self._cfg.commands.get(verb)
        if handler is None:
            return self._unknown(verb, line)
        if self._cfg.lmtp:
            if verb == b"HELO" or verb == b"EHLO":
                self._error(R.pair(500, f"Error: {verb.decode()} not allowed in LMTP server"))
                return None
        elif verb == b"LHLO":
            return self._unknown(verb, line)
        if self._cfg.auth_required and self.session.user is None and verb != b"AUTH":
            limit = self._cfg.options.max_allowed_unauthenticated_commands
            if limit is not None:
                self._unauthenticated += 1
                if self._unauthenticated >= limit:
                    self._close_with(R.TOO_MANY_UNAUTHENTICATED)
                    return None
        if verb in _MAIL_COMMANDS or verb == b"AUTH":
            if self.session.opening_command is None:
                if verb == b"BDAT":
                    self._refuse_bdat(line, R.SEND_LHLO_FIRST if self._cfg.lmtp else R.SEND_HELO_FIRST)
                    return None
                self._error(R.SEND_LHLO_FIRST if self._cfg.lmtp else R.SEND_HELO_FIRST)
                return None
            if self._cfg.auth_required and self.session.user is None and verb != b"AUTH":
                reply = R.pair(530, self._cfg.options.auth_required_message, "5.7.0")
                if verb == b"BDAT":
                    self._refuse_bdat(line, reply)
                    return None
                self._error(reply)
                return None
        arg = b"" if sp < 0 else line[sp + 1 :]
        return handler(self, arg, sp)

    def _allowed_while_shutting_down(self, line: bytes) -> bool:
        verb = line.split(b" ", 1)[0].upper()
        if verb == b"QUIT":
            return True
        if self.in_transaction:
            return verb in (b"RCPT", b"DATA", b"BDAT", b"NOOP")
        return False

    def _unknown(self, verb: bytes, line: bytes) -> None:
        if verb in _HTTP_VERBS and _HTTP.match(line):
            self._close_with(R.HTTP_REFUSED)
            return None
        if verb in _NOT_IMPLEMENTED and verb not in self._cfg.disabled:
            self._refuse_unrecognized(R.NOT_IMPLEMENTED)
        else:
            self._refuse_unrecognized(R.UNRECOGNIZED)
        return None

    # -- greetings ------------------------------------------------------

    def _hello_argument(self, arg: bytes, syntax: tuple[bytes, bytes]) -> str | None:
        text = arg.strip(b" ")
        if not text or b" " in text or b"\t" in text:
            self._error(syntax)
            return None
        try:
            name = text.decode("utf-8")
        except UnicodeDecodeError:
            self._error(R.BAD_HOSTNAME)
            return None
        if len(name) > 300 or _CONTROLS.search(name):
            self._error(R.BAD_HOSTNAME)
            return None
        # Interned: idle clients that all say the same name share one string.
        return intern(name.lower())

    def _helo_text(self) -> str:
        template = self._cfg.options.helo_response
        hostname = self.session.client_hostname or f"[{self.session.remote_address}]"
        if "{" in template:
            try:
                return template.format(name=self._cfg.options.name, client_hostname=hostname)
            except (KeyError, IndexError, ValueError):
                return f"{self._cfg.options.name} Nice to meet you, {hostname}"
        if "%s" in template:
            parts = template.split("%s")
            values = [self._cfg.options.name, hostname]
            out = parts[0]
            for i, p in enumerate(parts[1:]):
                out += (values[i] if i < 2 else "") + p
            return out
        return template

    def _greeted(self, command: str, name: str) -> None:
        s = self.session
        s.opening_command = command
        s.host_name_appears_as = name
        self._reset_transaction()
        self._update_transmission_type()

    def _helo(self, arg: bytes, sp: int) -> None:
        name = self._hello_argument(arg, R.HELO_SYNTAX)
        if name is None:
            return None
        self._esc = 0
        self._greeted("HELO", name)
        self._out.append(format_reply(250, self._helo_text()))
        return None

    def _ehlo(self, arg: bytes, sp: int) -> None:
        name = self._hello_argument(arg, R.EHLO_SYNTAX)
        if name is None:
            return None
        self._greeted("EHLO", name)
        self._esc = 0 if self._cfg.options.hide_enhancedstatuscodes else 1
        self._out.append(self._ehlo_reply())
        return None

    def _lhlo(self, arg: bytes, sp: int) -> None:
        name = self._hello_argument(arg, R.LHLO_SYNTAX)
        if name is None:
            return None
        self._greeted("LHLO", name)
        self._esc = 0 if self._cfg.options.hide_enhancedstatuscodes else 1
        self._out.append(self._ehlo_reply())
        return None

    def capabilities(self) -> list[str]:
        """The EHLO keywords this session would advertise now."""
        o = self._cfg.options
        s = self.session
        caps = []
        if not o.hide_pipelining:
            caps.append("PIPELINING")
        if not o.hide_8bitmime:
            caps.append("8BITMIME")
        if not o.hide_smtputf8:
            caps.append("SMTPUTF8")
        if not self._cfg.options.hide_enhancedstatuscodes:
            caps.append("ENHANCEDSTATUSCODES")
        if not self._cfg.options.hide_dsn:
            caps.append("DSN")
        if (
            self._cfg.auth_enabled
            and s.user is None
            and (s.secure or o.allow_insecure_auth)
        ):
            caps.append("AUTH " + " ".join(self._cfg.options.auth_methods))
        if (
            self._cfg.tls_available
            and not s.secure
            and not o.hide_starttls
            and b"STARTTLS" not in self._cfg.disabled
        ):
            caps.append("STARTTLS")
        if s.secure and not o.hide_requiretls:
            caps.append("REQUIRETLS")
        if self._cfg.size_limit:
            caps.append("SIZE" if o.hide_size else f"SIZE {self._cfg.size_limit}")
        if not self._cfg.options.hide_chunking and b"BDAT" not in self._cfg.disabled:
            caps.append("CHUNKING")
            if not o.hide_8bitmime:
                caps.append("BINARYMIME")
        if not self._xclient_addr_used:
            if self._xclient_trusted and b"XCLIENT" not in self._cfg.disabled:
                caps.append("XCLIENT " + " ".join(_XCLIENT_KEYS))
            if self._xforward_trusted and b"XFORWARD" not in self._cfg.disabled:
                caps.append("XFORWARD " + " ".join(_XFORWARD_KEYS))
        return caps

    def _ehlo_reply(self) -> bytes:
        lines = [self._helo_text()]
        lines.extend(self.capabilities())
        out = [b"250-" + line.encode("utf-8") for line in lines[:-1]]
        out.append(b"250 " + lines[-1].encode("utf-8"))
        return b"\r\n".join(out) + b"\r\n"

    # -- simple commands -------------------------------------------------

    def _noop(self, arg: bytes, sp: int) -> None:
        self._out.append(R.OK[self._esc])
        return None

    def _rset(self, arg: bytes, sp: int) -> Any:
        ev = self._abort_body("RSET")
        self._reset_transaction()
        self._out.append(R.FLUSHED[self._esc])
        return ev

    def _quit(self, arg: bytes, sp: int) -> Any:
        ev = self._abort_body("QUIT")
        self._out.append(R.BYE[self._esc])
        self._phase = CLOSED_
        return ev

    def _help(self, arg: bytes, sp: int) -> None:
        self._out.append(R.HELP[self._esc])
        return None

    def _vrfy(self, arg: bytes, sp: int) -> None:
        if not arg.strip():
            self._error(R.VRFY_SYNTAX)
        else:
            self._out.append(R.VRFY[self._esc])
        return None

    # -- MAIL / RCPT -------------------------------------------------------

    def _path_argument(self, line_arg: bytes, keyword: bytes) -> str | None:
        """Return the text after ``FROM:``/``TO:``, or None on syntax error."""
        n = len(keyword)
        if line_arg[:n].upper() != keyword:
            return None
        try:
            return line_arg[n:].decode("utf-8").lstrip(" ")
        except UnicodeDecodeError:
            return None

    def _param_error(self, e: ParamError, syntax: tuple[bytes, bytes]) -> None:
        if e.kind == "duplicate":
            self._error(R.pair(501, f"Error: duplicate {e.key} parameter"))
        elif e.kind == "novalue":
            self._error(R.pair(501, f"Error: {e.key} parameter requires a value"))
        else:
            self._error(syntax)

    def _mail(self, arg: bytes, sp: int) -> Any:
        m = _FAST_FROM.match(arg)
        if m is not None and _fast_ok(m.group(1)):
            fast = self._fast_mail(m)
            if fast is not _SLOW:
                return fast
        text = self._path_argument(arg, b"FROM:")
        if text is None:
            self._error(R.BAD_SENDER)
            return None
        try:
            path, rest = split_path(text)
            address = "" if path == "" else check_mailbox(path, lenient=self._cfg.options.lenient_address_parsing)
        except AddressError:
            self._error(R.BAD_SENDER)
            return None
        try:
            args, raw = parse_params(rest)
        except ParamError as e:
            self._param_error(e, R.BAD_SENDER)
            return None
        if self.in_transaction:
            self._error(R.NESTED_MAIL)
            return None
        s = self.session
        size = args.get("SIZE")
        if size is not None:
            if not isinstance(size, str) or _SIZE.match(size) is None:
                self._error(R.BAD_SIZE)
                return None
            if (
                self._cfg.size_limit
                and not self._cfg.options.hide_size
                and int(size) > self._cfg.size_limit
            ):
                self._error(
                    R.pair(
                        552,
                        "Error: message exceeds fixed maximum message size "
                        f"{self._cfg.size_limit}",
                        "5.3.4",
                    )
                )
                return None
        body_type = "7bit"
        body = args.get("BODY")
        if body is not None:
            b = str(body).upper()
            if b == "7BIT":
                body_type = "7bit"
            elif b == "8BITMIME":
                body_type = "8bitmime"
            elif b == "BINARYMIME" and not self._cfg.options.hide_chunking and b"BDAT" not in self._cfg.disabled:
                body_type = "binarymime"
            else:
                self._error(R.BAD_BODY_NO_CHUNKING if self._cfg.options.hide_chunking else R.BAD_BODY)
                return None
        smtp_utf8 = False
        if "SMTPUTF8" in args:
            if args["SMTPUTF8"] is not True:
                self._error(R.BAD_SMTPUTF8)
                return None
            smtp_utf8 = True
        require_tls = False
        if "REQUIRETLS" in args:
            if not s.secure:
                self._error(R.REQUIRETLS_CLEARTEXT)
                return None
            if args["REQUIRETLS"] is not True:
                self._error(R.BAD_REQUIRETLS)
                return None
            require_tls = True
        dsn = None
        if not self._cfg.options.hide_dsn and ("RET" in args or "ENVID" in args):
            dsn = EnvelopeDSN()
            ret = args.get("RET")
            if ret is not None:
                r = str(ret).upper()
                if r not in ("FULL", "HDRS"):
                    self._error(R.BAD_RET)
                    return None
                dsn.ret = r
                args["RET"] = r
            envid = args.get("ENVID")
            if envid is not None:
                if not is_xtext(raw["ENVID"]) or len(raw["ENVID"]) > 100:
                    self._error(R.BAD_ENVID)
                    return None
                dsn.envid = str(envid)
        if "AUTH" in args:
            # RFC 4954 §5: the value is xtext; "<>" means "unknown sender".
            if not is_xtext(raw["AUTH"]):
                self._error(R.BAD_AUTH_PARAM)
                return None
            if s.user is None:
                # "...if the client is not authenticated, then the server
                # MUST behave as if the AUTH=<> parameter was supplied."
                args["AUTH"] = "<>"
        addr = Address(address, args)
        self._pending_mail = (addr, body_type, smtp_utf8, require_tls, dsn)
        return self._ask_mail(addr)

    def _fast_mail(self, m: re.Match[bytes]) -> Any:
        """MAIL in its common shape: the same answers as the general parser."""
        if self.session.envelope.mail_from is not None or self._body_open:
            self._error(R.NESTED_MAIL)
            return None
        params = m.group(2)
        args: dict[str, Any] = {}
        body_type = "7bit"
        if params:
            for item in params[1:].split(b" "):
                key, _, value = item.partition(b"=")
                name = key.decode("ascii").upper()
                if name in args:
                    return _SLOW  # a repeated parameter: the parser says why
                args[name] = value.decode("ascii")
            size = args.get("SIZE")
            if (
                size is not None
                and self._cfg.size_limit
                and not self._cfg.options.hide_size
                and int(size) > self._cfg.size_limit
            ):
                return _SLOW  # the parser words the refusal
            if args.get("BODY", "").upper() == "8BITMIME":
                body_type = "8bitmime"
        addr = Address(m.group(1).decode("ascii"), args)
        self._pending_mail = (addr, body_type, False, False, None)
        return self._ask_mail(addr)

    def _ask_mail(self, addr: Address) -> MailFrom | None:
        """Wait for the handler's verdict, or accept at once if it has no hook."""
        self._phase = WAIT
        self._wait = W_MAIL
        if not self._cfg.mail_hook:
            self.mail_from_result(None)
            return None
        return MailFrom(addr)

    def _rcpt_out_of_order(self) -> bool:
        """RCPT needs a MAIL and no started BDAT; replies if not."""
        if self.session.envelope.mail_from is None:
            self._error(R.NEED_MAIL)
        elif self._body_open:
            self._error(R.pair(503, "Error: RCPT not allowed after BDAT"))
        else:
            return False
        return True

    def _rcpt_over_limit(self, address: str) -> bool:
        """A new address needs room under max_recipients; replies if not."""
        if (
            self._cfg.max_rcpt
            and len(self.session.envelope.rcpt_to) >= self._cfg.max_rcpt
            and address.lower() not in (self._rcpt_index or ())
        ):
            self._error(R.TOO_MANY_RECIPIENTS)
            return True
        return False

    def _ask_rcpt(self, addr: Address) -> RcptTo | None:
        """Wait for the handler's verdict, or accept at once if it has no hook."""
        self._pending_rcpt = addr
        self._phase = WAIT
        self._wait = W_RCPT
        if not self._cfg.rcpt_hook:
            self.rcpt_to_result(None)
            return None
        return RcptTo(addr)

    def _rcpt(self, arg: bytes, sp: int) -> Any:
        m = _FAST_TO.match(arg)
        if m is not None and _fast_ok(m.group(1)):
            address = m.group(1).decode("ascii")
            if self._rcpt_out_of_order() or self._rcpt_over_limit(address):
                return None
            return self._ask_rcpt(Address(address))
        text = self._path_argument(arg, b"TO:")
        if text is None:
            self._error(R.BAD_RECIPIENT)
            return None
        try:
            path, rest = split_path(text)
            if path.lower() == "postmaster":
                address = path
            elif path == "":
                raise AddressError("null recipient")
            else:
                address = check_mailbox(path, lenient=self._cfg.options.lenient_address_parsing)
        except AddressError:
            self._error(R.BAD_RECIPIENT)
            return None
        try:
            args, raw = parse_params(rest)
        except ParamError as e:
            self._param_error(e, R.BAD_RECIPIENT)
            return None
        if self._rcpt_out_of_order():
            return None
        dsn = None
        if not self._cfg.options.hide_dsn:
            notify = args.get("NOTIFY")
            orcpt = args.get("ORCPT")
            if notify is not None or orcpt is not None:
                dsn = RecipientDSN()
            if notify is not None:
                values = [v.strip().upper() for v in str(notify).split(",")]
                if "NEVER" in values:
                    if len(values) > 1:
                        self._error(R.NOTIFY_NEVER)
                        return None
                elif not values or any(v not in _NOTIFY_VALUES for v in values):
                    self._error(R.BAD_NOTIFY)
                    return None
                assert dsn is not None
                dsn.notify = tuple(values)
            if orcpt is not None:
                if _ORCPT.match(str(orcpt)) is None or not is_xtext(
                    raw["ORCPT"].split(";", 1)[1]
                ):
                    self._error(R.BAD_ORCPT)
                    return None
                assert dsn is not None
                dsn.orcpt = str(orcpt)
        if self._rcpt_over_limit(address):
            return None
        return self._ask_rcpt(Address(address, args, dsn))

    # -- DATA ------------------------------------------------------------------

    def _data(self, arg: bytes, sp: int) -> Any:
        env = self.session.envelope
        if self._body_open:
            # RFC 3030 §2: DATA and BDAT do not mix in one transaction.
            ev = self._abort_body("DATA after BDAT")
            self._reset_transaction()
            self._error(R.DATA_AFTER_BDAT)
            return ev
        if env.mail_from is None:
            self._error(R.NEED_MAIL)
            return None
        if not env.rcpt_to:
            self._error(R.NEED_RCPT)
            return None
        if env.body_type == "binarymime":
            self._error(R.BINARYMIME_NEEDS_BDAT)
            return None
        self._out.append(R.START_DATA[0])
        self._framer = DataFramer(check_bare=not self._cfg.lenient_endings)
        self._start_body()
        self._phase = DATA
        return DataStart(False)

    def _start_body(self) -> None:
        self._body_open = True
        self._body_length = 0
        self._rejected = None

    def _reject_body(self, code: int, message: str, enhanced: str) -> BodyRejected:
        ev = BodyRejected(code, message, enhanced)
        self._rejected = ev
        return ev

    def _body_piece(self, body: bytes, bare: bool, events: list[Any]) -> None:
        """Account for released body bytes; emit them unless refused."""
        self._body_length += len(body)
        if self._rejected is not None:
            return
        if bare:
            events.append(self._reject_body(*_BARE_REJECTION))
        elif self._cfg.reject_oversized and self._body_length > self._cfg.size_limit:
            events.append(
                self._reject_body(
                    552,
                    "Error: message exceeds fixed maximum message size "
                    f"{self._cfg.size_limit}",
                    "5.3.4",
                )
            )
        elif self._cfg.data_hook:
            events.append(body)

    def _emit(self, events: list[Any]) -> Any:
        if not events:
            return None
        if len(events) > 1:
            if self._queued is None:
                self._queued = events[1:]
            else:
                self._queued.extend(events[1:])
        return events[0]

    def _data_body(self) -> Any:
        """One step of DATA: a chunk, a rejection, or the end."""
        framer = self._framer
        assert framer is not None
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            return None
        data = buf[pos:] if pos else buf
        body, end = framer.feed(data)
        self._buf = data[end:] if end >= 0 else b""
        self._pos = 0
        events: list[Any] = []
        if body:
            self._body_piece(body, framer.bare, events)
        if end >= 0:
            self._framer = None
            events.append(self._finish_body())
        return self._emit(events)

    def _finish_body(self) -> DataEnd:
        self._body_open = False
        self._pause_for(W_DATA)
        return DataEnd(self._body_length, self._rejected)

    # -- BDAT ------------------------------------------------------------------

    def _refuse_bdat(self, line: bytes, reply: tuple[bytes, bytes]) -> None:
        """Refuse a BDAT but swallow its octets, so they are never commands."""
        m = _BDAT_ARGS.match(line[5:]) if len(line) > 5 else None
        if m is None:
            # Without a size the chunk's end is unknowable: close rather than
            # risk reading body bytes as commands.
            self._close_with(R.BDAT_SYNTAX)
            return
        self._error(reply)
        self._skip = int(m.group(1))

    def _discard_skipped(self) -> bool:
        buf = self._buf
        avail = len(buf) - self._pos
        if avail <= 0:
            return False
        if avail >= self._skip:
            self._pos += self._skip
            self._skip = 0
            return True
        self._skip -= avail
        self._buf = b""
        self._pos = 0
        return False

    def _bdat(self, arg: bytes, sp: int) -> Any:
        m = _BDAT_ARGS.match(arg)
        if m is None:
            self._close_with(R.BDAT_SYNTAX)
            return None
        size = int(m.group(1))
        last = m.group(2) is not None
        env = self.session.envelope
        if env.mail_from is None or not env.rcpt_to:
            self._error(R.NEED_MAIL if env.mail_from is None else R.NEED_RCPT)
            self._skip = size
            return None
        self._bdat_last = last
        first = not self._body_open
        if first:
            self._bdat_framer = BdatFramer(
                check_bare=not self._cfg.lenient_endings and env.body_type != "binarymime"
            )
            self._start_body()
        assert self._bdat_framer is not None
        self._bdat_framer.start(size)
        self._phase = BDAT
        if first:
            return DataStart(True)
        return None

    def _bdat_body(self) -> Any:
        framer = self._bdat_framer
        assert framer is not None
        events: list[Any] = []
        if framer.remaining:
            buf = self._buf
            pos = self._pos
            if pos >= len(buf):
                return None
            data = buf[pos:] if pos else buf
            body, end = framer.feed(data)
            self._buf = data[end:] if end >= 0 else b""
            self._pos = 0
            if body:
                self._body_piece(body, framer.bare, events)
            if end < 0:
                return self._emit(events)
        # The chunk is complete.
        if self._bdat_last:
            framer.finish()
            if framer.bare and self._rejected is None:
                events.append(self._reject_body(*_BARE_REJECTION))
            self._bdat_framer = None
            events.append(self._finish_body())
        else:
            self._phase = COMMAND
            self._out.append(
                format_reply(
                    250,
                    f"OK: {self._body_length} octets received",
                    "2.0.0" if self._esc else None,
                )
            )
        return self._emit(events)

    def _abort_body(self, reason: str) -> DataAborted | None:
        if not self._body_open:
            return None
        self._body_open = False
        self._bdat_framer = None
        self._framer = None
        return DataAborted(reason)

    # -- XCLIENT / XFORWARD (Postfix) -------------------------------------------

    def set_proxy_trust(self, xclient: bool, xforward: bool) -> None:
        """
        Whether this peer may use XCLIENT / XFORWARD.  The driver decides it
        once, from the address the connection really came from (or the
        PROXY header's), never from an address XCLIENT itself supplied.
        """
        self._xclient_trusted = xclient
        self._xforward_trusted = xforward

    def _attributes(
        self, arg: bytes, keys: tuple[str, ...], unavailable: tuple[str, ...]
    ) -> dict[str, str | None] | None:
        """Parse ``KEY=value ...``; None (after replying 501) if malformed."""
        values: dict[str, str | None] = {}
        tokens = [t for t in arg.split(b" ") if t]
        if not tokens:
            self._error(R.BAD_PARAMETER)
            return None
        for token in tokens:
            key_b, eq, raw = token.partition(b"=")
            if not eq or b"=" in raw:
                self._error(R.BAD_PARAMETER)
                return None
            try:
                key = key_b.decode("ascii").upper()
                value = xtext_decode(raw.decode("utf-8"))
            except UnicodeDecodeError:
                self._error(R.BAD_PARAMETER)
                return None
            if key not in keys or _CONTROLS.search(value):
                self._error(R.BAD_PARAMETER)
                return None
            if key in values:
                continue  # the first one wins, as in smtp-server
            values[key] = None if value.upper() in unavailable else value
        address = values.get("ADDR")
        if address is not None:
            if address[:5].upper() == "IPV6:":
                address = address[5:]
            try:
                values["ADDR"] = canonical_ip(address)
            except ValueError:
                self._error(R.INVALID_ADDRESS)
                return None
        name = values.get("NAME")
        if name is not None:
            name = name.rstrip(".").lower()
            if not valid_hostname(name):
                self._error(R.INVALID_HOSTNAME)
                return None
            values["NAME"] = name
        port = values.get("PORT")
        if port is not None and (
            not port.isdigit() or len(port) > 5 or int(port) > 65535
        ):
            self._error(R.INVALID_PORT)
            return None
        return values

    def _xclient(self, arg: bytes, sp: int) -> None:
        s = self.session
        if not self._xclient_trusted or self._xclient_addr_used:
            self._error(R.NOT_ALLOWED)
            return None
        if self.in_transaction:
            self._error(R.TRANSACTION_IN_PROGRESS)
            return None
        values = self._attributes(arg, _XCLIENT_KEYS, ("[UNAVAILABLE]", "[TEMPUNAVAIL]"))
        if values is None:
            return None
        # Everything is valid: apply it all at once.
        x = s.x_client
        if "ADDR" in values:
            x.setdefault("ADDR:DEFAULT", s.remote_address)
            s.remote_address = values["ADDR"] or x["ADDR:DEFAULT"]
            if "NAME" not in values:
                s.client_hostname = f"[{s.remote_address}]"
            s.user = None
            self._xclient_addr_used = True
        if "NAME" in values:
            x.setdefault("NAME:DEFAULT", s.client_hostname)
            s.client_hostname = values["NAME"] or f"[{s.remote_address}]"
        if "PORT" in values:
            x.setdefault("PORT:DEFAULT", s.remote_port)
            port = values["PORT"]
            s.remote_port = int(port) if port else 0
        if "LOGIN" in values:
            # A trusted proxy vouches for the login: no credentials to check.
            s.user = values["LOGIN"] or None
        for key, value in values.items():
            x[key] = int(value) if key == "PORT" and value else value
        # RFC-wise this is a new session: greet again, forget the greeting.
        s.opening_command = None
        s.host_name_appears_as = None
        self._esc = 0
        self._reset_transaction()
        self._update_transmission_type()
        self._out.append(self._greeting())
        return None

    def _xforward(self, arg: bytes, sp: int) -> None:
        s = self.session
        if not self._xforward_trusted or self._xclient_addr_used:
            self._error(R.NOT_ALLOWED)
            return None
        if self.in_transaction:
            self._error(R.TRANSACTION_IN_PROGRESS)
            return None
        values = self._attributes(arg, _XFORWARD_KEYS, ("[UNAVAILABLE]",))
        if values is None:
            return None
        x = s.x_forward
        if "ADDR" in values:
            x.setdefault("ADDR:DEFAULT", s.remote_address)
            s.remote_address = values["ADDR"] or x["ADDR:DEFAULT"]
        if "NAME" in values:
            s.client_hostname = values["NAME"] or f"[{s.remote_address}]"
        if "PORT" in values:
            port = values["PORT"]
            s.remote_port = int(port) if port else 0
        if values.get("HELO"):
            s.host_name_appears_as = values["HELO"].lower()  # type: ignore[union-attr]
        for key, value in values.items():
            x[key] = int(value) if key == "PORT" and value else value
        self._reset_transaction()
        self._out.append(R.OK[self._esc])
        return None

    # -- STARTTLS ---------------------------------------------------------------

    def _starttls(self, arg: bytes, sp: int) -> Any:
        if arg.strip(b" "):
            self._error(R.STARTTLS_SYNTAX)
            return None
        if self.session.secure:
            self._error(R.TLS_ACTIVE)
            return None
        self._out.append(R.READY_TLS[self._esc])
        # RFC 3207 §4.2 / CVE-2011-0411: anything the client sent after
        # STARTTLS in the clear is dropped, never parsed.
        self._buf = b""
        self._pos = 0
        self._phase = TLS
        self._wait = W_TLS
        return StartTLS()

    # -- AUTH -------------------------------------------------------------------

    def _auth(self, arg: bytes, sp: int) -> Any:
        s = self.session
        if not s.secure and not self._cfg.options.allow_insecure_auth:
            self._error(R.AUTH_NEED_TLS)
            return None
        if s.user is not None:
            self._error(R.AUTH_ALREADY)
            return None
        if self.in_transaction:
            self._error(R.AUTH_IN_TRANSACTION)
            return None
        parts = arg.split()
        if not parts:
            self._error(R.pair(501, "Error: syntax: AUTH mechanism [initial-response]"))
            return None
        method = parts[0].upper().decode("ascii", "replace")
        if method not in self._cfg.options.auth_methods:
            self._error(R.AUTH_UNKNOWN)
            return None
        if len(parts) > 2:
            usage = {
                "PLAIN": "Error: syntax: AUTH PLAIN token",
                "LOGIN": "Error: syntax: AUTH LOGIN",
                "XOAUTH2": "Error: syntax: AUTH XOAUTH2 token",
                "CRAM-MD5": "Error: syntax: AUTH CRAM-MD5",
            }[method]
            self._error(R.pair(501, usage))
            return None
        exchange = SaslExchange(method, self._cfg.options.name)
        self._sasl = exchange
        return self._sasl_outcome(exchange.start(parts[1] if len(parts) == 2 else None))

    def _sasl_line(self, line: bytes) -> Any:
        failure = self._xoauth2_failure
        if failure is not None:
            # Whatever the client answers to the XOAUTH2 error challenge,
            # the exchange fails (RFC 7628 §3.2.3).
            self._xoauth2_failure = None
            self._send_error_reply(failure)
            return None
        exchange = self._sasl
        assert exchange is not None
        return self._sasl_outcome(exchange.step(line.strip(b" ")))

    def _sasl_outcome(self, outcome: Any) -> Any:
        if isinstance(outcome, Challenge):
            self._out.append(outcome.line)
            return None
        self._sasl = None
        if isinstance(outcome, AuthRequest):
            self._pending_auth = outcome
            self._pause_for(W_AUTH)
            return Auth(outcome)
        self._error(outcome)
        return None

    # ------------------------------------------------------------------
    # Transaction bookkeeping
    # ------------------------------------------------------------------

    def _reset_transaction(self) -> None:
        reset_envelope(self.session)
        self._rcpt_index = None
        self._pending_mail = None
        self._pending_rcpt = None
        self._body_open = False
        self._framer = None
        self._bdat_framer = None
        self._queued = None

    def _end_transaction(self) -> None:
        s = self.session
        s.transaction += 1
        self._unrecognized = 0
        self._reset_transaction()
        if self._shutting_down and self._phase != CLOSED_:
            self._close_with(R.SHUTTING_DOWN)

    def _update_transmission_type(self) -> None:
        s = self.session
        s.transmission_type = transmission_type(
            self._cfg.lmtp, s.opening_command, s.secure, s.user
        )


_BARE_REJECTION = (
    554,
    "Error: message contains a bare <CR> or <LF>; lines must end with <CR><LF>",
    "5.6.0",
)


_DISABLED: dict[tuple[str, ...], frozenset[bytes]] = {}
_TABLES: dict[tuple[frozenset[bytes], bool, bool, bool], dict[bytes, Any]] = {}


def _disabled_verbs(commands: Any) -> frozenset[bytes]:
    key = tuple(commands)
    verbs = _DISABLED.get(key)
    if verbs is None:
        verbs = _DISABLED[key] = frozenset(c.encode("ascii") for c in key)
    return verbs


def _command_table(
    disabled: frozenset[bytes], chunking: bool, tls: bool, auth: bool
) -> dict[bytes, Any]:
    """The verb → method table for one configuration (built once, shared)."""
    key = (disabled, chunking, tls, auth)
    table = _TABLES.get(key)
    if table is None:
        c = ServerConnection
        table = {
            b"HELO": c._helo,
            b"EHLO": c._ehlo,
            b"LHLO": c._lhlo,
            b"MAIL": c._mail,
            b"RCPT": c._rcpt,
            b"DATA": c._data,
            b"BDAT": c._bdat,
            b"RSET": c._rset,
            b"NOOP": c._noop,
            b"QUIT": c._quit,
            b"HELP": c._help,
            b"VRFY": c._vrfy,
            b"STARTTLS": c._starttls,
            b"AUTH": c._auth,
            b"XCLIENT": c._xclient,
            b"XFORWARD": c._xforward,
        }
        if not chunking:
            del table[b"BDAT"]
        if not tls:
            del table[b"STARTTLS"]
        if not auth:
            del table[b"AUTH"]
        for verb in disabled:
            table.pop(verb, None)
        _TABLES[key] = table
    return table
