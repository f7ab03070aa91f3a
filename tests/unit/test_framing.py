"""
DATA and BDAT body framing (C{smtpsession._core.framing}), h11-style: every
case is framed whole, one byte at a time, at every two-way split, and with
trailing bytes after the end of the body, and must give the same body, the
same bare-line-ending verdict and leave the trailing bytes untouched.
"""

from __future__ import annotations

import pytest

from smtpsession._core.framing import BdatFramer, DataFramer

TRAILING = b"NOOP\r\nQUIT\r\n"

# (wire bytes after "354", body handed to the application, bare CR/LF seen)
DATA_CASES: list[tuple[bytes, bytes, bool]] = [
    # An empty message: ".CRLF" as the very first bytes.
    (b".\r\n", b"", False),
    (b"hello\r\n.\r\n", b"hello\r\n", False),
    # The CRLF before the final dot belongs to the message.
    (b"\r\n.\r\n", b"\r\n", False),
    (b"a\r\n\r\nb\r\n.\r\n", b"a\r\n\r\nb\r\n", False),
    # Dot-unstuffing (smtp-server's A.5 table): one leading dot goes, also a
    # single dot before text (RFC 5321 §4.5.2; smtp-server keeps ".bar").
    (b"..foo\r\n.bar\r\n...baz\r\n.\r\n", b".foo\r\nbar\r\n..baz\r\n", False),
    (b"..\r\n.\r\n", b".\r\n", False),
    (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", False),
    (b"..\r\n..\r\n.\r\n", b".\r\n.\r\n", False),
    (b"a\r\n.b.c\r\n.\r\n", b"a\r\nb.c\r\n", False),
    # A dot that is not at the start of a line is data.
    (b"a.\r\nb .\r\n.\r\n", b"a.\r\nb .\r\n", False),
    # Bare LF / bare CR: recorded, never a line boundary, so neither ends the
    # body nor starts a line for unstuffing (smuggling variants).
    (b"a\nb\n.\nc\r\n.\r\n", b"a\nb\n.\nc\r\n", True),
    (b"a\n.\r\nstill data\r\n.\r\n", b"a\n.\r\nstill data\r\n", True),
    (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n", True),
    (b"a\n..x\r\n.\r\n", b"a\n..x\r\n", True),
    (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n", True),
    (b"a\r\n.\r\rb\r\n.\r\n", b"a\r\n\r\rb\r\n", True),
    (b"x\rx\r\n.\r\n", b"x\rx\r\n", True),
    (b"x\nx\r\n.\r\n", b"x\nx\r\n", True),
    (b"trailing CR\r\r\n.\r\n", b"trailing CR\r\r\n", True),
    # Long lines are just body.
    (b"y" * 70000 + b"\r\n.\r\n", b"y" * 70000 + b"\r\n", False),
    # Binary-looking but CRLF-clean content.
    (bytes(range(14, 256)) + b"\r\n.\r\n", bytes(range(14, 256)) + b"\r\n", False),
]

SPLIT_CASES = [c for c in DATA_CASES if len(c[0]) < 200]


def frame_data(chunks: list[bytes], check_bare: bool = True) -> tuple[bytes, bytes, bool]:
    """Feed the chunks; return (body, bytes after the terminator, bare)."""
    framer = DataFramer(check_bare=check_bare)
    body: list[bytes] = []
    rest: list[bytes] = []
    ended = False
    for chunk in chunks:
        if ended:
            rest.append(chunk)
            continue
        out, end = framer.feed(chunk)
        body.append(out)
        if end >= 0:
            ended = True
            rest.append(chunk[end:])
    assert ended, "the terminator was not found"
    return b"".join(body), b"".join(rest), framer.bare


@pytest.mark.parametrize(("wire", "body", "bare"), DATA_CASES)
def test_data_whole(wire: bytes, body: bytes, bare: bool) -> None:
    """Each case framed in one chunk gives the expected body and verdict."""
    assert frame_data([wire]) == (body, b"", bare)


@pytest.mark.parametrize(("wire", "body", "bare"), DATA_CASES)
def test_data_with_trailing_commands(wire: bytes, body: bytes, bare: bool) -> None:
    """Bytes after the terminator are left exactly as they were (the next commands)."""
    assert frame_data([wire + TRAILING]) == (body, TRAILING, bare)


@pytest.mark.parametrize(("wire", "body", "bare"), SPLIT_CASES)
def test_data_byte_by_byte(wire: bytes, body: bytes, bare: bool) -> None:
    """One byte per feed: terminators and dots split anywhere are still found."""
    data = wire + TRAILING
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert frame_data(chunks) == (body, TRAILING, bare)


@pytest.mark.parametrize(("wire", "body", "bare"), SPLIT_CASES)
def test_data_every_split(wire: bytes, body: bytes, bare: bool) -> None:
    """Every two-chunk split of the input frames the same way."""
    data = wire + TRAILING
    for i in range(len(data) + 1):
        assert frame_data([data[:i], data[i:]]) == (body, TRAILING, bare), i


def test_data_long_body_in_odd_chunks() -> None:
    """A large body in 7-byte pieces comes out whole; memory is one piece at a time."""
    line = b"The quick brown fox.\r\n..stuffed\r\n"
    wire = line * 3000 + b".\r\n"
    framer = DataFramer()
    out = []
    largest = 0
    for i in range(0, len(wire), 7):
        piece, end = framer.feed(wire[i : i + 7])
        largest = max(largest, len(piece))
        out.append(piece)
        if end >= 0:
            break
    assert b"".join(out) == b"The quick brown fox.\r\n.stuffed\r\n" * 3000
    assert largest <= 7 + 4
    assert not framer.bare


def test_data_without_bare_check() -> None:
    """With lenient line endings the framer never records bare CR/LF."""
    assert frame_data([b"a\nb\r\n.\r\n"], check_bare=False) == (b"a\nb\r\n", b"", False)


def test_data_unterminated_releases_body_and_keeps_only_a_prefix() -> None:
    """Without a terminator, all but a possible terminator prefix is released."""
    framer = DataFramer()
    assert framer.feed(b"abc\r\n.\r") == (b"abc", -1)
    assert framer.feed(b"x\r\n") == (b"\r\n\rx", -1)  # ".\rx" loses its dot
    assert framer.feed(b".\r\n") == (b"\r\n", 3)


@pytest.mark.parametrize(
    "near_miss",
    [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n. \r\n", b"\r\n.\r.\r\n"],
)
def test_data_near_miss_terminators_do_not_end_body(near_miss: bytes) -> None:
    """Only CRLF.CRLF ends DATA: the smuggling variants are data."""
    framer = DataFramer()
    body, end = framer.feed(b"x" + near_miss + b"MAIL FROM:<evil@example.com>\r\n")
    assert end == -1
    assert b"MAIL FROM" in body


# --------------------------------------------------------------------------
# BDAT

# (chunk sizes and their bytes, concatenated body, bare)
BDAT_CASES: list[tuple[list[bytes], bool]] = [
    ([b"hello\r\n"], False),
    ([b"hel", b"lo\r\n"], False),
    # A CRLF split across chunks is one line ending.
    ([b"a\r", b"\nb\r\n"], False),
    ([b""], False),
    ([b"a\r", b"b\r\n"], True),
    ([b"a\nb\r\n"], True),
    ([b"a\r\n", b"\n"], True),
    # Dots are never special in BDAT.
    ([b".\r\n", b"..\r\n"], False),
    ([b"\r\n.\r\n", b"after\r\n"], False),
    # A trailing CR at the end of the last chunk is bare.
    ([b"x\r"], True),
]


def frame_bdat(chunks: list[bytes], split: int | None, trailing: bytes) -> tuple[bytes, bool]:
    """Frame each chunk (followed by C{trailing}) in pieces of C{split} bytes."""
    framer = BdatFramer()
    out = []
    for chunk in chunks:
        framer.start(len(chunk))
        wire = chunk + trailing
        step = split or len(wire)
        consumed = 0
        for i in range(0, len(wire), step):
            piece = wire[i : i + step]
            body, end = framer.feed(piece)
            out.append(body)
            if end >= 0:
                consumed += end
                break
            consumed += len(piece)
        assert consumed == len(chunk)
        assert framer.remaining == 0
    framer.finish()
    return b"".join(out), framer.bare


@pytest.mark.parametrize(("chunks", "bare"), BDAT_CASES)
@pytest.mark.parametrize("split", [None, 1, 2])
def test_bdat_chunks(chunks: list[bytes], bare: bool, split: int | None) -> None:
    """BDAT chunks are counted, never unstuffed; bare CR/LF is found across chunks."""
    assert frame_bdat(chunks, split, TRAILING) == (b"".join(chunks), bare)


def test_bdat_leaves_trailing_bytes() -> None:
    """The offset returned points just past the chunk's last octet."""
    framer = BdatFramer()
    framer.start(5)
    assert framer.feed(b"12") == (b"12", -1)
    assert framer.remaining == 3
    assert framer.feed(b"345NOOP\r\n") == (b"345", 3)
    assert framer.remaining == 0


def test_bdat_binarymime_not_checked() -> None:
    """A BINARYMIME body (check_bare False) may hold any octets."""
    framer = BdatFramer(check_bare=False)
    framer.start(4)
    assert framer.feed(b"\n\r\x00\r") == (b"\n\r\x00\r", 4)
    framer.finish()
    assert not framer.bare
