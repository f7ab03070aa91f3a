# -*- test-case-name: tests.integration.test_handlers -*-
"""
L{LogHandler}: show each message's envelope and headers, accept it, keep
nothing (for development: point an application at it and watch what it
sends).
"""

from __future__ import annotations

import re
import sys
from typing import IO, Any

from twisted.logger import Logger

from smtpsession.handler import Handler

__all__ = ["LogHandler"]

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_END_OF_HEADERS = re.compile(rb"\r?\n\r?\n")


class LogHandler(Handler):
    """
    Accept every message and print its envelope and header section.

    @param output: where to print: a file object, a path (appended to), or
        C{"-"} for standard output.  By default each message is one
        C{twisted.logger} event (which twistd shows in its log).
    @param max_header_bytes: how much of the header section to show; the
        body is read (to count it) but never kept.
    """

    log = Logger()

    def __init__(self, output: IO[str] | str | None = None, max_header_bytes: int | str = 65536) -> None:
        self._own = False
        if isinstance(output, str):
            if output == "-":
                output = sys.stdout
            else:
                output = open(output, "a", encoding="utf-8")
                self._own = True
        self.output: IO[str] | None = output
        self.max_header_bytes = int(max_header_bytes)

    async def on_data(self, stream: Any, session: Any) -> None:
        """Read the body, keep its header section, print, accept."""
        envelope = session.envelope
        head = bytearray()
        complete = False
        limit = self.max_header_bytes
        async for chunk in stream:
            if complete:
                continue
            start = max(0, len(head) - 3)
            head += chunk
            m = _END_OF_HEADERS.search(head, start)
            if m is not None:
                del head[m.start() :]
                complete = True
            if len(head) > limit:
                del head[limit:]
                complete = True
        text = self.render(session, envelope, bytes(head), stream.byte_length)
        if self.output is None:
            self.log.info("{text}", text=text, session_id=session.id)
        else:
            self.output.write(text + "\n")
            self.output.flush()

    @staticmethod
    def render(session: Any, envelope: Any, head: bytes, size: int) -> str:
        """The text shown for one message (control characters removed)."""
        sender = envelope.mail_from.address if envelope.mail_from else ""
        rcpts = ", ".join(f"<{a.address}>" for a in envelope.rcpt_to)
        lines = [
            f"[{session.id}] message from <{sender}> to {rcpts} "
            f"({size} bytes, {session.transmission_type} from "
            f"{session.client_hostname} {session.remote_address})"
        ]
        for line in head.decode("utf-8", "replace").splitlines():
            lines.append("    " + _CONTROL.sub("?", line))
        return "\n".join(lines)
