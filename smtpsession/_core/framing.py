# -*- test-case-name: tests.unit.test_framing -*-
"""
Message body framing: DATA's dot-terminated stream and BDAT's counted
chunks.

Bodies are handled a chunk at a time, never a line at a time: the DATA
framer scans each chunk with C{bytes.find} for the terminator, removes dot
stuffing with one C{bytes.replace}, and carries at most four bytes (a
possible partial terminator) to the next chunk.  Memory is therefore
bounded by the size of one read, whatever the line lengths, and an
over-long line is just more body: it can never flip the connection back
into command mode.

Rules (RFC 5321 §4.1.1.4, §4.5.2):

  - Only C{CRLF . CRLF} ends the body; the first CRLF belongs to the body.
    At the very start of DATA, C{. CRLF} alone ends an empty body.
  - A line that begins with a dot loses that dot (also a single leading dot
    followed by text: smtp-server keeps it, its bug list item 3).
  - A bare CR or bare LF anywhere in the body is recorded in C{bare}; the
    connection rejects such messages unless lenient line endings are on
    (SMTP smuggling, CVE-2023-51764 and relatives).  Lines are only ever
    delimited by CRLF, so a bare LF never starts a line for unstuffing or
    termination.
"""

from __future__ import annotations

__all__ = ["DataFramer", "BdatFramer"]

_TERMINATOR = b"\r\n.\r\n"

def _only_crlf(data: bytes) -> bool:
    """Whether every CR and LF in C{data} is part of a CRLF pair."""
    # Delete every CR, then put one back before every LF: the result is
    # C{data} again exactly when each CR was followed by an LF and each LF
    # preceded by a CR.  Both steps replace a single byte value, which
    # CPython does with memchr and memcpy, and the comparison is a memcmp:
    # about three times faster than counting the CRLF pairs, which needs
    # the general substring search.  (Without any CR or LF, both steps give
    # back C{data} itself.)
    return data.replace(b"\r", b"").replace(b"\n", b"\r\n") == data


#: Chunks at least this long look for CRLF "." by way of their dots (memchr)
#: first; shorter ones search for the three bytes at once.
_LONG_CHUNK = 8192
#: Dots not at a line start that a long chunk may show before the search
#: falls back to the three-byte one (text has a few per line).
_MIDLINE_DOTS = 8


def _line_dot(buf: bytes, start: int) -> int:
    """
    The index of the first CRLF "." at or after C{start}, or -1.

    CPython finds a three-byte string at well under a byte per cycle (37 us
    for 64 KiB here), but a single byte with memchr at tens of bytes per
    cycle (0.6 us).  Long chunks of generated text or base64 have their dots
    only in the headers and the terminator, so in a long chunk each dot is
    found with memchr and checked for the CRLF before it; once the chunk
    shows more dots inside lines than a few (prose), the three-byte search
    takes over for the rest.
    """
    if len(buf) - start < _LONG_CHUNK:
        return buf.find(b"\r\n.", start)
    i = buf.find(b".", start + 2)
    midline = 0
    while i >= 0:
        if buf[i - 1] == 10 and buf[i - 2] == 13:
            return i - 2
        midline += 1
        if midline == _MIDLINE_DOTS:
            return buf.find(b"\r\n.", i - 1)
        i = buf.find(b".", i + 1)
    return -1


class DataFramer:
    """
    Frame one DATA body.

    Call L{feed} with successive chunks of input; each call returns the
    unstuffed body bytes it could release and, once the terminator is seen,
    the index in that chunk just past it (the rest is the next command).
    """

    __slots__ = ("_carry", "_skip", "bare", "check_bare")

    def __init__(self, check_bare: bool = True) -> None:
        # The body is framed as if it were preceded by CRLF, so that a dot
        # on the first line is handled like a dot on any other line; the
        # two virtual bytes are dropped from the output.
        self._carry = b"\r\n"
        self._skip = True
        #: Whether a bare CR or LF has been seen.
        self.bare = False
        self.check_bare = check_bare

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """
        Frame a chunk of input.

        @return: C{(body, end)}: the body bytes released (possibly empty) and
            the offset in C{data} just past the terminator, or C{-1} if the
            body goes on.
        """
        carry = self._carry
        buf = carry + data if carry else data
        n = len(buf)
        # One scan finds both the terminator and the dot-stuffed lines: each
        # is a CRLF followed by a dot.  Typical bodies have neither, so the
        # common case is a single C-level find over the chunk.
        pieces: list[bytes] | None = None
        start = 0
        end = -1
        cut = n
        # Most large bodies (base64 attachments) have no dot at all: memchr
        # says so far faster than the search for CRLF "." would.
        i = _line_dot(buf, 0) if b"." in buf else -1
        while i >= 0:
            after = buf[i + 3 : i + 5]
            if after == b"\r\n":
                cut = i + 2
                end = i + 5 - len(carry)
                break
            if len(after) < 2 and (after == b"" or after == b"\r"):
                # "CRLF ." or "CRLF . CR" at the very end: wait for more.
                cut = i
                break
            if pieces is None:
                pieces = []
            pieces.append(buf[start : i + 2])  # keep the CRLF, drop the dot
            start = i + 3
            i = _line_dot(buf, start)
        else:
            # No terminator: keep back a CR or CRLF that may start one.
            if buf.endswith(b"\r\n"):
                cut = n - 2
            elif buf.endswith(b"\r"):
                cut = n - 1
        self._carry = b"" if end >= 0 or cut == n else buf[cut:]
        if self.check_bare and not self.bare:
            if not _only_crlf(buf if cut == n else buf[:cut]):
                self.bare = True
        if pieces is None:
            if self._skip:
                if cut < 2:
                    return b"", end
                self._skip = False
                return buf[2:cut], end
            if cut == n:
                return buf, end
            return buf[:cut], end
        pieces.append(buf[start:cut])
        part = b"".join(pieces)
        if self._skip:
            self._skip = False
            part = part[2:]
        return part, end


class BdatFramer:
    """
    Count the octets of one BDAT chunk (RFC 3030 §2): no terminator, no
    unstuffing.  Bare CR/LF are checked unless the body is BINARYMIME; the
    state spans chunks so a CR at the end of one chunk and an LF at the start
    of the next are one line ending.
    """

    __slots__ = ("remaining", "bare", "check_bare", "_cr")

    def __init__(self, check_bare: bool = True) -> None:
        self.remaining = 0
        self.bare = False
        self.check_bare = check_bare
        self._cr = False

    def start(self, size: int) -> None:
        """Begin a chunk of C{size} octets."""
        self.remaining = size

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """
        @return: C{(body, end)}: the chunk's bytes found in C{data} and the
            offset just past the chunk, or C{-1} if more octets are due.
        """
        n = self.remaining
        if len(data) >= n:
            part = data[:n] if len(data) > n else data
            end = n
            self.remaining = 0
        else:
            part = data
            end = -1
            self.remaining = n - len(data)
        if self.check_bare and not self.bare and part:
            self._check(part)
        return part, end

    def _check(self, part: bytes) -> None:
        if self._cr:
            if part[:1] != b"\n":
                self.bare = True
                return
            part = part[1:]
        self._cr = part.endswith(b"\r")
        if self._cr:
            part = part[:-1]
        if not _only_crlf(part):
            self.bare = True

    def finish(self) -> None:
        """The last chunk ended: a trailing CR is bare."""
        if self.check_bare and self._cr:
            self.bare = True
        self._cr = False
