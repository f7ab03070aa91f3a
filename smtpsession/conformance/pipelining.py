"""
RFC 2920, PIPELINING: commands sent in one write are answered one reply
each, in the order sent, refusals included, whatever the server has to
wait for meanwhile.  Only run where PIPELINING is advertised (a client
may pipeline nowhere else).
"""

from __future__ import annotations

from smtpsession.conformance.client import CaseTimeout, Connection, Reply
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

GROUP = "pipelining"

#: A recipient every server refuses by syntax: a refusal in the middle of a
#: group shows whether replies stay in order.
BAD_RCPT = "RCPT TO:<no address at all>"


def _collect(conn: Connection, count: int) -> tuple[list[Reply], str]:
    got: list[Reply] = []
    try:
        for _ in range(count):
            got.append(conn.reply())
    except CaseTimeout:
        return got, f"only {len(got)} of {count} replies came"
    return got, ""


def envelope_in_one_write(probe: Probe) -> Outcome:
    """MAIL, RCPT, a bad RCPT, RCPT, DATA in one write: five replies, in order."""
    probe.require("PIPELINING")
    with probe.connect() as conn:
        probe.hello(conn)
        lines = [probe.mail_line(), probe.rcpt_line(), BAD_RCPT, probe.rcpt_line(), "DATA"]
        conn.send("".join(f"{line}\r\n" for line in lines).encode())
        got, short = _collect(conn, len(lines))
        if short:
            return failed(short)
        mail, good, bad, good2, data = got
        if mail.kind != 2 or good.kind != 2:
            raise Skip(f"MAIL or RCPT refused: {mail}, {good}")
        codes = [r.code for r in got]
        if good2.kind != 2 or data.code != 354 or bad.kind == 3:
            return failed(f"replies out of order or missing: {codes}")
        conn.send(message("conformance: pipelined", "Hello.") + b".\r\n")
        end = conn.reply()
        if probe.lmtp:
            # LMTP: one reply per successful RCPT (RFC 2033 4.2), the same
            # recipient given twice included; the first came above.
            accepted = sum(1 for r in (good, bad, good2) if r.kind == 2)
            _, short = _collect(conn, accepted - 1)
            if short:
                return failed(f"LMTP: {short} after the message")
        extra = conn.extra(probe.settle)
    if extra:
        return failed(f"extra replies after the message: {[str(r) for r in extra]}")
    note = "" if bad.kind in (4, 5) else f" (note: {BAD_RCPT!r} was accepted)"
    return passed(f"{codes} then {end.code}{note}")


def after_end_of_data(probe: Probe) -> Outcome:
    """The end of data, RSET, NOOP and QUIT in one write: four replies in order, then close."""
    probe.require("PIPELINING")
    with probe.connect() as conn:
        probe.transaction(conn)
        probe.start_data(conn)
        conn.send(
            message("conformance: pipelined end", "Hello.") + b".\r\nRSET\r\nNOOP\r\nQUIT\r\n"
        )
        got, short = _collect(conn, 4)
        if short:
            return failed(short)
        codes = [r.code for r in got]
        if got[0].kind not in (2, 5) or codes[1:] != [250, 250, 221]:
            return failed(f"replies {codes}; wanted the message's, 250, 250, 221")
        if not conn.closed_within(probe.target.timeout):
            return failed("221, but the connection stayed open")
    return passed(str(codes))


def many_commands(probe: Probe) -> Outcome:
    """Fifty commands in one write (NOOP and RSET in turn): fifty 250s, no more, no fewer."""
    probe.require("PIPELINING")
    count = 50
    with probe.connect() as conn:
        probe.hello(conn)
        conn.send(b"".join(b"NOOP\r\n" if i % 2 else b"RSET\r\n" for i in range(count)))
        got, short = _collect(conn, count)
        extra = conn.extra(probe.settle)
    if short:
        return failed(short)
    if extra:
        return failed(f"{len(extra)} replies too many")
    codes = {r.code for r in got}
    if codes != {250}:
        return failed(f"codes seen: {sorted(codes)}")
    return passed()


CASES: list[tuple[str, CaseFunction]] = [
    ("envelope-in-one-write", envelope_in_one_write),
    ("after-end-of-data", after_end_of_data),
    ("many-commands", many_commands),
]
