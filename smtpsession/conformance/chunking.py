"""
RFC 3030, CHUNKING: BDAT chunks are counted octets, never lines, so
nothing inside one (not even CRLF.CRLF followed by a command) is read as a
command; DATA and BDAT do not mix in one transaction.  Only run where
CHUNKING is advertised.
"""

from __future__ import annotations

from smtpsession.conformance.client import Connection, Reply
from smtpsession.conformance.probe import (
    CaseFunction,
    Outcome,
    Probe,
    failed,
    message,
    passed,
)

__all__ = ["CASES", "GROUP"]

GROUP = "chunking"


def _bdat(conn: Connection, data: bytes, *, last: bool = False) -> Reply:
    """One chunk: the BDAT line and its octets in one write, then its reply."""
    conn.send(f"BDAT {len(data)}{' LAST' if last else ''}\r\n".encode() + data)
    return conn.reply()


def bdat_last(probe: Probe) -> Outcome:
    """§2: one chunk with LAST ends the message: one reply."""
    probe.require("CHUNKING")
    body = message("conformance: BDAT LAST", "Hello.")
    with probe.connect() as conn:
        probe.transaction(conn)
        reply = _bdat(conn, body, last=True)
        extra = conn.extra(probe.settle)
    if extra:
        return failed(f"more than one reply: {[str(r) for r in [reply, *extra]]}")
    if reply.kind == 2:
        return passed(str(reply))
    return failed(f"BDAT LAST answered {reply}")


def bdat_chunks(probe: Probe) -> Outcome:
    """§2: two chunks, then BDAT 0 LAST: 250 for each."""
    probe.require("CHUNKING")
    body = message("conformance: BDAT in chunks", "Hello.")
    half = len(body) // 2
    with probe.connect() as conn:
        probe.transaction(conn)
        replies = [
            _bdat(conn, body[:half]),
            _bdat(conn, body[half:]),
            _bdat(conn, b"", last=True),
        ]
    codes = [r.code for r in replies]
    if all(r.kind == 2 for r in replies):
        return passed(str(codes))
    return failed(f"chunks answered {codes}")


def bdat_is_opaque(probe: Probe) -> Outcome:
    """§2: a chunk holding CRLF.CRLF and a command is data: one reply, nothing executed."""
    probe.require("CHUNKING")
    body = message("conformance: BDAT opaque", "before") + b".\r\nRSET\r\nNOOP\r\nafter\r\n"
    with probe.connect() as conn:
        probe.transaction(conn)
        reply = _bdat(conn, body, last=True)
        extra = conn.extra(probe.settle)
    if extra:
        return failed(f"commands inside the chunk were executed: {[str(r) for r in extra]}")
    return passed(str(reply))


def data_after_bdat(probe: Probe) -> Outcome:
    """§2: DATA inside a BDAT transaction is out of sequence (503)."""
    probe.require("CHUNKING")
    with probe.connect() as conn:
        probe.transaction(conn)
        chunk = _bdat(conn, b"Hello\r\n")
        if chunk.kind != 2:
            return failed(f"a first BDAT chunk answered {chunk}")
        reply = conn.command("DATA")
    if reply.code == 503:
        return passed()
    if reply.kind in (4, 5):
        return passed(f"refused with {reply} (503 is the usual code)")
    return failed(f"DATA after BDAT answered {reply}")


CASES: list[tuple[str, CaseFunction]] = [
    ("bdat-last", bdat_last),
    ("bdat-chunks", bdat_chunks),
    ("bdat-is-opaque", bdat_is_opaque),
    ("data-after-bdat", data_after_bdat),
]
