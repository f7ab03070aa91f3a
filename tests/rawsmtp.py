"""
A blocking SMTP client that can stop anywhere: half a body, no QUIT.

smtplib always completes what it starts; the daemon, Maildir and shutdown
tests need clients that are caught in the middle of a transaction.  Every
read has a timeout (a bound, never an assertion).
"""

from __future__ import annotations

import socket
import ssl

__all__ = ["RawClient", "connect_refused"]


class RawClient:
    """One SMTP connection driven line by line."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        read_greeting: bool = True,
        source: str | None = None,
    ) -> None:
        """C{source}: the local address to connect from (e.g. 127.0.0.2)."""
        self.sock: socket.socket = socket.create_connection(
            (host, port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self._buf = b""
        self.greeting = self.reply() if read_greeting else None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> tuple[int, str]:
        """Read one (possibly multi-line) reply: (code, text)."""
        lines = []
        while True:
            line = self._line()
            lines.append(line[4:])
            if line[3:4] != "-":
                return int(line[:3]), "\n".join(lines)

    def command(self, line: str) -> tuple[int, str]:
        self.send(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def start_message(self, sender: str, recipients: list[str]) -> None:
        """EHLO, MAIL, RCPT..., DATA; raises if any is refused."""
        for line, want in [("EHLO raw.client.test", 250), (f"MAIL FROM:<{sender}>", 250)]:
            code, text = self.command(line)
            if code != want:
                raise AssertionError(f"{line}: {code} {text}")
        for rcpt in recipients:
            code, text = self.command(f"RCPT TO:<{rcpt}>")
            if code != 250:
                raise AssertionError(f"RCPT {rcpt}: {code} {text}")
        code, text = self.command("DATA")
        if code != 354:
            raise AssertionError(f"DATA: {code} {text}")

    def closed(self) -> bool:
        """Whether the server closed the connection (reads EOF or a reset)."""
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> str:
        while b"\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; unread: {self._buf!r}")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")


def connect_refused(host: str, port: int) -> bool:
    """Whether a new connection is refused (nobody listens)."""
    try:
        with socket.create_connection((host, port), timeout=5):
            return False
    except ConnectionRefusedError:
        return True
