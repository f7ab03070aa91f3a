"""
Throwaway certificates for the TLS tests, made at test time.

A test CA signs server certificates (with the DNS names asked for, plus
``127.0.0.1`` as an IP SAN) and client certificates.  Keys are P-256: quick
to make, and every client the tests use speaks ECDSA.  Nothing here is
secret or lives longer than the test's temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smtpsession import SMTPServerOptions
from tests.rawsmtp import RawClient

__all__ = [
    "CA",
    "PKI",
    "Dialog",
    "Identity",
    "client_context",
    "make_ca",
    "peer_fingerprint",
    "recorder",
    "tls_server_options",
]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class Identity:
    """A certificate and key on disk: separate files and one combined file."""

    cert: Path
    key: Path
    combined: Path
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> bytes:
        """SHA-256 of the DER certificate (to tell which one a client got)."""
        return self.certificate.fingerprint(hashes.SHA256())


@dataclass
class CA:
    """A test certificate authority that writes what it signs under C{directory}."""

    directory: Path
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    path: Path

    def issue(
        self,
        stem: str,
        names: list[str],
        *,
        client: bool = False,
        days: int = 2,
    ) -> Identity:
        """
        Sign a certificate for C{names} (the first is the common name) and
        write C{stem}.crt, C{stem}.key and C{stem}.pem (key + chain).
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        if not client:
            sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(names[0]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        chain_pem = cert_pem + self.certificate.public_bytes(serialization.Encoding.PEM)
        out = Identity(
            cert=self.directory / f"{stem}.crt",
            key=self.directory / f"{stem}.key",
            combined=self.directory / f"{stem}.pem",
            certificate=cert,
        )
        out.cert.write_bytes(chain_pem)
        out.key.write_bytes(_pem_key(key))
        out.combined.write_bytes(_pem_key(key) + chain_pem)
        return out


def make_ca(directory: Path, name: str = "smtpsession test CA") -> CA:
    """A new CA whose certificate is written to C{directory}/ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name.replace(' ', '-')}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(directory, key, cert, path)


def client_context(ca: CA, *, check_hostname: bool = True) -> ssl.SSLContext:
    """An ssl context that trusts only C{ca}."""
    context = ssl.create_default_context(cafile=str(ca.path))
    context.check_hostname = check_hostname
    return context


def peer_fingerprint(sock: ssl.SSLSocket) -> bytes:
    """SHA-256 of the certificate the server presented."""
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())


# ---------------------------------------------------------------------------
# A line-by-line SMTP client that can start TLS anywhere
# ---------------------------------------------------------------------------


class Dialog(RawClient):
    """
    One SMTP connection driven by hand, in the clear or over TLS (STARTTLS
    or implicit), with the server name the client asks for under control
    (smtplib sends no SNI when it connects to an IP address).  The greeting
    is not read on connect, since implicit TLS must come first.  Every read
    has a timeout: a bound, not an assertion.
    """

    def __init__(self, address: tuple[str, int], timeout: float = 10.0) -> None:
        super().__init__(*address, timeout=timeout, read_greeting=False)

    def implicit_tls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """Handshake at once (SMTPS)."""
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def starttls(self, context: ssl.SSLContext, server_hostname: str | None) -> None:
        """STARTTLS, then the handshake; raises if the server says no."""
        code, text = self.command("STARTTLS")
        if code != 220:
            raise AssertionError(f"STARTTLS: {code} {text}")
        assert self._buf == b"", "the server sent more than its 220"
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    @property
    def tls(self) -> ssl.SSLSocket:
        assert isinstance(self.sock, ssl.SSLSocket)
        return self.sock

    def ehlo(self, name: str = "client.example") -> list[str]:
        code, text = self.command(f"EHLO {name}")
        assert code == 250, text
        return text.split("\n")[1:]

    def __enter__(self) -> Dialog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# A handler that records what TLS looked like to the application
# ---------------------------------------------------------------------------


def recorder(**kw: Any) -> Any:
    """A RecordingHandler that also records on_connect's and on_secure's view."""
    from smtpsession.testing import RecordingHandler

    class TLSRecorder(RecordingHandler):
        def __post_init__(self) -> None:
            super().__post_init__()
            #: (secure, tls_options) as on_connect saw them, per connection.
            self.connected: list[tuple[bool, Any]] = []
            #: (session id, servername, tls_options) per on_secure call.
            self.secured: list[tuple[str, Any, Any]] = []
            self.closed: list[str] = []

        def on_connect(self, session: Any) -> None:
            self.connected.append((session.secure, session.tls_options))
            super().on_connect(session)

        def on_secure(self, session: Any) -> None:
            self.secured.append((session.id, session.servername, dict(session.tls_options or {})))

        def on_close(self, session: Any) -> None:
            self.closed.append(session.id)

    return TLSRecorder(**kw)


class PKI:
    """The certificates of the integration TLS tests: server, SNI names, clients."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca: CA = make_ca(root / "ca")
        self.server: Identity = self.ca.issue("server", ["mail.example.test", "localhost"])
        self.other: Identity = self.ca.issue("other", ["other.example.test"])
        self.wild: Identity = self.ca.issue("wild", ["*.wild.example.test"])
        self.idn: Identity = self.ca.issue("idn", ["xn--bcher-kva.example.test"])
        self.client: Identity = self.ca.issue("client", ["client.example.test"], client=True)
        self.stranger_ca: CA = make_ca(root / "stranger", "stranger CA")
        self.stranger: Identity = self.stranger_ca.issue(
            "stranger", ["stranger.example.test"], client=True
        )


def tls_server_options(pki: PKI, **kw: Any) -> SMTPServerOptions:
    """Server options with STARTTLS on pki.server; C{kw} adds or overrides."""
    kw.setdefault("name", "mail.example.test")
    kw.setdefault("disable_reverse_lookup", True)
    kw.setdefault("tls_cert", str(pki.server.cert))
    kw.setdefault("tls_key", str(pki.server.key))
    return SMTPServerOptions(**kw)
