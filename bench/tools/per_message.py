"""
smtpsession's own work per small message, without sockets or a reactor:
the dialogue smtp-source has in the w50 workload (MAIL, RCPT, DATA, a 1 KB
body, each in its own read) driven straight into the protocol, whose replies
go to a transport that discards them.

It prints microseconds per message for three cases, so that the cost can be
split into its parts (docs/benchmarks.md, "Where the time goes"):

- protocol + core + the benchmark's handler (bench_sink.Sink, async for);
- protocol + core, with a handler that has no on_data (the body is drained);
- the core alone (ServerConnection, driven by a minimal loop).

usage: python tools/per_message.py [MESSAGES]    (default 20000; best of 5)
Run it with the Python of the build to measure: the compiled one reports its
compiled core.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench_sink

from bench_sink import Sink
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions
from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import CLOSED, NEED_DATA, PAUSED, DataEnd
from smtpsession.session import Session

OPTIONS = SMTPServerOptions(disable_reverse_lookup=True, transaction_log=False)
BODY = (
    b"From: <a@example.com>\r\nTo: <b@example.com>\r\nSubject: x\r\n\r\n"
    + (b"y" * 70 + b"\r\n") * 12
    + b".\r\n"
)
READS = [b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n", BODY]


class _Discard(StringTransport):
    def write(self, data: bytes) -> None:
        pass


def _through_protocol(handler: Any) -> Callable[[], None]:
    factory = SMTPServerFactory(handler, OPTIONS)
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    proto = factory.buildProtocol(peer)
    proto.makeConnection(_Discard(IPv4Address("TCP", "127.0.0.1", 25), peer))
    proto.dataReceived(b"EHLO client.example.com\r\n")
    received = proto.dataReceived

    def message() -> None:
        for data in READS:
            received(data)

    return message


def _core_alone() -> Callable[[], None]:
    conn = ServerConnection(OPTIONS, Session(), mail_hook=False, rcpt_hook=False, data_hook=False)
    conn.greet()

    def read(data: bytes) -> None:
        conn.receive_data(data)
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA or ev is PAUSED or ev is CLOSED:
                break
            if type(ev) is DataEnd:
                conn.data_result([None])
        conn.data_to_send()

    read(b"EHLO client.example.com\r\n")

    def message() -> None:
        for data in READS:
            read(data)

    return message


def _best(message: Callable[[], None], n: int) -> float:
    for _ in range(1000):
        message()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            message()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    import smtpsession._core.connection as core

    build = "compiled core" if not core.__file__.endswith(".py") else "pure-Python core"
    print(f"smtpsession ({build}), microseconds per message, best of 5 x {n}:")
    for label, message in (
        ("protocol + core + async-for handler", _through_protocol(Sink())),
        ("protocol + core, no on_data", _through_protocol(Handler())),
        ("core alone", _core_alone()),
    ):
        print(f"  {label:38} {_best(message, n):6.2f}")


if __name__ == "__main__":
    main()
