# -*- test-case-name: tests.unit.test_connection -*-
"""
The greeting and the three hellos: the 220 banner, HELO, EHLO and LHLO,
and the capabilities EHLO/LHLO advertise.

A hello (re)starts the session's protocol state: it forgets the envelope,
records the client's name and turns enhanced status codes on (EHLO/LHLO,
RFC 2034 §3) or off (HELO).  With C{on_helo}, all of that waits for the
hook's answer; a refusal changes nothing.
"""

from __future__ import annotations

import re
from sys import intern
from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.events import DataAborted, Helo
from smtpsession._core.replies import format_reply
from smtpsession._core.state import HELO_ANSWER, SessionState
from smtpsession.errors import SMTPError

__all__ = [
    "banner",
    "capabilities",
    "ehlo",
    "helo",
    "hello_answered",
    "lhlo",
    "XCLIENT_KEYS",
    "XFORWARD_KEYS",
]

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")

#: The attributes XCLIENT and XFORWARD take (and EHLO advertises).
XCLIENT_KEYS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "LOGIN")
XFORWARD_KEYS = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")


def banner(st: SessionState) -> bytes:
    """The 220 line: at connect, and again after XCLIENT."""
    cfg = st.cfg
    proto = "LMTP" if cfg.lmtp else "ESMTP"
    text = cfg.options.banner
    return format_reply(220, f"{cfg.name} {proto}" + (f" {text}" if text else ""))


def _hello_argument(st: SessionState, arg: bytes, syntax: R.Pair) -> str | None:
    """The client's name, lower-cased and interned; None (after replying) if bad."""
    text = arg.strip(b" ")
    if not text or b" " in text or b"\t" in text:
        st.error(syntax)
        return None
    try:
        name = text.decode("utf-8")
    except UnicodeDecodeError:
        st.error(R.BAD_HOSTNAME)
        return None
    if len(name) > 300 or _CONTROLS.search(name):
        st.error(R.BAD_HOSTNAME)
        return None
    # Interned: idle clients that all say the same name share one string.
    return intern(name.lower())


def _helo_text(st: SessionState) -> str:
    """The first line of the hello reply, from C{helo_response}."""
    name = st.cfg.name
    template = st.cfg.options.helo_response
    hostname = st.session.client_hostname or f"[{st.session.remote_address}]"
    if "{" in template:
        try:
            return template.format(name=name, client_hostname=hostname)
        except (KeyError, IndexError, ValueError):
            return f"{name} Nice to meet you, {hostname}"
    if "%s" in template:
        parts = template.split("%s")
        values = [name, hostname]
        out = parts[0]
        for i, p in enumerate(parts[1:]):
            out += (values[i] if i < 2 else "") + p
        return out
    return template


def _greeted(st: SessionState, command: str, name: str) -> DataAborted | None:
    """
    Record the hello and reset the transaction, as RSET does (RFC 5321
    §4.1.4): a body in progress (between BDAT chunks) is aborted, and the
    event tells the driver so.
    """
    s = st.session
    s.opening_command = command
    s.host_name_appears_as = name
    ev = st.abort_body(command)
    st.reset_transaction()
    st.update_transmission_type()
    return ev


def helo(st: SessionState, arg: bytes) -> Any:
    name = _hello_argument(st, arg, R.HELO_SYNTAX)
    if name is None:
        return None
    if st.cfg.helo_hook:
        return _ask_hello(st, "HELO", name)
    return _hello_accepted(st, "HELO", name)


def ehlo(st: SessionState, arg: bytes) -> Any:
    return _extended_hello(st, arg, "EHLO", R.EHLO_SYNTAX)


def lhlo(st: SessionState, arg: bytes) -> Any:
    return _extended_hello(st, arg, "LHLO", R.LHLO_SYNTAX)


def _extended_hello(st: SessionState, arg: bytes, verb: str, syntax: R.Pair) -> Any:
    """EHLO or LHLO: the capabilities, and enhanced status codes from now on."""
    name = _hello_argument(st, arg, syntax)
    if name is None:
        return None
    if st.cfg.helo_hook:
        return _ask_hello(st, verb, name)
    return _hello_accepted(st, verb, name)


def _hello_accepted(st: SessionState, verb: str, name: str) -> DataAborted | None:
    """The hello takes effect: the session (re)starts and the 250 is queued."""
    ev = _greeted(st, verb, name)
    if verb == "HELO":
        st.esc = 0
        st.out.append(format_reply(250, _helo_text(st)))
    else:
        st.esc = 0 if st.cfg.options.hide_enhancedstatuscodes else 1
        st.out.append(_ehlo_reply(st))
    return ev


def _ask_hello(st: SessionState, verb: str, name: str) -> Helo:
    """
    Wait for C{on_helo}.  Nothing of the hello happens before its answer:
    a refusal must leave the session as it was (RFC 5321 §4.1.4).
    """
    st.pending_hello = (verb, name)
    st.pause_for(HELO_ANSWER)
    return Helo(name)


def hello_answered(st: SessionState, error: SMTPError | None) -> None:
    """C{on_helo}'s verdict on the pending hello: C{None} accepts."""
    st.expect(HELO_ANSWER)  # raises if no hello is pending
    pending = st.pending_hello
    st.pending_hello = None
    assert pending is not None
    if error is not None:
        # The state stays what it was before the command (§4.1.4): no
        # greeting if there was none, the earlier one if there was.
        st.app_error(error, 550, "HELO")
    else:
        ev = _hello_accepted(st, pending[0], pending[1])
        if ev is not None:
            st.queued = [ev]  # next_event hands the driver the aborted body
    st.after_answer()


def helo_in_lmtp(st: SessionState, arg: bytes) -> None:
    """HELO to an LMTP server (RFC 2033 §4.1: LHLO only)."""
    st.error(R.HELO_IN_LMTP)
    return None


def ehlo_in_lmtp(st: SessionState, arg: bytes) -> None:
    """EHLO to an LMTP server (RFC 2033 §4.1: LHLO only)."""
    st.error(R.EHLO_IN_LMTP)
    return None


def capabilities(st: SessionState) -> list[str]:
    """The EHLO keywords this session would advertise now."""
    cfg = st.cfg
    o = cfg.options
    s = st.session
    caps = []
    if not o.hide_pipelining:
        caps.append("PIPELINING")
    if not o.hide_8bitmime:
        caps.append("8BITMIME")
    if not o.hide_smtputf8:
        caps.append("SMTPUTF8")
    if not o.hide_enhancedstatuscodes:
        caps.append("ENHANCEDSTATUSCODES")
    if not o.hide_dsn:
        caps.append("DSN")
    if cfg.auth_enabled and s.user is None and (s.secure or o.allow_insecure_auth):
        caps.append("AUTH " + " ".join(o.auth_methods))
    if (
        cfg.tls_available
        and not s.secure
        and not o.hide_starttls
        and b"STARTTLS" not in cfg.disabled
    ):
        caps.append("STARTTLS")
    if s.secure and not o.hide_requiretls:
        caps.append("REQUIRETLS")
    if cfg.size_limit:
        caps.append("SIZE" if o.hide_size else f"SIZE {cfg.size_limit}")
    if cfg.chunking:
        caps.append("CHUNKING")
        if not o.hide_8bitmime:
            caps.append("BINARYMIME")
    if not o.hide_limits and (cfg.max_rcpt or cfg.max_transactions):
        # RFC 9422: the limits this session will enforce, those that are set.
        limits = "LIMITS"
        if cfg.max_rcpt:
            limits += f" RCPTMAX={cfg.max_rcpt}"
        if cfg.max_transactions:
            limits += f" MAILMAX={cfg.max_transactions}"
        caps.append(limits)
    # The extensions of options.enable (off by default).
    if cfg.deliverby:
        caps.append("DELIVERBY")  # no min-by-time (RFC 2852 §4)
    if cfg.mt_priority:
        caps.append("MT-PRIORITY")  # no priority assignment policy named (RFC 6710 §3)
    if cfg.rrvs:
        caps.append("RRVS")
    if not st.xclient_addr_used:
        if st.xclient_trusted and b"XCLIENT" not in cfg.disabled:
            caps.append("XCLIENT " + " ".join(XCLIENT_KEYS))
        if st.xforward_trusted and b"XFORWARD" not in cfg.disabled:
            caps.append("XFORWARD " + " ".join(XFORWARD_KEYS))
    return caps


def _ehlo_reply(st: SessionState) -> bytes:
    lines = [_helo_text(st)]
    lines.extend(capabilities(st))
    out = [b"250-" + line.encode("utf-8") for line in lines[:-1]]
    out.append(b"250 " + lines[-1].encode("utf-8"))
    return b"\r\n".join(out) + b"\r\n"
