# -*- test-case-name: tests.protocol.test_tls_protocol,tests.unit.test_tls_layer -*-
"""
L{TLSSession}: one connection's TLS handshake and records.  What a
server's connections share (the context) is L{smtpsession._tls_config}.

A connection gets TLS in one of three ways:

  - the endpoint is TLS already (C{ssl:}, C{tls:}): Twisted's layer is
    the transport, and the session only waits for the handshake;
  - smtpsession's own layer (L{smtpsession._tls_layer}), for STARTTLS
    and for C{secure} on a plain TCP endpoint: the protocol hands it
    ciphertext and gets plaintext back (C{receive}), and the reverse
    (C{send});
  - Twisted's C{startTLS}, when the configured context gives no OpenSSL
    connection our layer can drive.

Either way the handshake has a deadline (C{tls_handshake_timeout}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall

from smtpsession._core.connection import ServerConnection
from smtpsession._server import Server
from smtpsession._tls_config import Layer
from smtpsession._tls_layer import TLSFailure
from smtpsession._writer import ReplyWriter
from smtpsession.session import Session

__all__ = ["TLSSession", "TLSHost"]


class TLSHost(Protocol):
    """What a L{TLSSession} asks of the protocol it serves."""

    session: Session | None
    transport: Any

    @property
    def conn(self) -> ServerConnection | None: ...

    @property
    def writer(self) -> ReplyWriter | None: ...

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (ciphertext, or before TLS)."""

    def close(self) -> None:
        """Send what is queued, then close."""

    def abort(self) -> None:
        """Drop the connection now."""

    def implicit_tls_done(self) -> None:
        """Implicit TLS is up: the opening of the session goes on."""

    def run_on_secure(self, then: Callable[[], None]) -> None:
        """Call C{on_secure}, then C{then} if it agrees."""

    def process(self) -> None:
        """Parse what is buffered."""


class TLSSession:
    """
    One connection's TLS: the kind (C{"implicit"} or C{"starttls"}),
    whether the handshake is still running (and its deadline), and our own
    layer when the protocol drives one (C{layer}; C{None} when Twisted's
    layer is the transport).
    """

    __slots__ = ("kind", "handshaking", "layer", "_timer", "_host", "_server")

    def __init__(self, host: TLSHost, server: Server, kind: str, layer: Layer | None) -> None:
        self._host = host
        self._server = server
        self.kind = kind
        self.handshaking = True
        self.layer = layer
        self._timer: IDelayedCall | None = server.clock.callLater(
            server.options.tls_handshake_timeout, self._timed_out
        )

    @classmethod
    def start(cls, host: TLSHost, server: Server, kind: str) -> TLSSession | None:
        """
        Start TLS on a plain connection: our own layer, or Twisted's when the
        context needs it.  C{None} (and the connection dropped) if TLS
        cannot start.
        """
        try:
            layer = server.tls.layer(host)
            session = cls(host, server, kind, layer)
            if layer is None:
                # Twisted's TLS layer becomes our transport; what is still
                # pending (the 220) must go out in clear before it.
                writer = host.writer
                assert writer is not None
                writer.twisted_tls_started()
                server.tls.start_twisted_tls(host.transport)
        except Exception:
            server.log_lines.tls_start_failed(host.session)  # type: ignore[arg-type]
            host.abort()
            return None
        return session

    def _timed_out(self) -> None:
        self._timer = None
        self._server.log_lines.tls_timed_out(self._host.session)  # type: ignore[arg-type]
        self._host.abort()

    def stop_timer(self) -> None:
        timer = self._timer
        self._timer = None
        if timer is not None and timer.active():
            timer.cancel()

    def completed(self) -> None:
        """
        The handshake is done: describe it on the session, check the
        client's certificate, then go on — to the rest of the opening
        (implicit TLS), or, after STARTTLS, forget what was said in the
        clear (RFC 3207 §4.2) before C{on_secure} sees the session.
        """
        host = self._host
        if not self.handshaking:
            return  # a renegotiation (refused by our context)
        self.handshaking = False
        self.stop_timer()
        session = host.session
        conn = host.conn
        assert session is not None and conn is not None
        session.secure = True
        layer = self.layer
        if layer is not None:
            handle: Any = layer.handle
        else:
            writer = host.writer
            assert writer is not None
            writer.twisted_tls_established(host.transport)
            try:
                handle = host.transport.getHandle()
            except Exception:
                handle = None
        tls = self._server.tls
        tls.describe(handle, session)
        conn.secure_changed()
        if not tls.client_certificate_ok(handle):
            host.abort()
            return
        if self.kind == "implicit":
            host.implicit_tls_done()
            return
        conn.tls_established()
        host.run_on_secure(host.process)

    def receive(self, data: bytes) -> tuple[bytes, bool]:
        """
        Ciphertext in (our own layer only): the plaintext, and whether the
        client sent close_notify.  Handshake flights, and what OpenSSL
        answers by itself after it (a refused renegotiation, a key
        update), go out at once: the client may wait for them.
        """
        layer = self.layer
        assert layer is not None
        handshaking = not layer.established
        try:
            data = layer.receive(data)
        except TLSFailure as e:
            self.fail(e.reason)
            return b"", False
        out = layer.output()
        if out:
            self._host.write_raw(out)
        if handshaking and layer.established:
            self.completed()
        return data, layer.peer_closed

    def send(self, data: bytes) -> None:
        """Plaintext out, through our own layer."""
        layer = self.layer
        assert layer is not None
        try:
            data = layer.send(data)
        except TLSFailure as e:
            self.fail(e.reason)
            return
        if data:
            self._host.write_raw(data)

    def fail(self, reason: str) -> None:
        """
        A failed handshake or a broken record: log it, send OpenSSL's alert
        (the layer sends nothing after it), then close.
        """
        host = self._host
        self._server.log_lines.tls_failed(host.session, reason, handshake=self.handshaking)  # type: ignore[arg-type]
        self.handshaking = False  # logged here, not again when the socket closes
        self.stop_timer()
        layer = self.layer
        if layer is not None:
            out = layer.output()
            if out:
                host.write_raw(out)
        host.close()

    def close(self) -> None:
        """We are closing: send close_notify, unless TLS already failed."""
        layer = self.layer
        if layer is not None and not layer.failed:
            notify = layer.close()
            if notify:
                self._host.write_raw(notify)

    def lost(self, reason: str) -> None:
        """The connection is gone; a handshake that never finished is logged."""
        self.stop_timer()
        session = self._host.session
        if self.handshaking and session is not None:
            # One line per failed handshake (what OpenSSL said, never data).
            self._server.log_lines.tls_failed(session, reason, handshake=True)
