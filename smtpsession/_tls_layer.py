"""
TLS inside the SMTP protocol: one pyOpenSSL connection over memory BIOs,
driven by L{smtpsession.protocol.SMTPServerProtocol} itself.

Why not C{transport.startTLS} (Twisted's C{TLSMemoryBIOProtocol})?  It puts
a second protocol and a second transport between the socket and us, holds
every write back for a reactor turn to merge records, then waits one more
turn (and two epoll updates) before the socket sees the ciphertext, and
ends every read with a failed C{recv}.  Measured under the benchmark's
C{tls50} workload that machinery cost more than the SMTP session itself
(about 0.3 ms of CPU per message).  The protocol already writes each batch
of replies once, so here a batch becomes its TLS records and reaches the
socket in the same call, and one read decrypts everything that arrived.

The contexts (certificates, SNI, versions, client certificates) are still
built by L{smtpsession.tls}; this module only moves bytes.  C{ssl:}/C{tls:}
endpoints, where the transport is TLS before we see it, keep Twisted's layer.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

__all__ = ["TLSLayer", "new_connection"]

#: The largest plaintext of one TLS record: C{recv} returns at most one.
_RECORD = 16384
#: What one C{bio_read} asks for: a batch of replies or a handshake flight.
_OUT = 65536


def new_connection(creator: Any, protocol: Any) -> SSL.Connection | None:
    """
    A server-side OpenSSL connection from what C{transport.startTLS} would
    accept (a connection creator or a context factory), or C{None} when
    C{creator} is neither, so that the caller falls back to C{startTLS}.
    """
    if IOpenSSLServerConnectionCreator.providedBy(creator):
        connection = creator.serverConnectionForTLS(protocol)
    elif callable(getattr(creator, "getContext", None)):
        connection = SSL.Connection(creator.getContext(), None)
    else:
        return None
    return connection if isinstance(connection, SSL.Connection) else None


class TLSLayer:
    """
    The server end of one TLS connection.

    L{receive} takes ciphertext and gives plaintext, L{send} the reverse;
    L{output} is what OpenSSL wants sent on its own (handshake flights,
    alerts).  Errors are pyOpenSSL's C{SSL.Error}: the caller ends the
    connection.
    """

    __slots__ = ("connection", "established", "failed", "peer_closed")

    def __init__(self, connection: SSL.Connection) -> None:
        connection.set_accept_state()
        self.connection = connection
        #: The handshake is complete.
        self.established = False
        #: The client sent close_notify: it will send nothing more.
        self.peer_closed = False
        #: The connection is broken (the protocol marks it): send nothing.
        self.failed = False

    def receive(self, data: bytes) -> bytes:
        """
        Decrypt C{data} (any amount: partial records wait for the rest).
        Returns the plaintext, C{b""} while the handshake runs; when this
        call completes the handshake, L{established} turns true and
        L{output} holds the server's last flight.
        """
        conn = self.connection
        conn.bio_write(data)
        if not self.established:
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                return b""
            self.established = True
        recv = conn.recv
        try:
            first = recv(_RECORD)
        except SSL.WantReadError:
            return b""
        except SSL.ZeroReturnError:
            self.peer_closed = True
            return b""
        # Usually one record per read; a body streaming in brings many.
        chunks = [first]
        while True:
            try:
                chunks.append(recv(_RECORD))
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self.peer_closed = True
                break
        return first if len(chunks) == 1 else b"".join(chunks)

    def send(self, data: bytes) -> bytes:
        """Encrypt C{data}; returns the records to write to the socket."""
        if self.failed:
            return b""
        conn = self.connection
        sent = conn.send(data)
        while sent < len(data):
            # pyOpenSSL enables partial writes: one record at a time.
            data = data[sent:]
            sent = conn.send(data)
        return self.output()

    def output(self) -> bytes:
        """Whatever OpenSSL has written and the socket has not had yet."""
        read = self.connection.bio_read
        try:
            chunk = read(_OUT)
        except SSL.WantReadError:
            return b""
        if len(chunk) < _OUT:
            return chunk
        chunks = [chunk]
        while len(chunk) == _OUT:
            try:
                chunk = read(_OUT)
            except SSL.WantReadError:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> bytes:
        """Our close_notify (if the connection is still usable), to send."""
        try:
            self.connection.shutdown()
        except SSL.Error:
            pass
        return self.output()
