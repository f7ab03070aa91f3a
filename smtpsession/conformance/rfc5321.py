"""
RFC 5321 (and RFC 2033 for LMTP): the commands, their order and their
replies.  Each case checks one requirement a server MUST meet; where the
RFC allows several behaviours the case passes and says which one it saw.
"""

from __future__ import annotations

from smtpsession.conformance.probe import (
    CaseFunction,
    Outcome,
    Probe,
    Skip,
    failed,
    message,
    parse_extensions,
    passed,
)

__all__ = ["CASES", "GROUP"]

GROUP = "rfc5321"


def greeting(probe: Probe) -> Outcome:
    """§4.2 and §3.1: the server speaks first, with 220 (554 refuses service)."""
    with probe.connect(greet=False) as conn:
        reply = conn.reply()
    if reply.code == 220:
        return passed(str(reply))
    return failed(f"greeting {reply}; RFC 5321 §3.1 wants 220 (or 554)")


def hello(probe: Probe) -> Outcome:
    """§4.1.1.1 (RFC 2033 §4.1): EHLO (LHLO) is answered 250, keywords one a line."""
    with probe.connect() as conn:
        reply = conn.command(f"{probe.hello_verb} conformance.example")
    if reply.code != 250:
        return failed(f"{probe.hello_verb}: {reply}")
    keywords = sorted(parse_extensions(reply))
    return passed(f"{probe.hello_verb}: {', '.join(keywords) or 'no extensions'}")


def helo(probe: Probe) -> Outcome:
    """§4.1.1.1: HELO is still answered 250 (SMTP only: LMTP has LHLO alone)."""
    if probe.lmtp:
        raise Skip("LMTP has no HELO (RFC 2033 §4.1)")
    with probe.connect() as conn:
        reply = conn.command("HELO conformance.example")
    if reply.code == 250:
        return passed(str(reply))
    return failed(f"HELO: {reply}; §4.1.1.1 wants 250")


def noop_and_rset(probe: Probe) -> Outcome:
    """§4.5.1 (minimum implementation, MUST) and §4.1.1.9, §4.1.1.5: NOOP and RSET answer 250."""
    with probe.connect() as conn:
        before = conn.command("NOOP")
        probe.hello(conn)
        got = [before, conn.command("NOOP"), conn.command("RSET")]
    bad = [str(r) for r in got if r.code != 250]
    if bad:
        return failed(f"NOOP, NOOP, RSET answered {', '.join(str(r.code) for r in got)}")
    return passed()


def unknown_command(probe: Probe) -> Outcome:
    """§4.2.4: an unrecognised command is refused (500; 502 is "not implemented")."""
    with probe.connect() as conn:
        probe.hello(conn)
        reply = conn.command("XCONFORMANCE probe")
    if reply.code in (500, 502):
        return passed(str(reply))
    if reply.kind == 5:
        return passed(f"note: refused with {reply}, where §4.2.4 names 500")
    return failed(f"unknown command answered {reply}")


def case_insensitive(probe: Probe) -> Outcome:
    """§2.4: verbs (and the FROM: of MAIL) are case-insensitive."""
    with probe.connect() as conn:
        verb = probe.hello_verb
        replies = [
            conn.command(f"{verb.lower()} conformance.example"),
            conn.command("rSeT"),
            conn.command("mail from:<" + probe.target.mail_from + ">"),
            conn.command("rset"),
        ]
    codes = [r.code for r in replies]
    if codes[0] == 250 and codes[1] == 250 and replies[2].kind == 2 and codes[3] == 250:
        return passed()
    return failed(f"lower/mixed case {verb}, RSET, MAIL, RSET answered {codes}")


def mail_before_hello(probe: Probe) -> Outcome:
    """§4.1.4: MAIL before EHLO may be refused (503) or accepted; both pass."""
    with probe.connect() as conn:
        reply = conn.command(probe.mail_line())
    if reply.code == 503:
        return passed("refused with 503")
    if reply.kind == 2:
        return passed(f"accepted without a greeting ({reply.code}); allowed")
    if reply.kind in (4, 5):
        return passed(f"refused with {reply}")
    return failed(f"MAIL before {probe.hello_verb}: {reply}")


def rcpt_before_mail(probe: Probe) -> Outcome:
    """§3.3: "If RCPT appears without a previous MAIL command, the server MUST return a 503"."""
    with probe.connect() as conn:
        probe.hello(conn)
        reply = conn.command(probe.rcpt_line())
    if reply.code == 503:
        return passed()
    return failed(f"RCPT without MAIL answered {reply}; §3.3 requires 503")


def data_without_rcpt(probe: Probe) -> Outcome:
    """§3.3: DATA with no accepted recipient is 503 or 554, never 354."""
    with probe.connect() as conn:
        probe.hello(conn)
        mail = conn.command(probe.mail_line())
        if mail.kind != 2:
            raise Skip(f"MAIL refused: {mail}")
        reply = conn.command("DATA")
    if reply.code in (503, 554):
        return passed(str(reply))
    if reply.kind in (4, 5):
        return passed(f"refused with {reply}")
    return failed(f"DATA without a recipient answered {reply}")


def nested_mail(probe: Probe) -> Outcome:
    """
    §4.1.4: a client MUST NOT send MAIL inside a transaction.  A server
    usually refuses it (503); accepting it as a new transaction (MAIL
    clears the buffers, §4.1.1.2) breaks no requirement, and is noted.
    """
    with probe.connect() as conn:
        probe.transaction(conn)
        reply = conn.command(probe.mail_line())
    if reply.code == 503:
        return passed()
    if reply.kind in (4, 5):
        return passed(f"refused with {reply} (503 is the usual code)")
    if reply.kind == 2:
        return passed(f"note: a second MAIL inside a transaction was accepted ({reply})")
    return failed(f"a second MAIL inside a transaction answered {reply}")


def one_reply_per_command(probe: Probe) -> Outcome:
    """§4.2: exactly one reply per command (no stray lines after a reply)."""
    with probe.connect() as conn:
        stray = conn.extra(probe.settle / 2)
        for line in (f"{probe.hello_verb} conformance.example", "NOOP", "RSET", "HELP"):
            conn.command(line)
            stray += conn.extra(probe.settle / 2)
    if stray:
        return failed(f"replies nobody asked for: {[str(r) for r in stray]}")
    return passed()


def quit_closes(probe: Probe) -> Outcome:
    """§4.1.1.10: QUIT is answered 221, then the server closes the connection."""
    with probe.connect() as conn:
        probe.hello(conn)
        reply = conn.command("QUIT")
        if reply.code != 221:
            return failed(f"QUIT answered {reply}; §4.1.1.10 wants 221")
        if not conn.closed_within(probe.target.timeout):
            return failed("221, but the connection stayed open")
    return passed()


def message_accepted(probe: Probe) -> Outcome:
    """§4.1.1.4: a plain message ending in CRLF.CRLF is taken (the base of the smuggling cases)."""
    with probe.connect() as conn:
        probe.transaction(conn)
        probe.start_data(conn)
        conn.send(message("conformance: a plain message", "Hello.", "..stuffed dot") + b".\r\n")
        reply = conn.reply()
        extra = conn.extra(probe.settle)
    if extra:
        return failed(f"{len(extra) + 1} replies to one message: {[str(r) for r in extra]}")
    if reply.kind == 2:
        return passed(str(reply))
    raise Skip(f"the message was refused: {reply}")


def bare_lf_command(probe: Probe) -> Outcome:
    """
    §2.3.8: lines end in CRLF.  A command ending in a bare LF should not
    be executed; many servers do execute it, which is noted, not failed.
    """
    with probe.connect() as conn:
        probe.hello(conn)
        conn.send(b"NOOP\n")
        got = conn.extra(probe.settle)
    if not got:
        return passed("waits for CRLF")
    if got[0].kind == 2:
        return passed(f"note: a command ending in a bare LF was executed ({got[0]})")
    return passed(f"refused: {got[0]}")


def _lmtp_two_recipients(probe: Probe, second: str, subject: str) -> Outcome:
    """RCPT to C{rcpt_to} and to C{second}, one message: two replies, no more."""
    if not probe.lmtp:
        raise Skip("SMTP: one reply per message")
    with probe.connect() as conn:
        probe.transaction(conn)
        reply = conn.command(probe.rcpt_line(second))
        if reply.kind != 2:
            raise Skip(f"RCPT TO:<{second}> refused: {reply}")
        probe.start_data(conn)
        conn.send(message(subject, "Hello.") + b".\r\n")
        replies = [conn.reply(), *conn.extra(probe.settle)]
    codes = ", ".join(str(r.code) for r in replies)
    if len(replies) != 2:
        return failed(f"{len(replies)} replies ({codes}) for two accepted RCPT commands")
    return passed(codes)


def lmtp_reply_per_recipient(probe: Probe) -> Outcome:
    """RFC 2033 §4.2: after the message, one reply per accepted recipient, in order."""
    return _lmtp_two_recipients(probe, "Postmaster", "conformance: LMTP, two recipients")


def lmtp_duplicate_recipient(probe: Probe) -> Outcome:
    """
    RFC 2033 §4.2: "Even if there were multiple successful RCPT commands
    giving the same forward-path, there must be one reply for each".
    """
    return _lmtp_two_recipients(
        probe, probe.target.rcpt_to, "conformance: LMTP, one recipient twice"
    )


CASES: list[tuple[str, CaseFunction]] = [
    ("greeting", greeting),
    ("hello", hello),
    ("helo", helo),
    ("noop-rset", noop_and_rset),
    ("unknown-command", unknown_command),
    ("case-insensitive", case_insensitive),
    ("mail-before-hello", mail_before_hello),
    ("rcpt-before-mail", rcpt_before_mail),
    ("data-without-rcpt", data_without_rcpt),
    ("nested-mail", nested_mail),
    ("one-reply-per-command", one_reply_per_command),
    ("quit", quit_closes),
    ("message", message_accepted),
    ("bare-lf-command", bare_lf_command),
    ("lmtp-reply-per-recipient", lmtp_reply_per_recipient),
    ("lmtp-duplicate-recipient", lmtp_duplicate_recipient),
]
