# -*- test-case-name: tests.integration.test_tls -*-
"""
TLS for STARTTLS and implicit TLS: building the server context from the
options, and reading what was negotiated.

Only public pyOpenSSL and Twisted APIs are used (no C{twisted.protocols._sni}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ITLSTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol

from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session

__all__ = [
    "build_context",
    "is_implicit",
    "can_start_tls",
    "describe",
]


def build_context(options: SMTPServerOptions) -> Any:
    """
    The context factory for this server's TLS, or C{None} when no
    certificate is configured.
    """
    if options.tls_context is not None:
        return options.tls_context
    if not options.tls_cert:
        return None
    from twisted.internet import ssl

    with open(options.tls_cert, "rb") as f:
        cert_pem = f.read()
    with open(options.tls_key or options.tls_cert, "rb") as f:
        key_pem = f.read()
    cert = ssl.PrivateCertificate.loadPEM(key_pem + b"\n" + cert_pem)
    return cert.options()


def is_implicit(transport: Any) -> bool:
    """Whether the transport itself is TLS (an C{ssl:}/C{tls:} endpoint)."""
    return isinstance(transport, TLSMemoryBIOProtocol)


def can_start_tls(transport: Any) -> bool:
    """Whether STARTTLS can be done on this transport."""
    return ITLSTransport.providedBy(transport) and not is_implicit(transport)


def describe(transport: Any, session: Session) -> None:
    """Fill in C{tls_options} and C{servername} from the TLS connection."""
    try:
        handle = transport.getHandle()
        name = handle.get_cipher_name()
        version = handle.get_protocol_version_name()
        servername = handle.get_servername()
    except Exception:
        return
    session.tls_options = {"name": name, "version": version}
    if servername:
        session.servername = servername.decode("idna").lower()
