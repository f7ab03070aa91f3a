"""
Fuzz the DATA body framer (L{DataFramer}): dot-stuffing, the CRLF.CRLF
terminator, bare CR/LF detection, across any cut of the input.

    python fuzz/fuzz_data_framer.py [libFuzzer flags] [corpus dirs]

Input: byte 0 chooses the cuts (0: byte by byte), byte 1 the mode (bit 0:
no bare CR/LF check, as with lenient line endings; bit 1: repeat the
bytes to past 8 KiB, where the framer looks for dots differently), then
the bytes that follow a DATA command.  For each input:

  - fed whole and fed in pieces, the framer releases the same body,
    finds the terminator at the same place and says the same about bare
    CR/LF;
  - when the input holds a terminator, all three agree with RFC 5321 read
    literally on the whole input (only CRLF.CRLF ends the body, CRLF is
    implied before the first line, a leading dot of a line is removed);
  - when it does not, what was released is the start of the body that a
    terminator would end, and at most four bytes (a possible start of the
    terminator) are held back.
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import random

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core.framing import _LONG_CHUNK, DataFramer

TERMINATOR = b"\r\n.\r\n"
NO_BARE_CHECK, LONG = 1, 2


def reference(wire: bytes) -> tuple[bytes, int, bool] | None:
    """
    RFC 5321 §4.1.1.4 and §4.5.2 on the whole input: the body, the offset
    just past the terminator, whether the body has a bare CR or LF; None
    without a terminator.
    """
    w = b"\r\n" + wire  # DATA starts at a line start
    i = w.find(TERMINATOR)
    if i < 0:
        return None
    body = w[: i + 2].replace(b"\r\n.", b"\r\n")[2:]
    crlf = body.count(b"\r\n")
    bare = crlf != body.count(b"\n") or crlf != body.count(b"\r")
    return body, i + 5 - 2, bare


def frame(segments: list[bytes], check_bare: bool) -> tuple[bytes, int, bool, int]:
    """Feed C{segments} until the end: body, end offset in the whole input, bare, held back."""
    framer = DataFramer(check_bare=check_bare)
    out = []
    offset = 0
    for seg in segments:
        body, end = framer.feed(seg)
        assert isinstance(body, bytes), body
        assert -1 <= end <= len(seg), (end, len(seg))
        out.append(body)
        if end >= 0:
            return b"".join(out), offset + end, framer.bare, 0
        # Rule 4 of the theory of operation: a body costs at most a few
        # bytes beyond the segment being framed.
        assert len(framer._carry) <= 4, framer._carry
        offset += len(seg)
    return b"".join(out), -1, framer.bare, len(framer._carry)


def pieces(data: bytes, key: int) -> list[bytes]:
    if key == 0 and len(data) <= 1024:
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(key)
    n = min(len(data) - 1, key % 32) if len(data) > 1 else 0
    cuts = sorted(rng.sample(range(1, len(data)), n)) if n > 0 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    key, mode, wire = data[0], data[1], data[2:]
    if mode & LONG and wire:
        wire = wire * (_LONG_CHUNK // len(wire) + 1)
    check_bare = not mode & NO_BARE_CHECK
    whole = frame([wire], check_bare)
    split = frame(pieces(wire, key), check_bare)
    assert whole[:3] == split[:3], f"whole {whole[:3]!r}, in pieces {split[:3]!r}"
    body, end, bare, _ = whole
    if not check_bare:
        assert not bare
    ref = reference(wire)
    if ref is not None:
        ref_body, ref_end, ref_bare = ref
        assert end == ref_end, (end, ref_end)
        assert body == ref_body, (body, ref_body)
        if check_bare:
            assert bare == ref_bare, (bare, ref_bare)
        return
    assert end == -1
    # Not ended: the body so far starts the body that a terminator would end.
    ended = reference(wire + TERMINATOR)
    assert ended is not None
    assert ended[0].startswith(body), (body, ended[0])
    assert split[3] == whole[3], "held back differently"


def seeds() -> list[bytes]:
    bodies = [
        b"Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        b".\r\n",
        b"..leading dot\r\n.\r\n",
        b"a\r\n..\r\n...\r\n.\r\n",
        b"bare\nLF\r\n.\r\n",
        b"bare\rCR\r\n.\r\n",
        b"a\r.\n.\r\n.\r\n",
        b"no terminator\r\n.",
        b"no terminator\r\n.\r",
        b"x.y.z " * 20 + b"\r\n.\r\n",
    ]
    out = []
    for i, body in enumerate(bodies):
        out.append(bytes([i + 1, 0]) + body)
        out.append(bytes([0, NO_BARE_CHECK]) + body)
        out.append(bytes([i + 3, LONG]) + body)
    return out


DICTIONARY = [b"\r\n", b"\r\n.", b"\r\n..", b"\r\n.\r\n", b".\r\n", b"\r\r\n", b"\n.", b"\r."]


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
