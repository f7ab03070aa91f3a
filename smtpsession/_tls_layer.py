"""
TLS inside the SMTP protocol: a TLS engine over memory BIOs, driven by
L{smtpsession.protocol.SMTPServerProtocol} itself.

Why not C{transport.startTLS} (Twisted's C{TLSMemoryBIOProtocol})?  It puts
a second protocol and a second transport between the socket and us, holds
every write back for a reactor turn to merge records, then waits one more
turn (and two epoll updates) before the socket sees the ciphertext, and
ends every read with a failed C{recv}.  Measured under the benchmark's
C{tls50} workload that machinery cost more than the SMTP session itself
(about 0.3 ms of CPU per message).  The protocol already writes each batch
of replies once, so here a batch becomes its TLS records and reaches the
socket in the same call, and one read decrypts everything that arrived.

Two engines with one interface:

  - L{StdlibLayer}, Python's C{ssl} module: what L{smtpsession.tls.ServerTLS}
    uses unless client certificates are requested or the application gave
    pyOpenSSL contexts.  Its calls are C functions, about three times
    cheaper per record than pyOpenSSL's (cffi wrappers, an exception for
    every empty read), and its BIOs say how much they hold.
  - L{OpenSSLLayer}, pyOpenSSL: for everything else (client certificates
    with a verification callback, application contexts).

The contexts (certificates, SNI, versions, client certificates) are built
by L{smtpsession.tls}; this module only moves bytes.  C{ssl:}/C{tls:}
endpoints, where the transport is TLS before we see it, keep Twisted's layer.
"""

from __future__ import annotations

import ssl
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator

__all__ = ["OpenSSLLayer", "StdlibLayer", "TLSFailure", "new_connection"]

#: The largest plaintext of one TLS record: a read returns at most one.
_RECORD = 16384
#: What one pyOpenSSL C{bio_read} asks for: a batch of replies or a flight.
_OUT = 65536


class TLSFailure(Exception):
    """The handshake failed or a record was bad; C{reason} is OpenSSL's word."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


class ServerSSLObject(ssl.SSLObject):
    """An C{ssl.SSLObject} that remembers the SNI name the client asked for."""

    #: Set by the SNI callback of L{smtpsession.tls.ServerTLS}.
    servername: str | None = None


class _Layer:
    """What both engines share: the connection's state, how a failure ends it."""

    __slots__ = ("established", "failed", "peer_closed")

    def __init__(self) -> None:
        #: The handshake is complete.
        self.established = False
        #: The client sent close_notify: it will send nothing more.
        self.peer_closed = False
        #: A failure was raised: from now on nothing is sent, not even in clear.
        self.failed = False

    def _failure(self, reason: str) -> TLSFailure:
        self.failed = True
        return TLSFailure(reason)


class StdlibLayer(_Layer):
    """
    The server end of one TLS connection, on Python's C{ssl} module.

    L{receive} takes ciphertext and gives plaintext, L{send} the reverse;
    L{output} is what OpenSSL wants sent on its own (handshake flights,
    alerts).  Failures raise L{TLSFailure}: the caller ends the connection.
    """

    __slots__ = ("_in", "_out", "handle")

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        #: The C{ssl.SSLObject} (what L{smtpsession.tls.describe} reads).
        self.handle = context.wrap_bio(self._in, self._out, server_side=True)

    def receive(self, data: bytes) -> bytes:
        """
        Decrypt C{data} (any amount: a partial record waits for the rest).
        Returns the plaintext, C{b""} while the handshake runs; when this
        call completes the handshake, L{established} turns true and
        L{output} holds the server's last flight.
        """
        incoming = self._in
        incoming.write(data)
        obj = self.handle
        chunks: list[bytes] = []
        try:
            if not self.established:
                try:
                    obj.do_handshake()
                except ssl.SSLWantReadError:
                    return b""
                self.established = True
            # The BIO says what it holds: no failed read to end the loop.
            while incoming.pending:
                chunk = obj.read(_RECORD)
                if not chunk:  # close_notify
                    self.peer_closed = True
                    break
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass  # the rest of a record is still on its way
        except ssl.SSLZeroReturnError:
            self.peer_closed = True
        except ssl.SSLError as e:
            raise self._failure(e.reason or str(e)) from None
        if len(chunks) == 1:
            return chunks[0]  # usually one record per read
        return b"".join(chunks)

    def send(self, data: bytes) -> bytes:
        """Encrypt C{data}; returns the records to write to the socket."""
        if self.failed:
            return b""
        try:
            self.handle.write(data)  # all of it: no partial writes here
        except ssl.SSLError as e:
            raise self._failure(e.reason or str(e)) from None
        return self._out.read()

    def output(self) -> bytes:
        """Whatever OpenSSL has written and the socket has not had yet."""
        out = self._out
        return out.read() if out.pending else b""

    def close(self) -> bytes:
        """Our close_notify (if the connection is still usable), to send."""
        try:
            self.handle.unwrap()
        except (ssl.SSLError, ValueError):
            pass  # SSLWantReadError: the client's close_notify is not awaited
        return self.output()


class OpenSSLLayer(_Layer):
    """The same as L{StdlibLayer}, on a pyOpenSSL connection."""

    __slots__ = ("handle",)

    def __init__(self, connection: SSL.Connection) -> None:
        super().__init__()
        connection.set_accept_state()
        #: The C{SSL.Connection} (what L{smtpsession.tls.describe} reads).
        self.handle = connection

    def receive(self, data: bytes) -> bytes:
        """See L{StdlibLayer.receive}."""
        try:
            return self._receive(data)
        except SSL.Error as e:
            raise self._failure(_openssl_reason(e)) from None

    def _receive(self, data: bytes) -> bytes:
        conn = self.handle
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
        """See L{StdlibLayer.send}."""
        if self.failed:
            return b""
        conn = self.handle
        try:
            sent = conn.send(data)
            while sent < len(data):
                # pyOpenSSL enables partial writes: one record at a time.
                data = data[sent:]
                sent = conn.send(data)
        except SSL.Error as e:
            raise self._failure(_openssl_reason(e)) from None
        return self.output()

    def output(self) -> bytes:
        """See L{StdlibLayer.output}."""
        read = self.handle.bio_read
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
        """See L{StdlibLayer.close}."""
        try:
            self.handle.shutdown()
        except SSL.Error:
            pass
        return self.output()


def _openssl_reason(error: Exception) -> str:
    """pyOpenSSL's reason for a failure, in one line (never any data)."""
    args = error.args[0] if error.args else None
    if isinstance(args, list) and args and isinstance(args[-1], tuple):
        return str(args[-1][-1])  # [(library, function, reason), ...]
    return str(error) or type(error).__name__
