"""
A raw SMTP line client for the checker: it sends exactly the bytes a case
asks for (bare LFs, several commands in one write, plaintext after
STARTTLS) and reads replies as they come, which no ordinary client allows.

Every read is bounded twice: by the read timeout, and by the deadline of the
case the connection belongs to, so that a server that never answers costs a
case its time budget and nothing more.  Blocking sockets and the standard
library only: the checker is a client tool, independent of Twisted.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass

__all__ = [
    "CaseTimeout",
    "Connection",
    "ConnectionClosed",
    "MalformedReply",
    "Reply",
    "unverified_context",
]

#: Reply lines longer than this are a server bug, not something to buffer.
_MAX_REPLY_LINE = 65536


class CaseTimeout(TimeoutError):
    """A read (or a send) did not complete within its bound."""


class ConnectionClosed(ConnectionError):
    """The server closed the connection (end of file, or a reset)."""


class MalformedReply(ValueError):
    """A reply line that is not C{3DIGIT [SP / "-"] text} (RFC 5321 §4.2)."""


@dataclass(frozen=True)
class Reply:
    """One (possibly multi-line) reply: its code and the text of each line."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The lines joined with C{" | "}, for reports."""
        return " | ".join(self.lines)

    @property
    def kind(self) -> int:
        """The first digit: 2 success, 3 intermediate, 4 and 5 failures."""
        return self.code // 100

    def __str__(self) -> str:
        first = self.lines[0] if self.lines else ""
        more = f" (+{len(self.lines) - 1} lines)" if len(self.lines) > 1 else ""
        return f"{self.code} {first}".rstrip() + more


def unverified_context() -> ssl.SSLContext:
    """
    A client context that accepts any certificate: the checker tests the
    protocol around TLS, not the server's certificate (test servers have
    self-signed ones).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connection:
    """
    One connection to the server under test.  C{deadline} (a
    C{time.monotonic()} value) bounds everything done on it.
    """

    def __init__(self, host: str, port: int, *, timeout: float, deadline: float) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.sock: socket.socket = socket.create_connection(
            (host, port), timeout=self._bound(timeout)
        )
        self.buffer = b""
        self.eof = False

    # -- bounds ----------------------------------------------------------

    def _bound(self, wait: float) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CaseTimeout("the case's time budget is spent")
        return max(0.001, min(wait, left))

    # -- sending ---------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send C{data} as it is; raises L{ConnectionClosed} if the server went away."""
        self.sock.settimeout(self._bound(self.timeout))
        try:
            self.sock.sendall(data)
        except TimeoutError as e:
            raise CaseTimeout("the server stopped reading") from e
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError) as e:
            raise ConnectionClosed(f"closed while sending: {e}") from e

    def command(self, line: str | bytes) -> Reply:
        """Send one command (CRLF added) and read its reply."""
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.send(data + b"\r\n")
        return self.reply()

    # -- receiving -------------------------------------------------------

    def _fill(self, wait: float) -> bool:
        """Read once, waiting at most C{wait}; False on timeout."""
        self.sock.settimeout(self._bound(wait))
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
            self.eof = True
            raise ConnectionClosed(f"connection reset: {e}") from e
        if not chunk:
            self.eof = True
            raise ConnectionClosed("the server closed the connection")
        self.buffer += chunk
        return True

    def _line(self, wait: float) -> str | None:
        """One reply line without its CRLF, or None if none came within C{wait}."""
        end = time.monotonic() + wait
        while b"\n" not in self.buffer:
            if len(self.buffer) > _MAX_REPLY_LINE:
                raise MalformedReply(f"a reply line over {_MAX_REPLY_LINE} octets")
            left = end - time.monotonic()
            if left <= 0 or not self._fill(left):
                return None
        raw, _, self.buffer = self.buffer.partition(b"\n")
        if not raw.endswith(b"\r"):
            raise MalformedReply(f"reply line ends in a bare LF: {raw[:80]!r}")
        return raw[:-1].decode("utf-8", "replace")

    def reply(self, wait: float | None = None) -> Reply:
        """
        Read one reply, checking its form: three digits, then a space (last
        line) or a hyphen (more lines follow), the same code on every line.

        @raise CaseTimeout: if it does not come within C{wait} (default: the
            read timeout).
        """
        wait = self.timeout if wait is None else wait
        code: int | None = None
        lines: list[str] = []
        while True:
            line = self._line(wait)
            if line is None:
                got = f"; got so far {lines!r}" if lines else ""
                raise CaseTimeout(f"no reply within {wait:g} s{got}")
            head, sep = line[:3], line[3:4]
            if not (head.isdigit() and head[0] in "2345" and sep in ("", " ", "-")):
                raise MalformedReply(f"not a reply line: {line[:80]!r}")
            if code is not None and int(head) != code:
                raise MalformedReply(f"code changes inside a multi-line reply: {line[:80]!r}")
            code = int(head)
            lines.append(line[4:])
            if sep != "-":
                return Reply(code, tuple(lines))

    def replies(self, count: int) -> list[Reply]:
        """Read C{count} replies, each within the read timeout."""
        return [self.reply() for _ in range(count)]

    def extra(self, settle: float) -> list[Reply]:
        """
        Whatever further replies arrive without being asked for, until the
        line has been quiet for C{settle} seconds (or the server closed it).
        """
        found: list[Reply] = []
        while True:
            try:
                if not self.buffer and not self._fill(settle):
                    return found
                found.append(self.reply(settle))
            except (ConnectionClosed, CaseTimeout):
                return found

    def unread(self, settle: float) -> bytes:
        """The octets received but not read as replies, after waiting C{settle}."""
        try:
            self._fill(settle)
        except ConnectionClosed:
            pass
        return self.buffer

    def closed_within(self, wait: float) -> bool:
        """Whether the server closes the connection within C{wait} seconds."""
        if self.eof:
            return True
        end = time.monotonic() + wait
        try:
            while time.monotonic() < end:
                self._fill(end - time.monotonic())
        except ConnectionClosed:
            return True
        except CaseTimeout:
            return False
        return False

    # -- TLS -------------------------------------------------------------

    def start_tls(self, context: ssl.SSLContext | None = None) -> None:
        """
        The TLS handshake on this connection (after a C{220} to STARTTLS).
        Octets already received in the clear stay in L{buffer}; a caller
        that cares must look at it first.
        """
        self.sock.settimeout(self._bound(self.timeout))
        try:
            self.sock = (context or unverified_context()).wrap_socket(self.sock)
        except TimeoutError as e:
            raise CaseTimeout("the TLS handshake did not complete") from e
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
            raise ConnectionClosed(f"TLS handshake failed: {e}") from e

    @property
    def is_tls(self) -> bool:
        return isinstance(self.sock, ssl.SSLSocket)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
