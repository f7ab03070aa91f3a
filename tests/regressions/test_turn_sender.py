"""
On a plain TCP connection the replies of one reactor turn go out together,
after every socket that was ready has been read (L{protocol._TurnSender}):
a reply sent at once would mostly wake a client that is asleep, which costs
the server more than the reply.  Nothing may be lost or reordered on the way,
and the last replies must still go out before the server closes.
"""

from __future__ import annotations

import errno
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smtpsession import SMTPServerOptions
from smtpsession.testing import call_in_reactor, serve


class RecordingSocket:
    """A connection's socket that notes each recv and send in a shared log."""

    def __init__(self, sock: Any, label: str, log: list[tuple[str, str]]) -> None:
        self._sock = sock
        self.label = label
        self.log = log

    def recv(self, size: int) -> bytes:
        data = bytes(self._sock.recv(size))
        if data:
            self.log.append(("recv", self.label))
        return data

    def send(self, data: Any) -> int:
        self.log.append(("send", self.label))
        return int(self._sock.send(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _replies(sock: socket.socket, count: int = 1) -> list[bytes]:
    """The last lines of the next C{count} replies (multi-line ones read whole)."""
    data = b""
    while True:
        lines = data.split(b"\r\n")[:-1]
        final = [line for line in lines if line[3:4] == b" "]
        if len(final) >= count:
            assert len(final) == count, data
            return final
        chunk = sock.recv(4096)
        assert chunk, "connection closed"
        data += chunk


def _read_reply(sock: socket.socket) -> bytes:
    [line] = _replies(sock)
    return line


OPTIONS = SMTPServerOptions(name="mx.test", disable_reverse_lookup=True)


@contextmanager
def greeted_clients(server: Any, count: int) -> Iterator[list[socket.socket]]:
    """C{count} connections to C{server}, each past its 220."""
    clients = [socket.create_connection(server.address, timeout=10) for _ in range(count)]
    try:
        for c in clients:
            assert _read_reply(c).startswith(b"220 ")
        yield clients
    finally:
        for c in clients:
            c.close()


def test_replies_of_one_turn_follow_all_its_reads() -> None:
    with serve(options=OPTIONS) as server:
        with greeted_clients(server, 2) as clients:
            log: list[tuple[str, str]] = []

            def install() -> None:
                by_port = {c.getsockname()[1]: str(i) for i, c in enumerate(clients)}
                for proto in server.factory.connections:
                    t: Any = proto.transport
                    t.socket = RecordingSocket(t.socket, by_port[t.getPeer().port], log)

            call_in_reactor(install)
            # Hold the reactor while both commands arrive, so that one turn
            # finds both sockets ready.
            from twisted.internet import reactor

            held = threading.Event()

            def hold() -> None:
                held.set()
                time.sleep(0.3)

            reactor.callFromThread(hold)  # type: ignore[attr-defined]
            assert held.wait(10)
            for c in clients:
                c.sendall(b"NOOP\r\n")
            for c in clients:
                assert _read_reply(c).startswith(b"250 ")
            seen = list(log)  # not the 421s of the shutdown
    log = seen
    reads = [i for i, (what, _) in enumerate(log) if what == "recv"]
    sends = [i for i, (what, _) in enumerate(log) if what == "send"]
    assert len(reads) == 2 and len(sends) == 2, log
    assert max(reads) < min(sends), log


def test_many_clients_get_every_reply_in_order() -> None:
    """Pipelined commands from several clients at once: each gets its own replies, whole."""
    with serve(options=OPTIONS) as server:
        with greeted_clients(server, 8) as clients:
            for c in clients:
                c.sendall(b"EHLO c.test\r\n")
            for c in clients:
                assert _read_reply(c).startswith(b"250 ")
            for i, c in enumerate(clients):
                c.sendall(
                    f"MAIL FROM:<a{i}@example.com>\r\nRCPT TO:<b{i}@example.com>\r\n".encode()
                    + b"DATA\r\n"
                )
            for c in clients:
                assert [line[:4] for line in _replies(c, 3)] == [b"250 ", b"250 ", b"354 "]
            for i, c in enumerate(clients):
                c.sendall(f"Subject: {i}\r\n\r\nbody {i}\r\n.\r\nQUIT\r\n".encode())
            for c in clients:
                data = b""
                while True:
                    chunk = c.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                lines = data.split(b"\r\n")
                assert lines[0].startswith(b"250 ") and lines[1].startswith(b"221 "), data
    got = sorted(m.data for m in server.messages)
    assert got == sorted(f"Subject: {i}\r\n\r\nbody {i}\r\n".encode() for i in range(8))


class RefusingSocket:
    """A connection's socket that refuses, once, to send a 220 (as a full socket does)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self.refused = 0

    def send(self, data: Any) -> int:
        if bytes(data[:4]) == b"220 " and not self.refused:
            self.refused += 1
            raise BlockingIOError(errno.EAGAIN, "would block")
        return int(self._sock.send(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_starttls_through_twisteds_tls_layer(tmp_path: Path) -> None:
    """
    With a certificate source that gives no OpenSSL connection the server
    falls back to the transport's own startTLS.  STARTTLS's 220, held back
    for the end of the turn, must be handed over before that starts: after
    it, what the socket refuses would be queued behind the switch and go
    out encrypted.
    """
    from twisted.internet import ssl as twisted_ssl

    from tests.tlsutil import PKI, client_context

    pki = PKI(tmp_path)
    pem = pki.server.cert.read_bytes() + pki.server.key.read_bytes()
    creator = twisted_ssl.PrivateCertificate.loadPEM(pem).options()
    options = SMTPServerOptions(
        name="mail.example.test", disable_reverse_lookup=True, tls_context=creator
    )
    with serve(options=options) as server:
        server.factory._server.tls.layer = lambda proto: None
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.ehlo()

            def install() -> RefusingSocket:
                [proto] = server.factory.connections
                t: Any = proto.transport
                t.socket = refusing = RefusingSocket(t.socket)
                return refusing

            refusing = call_in_reactor(install)
            context = client_context(pki.ca, check_hostname=False)
            assert client.starttls(context=context)[0] == 220
            assert refusing.refused == 1
            client.ehlo()
            for i in range(3):
                body = f"Subject: {i}\r\n\r\nover Twisted's TLS\r\n".encode()
                assert client.sendmail("a@example.com", ["b@example.com"], body) == {}
            assert client.noop()[0] == 250
    assert [m.secure for m in server.messages] == [True] * 3


def test_the_sender_forgets_a_closed_connection() -> None:
    """A lone client is answered at once; once it has gone, nothing keeps it."""
    with serve(options=OPTIONS) as server:
        with greeted_clients(server, 1) as [client]:
            for _ in range(12):  # more turns alone than the sender holds for
                client.sendall(b"NOOP\r\n")
                assert _read_reply(client).startswith(b"250 ")

            def last() -> Any:
                [sender] = server.factory._server._senders.values()
                return sender._last

            assert call_in_reactor(last) is not None
            client.sendall(b"QUIT\r\n")
            assert _read_reply(client).startswith(b"221 ")
            assert client.recv(1) == b""

        def forgotten() -> Any:
            if server.factory.connections:
                return None  # not yet: ask again
            return last() is None

        for _ in range(100):
            done = call_in_reactor(forgotten)
            if done is not None:
                break
            time.sleep(0.02)
        assert done is True
