"""
Fuzz the BDAT chunk framer (L{BdatFramer}): octet counting and the bare
CR/LF check that spans chunks.

    python fuzz/fuzz_bdat_framer.py [libFuzzer flags] [corpus dirs]

Input: byte 0 chooses how the body is cut into BDAT chunks, byte 1 how
each chunk is cut into received segments (0: byte by byte), byte 2 the
mode (bit 0: no bare check, as for BINARYMIME or lenient line endings),
then the body.  Each chunk is followed on the wire by the next command,
as it is in a session.  For each input:

  - every chunk yields exactly its own octets, in order, and the framer
    reports its end at exactly the chunk's last octet, whatever the
    segments (an empty chunk yields nothing);
  - the bare verdict is that of the whole body, chunk boundaries
    ignored: a CR ending one chunk and an LF starting the next are one
    line ending, and a CR at the very end is bare.
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import random

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core.framing import BdatFramer

NO_BARE_CHECK = 1
NEXT_COMMAND = b"BDAT 0 LAST\r\n"


def has_bare(body: bytes) -> bool:
    """Whether some CR is not followed by LF, or some LF not preceded by CR."""
    for i, b in enumerate(body):
        if b == 13 and body[i + 1 : i + 2] != b"\n":
            return True
        if b == 10 and (i == 0 or body[i - 1] != 13):
            return True
    return False


def cut(data: bytes, rng: random.Random, most: int) -> list[bytes]:
    n = min(len(data) - 1, rng.randrange(most + 1)) if len(data) > 1 else 0
    cuts = sorted(rng.sample(range(1, len(data)), n)) if n > 0 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    chunk_key, segment_key, mode, body = data[0], data[1], data[2], data[3:]
    check_bare = not mode & NO_BARE_CHECK
    rng = random.Random(chunk_key)
    chunks = cut(body, rng, 6)
    if chunk_key & 1:
        chunks.insert(rng.randrange(len(chunks) + 1), b"")  # BDAT 0
    framer = BdatFramer(check_bare=check_bare)
    seg_rng = random.Random(segment_key)
    received = []
    for chunk in chunks:
        framer.start(len(chunk))
        assert framer.remaining == len(chunk)
        wire = chunk + NEXT_COMMAND
        if segment_key == 0:
            segments = [wire[i : i + 1] for i in range(len(wire))]
        else:
            segments = cut(wire, seg_rng, 8)
        got = []
        offset = 0
        end = -1
        for seg in segments:
            if not framer.remaining:
                break  # as the session does: a complete chunk is not fed again
            part, end = framer.feed(seg)
            got.append(part)
            if end >= 0:
                offset += end
                break
            assert framer.remaining > 0
            offset += len(seg)
        if chunk:
            assert end >= 0, "chunk never ended"
        assert framer.remaining == 0
        assert offset == len(chunk), (offset, len(chunk))
        assert b"".join(got) == chunk, (got, chunk)
        received.append(b"".join(got))
    framer.finish()
    assert b"".join(received) == body
    assert framer.bare == (check_bare and has_bare(body)), (framer.bare, body)


def seeds() -> list[bytes]:
    bodies = [
        b"Subject: hi\r\n\r\nhello\r\n",
        b"line one\r\nline two\r\n",
        b"split CR\r\nLF pair\r\n",
        b"bare\nLF\r\n",
        b"bare CR at the end\r",
        b"\n",
        b"\r\r\n\n",
        b"\x00\xff binary \r\n",
    ]
    out = []
    for i, body in enumerate(bodies):
        out.append(bytes([i, i + 1, 0]) + body)
        out.append(bytes([i + 1, 0, NO_BARE_CHECK]) + body)
    return out


DICTIONARY = [b"\r\n", b"\r", b"\n", b"\r\r\n", b"\r\n\n"]


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
