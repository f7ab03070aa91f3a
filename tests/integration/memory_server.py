"""
A server process for tests/integration/test_memory.py: an smtpsession
server on 127.0.0.1 whose handler reads each body with C{async for} and
keeps only a running count and digest.  It prints its port, then serves
until terminated.  With the argument C{hold} the handler keeps whole bodies
instead (C{stream.read()}): the test's control that the measurement works.
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint

from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions


class Counting(Handler):
    """Consume the body chunk by chunk; answer with its size and digest."""

    def __init__(self, hold: bool) -> None:
        self.hold = hold
        self.kept: list[bytes] = []

    async def on_data(self, stream: Any, session: Any) -> str:
        digest = hashlib.sha256()
        total = 0
        if self.hold:
            body = await stream.read()
            self.kept.append(body)
            digest.update(body)
            total = len(body)
        else:
            async for chunk in stream:
                digest.update(chunk)
                total += len(chunk)
        return f"received {total} bytes sha256={digest.hexdigest()}"


def main() -> None:
    # No size limit: the test sends 100 MB on purpose.
    options = SMTPServerOptions(name="mem.test", disable_reverse_lookup=True, size=0)
    handler = Counting(hold=sys.argv[1:] == ["hold"])
    factory = SMTPServerFactory(handler, options, reactor=reactor)
    endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def listening(port: Any) -> None:
        print(port.getHost().port, flush=True)

    endpoint.listen(factory).addCallback(listening)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
