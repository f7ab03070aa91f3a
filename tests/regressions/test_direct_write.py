"""
Replies go straight to the socket while Twisted's write queue is empty
(C{SMTPServerProtocol._write}).  What the socket does not take, the tail of
a short send or all of a refused one, must still reach the client through
Twisted's queue: whole, in order, and never ahead of what is queued.
"""

from __future__ import annotations

import errno
import smtplib
from typing import Any

from smtpsession import SMTPServerOptions
from smtpsession.testing import call_in_reactor, serve


class StingySocket:
    """
    The connection's socket, taking at most C{limit} bytes per send and
    refusing every C{refuse}-th send as a full socket does.
    """

    def __init__(self, sock: Any, limit: int, refuse: int) -> None:
        self._sock = sock
        self.limit = limit
        self.refuse = refuse
        self.calls = 0
        self.short = 0
        self.refused = 0

    def send(self, data: Any) -> int:
        self.calls += 1
        if self.calls % self.refuse == 0:
            self.refused += 1
            raise BlockingIOError(errno.EAGAIN, "would block")
        if len(data) > self.limit:
            self.short += 1
        return int(self._sock.send(data[: self.limit]))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_short_and_refused_sends_reach_the_client_whole() -> None:
    options = SMTPServerOptions(name="mx.test", disable_reverse_lookup=True)
    with serve(options=options) as server:
        client = smtplib.SMTP(*server.address, timeout=10)
        try:

            def install() -> StingySocket:
                [proto] = server.factory.connections
                transport: Any = proto.transport
                stingy = StingySocket(transport.socket, limit=7, refuse=3)
                transport.socket = stingy
                return stingy

            stingy = call_in_reactor(install)
            code, ehlo = client.ehlo("client.test")
            assert code == 250 and b"PIPELINING" in ehlo and b"8BITMIME" in ehlo
            body = b"Subject: stingy\r\n\r\n" + b"line of the body\r\n" * 200
            for _ in range(3):
                assert client.sendmail("a@example.com", ["b@example.com"], body) == {}
            assert client.noop()[0] == 250
            assert client.quit()[0] == 221
        finally:
            client.close()
        assert [m.data for m in server.messages] == [body] * 3
        # Both ways around the direct write were taken.
        assert stingy.short > 0
        assert stingy.refused > 0
