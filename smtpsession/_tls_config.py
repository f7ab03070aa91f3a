# -*- test-case-name: tests.protocol.test_tls_protocol,tests.unit.test_tls_layer -*-
"""
L{ServerTLSConfig}: a server's TLS context, and what it can do for a
connection's transport.

A connection gets TLS in one of three ways:

  - the endpoint is TLS already (C{ssl:}, C{tls:}): Twisted's layer is
    the transport, and the session only waits for the handshake;
  - smtpsession's own layer (L{smtpsession._tls_layer}), for STARTTLS
    and for C{secure} on a plain TCP endpoint: the protocol hands it
    ciphertext and gets plaintext back, and the reverse;
  - Twisted's C{startTLS}, when the configured context gives no OpenSSL
    connection our layer can drive.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from smtpsession import tls
from smtpsession._tls_layer import OpenSSLLayer, StdlibLayer, new_connection
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session

__all__ = ["ServerTLSConfig", "Layer"]

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
