"""
RFC 5321 §4.5.3.1 (the minimum sizes a server must accept), RFC 1870
(SIZE), and the bounds a server needs against a client that never ends
a line: an error or a closed connection, not a hang.
"""

from __future__ import annotations

from smtpsession.conformance.client import CaseTimeout, ConnectionClosed
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

GROUP = "limits"


def command_512(probe: Probe) -> Outcome:
    """§4.5.3.1.4: a command line of 512 octets (CRLF included) is accepted (NOOP [SP String])."""
    line = b"NOOP " + b"x" * (512 - len(b"NOOP \r\n"))
    with probe.connect() as conn:
        probe.hello(conn)
        short = conn.command("NOOP x")
        if short.code != 250:
            raise Skip(f"a short NOOP with an argument answered {short}: no baseline")
        reply = conn.command(line)
    if reply.code == 250:
        return passed()
    return failed(f"a 512-octet NOOP answered {reply}")


def text_line_1000(probe: Probe) -> Outcome:
    """§4.5.3.1.6: a text line of 1000 octets (CRLF included) is accepted in a message."""
    with probe.connect() as conn:
        probe.transaction(conn)
        probe.start_data(conn)
        conn.send(message("conformance: a 1000-octet line", "y" * 998) + b".\r\n")
        reply = conn.reply()
    if reply.kind == 2:
        return passed()
    return failed(f"a message with a 1000-octet line answered {reply}")


def recipients_100(probe: Probe) -> Outcome:
    """§4.5.3.1.8: at least 100 recipients per message are accepted (the same one, 100 times)."""
    with probe.connect() as conn:
        probe.transaction(conn)
        for n in range(2, 101):
            reply = conn.command(probe.rcpt_line())
            if reply.kind != 2:
                if reply.code == 452 or n > 2:
                    return failed(f"recipient {n} of 100 refused: {reply}")
                raise Skip(f"the same recipient twice is refused: {reply}")
    return passed()


def long_line(probe: Probe) -> Outcome:
    """A 100 000-octet command line: refused or the connection closed, within the timeout."""
    with probe.connect() as conn:
        probe.hello(conn)
        try:
            conn.send(b"NOOP " + b"z" * 100_000 + b"\r\n")
            reply = conn.reply()
        except ConnectionClosed:
            return passed("the connection was closed")
        except CaseTimeout:
            if conn.closed_within(probe.settle):
                return passed("the connection was closed")
            return failed("neither a reply nor a close within the timeout")
        if reply.kind in (4, 5):
            return passed(f"refused: {reply}")
        return passed(f"note: a 100 000-octet command was accepted ({reply})")


def declared_size(probe: Probe) -> Outcome:
    """RFC 1870 §6: MAIL declaring more than the advertised SIZE is refused (552)."""
    advertised = probe.require("SIZE").strip()
    if not advertised.isdigit() or int(advertised) == 0:
        raise Skip(f"SIZE without a fixed limit ({advertised or 'no value'})")
    with probe.connect() as conn:
        probe.hello(conn)
        reply = conn.command(probe.mail_line(f"SIZE={int(advertised) + 1}"))
    if reply.code == 552:
        return passed()
    if reply.kind in (4, 5):
        return passed(f"refused with {reply} (RFC 1870 names 552)")
    return failed(f"SIZE={int(advertised) + 1} over the advertised {advertised} accepted: {reply}")


CASES: list[tuple[str, CaseFunction]] = [
    ("command-512", command_512),
    ("text-line-1000", text_line_1000),
    ("recipients-100", recipients_100),
    ("long-command-line", long_line),
    ("declared-size", declared_size),
]
