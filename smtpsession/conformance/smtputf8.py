"""
RFC 6531, SMTPUTF8: a server that advertises it takes UTF-8 mailboxes and
headers when the client gives the SMTPUTF8 parameter.  Without the
parameter a server may refuse such an address (553 with 5.6.7 is the
suggested refusal) or take it: the case passes and says which.  Only run
where SMTPUTF8 is advertised.
"""

from __future__ import annotations

from smtpsession.conformance.probe import (
    CaseFunction,
    Outcome,
    Probe,
    Skip,
    failed,
    message,
    passed,
)

__all__ = ["CASES", "GROUP"]

GROUP = "smtputf8"

#: A sender with a non-ASCII local part and domain: senders are what
#: servers police least, so a refusal is about the UTF-8, not the policy.
UTF8_SENDER = "jürgen@bücher.example"


def with_parameter(probe: Probe) -> Outcome:
    """§3.4: MAIL with a UTF-8 mailbox and SMTPUTF8, then a UTF-8 header: accepted."""
    probe.require("SMTPUTF8")
    with probe.connect() as conn:
        probe.hello(conn)
        mail = conn.command(f"MAIL FROM:<{UTF8_SENDER}> SMTPUTF8")
        if mail.kind != 2:
            return failed(f"MAIL with a UTF-8 mailbox and SMTPUTF8 answered {mail}")
        rcpt = conn.command(probe.rcpt_line())
        if rcpt.kind != 2:
            raise Skip(f"RCPT refused: {rcpt} (see --rcpt-to)")
        probe.start_data(conn)
        conn.send(message("conformance: Grüße, 你好", "Grüße.") + b".\r\n")
        reply = conn.reply()
    if reply.kind == 2:
        return passed()
    return failed(f"a UTF-8 message with SMTPUTF8 answered {reply}")


def without_parameter(probe: Probe) -> Outcome:
    """§3.5: MAIL with a UTF-8 mailbox but no SMTPUTF8: refusal or acceptance, noted."""
    probe.require("SMTPUTF8")
    with probe.connect() as conn:
        probe.hello(conn)
        mail = conn.command(f"MAIL FROM:<{UTF8_SENDER}>")
    if mail.kind in (4, 5):
        return passed(f"refused: {mail}")
    return passed(f"note: accepted without the SMTPUTF8 parameter ({mail})")


CASES: list[tuple[str, CaseFunction]] = [
    ("utf8-with-parameter", with_parameter),
    ("utf8-without-parameter", without_parameter),
]
