# -*- test-case-name: tests.unit.test_machine,tests.unit.test_connection -*-
"""
The state machine as tables: what the input means in each phase
(L{READERS}), and which command may run when (L{VERBS}).

Rule 3 of the theory of operation lives here: framing is chosen by phase,
at the exact byte where the phase changes.  Command lines are read by
L{read_command}, DATA bodies and BDAT chunks by the framers of
L{smtpsession._core.body}; in C{WAIT} and C{TLS} nothing is parsed.

A command line is checked against its row of L{VERBS} before it runs, in
this order: the shutdown rule, the command's existence in this
configuration, the count of commands before a required AUTH, a greeting
(for the mail commands and AUTH), then authentication (for the mail
commands).  A refused BDAT still has its octets read and dropped
(C{octets}), so they are never taken for commands.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from smtpsession._core import auth, basic, body, envelope, greeting, xclient
from smtpsession._core import replies as R
from smtpsession._core.events import CLOSED, NEED_DATA, PAUSED
from smtpsession._core.sasl import MECHANISMS
from smtpsession._core.settings import CoreConfig
from smtpsession._core.state import CLOSING, COMMAND, SessionState
from smtpsession.options import SMTPServerOptions

__all__ = ["Verb", "VERBS", "READERS", "configure", "dispatch", "read_command"]

Run = Callable[[SessionState, bytes], Any]

#: When a command may run during a shutdown (L{Verb.in_shutdown}).
NEVER: Final = 0
IN_TRANSACTION: Final = 1
ALWAYS: Final = 2


class Verb:
    """One row of the command table: the function, and when it may run."""

    __slots__ = ("run", "needs_hello", "needs_auth", "octets", "in_shutdown")

    def __init__(
        self,
        run: Run,
        *,
        needs_hello: bool = False,
        needs_auth: bool = False,
        octets: bool = False,
        in_shutdown: int = NEVER,
    ) -> None:
        self.run = run
        #: Refused (503) before HELO/EHLO/LHLO.
        self.needs_hello = needs_hello
        #: Refused (530) before AUTH, when AUTH is required.
        self.needs_auth = needs_auth
        #: Octets follow the line (BDAT): a refusal must swallow them.
        self.octets = octets
        #: During a shutdown: never, inside a transaction, or always.
        self.in_shutdown = in_shutdown


_MAIL_COMMAND = {"needs_hello": True, "needs_auth": True}

#: Every command the core implements.  L{configure} copies the rows that
#: apply to one configuration (SMTP or LMTP, TLS, AUTH, CHUNKING, disabled
#: commands) into the config's own table.
VERBS: Final = {
    b"HELO": Verb(greeting.helo),
    b"EHLO": Verb(greeting.ehlo),
    b"LHLO": Verb(greeting.lhlo),
    b"MAIL": Verb(envelope.mail, **_MAIL_COMMAND),
    b"RCPT": Verb(envelope.rcpt, in_shutdown=IN_TRANSACTION, **_MAIL_COMMAND),
    b"DATA": Verb(body.data, in_shutdown=IN_TRANSACTION, **_MAIL_COMMAND),
    b"BDAT": Verb(body.bdat, octets=True, in_shutdown=IN_TRANSACTION, **_MAIL_COMMAND),
    b"RSET": Verb(basic.rset),
    b"NOOP": Verb(basic.noop, in_shutdown=IN_TRANSACTION),
    b"QUIT": Verb(basic.quit, in_shutdown=ALWAYS),
    b"HELP": Verb(basic.help_),
    b"VRFY": Verb(basic.vrfy),
    b"STARTTLS": Verb(basic.starttls),
    b"AUTH": Verb(auth.auth, needs_hello=True),
    b"XCLIENT": Verb(xclient.xclient),
    b"XFORWARD": Verb(xclient.xforward),
}

#: EXPN, in the table only when the application has C{on_expn}.
_EXPN: Final = Verb(basic.expn)

#: An LMTP server answers HELO and EHLO, but only to refuse them (RFC 2033).
_LMTP_ONLY = {b"HELO": Verb(greeting.helo_in_lmtp), b"EHLO": Verb(greeting.ehlo_in_lmtp)}

#: Verbs RFC 5321 names that this server deliberately does not implement
#: (502, not 500).
_NOT_IMPLEMENTED = frozenset([b"EXPN", b"TURN", b"ETRN", b"ATRN", b"SEND", b"SOML", b"SAML", b"BURL"])

_HTTP = re.compile(rb"(?:OPTIONS|GET|HEAD|POST|PUT|DELETE|TRACE|CONNECT) \S+ HTTP/\d\.\d\Z")
_HTTP_VERBS = frozenset(
    [b"OPTIONS", b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"TRACE", b"CONNECT"]
)


def configure(
    options: SMTPServerOptions,
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
) -> CoreConfig:
    """
    The core's view of one configuration, with its command table.  Build
    it once per listener (and TLS availability) and share it.  The C{*_hook}
    flags say which hooks the application has; C{expn_hook} is what turns
    EXPN on (without it EXPN is 502, not implemented).
    """
    disabled = frozenset(c.encode("ascii") for c in options.disabled_commands)
    cfg = CoreConfig(
        options,
        tls_available=tls_available,
        auth_enabled=auth_enabled,
        disabled=disabled,
        mechanisms=frozenset(MECHANISMS),
        mail_hook=mail_hook,
        rcpt_hook=rcpt_hook,
        data_hook=data_hook,
        helo_hook=helo_hook,
        vrfy_hook=vrfy_hook,
        expn_hook=expn_hook,
        rset_hook=rset_hook,
    )
    table = dict(VERBS)
    if expn_hook:
        table[b"EXPN"] = _EXPN
    if cfg.lmtp:
        table.update(_LMTP_ONLY)
    else:
        del table[b"LHLO"]
    if not cfg.chunking:
        del table[b"BDAT"]
    if not tls_available:
        del table[b"STARTTLS"]
    if not cfg.auth_enabled:
        del table[b"AUTH"]
    for verb in disabled:
        table.pop(verb, None)
    cfg.commands = table
    return cfg


# -- input, by phase -----------------------------------------------------------------


def read_greeting(st: SessionState) -> Any:
    """
    Before the greeting: a client that talks now is refused, 421 as
    smtp-server does, or with C{pregreet_delay} on, 554 5.5.1 (it is taken
    for a bot, as Postfix's postscreen does).
    """
    if len(st.buf) > st.pos:
        if st.cfg.pregreet:
            st.send_error(R.PREGREET)
            st.phase = CLOSING
        else:
            st.close_with(R.pair(421, f"{st.cfg.name} {R.TALK_TOO_SOON}"))
        return None
    return NEED_DATA


def read_command(st: SessionState) -> Any:
    """
    Command lines (or SASL lines), one after the other, until one gives an
    event (returned), the input runs out (NEED_DATA), or the phase changes
    (None: the next phase's reader takes over).
    """
    while True:
        if st.skip and not body.discard_skipped(st):
            return NEED_DATA
        buf = st.buf
        pos = st.pos
        max_line = st.cfg.max_line
        nl = buf.find(b"\n", pos)
        if nl < 0:
            # A partial line may be one CR longer than the limit: its LF may
            # be in the next segment.
            n = len(buf) - pos
            if n > max_line and (n > max_line + 1 or buf[-1] != 13):
                st.close_with(R.LINE_TOO_LONG)
                return None
            return NEED_DATA
        st.pos = nl + 1
        st.progress += 1
        if nl > pos and buf[nl - 1] == 13:  # CRLF
            line = buf[pos : nl - 1]
            bare = False
        else:
            line = buf[pos:nl]
            bare = True
        if len(line) > max_line:
            st.close_with(R.LINE_TOO_LONG)
            return None
        if bare and not st.cfg.lenient_endings:
            st.refuse_unrecognized(R.BARE_LF_COMMAND)
        elif st.sasl is not None or st.xoauth2_failure is not None:
            ev = auth.sasl_line(st, line)
            if ev is not None:
                return ev
        else:
            ev = dispatch(st, line)
            if ev is not None:
                return ev
        if st.phase != COMMAND:
            return None


def _paused(st: SessionState) -> Any:
    return PAUSED


def _closing(st: SessionState) -> Any:
    return CLOSED


#: The input reader of each phase, indexed by phase (see
#: L{smtpsession._core.state.PHASES}).  Each returns an event, a sentinel,
#: or None when the phase changed and the next reader must look.
READERS: Final = (
    read_greeting,  # GREETING
    read_command,  # COMMAND
    body.read_data,  # DATA
    body.read_bdat,  # BDAT
    _paused,  # WAIT
    _paused,  # TLS
    _closing,  # CLOSING
)


# -- commands ----------------------------------------------------------------------------


def dispatch(st: SessionState, line: bytes) -> Any:
    """Check a command line against its row of the table, then run it."""
    sp = line.find(b" ")
    verb = (line if sp < 0 else line[:sp]).upper()
    cfg = st.cfg
    row = cfg.commands.get(verb)
    if st.shutting_down and not _allowed_in_shutdown(st, row):
        st.close_with(R.SHUTTING_DOWN)
        return None
    if row is None:
        return _unknown(st, verb, line)
    s = st.session
    if cfg.auth_required and s.user is None and verb != b"AUTH":
        limit = cfg.options.max_allowed_unauthenticated_commands
        if limit is not None:
            st.unauthenticated += 1
            if st.unauthenticated >= limit:
                st.close_with(R.TOO_MANY_UNAUTHENTICATED)
                return None
    arg = b"" if sp < 0 else line[sp + 1 :]
    if row.needs_hello:
        refusal = None
        if s.opening_command is None:
            refusal = R.SEND_LHLO_FIRST if cfg.lmtp else R.SEND_HELO_FIRST
        elif row.needs_auth and cfg.auth_required and s.user is None:
            refusal = R.pair(530, cfg.options.auth_required_message, "5.7.0")
        if refusal is not None:
            if row.octets:
                body.refuse_bdat(st, arg, refusal)
            else:
                st.error(refusal)
            return None
    return row.run(st, arg)


def _allowed_in_shutdown(st: SessionState, row: Verb | None) -> bool:
    if row is None:
        return False
    if row.in_shutdown == ALWAYS:
        return True
    return row.in_shutdown == IN_TRANSACTION and st.in_transaction


def _unknown(st: SessionState, verb: bytes, line: bytes) -> None:
    if verb in _HTTP_VERBS and _HTTP.match(line):
        st.close_with(R.HTTP_REFUSED)
        return None
    if verb in _NOT_IMPLEMENTED and verb not in st.cfg.disabled:
        st.refuse_unrecognized(R.NOT_IMPLEMENTED)
    else:
        st.refuse_unrecognized(R.UNRECOGNIZED)
    return None
