"""
A server process for tests/integration/test_load_faults.py: an smtpsession
server on 127.0.0.1, alone in its process so that its resident memory and
its file descriptors can be read from /proc without the test's own.

    python load_server.py '{"socket_timeout": 600}'

The argument is a JSON object of L{SMTPServerOptions} keywords (on top of
a fixed name and no DNS).  The handler reads each body with C{async for}
and counts the messages and bytes; log events are formatted as twistd
would and written to /dev/null.  The process prints its port, then, on
each SIGUSR1, one JSON line: C{{"connections": ..., "messages": ...,
"bytes": ...}}; it serves until terminated.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.logger import globalLogBeginner, textFileLogObserver

from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions


class Counting(Handler):
    """Consume every body chunk by chunk; keep only counts."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def on_data(self, stream: Any, session: Any) -> None:
        async for chunk in stream:
            self.bytes += len(chunk)
        self.messages += 1


def main() -> None:
    # As twistd does, every event is formatted and written (here to
    # /dev/null): the log's cost is part of what is measured, and no event
    # waits in Twisted's start-up buffer.
    sink = open(os.devnull, "w")  # lives as long as the process
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sink)], redirectStandardIO=False)
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    options = SMTPServerOptions(
        **{"name": "load.test", "disable_reverse_lookup": True, **overrides}
    )
    handler = Counting()
    factory = SMTPServerFactory(handler, options, reactor=reactor)

    def stats() -> None:
        line = {
            "connections": len(factory.connections),
            "messages": handler.messages,
            "bytes": handler.bytes,
        }
        print(json.dumps(line), flush=True)

    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(stats))  # type: ignore[attr-defined]
    endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1:backlog=4096")

    def listening(port: Any) -> None:
        print(port.getHost().port, flush=True)

    # Listen (and say so) once the reactor runs: it has all its own
    # descriptors then (its waker), so a test can count the server's.
    reactor.callWhenRunning(lambda: endpoint.listen(factory).addCallback(listening))
    reactor.run()


if __name__ == "__main__":
    main()
