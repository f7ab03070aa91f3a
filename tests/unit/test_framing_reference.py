"""
DataFramer against an obviously-correct reference, on random inputs split
at random points (the framer carries state across chunks; the reference sees
the whole message at once).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpsession._core.framing import _LONG_CHUNK, DataFramer, _line_dot, _only_crlf

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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*PIECES, b"a.b", b"...", b"x" * 700]), max_size=40),
    st.integers(min_value=0, max_value=40),
    st.integers(min_value=0),
)
@example([b"\r\n."], 0, 0)
@example([b"a.b"] * 10 + [b"\r\n."], 0, 0)  # past the mid-line dots allowed
def test_line_dot_matches_the_plain_search(pieces: list[bytes], at: int, start: int) -> None:
    """The memchr-first search for CRLF "." finds what bytes.find finds, in long chunks too."""
    filler = b"z" * _LONG_CHUNK
    at %= len(pieces) + 1
    buf = b"".join(pieces[:at]) + filler + b"".join(pieces[at:])
    start %= len(buf)
    for s in (0, start, max(0, len(buf) - _LONG_CHUNK - 3)):
        assert _line_dot(buf, s) == buf.find(b"\r\n.", s)


def test_long_bodies_frame_like_the_reference() -> None:
    """A long body with prose, stuffed dots and headers, in long and short chunks."""
    prose = b"Dots. In. The. Middle. Of. Lines. Many. Of. Them.\r\n"
    wire = (
        b"Subject: a.b.c\r\nMessage-Id: <1.2.3@example.com>\r\n\r\n"
        + b"X" * 70 * 400
        + b"\r\n.stuffed line\r\n"
        + prose * 300
        + b"..two dots\r\n"
        + b"Y" * 70 * 300
        + b"\r\n.\r\nNEXT\r\n"
    )
    for size in (len(wire), 65536, 9000, 8191, 1000):
        segments = [wire[i : i + size] for i in range(0, len(wire), size)]
        assert frame(segments) == reference(wire)
