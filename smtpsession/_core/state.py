# -*- test-case-name: tests.unit.test_connection -*-
"""
The state of one connection, as data, and the few moves every command
makes with it (reply, refuse, close, reset the transaction).

The command modules (L{smtpsession._core.greeting}, C{envelope}, C{body},
C{auth}, C{xclient}, C{basic}) are functions over a L{SessionState};
L{smtpsession._core.connection.ServerConnection} is the same state with
the driver's interface on top.  Keeping the state in one flat object (and
not one object per concern) is deliberate: an idle client costs one
instance, and the hot path (MAIL, RCPT, DATA, body) reads plain slots.

Three dimensions of state are kept apart, as h11 keeps its machines apart:

  - the I{phase} (L{PHASES}): what the next input bytes are — a greeting
    not yet sent, command lines, a DATA body, BDAT octets — or that
    nothing is parsed (an answer is due, a TLS handshake runs, the
    connection is closing);
  - what a C{WAIT} phase waits for (L{WAITS});
  - flags orthogonal to both: greeted (C{session.opening_command}),
    enhanced codes on (C{esc}), secure, authenticated (C{session.user}),
    a transaction open (C{session.envelope.mail_from}), a body open,
    a SASL exchange, shutting down.
"""

from __future__ import annotations

from typing import Any, Final

from smtpsession._core import replies as R
from smtpsession._core.events import DataAborted
from smtpsession._core.framing import BdatFramer, DataFramer
from smtpsession._core.sasl import AuthRequest, SaslExchange
from smtpsession._core.settings import CoreConfig
from smtpsession._core.verdicts import render
from smtpsession.errors import SMTPError
from smtpsession.session import (
    Address,
    DeliverBy,
    EnvelopeDSN,
    Session,
    reset_envelope,
    transmission_type,
)

__all__ = [
    "SessionState",
    "GREETING",
    "COMMAND",
    "DATA",
    "BDAT",
    "WAIT",
    "TLS",
    "CLOSING",
    "PHASES",
    "WAITS",
]

# Phases: what the next input is.
#: Before the 220 greeting: a client that talks now is refused.
GREETING: Final = 0
#: Command lines (and SASL response lines).
COMMAND: Final = 1
#: A DATA body, up to CRLF.CRLF.
DATA: Final = 2
#: The octets of a BDAT chunk.
BDAT: Final = 3
#: An answer from the application is due (L{WAITS}); nothing is parsed.
WAIT: Final = 4
#: A TLS handshake runs; nothing is parsed (RFC 3207 §4.2).
TLS: Final = 5
#: The last reply is queued: flush it, then close.
CLOSING: Final = 6
#: The phase names, by value (for messages and the docs' diagram).
PHASES: Final = ("GREETING", "COMMAND", "DATA", "BDAT", "WAIT", "TLS", "CLOSING")

# What a WAIT phase waits for.
NOTHING: Final = -1
MAIL_ANSWER: Final = 0
RCPT_ANSWER: Final = 1
AUTH_ANSWER: Final = 2
DATA_ANSWER: Final = 3
HANDSHAKE: Final = 4
HELO_ANSWER: Final = 5
VRFY_ANSWER: Final = 6
EXPN_ANSWER: Final = 7
RSET_ANSWER: Final = 8
#: The names of what a WAIT phase waits for, by value.
WAITS: Final = (
    "MAIL_ANSWER",
    "RCPT_ANSWER",
    "AUTH_ANSWER",
    "DATA_ANSWER",
    "HANDSHAKE",
    "HELO_ANSWER",
    "VRFY_ANSWER",
    "EXPN_ANSWER",
    "RSET_ANSWER",
)

#: A pending MAIL: the address and what its parameters set on the envelope
#: (body type, SMTPUTF8, REQUIRETLS, DSN).
#: A MAIL waiting for its answer: the sender, BODY, SMTPUTF8, REQUIRETLS,
#: the DSN parameters, DELIVERBY's BY and MT-PRIORITY.
PendingMail = tuple[Address, str, bool, bool, EnvelopeDSN | None, DeliverBy | None, int | None]


class SessionState:
    """
    Everything one connection remembers.  Attributes are public to the
    core's modules (the package is private), never to the driver, which
    goes through L{smtpsession._core.connection.ServerConnection}.
    """

    __slots__ = (
        "cfg",
        "session",
        "xclient_trusted",
        "xforward_trusted",
        "xclient_addr_used",
        "buf",
        "pos",
        "skip",
        "out",
        "phase",
        "wait",
        "esc",
        "unrecognized",
        "unauthenticated",
        "auth_failures",
        "shutting_down",
        "sasl",
        "xoauth2_failure",
        "pending_auth",
        "pending_mail",
        "pending_rcpt",
        "pending_hello",
        "rcpt_index",
        "rcpt_order",
        "framer",
        "bdat_framer",
        "bdat_last",
        "body_open",
        "body_length",
        "rejected",
        "queued",
        "progress",
        "unproven",
    )

    def __init__(self, cfg: CoreConfig, session: Session) -> None:
        self.cfg = cfg
        self.session = session
        # XCLIENT/XFORWARD stay known even when off: a client that tries
        # them is told 550 "not allowed", not 500 "unknown".
        self.xclient_trusted = False
        self.xforward_trusted = False
        self.xclient_addr_used = False
        # Input.
        self.buf = b""
        self.pos = 0
        self.skip = 0  # octets of a refused BDAT chunk still to discard
        # Output: replies queued since the driver last asked.
        self.out: list[bytes] = []
        # Phase, and the flags beside it.
        self.phase = GREETING
        self.wait = NOTHING
        self.esc = 0  # 1 once EHLO/LHLO was accepted (index into reply pairs)
        self.unrecognized = 0
        self.unauthenticated = 0
        self.auth_failures = 0
        self.shutting_down = False
        self.sasl: SaslExchange | None = None
        self.xoauth2_failure: bytes | None = None
        self.pending_auth: AuthRequest | None = None
        # The transaction.
        self.pending_mail: PendingMail | None = None
        self.pending_rcpt: Address | None = None
        #: A hello waiting for C{on_helo}: its verb and the client's name.
        self.pending_hello: tuple[str, str] | None = None
        # Built lazily: an idle connection should not carry empty containers.
        self.rcpt_index: dict[str, int] | None = None
        #: LMTP, once a recipient was given twice: for each successful RCPT
        #: in order, its place in the envelope (RFC 2033 4.2: one reply per
        #: successful RCPT, though the envelope holds each address once).
        self.rcpt_order: list[int] | None = None
        self.framer: DataFramer | None = None
        self.bdat_framer: BdatFramer | None = None
        self.bdat_last = False
        self.body_open = False  # on_data was started and has not ended
        self.body_length = 0
        self.rejected: Any = None  # the core's BodyRejected of this body
        self.queued: list[Any] | None = None  # events of one step beyond the first
        #: Counts complete command lines and body pieces: the idle timer
        #: measures time without progress, not without bytes (a client
        #: trickling a command a byte at a time is idle).  See
        #: L{smtpsession._core.body.BODY_PROGRESS} for what a body piece is.
        self.progress = 0
        #: Body bytes received since the body last counted as progress.
        self.unproven = 0
        self.update_transmission_type()

    # -- what the phase and the flags say ---------------------------------------

    @property
    def in_transaction(self) -> bool:
        """Whether a mail transaction is open (MAIL accepted, not finished)."""
        return self.session.envelope.mail_from is not None or self.body_open

    def phase_name(self) -> str:
        """The phase (and what it waits for) in words."""
        name = PHASES[self.phase]
        if self.phase == WAIT and self.wait >= 0:
            name += "/" + WAITS[self.wait]
        return name

    # -- replies ------------------------------------------------------------------

    def send_error(self, reply: bytes) -> None:
        """Queue a 4xx/5xx reply and remember its last line as C{session.error}."""
        self.out.append(reply)
        text = reply.decode("utf-8", "replace").rstrip("\r\n")
        if "\r\n" in text:
            text = text.rsplit("\r\n", 1)[1]
        self.session.error = text

    def error(self, pair: R.Pair) -> None:
        """Queue a catalogue error, with its enhanced code after EHLO."""
        self.send_error(pair[self.esc])

    def close_with(self, pair: R.Pair) -> None:
        """Queue a final error (421, mostly) and close once it is sent."""
        self.error(pair)
        self.phase = CLOSING
        self.sasl = None

    def app_error(self, error: SMTPError, default_code: int, context: str) -> None:
        """Queue the application's refusal; a 421 also closes (RFC 5321 §3.8)."""
        reply = render(error, default_code, context, self.esc)
        self.send_error(reply)
        if reply.startswith(b"421"):
            self.phase = CLOSING

    def refuse_unrecognized(self, pair: R.Pair) -> None:
        """Send C{pair}, or 421 and close once too many commands were refused."""
        self.unrecognized += 1
        if self.unrecognized >= self.cfg.options.max_unrecognized_commands:
            self.close_with(R.TOO_MANY_UNRECOGNIZED)
        else:
            self.error(pair)

    # -- waiting for the application ------------------------------------------------

    def pause_for(self, what: int) -> None:
        """Stop parsing until the answer C{what} comes (Rule 2)."""
        self.phase = WAIT
        self.wait = what

    def expect(self, what: int) -> None:
        """The answer C{what} arrived: parse again.  Anything else is a driver bug."""
        if self.phase != WAIT or self.wait != what:
            raise RuntimeError(
                f"no such answer expected now (phase {self.phase_name()}, "
                f"answer {WAITS[what]})"
            )
        self.phase = COMMAND
        self.wait = NOTHING

    def after_answer(self) -> None:
        """During shutdown, a session left without a transaction goes."""
        if self.shutting_down and self.phase == COMMAND and not self.in_transaction:
            self.close_with(R.SHUTTING_DOWN)

    # -- the transaction ----------------------------------------------------------------

    def reset_transaction(self) -> None:
        """Forget the envelope and any body in progress (RSET, HELO, TLS, ...)."""
        reset_envelope(self.session)
        if self.session.transmission_type.startswith("UTF8"):
            self.update_transmission_type()  # the SMTPUTF8 transaction is over
        self.rcpt_index = None
        self.rcpt_order = None
        self.pending_mail = None
        self.pending_rcpt = None
        self.body_open = False
        self.framer = None
        self.bdat_framer = None
        self.queued = None

    def end_transaction(self) -> None:
        """The final reply of a transaction is queued: count it, start afresh."""
        self.session.transaction += 1
        self.unrecognized = 0
        self.reset_transaction()
        if self.shutting_down and self.phase != CLOSING:
            self.close_with(R.SHUTTING_DOWN)

    def abort_body(self, reason: str) -> DataAborted | None:
        """End a body that will not complete; the event tells the driver."""
        if not self.body_open:
            return None
        self.body_open = False
        self.bdat_framer = None
        self.framer = None
        return DataAborted(reason)

    def update_transmission_type(self, utf8: bool = False) -> None:
        """C{session.transmission_type} from the session (and SMTPUTF8: RFC 6531 §3.7.3)."""
        s = self.session
        s.transmission_type = transmission_type(
            self.cfg.lmtp, s.opening_command, s.secure, s.user, utf8
        )
