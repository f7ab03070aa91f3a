# -*- test-case-name: tests.protocol.test_tls_protocol,tests.unit.test_tls_layer -*-
"""
TLS for the driver: L{ServerTLSConfig}, what a server's connections share
(the context, how a connection gets TLS), and L{TLSSession}, one
connection's handshake and records.

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

from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from smtpsession import tls
from smtpsession._tls_layer import OpenSSLLayer, StdlibLayer, TLSFailure, new_connection
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session

__all__ = ["ServerTLSConfig", "TLSSession", "TLSHost"]

Layer = StdlibLayer | OpenSSLLayer


class ServerTLSConfig:
    """The TLS context of one server, and what it can do for a transport."""

    log = Logger()

    def __init__(self, options: SMTPServerOptions) -> None:
        self.context = tls.build_context(options)
        if options.secure and not options.secured and self.context is None:
            self.log.warn(
                "secure=True but no certificate is configured: connections on "
                "plain TCP ports will be dropped (ssl: and tls: endpoints are fine)"
            )

    def available(self, transport: Any) -> bool:
        """Whether STARTTLS can be offered on C{transport}."""
        return self.context is not None and tls.can_start_tls(transport)

    def implicit(self, transport: Any) -> bool:
        """Whether C{transport} is TLS already (an C{ssl:}/C{tls:} endpoint)."""
        return tls.is_implicit(transport)

    def _creator(self) -> Any:
        if self.context is None:
            raise RuntimeError(
                "TLS requested (secure=True) but no certificate is configured "
                "(tls_cert, tls_sni_dir, sni_options or tls_context)"
            )
        return self.context

    def layer(self, protocol: Any) -> Layer | None:
        """
        Our own TLS layer for C{protocol}, or C{None} if Twisted's
        C{startTLS} must be used instead (a creator that gives no pyOpenSSL
        connection).
        """
        creator = self._creator()
        if isinstance(creator, tls.ServerTLS):
            return creator.new_layer()
        connection = new_connection(creator, protocol)
        return None if connection is None else OpenSSLLayer(connection)

    def start_twisted_tls(self, transport: Any) -> None:
        transport.startTLS(self._creator())

    def describe(self, handle: Any, session: Session) -> None:
        """Fill in the session's TLS fields from the OpenSSL connection."""
        creator = self.context
        if isinstance(creator, tls.ServerTLS):
            creator.describe(handle, session)
        else:
            tls.describe(handle, session)

    def client_certificate_ok(self, handle: Any) -> bool:
        creator = self.context
        if isinstance(creator, tls.ServerTLS):
            return creator.client_certificate_ok(handle)
        return True


class TLSHost(Protocol):
    """What a L{TLSSession} asks of the protocol it serves."""

    def write_raw(self, data: bytes) -> None:
        """Send bytes as they are (ciphertext, or before TLS)."""

    def handshakeCompleted(self) -> None:
        """The handshake is done (C{IHandshakeListener})."""

    def tls_failed(self, reason: str) -> None:
        """The handshake failed or a record was bad: log and close."""

    def tls_timed_out(self) -> None:
        """The handshake took longer than allowed: log and drop."""


class TLSSession:
    """
    One connection's TLS: the kind (C{"implicit"} or C{"starttls"}),
    whether the handshake is still running (and its deadline), and our own
    layer when the protocol drives one (C{layer}; C{None} when Twisted's
    layer is the transport).
    """

    __slots__ = ("kind", "handshaking", "layer", "_timer", "_host")

    def __init__(
        self, host: TLSHost, kind: str, clock: IReactorTime, timeout: float, layer: Layer | None
    ) -> None:
        self._host = host
        self.kind = kind
        self.handshaking = True
        self.layer = layer
        self._timer: IDelayedCall | None = clock.callLater(timeout, self._timed_out)

    def _timed_out(self) -> None:
        self._timer = None
        self._host.tls_timed_out()

    def handshake_done(self) -> None:
        self.handshaking = False
        self.stop_timer()

    def stop_timer(self) -> None:
        timer = self._timer
        self._timer = None
        if timer is not None and timer.active():
            timer.cancel()

    @property
    def handle(self) -> Any:
        """Our layer's OpenSSL object (for L{ServerTLSConfig.describe})."""
        return self.layer.handle if self.layer is not None else None

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
            self._host.handshakeCompleted()
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
        """Send OpenSSL's alert (the layer sends nothing after it), then close."""
        layer = self.layer
        if layer is not None:
            out = layer.output()
            if out:
                self._host.write_raw(out)
        self._host.tls_failed(reason)

    def close(self) -> None:
        """We are closing: send close_notify, unless TLS already failed."""
        layer = self.layer
        if layer is not None and not layer.failed:
            notify = layer.close()
            if notify:
                self._host.write_raw(notify)
