"""
DataFramer against an obviously-correct reference, on random inputs split
at random points (the framer carries state across chunks; the reference sees
the whole message at once).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpsession._core.framing import DataFramer, _only_crlf

PIECES = [b"\r", b"\n", b".", b"a", b"\r\n", b"\r\n.", b"\r\n..", b"\r\n.\r\n"]


def reference(wire: bytes) -> tuple[bytes, bytes, bool]:
    """RFC 5321 §4.1.1.4/§4.5.2 read literally, on the whole input."""
    w = b"\r\n" + wire  # DATA starts at a line start
    i = w.find(b"\r\n.\r\n")
    body = w[: i + 2].replace(b"\r\n.", b"\r\n")[2:]
    crlf = body.count(b"\r\n")
    bare = crlf != body.count(b"\n") or crlf != body.count(b"\r")
    return body, w[i + 5 :], bare


def frame(segments: list[bytes]) -> tuple[bytes, bytes, bool]:
    framer = DataFramer()
    out: list[bytes] = []
    rest: bytes | None = None
    for seg in segments:
        if rest is not None:
            rest += seg
            continue
        body, end = framer.feed(seg)
        out.append(body)
        if end >= 0:
            rest = seg[end:]
    assert rest is not None, "terminator not found"
    return b"".join(out), rest, framer.bare


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=20),
    st.lists(st.integers(min_value=1, max_value=40), max_size=6),
)
# A bare CR and a bare LF with a byte between them: their CR/LF characters
# alone look like a CRLF pair.  (Found by this test.)
@example([b"\r", b".", b"\n"], [])
@example([b"a", b"\n", b"a", b"\r"], [])
def test_matches_reference(pieces: list[bytes], cuts: list[int]) -> None:
    """Body, bytes after the terminator and the bare CR/LF verdict match."""
    wire = b"".join(pieces) + b"\r\n.\r\nNEXT COMMAND\r\n"
    points = sorted({c % len(wire) for c in cuts} - {0})
    segments = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert frame(segments) == reference(wire)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12))
def test_byte_by_byte(pieces: list[bytes]) -> None:
    """Feeding one byte at a time gives the same result as the reference."""
    wire = b"".join(pieces) + b"\r\n.\r\n"
    assert frame([wire[i : i + 1] for i in range(len(wire))]) == reference(wire)


@pytest.mark.parametrize(
    "body",
    [b"\r.\n", b"a\rb\nc", b"x\n\r", b"\n\r", b"ok\r\nbad\rz\nend"],
)
def test_separated_bare_cr_and_lf_are_bare(body: bytes) -> None:
    """A bare CR and a bare LF never make a CRLF when a byte sits between them."""
    wire = body + b"\r\n.\r\n"
    assert frame([wire])[2] is True
    assert frame([wire[i : i + 1] for i in range(len(wire))])[2] is True


def only_crlf_reference(data: bytes) -> bool:
    """Byte by byte: each CR followed by an LF, each LF preceded by a CR."""
    for i, c in enumerate(data):
        if c == 13 and data[i + 1 : i + 2] != b"\n":
            return False
        if c == 10 and (i == 0 or data[i - 1] != 13):
            return False
    return True


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b"\n\r", b"\r\r\n"]), max_size=30))
@example([b"\r\r\n"])
@example([b"\n\r"])
@example([b"\r", b"a", b"\n"])
def test_bare_check_matches_reference(pieces: list[bytes]) -> None:
    """The fast bare CR/LF check agrees with the byte-by-byte definition."""
    data = b"".join(pieces)
    assert _only_crlf(data) is only_crlf_reference(data)
