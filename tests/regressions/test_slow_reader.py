"""
A pipelining client that never reads its replies must not make the server
buffer without bound: once the replies back up, the server stops reading
from that client (the protocol is the transport's push producer), and picks
up where it left off when the client reads again.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from smtpsession import Handler, SMTPServerOptions
from smtpsession.protocol import SMTPServerProtocol
from smtpsession.testing import call_in_reactor, serve
from tests.protocol.harness import FakeServer

#: Stop pushing after this much even if the server never pushed back.
SEND_CAP = 64 * 1024 * 1024
#: How long the client keeps trying to push while the server does not read.
STALL = 1.0


def server_buffers(proto: SMTPServerProtocol) -> dict[str, Any]:
    """What the server holds for this client (called in the reactor thread)."""
    t: Any = proto.transport
    conn: Any = proto._conn
    return {
        "unparsed": conn.unparsed,
        "unsent": len(t.dataBuffer) - t.offset + t._tempDataLen,
        "reading_paused": bool(proto._paused),
    }


def read_exactly(sock: socket.socket, expected: int) -> bool:
    """Read C{expected} bytes of "250 OK" replies (bounded by the socket timeout)."""
    got = bytearray()
    while len(got) < expected:
        data = sock.recv(min(1 << 20, expected - len(got)))
        if not data:
            return False
        got += data
    return got == b"250 OK\r\n" * (expected // 8)


def test_client_that_never_reads_is_paused() -> None:
    """Pipelined NOOPs without reading: the server pushes back and holds < 1 MB for it."""
    options = SMTPServerOptions(name="mx.test", disable_reverse_lookup=True, socket_timeout=120)
    with serve(Handler(), options) as server:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        sock.settimeout(10)
        sock.connect(server.address)
        try:
            assert sock.recv(100).startswith(b"220")
            sock.setblocking(False)
            burst = b"NOOP\r\n" * 2000
            sent = 0
            stalled_since: float | None = None
            while sent < SEND_CAP:
                offset = sent % len(burst)  # resume a partly sent burst exactly
                try:
                    n = sock.send(burst[offset:])
                except BlockingIOError:
                    n = 0
                if n:
                    sent += n
                    stalled_since = None
                    continue
                now = time.monotonic()
                if stalled_since is None:
                    stalled_since = now
                elif now - stalled_since > STALL:
                    break
                select.select([], [sock], [], 0.05)
            # The server stopped taking input long before the cap.
            assert sent < SEND_CAP
            [state] = call_in_reactor(
                lambda: [server_buffers(p) for p in server.factory.connections]
            )
            assert state["reading_paused"]
            assert state["unparsed"] < 256 * 1024
            assert state["unsent"] < 1024 * 1024
            # Reading again lets the server finish: one reply per command sent.
            sock.settimeout(30)
            assert read_exactly(sock, (sent // 6) * len(b"250 OK\r\n"))
            partial = sent % 6
            if partial:
                sock.sendall(b"NOOP\r\n"[partial:])
                assert read_exactly(sock, len(b"250 OK\r\n"))
        finally:
            sock.close()


def test_transport_pushback_pauses_reading() -> None:
    """Protocol level: when the transport says it is full, the client is no longer read."""
    c = FakeServer().connect()
    c.proto.pauseProducing()  # what a full TCP transport does
    assert c.producer_state == "paused"
    c.proto.resumeProducing()
    assert c.producer_state == "producing"
    # Pushback and a pending hook are separate reasons: both must clear.
    c.proto.pauseProducing()
    c.proto._pause(2)
    c.proto.resumeProducing()
    assert c.producer_state == "paused"
    c.proto._resume(2)
    assert c.producer_state == "producing"
