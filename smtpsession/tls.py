# -*- test-case-name: tests.integration.test_tls -*-
"""
TLS for STARTTLS and implicit TLS: the server's contexts, SNI, client
certificates, and reading back what was negotiated.

One L{ServerTLS} per factory makes the TLS layer of every connection
(L{ServerTLS.new_layer}, driven by the protocol: L{smtpsession._tls_layer}),
so STARTTLS and implicit TLS on a plain TCP port share the same settings: the
default certificate, the SNI names, the minimum TLS version, the ciphers,
the client-certificate policy.  Its contexts are Python's C{ssl} module's,
or pyOpenSSL's when the options need it (L{stdlib_engine_fits}).
Renegotiation is refused (C{OP_NO_RENEGOTIATION}): a renegotiation is a
second handshake that would change what C{on_secure} judged, for no benefit
to SMTP.

SNI uses each library's public server-name callback: it only looks a name up
in a dictionary, so an unknown name costs nothing.
The names come from C{sni_options} (a map the application gives) and from
C{tls_sni_dir}, a directory of PEM files each holding a private key and its
certificate chain, served for every DNS name in the certificate (the same
layout as Twisted's C{tls:} endpoint).  The directory and the default
certificate are looked at again at most every L{RELOAD_INTERVAL} seconds,
when a new connection starts TLS, and a file is parsed again only when its
modification time or size changed; so renewed certificates are picked up
without a restart, and no client can make the server read the disk by
asking for names that do not exist (Twisted's private C{_sni} module re-reads
the directory for every unknown name).

Only public ssl, pyOpenSSL, cryptography and Twisted APIs are used.
"""

from __future__ import annotations

import os
import ssl
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import ITLSTransport
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

from smtpsession._tls_layer import OpenSSLLayer, ServerSSLObject, StdlibLayer
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session

__all__ = [
    "RELOAD_INTERVAL",
    "ServerTLS",
    "build_context",
    "can_start_tls",
    "describe",
    "is_implicit",
    "normalise_server_name",
]

#: Seconds between two looks at the certificate files on disk.
RELOAD_INTERVAL = 5.0

_VERSIONS = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}

_STDLIB_VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

_STDLIB_OPTIONS = (
    ssl.OP_NO_COMPRESSION
    | ssl.OP_CIPHER_SERVER_PREFERENCE
    | ssl.OP_SINGLE_ECDH_USE
    | ssl.OP_NO_RENEGOTIATION
)

#: A context of either engine (see L{ServerTLS}).
_Context = Any

_OPTIONS = (
    SSL.OP_NO_SSLv2
    | SSL.OP_NO_SSLv3
    | SSL.OP_NO_COMPRESSION  # CRIME
    | SSL.OP_CIPHER_SERVER_PREFERENCE
    | SSL.OP_SINGLE_ECDH_USE
    | SSL.OP_NO_RENEGOTIATION
)

#: A session id context is required once client certificates are verified
#: (OpenSSL refuses to resume sessions without one); any constant will do.
_SESSION_ID_CONTEXT = b"smtpsession"

log = Logger()


class TLSConfigurationError(ValueError):
    """A certificate, key or TLS setting cannot be used."""


# ---------------------------------------------------------------------------
# Identities (a key and its certificate chain) and the names they serve
# ---------------------------------------------------------------------------


class _Identity:
    """A private key, its certificate chain, and the DNS names it serves."""

    __slots__ = ("chain", "key", "names", "paths")

    def __init__(self, key: Any, chain: list[x509.Certificate], paths: tuple[str, str]) -> None:
        self.key = key
        self.chain = chain
        self.names = _certificate_names(chain[0])
        #: The certificate and key files (Python's ssl module loads files).
        self.paths = paths


def _load_identity(cert_pem: bytes, key_pem: bytes, paths: tuple[str, str]) -> _Identity:
    """Parse a certificate chain and its key (both PEM; may be one file)."""
    where = paths[0]
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise TLSConfigurationError(f"{where}: no PEM certificate found") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise TLSConfigurationError(
            f"{where}: no usable PEM private key (encrypted keys are not supported): {e}"
        ) from None
    return _Identity(key, chain, paths)


def _certificate_names(cert: x509.Certificate) -> list[str]:
    """The DNS names of a certificate: its SANs, else its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    out = []
    for name in names:
        try:
            out.append(normalise_server_name(name))
        except ValueError:
            continue
    return out


def normalise_server_name(name: str | bytes) -> str:
    """
    The form names are compared in: ASCII (IDNA A-labels), lower case, no
    trailing dot.  A leading C{*.} (wildcard) is kept.

    @raise ValueError: if C{name} is not a host name.
    """
    if isinstance(name, bytes):
        name = name.decode("ascii")
    name = name.strip().rstrip(".").lower()
    if not name:
        raise ValueError("empty server name")
    labels = []
    for label in name.split("."):
        if label.isascii():
            labels.append(label)
        else:
            labels.append(label.encode("idna").decode("ascii"))
    return ".".join(labels)


def _lookup(table: Mapping[str, _Context], name: str) -> _Context | None:
    """Exact name first, then the wildcard one level up."""
    ctx = table.get(name)
    if ctx is None and "." in name:
        ctx = table.get("*." + name.split(".", 1)[1])
    return ctx


def _stamp(path: str) -> tuple[int, int]:
    """When a file last changed, as far as C{stat} can tell."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size)


class _PEMDirectory:
    """
    A directory of PEM files (key + chain each), as name → context.

    L{refresh} rescans the directory; it re-parses only files whose stamp
    changed, keeps the previous version of a file that is unreadable (a
    certificate renewal may be half-written), and forgets deleted files.
    """

    def __init__(self, path: str, build: Callable[[_Identity], _Context]) -> None:
        self.path = path
        self._build = build
        self._files: dict[str, tuple[tuple[int, int], list[str], _Context]] = {}
        self.names: dict[str, _Context] = {}
        if not os.path.isdir(path):
            raise TLSConfigurationError(f"tls_sni_dir {path!r} is not a directory")
        self.refresh()

    def refresh(self) -> None:
        try:
            entries = [
                e.path for e in os.scandir(self.path) if e.name.endswith(".pem") and e.is_file()
            ]
        except OSError as e:
            log.error("Cannot read SNI directory {path}: {error}", path=self.path, error=e)
            return
        files = {}
        for path in sorted(entries):
            old = self._files.get(path)
            try:
                stamp = _stamp(path)
                if old is not None and old[0] == stamp:
                    files[path] = old
                    continue
                with open(path, "rb") as f:
                    pem = f.read()
                identity = _load_identity(pem, pem, (path, path))
                files[path] = (stamp, identity.names, self._build(identity))
            except (OSError, ValueError, SSL.Error) as e:
                log.error("Skipping SNI certificate {path}: {error}", path=path, error=e)
                if old is not None:
                    files[path] = old
        self._files = files
        names: dict[str, _Context] = {}
        for _when, file_names, ctx in files.values():
            for name in file_names:
                names.setdefault(name, ctx)
        self.names = names


# ---------------------------------------------------------------------------
# The connection creator
# ---------------------------------------------------------------------------


class ServerTLS:
    """
    Builds the server side of every TLS connection of one factory.

    @param options: the server options (C{tls_cert}, C{tls_key},
        C{sni_options}, C{tls_sni_dir}, C{tls_min_version}, C{tls_ciphers},
        C{request_cert}, C{reject_unauthorized}, C{tls_ca}).
    @param clock: a monotonic clock in seconds (tests pass their own).
    @raise TLSConfigurationError: if a file cannot be read or used.
    """

    def __init__(
        self,
        options: SMTPServerOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        engine: str | None = None,
    ) -> None:
        self._options = options
        self._clock = clock
        stdlib_ok = stdlib_engine_fits(options)
        if engine not in (None, "stdlib", "openssl") or (engine == "stdlib" and not stdlib_ok):
            raise ValueError(f"TLS engine {engine!r} cannot serve these options")
        #: Python's ssl module (cheaper per record) unless something needs pyOpenSSL.
        self.engine = engine or ("stdlib" if stdlib_ok else "openssl")
        self._min_version = _VERSIONS[options.tls_min_version]
        self._ciphers = options.tls_ciphers
        self._request_cert = options.request_cert or options.reject_unauthorized
        self._reject = options.reject_unauthorized
        #: Connections whose client certificate failed verification.
        self._unverified: weakref.WeakKeyDictionary[SSL.Connection, int] = (
            weakref.WeakKeyDictionary()
        )
        self._default_files = _default_files(options)
        self._default_stamp: tuple[Any, ...] | None = None
        self._default: _Identity | None = None
        if self._default_files is not None:
            self._default_stamp = self._stamp_default()
            self._default = self._read_default()
        self._static = self._static_names(options.sni_options or {})
        self._directory = (
            _PEMDirectory(options.tls_sni_dir, self._context) if options.tls_sni_dir else None
        )
        self._base = self._base_context()
        self._checked = clock()

    # -- what the protocol asks ---------------------------------------------

    def new_layer(self) -> StdlibLayer | OpenSSLLayer:
        """The TLS layer for a new connection (the protocol calls this)."""
        self._maybe_refresh()
        if self.engine == "stdlib":
            return StdlibLayer(self._base)
        return OpenSSLLayer(SSL.Connection(self._base))

    def _maybe_refresh(self) -> None:
        now = self._clock()
        if now - self._checked >= RELOAD_INTERVAL:
            self._checked = now
            self._refresh()

    @property
    def has_names(self) -> bool:
        """Whether any SNI name is configured."""
        return bool(self._static) or (self._directory is not None and bool(self._directory.names))

    def context_for(self, servername: bytes | str | None) -> _Context | None:
        """The context serving C{servername}, or C{None} for the default."""
        if not servername:
            return None
        try:
            name = normalise_server_name(servername)
        except (ValueError, UnicodeError):
            return None
        ctx = _lookup(self._static, name)
        if ctx is None and self._directory is not None:
            ctx = _lookup(self._directory.names, name)
        return ctx

    def describe(self, handle: Any, session: Session) -> None:
        """Fill in the session's TLS fields, including the client certificate."""
        if not describe(handle, session) or not self._request_cert:
            return
        cert = handle.get_peer_certificate(as_cryptography=True)
        details: dict[str, Any] = dict(session.tls_options or {})
        details["peer_certificate"] = cert
        details["authorized"] = cert is not None and handle not in self._unverified
        session.tls_options = details

    def client_certificate_ok(self, handle: Any) -> bool:
        """
        With C{reject_unauthorized}, whether the client's certificate
        verified.  OpenSSL already failed such handshakes; this is the
        belt to its braces.
        """
        if not self._reject:
            return True
        if handle is None:
            return False
        return handle.get_peer_certificate() is not None and handle not in self._unverified

    # -- contexts --------------------------------------------------------------

    def _context(self, identity: _Identity | None) -> _Context:
        """A context with this server's settings and C{identity}'s certificate."""
        if self.engine == "stdlib":
            return self._stdlib_context(identity)
        return self._openssl_context(identity)

    def _stdlib_context(self, identity: _Identity | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _STDLIB_VERSIONS[self._options.tls_min_version]
        ctx.options |= _STDLIB_OPTIONS
        ctx.sslobject_class = ServerSSLObject
        if self._ciphers:
            try:
                ctx.set_ciphers(self._ciphers)
            except ssl.SSLError:
                raise TLSConfigurationError(
                    f"tls_ciphers {self._ciphers!r} selects no usable cipher"
                ) from None
        if identity is not None:
            cert_path, key_path = identity.paths
            try:
                ctx.load_cert_chain(cert_path, key_path)
            except ssl.SSLError:
                raise TLSConfigurationError(
                    "the private key does not match the certificate"
                ) from None
        return ctx

    def _openssl_context(self, identity: _Identity | None) -> SSL.Context:
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_min_proto_version(self._min_version)
        ctx.set_options(_OPTIONS)
        ctx.set_session_id(_SESSION_ID_CONTEXT)
        if self._ciphers:
            try:
                ctx.set_cipher_list(self._ciphers.encode("ascii"))
            except SSL.Error:
                raise TLSConfigurationError(
                    f"tls_ciphers {self._ciphers!r} selects no usable cipher"
                ) from None
        if identity is not None:
            ctx.use_certificate(identity.chain[0])
            for extra in identity.chain[1:]:
                ctx.add_extra_chain_cert(extra)
            try:
                ctx.use_privatekey(identity.key)
                ctx.check_privatekey()
            except SSL.Error:
                raise TLSConfigurationError(
                    "the private key does not match the certificate"
                ) from None
        if self._request_cert:
            self._set_verify(ctx)
        return ctx

    def _set_verify(self, ctx: SSL.Context) -> None:
        options = self._options
        mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
        if self._reject:
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        if options.tls_ca:
            try:
                ctx.load_verify_locations(options.tls_ca)
                ctx.load_client_ca(options.tls_ca.encode())
            except (OSError, SSL.Error) as e:
                raise TLSConfigurationError(
                    f"tls_ca {options.tls_ca!r} cannot be used: {e}"
                ) from None
        else:
            ctx.set_default_verify_paths()
        reject = self._reject
        unverified = self._unverified

        def verify(conn: SSL.Connection, cert: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                unverified[conn] = errno
            return bool(ok) or not reject

        ctx.set_verify(mode, verify)

    def _base_context(self) -> _Context:
        """The context every connection starts with: default certificate + SNI."""
        ctx = self._context(self._default)
        if self.engine == "stdlib":
            # Always: Python's ssl module tells the name only to this callback.
            ctx.sni_callback = self._stdlib_servername
        elif self._static or self._directory is not None:
            ctx.set_tlsext_servername_callback(self._servername)
        return ctx

    def _stdlib_servername(self, obj: Any, name: str | None, ctx: ssl.SSLContext) -> None:
        # Called by OpenSSL inside the handshake: must never raise.
        try:
            obj.servername = name
            if name and (self._static or self._directory is not None):
                other = self.context_for(name)
                if other is not None:
                    obj.context = other
        except Exception:
            log.failure("SNI lookup failed")

    def _servername(self, connection: SSL.Connection) -> None:
        # Called by OpenSSL inside the handshake: must never raise.
        try:
            ctx = self.context_for(connection.get_servername())
            if ctx is not None:
                connection.set_context(ctx)
        except Exception:
            log.failure("SNI lookup failed")

    def _static_names(self, sni: Mapping[str, Any]) -> dict[str, _Context]:
        out = {}
        for name, value in sni.items():
            try:
                key = normalise_server_name(name)
            except (ValueError, UnicodeError):
                raise TLSConfigurationError(f"sni_options: bad server name {name!r}") from None
            out[key] = self._static_context(name, value)
        return out

    def _static_context(self, name: str, value: Any) -> _Context:
        if isinstance(value, SSL.Context):
            return value
        if hasattr(value, "getContext"):  # CertificateOptions and friends
            return value.getContext()
        if isinstance(value, str | os.PathLike):
            cert_path = key_path = os.fspath(value)
        elif isinstance(value, tuple | list) and len(value) == 2:
            cert_path, key_path = (os.fspath(v) for v in value)
        else:
            raise TLSConfigurationError(
                f"sni_options[{name!r}] must be a PEM path, a (cert, key) pair "
                f"or an OpenSSL context, not {value!r}"
            )
        return self._context(_read_identity(cert_path, key_path))

    # -- reloading -------------------------------------------------------------

    def _stamp_default(self) -> tuple[Any, ...] | None:
        files = self._default_files
        if files is None:
            return None
        try:
            return tuple(_stamp(p) for p in files)
        except OSError:
            return None

    def _read_default(self) -> _Identity:
        assert self._default_files is not None
        cert_path, key_path = self._default_files
        return _read_identity(cert_path, key_path)

    def _refresh(self) -> None:
        changed = False
        if self._default_files is not None:
            stamp = self._stamp_default()
            if stamp is not None and stamp != self._default_stamp:
                try:
                    identity = self._read_default()
                    self._context(identity)  # the key must match before we switch
                except (OSError, ValueError, SSL.Error) as e:
                    log.error("Keeping the old certificate: {error}", error=e)
                else:
                    self._default = identity
                    self._default_stamp = stamp
                    changed = True
                    log.info("Reloaded TLS certificate {path}", path=self._default_files[0])
        if self._directory is not None:
            # The SNI callback reads the directory's table at each handshake:
            # refreshing the table is enough.
            self._directory.refresh()
        if changed:
            self._base = self._base_context()


def _default_files(options: SMTPServerOptions) -> tuple[str, str] | None:
    if not options.tls_cert:
        if options.tls_key:
            raise TLSConfigurationError("tls_key is set but tls_cert is not")
        return None
    return (options.tls_cert, options.tls_key or options.tls_cert)


def _read_identity(cert_path: str, key_path: str) -> _Identity:
    try:
        with open(cert_path, "rb") as f:
            cert_pem = f.read()
        if key_path == cert_path:
            key_pem = cert_pem
        else:
            with open(key_path, "rb") as f:
                key_pem = f.read()
    except OSError as e:
        raise TLSConfigurationError(
            f"cannot read {e.filename or cert_path}: {e.strerror}"
        ) from None
    return _load_identity(cert_pem, key_pem, (cert_path, key_path))


# ---------------------------------------------------------------------------
# Used by the factory and the protocol
# ---------------------------------------------------------------------------


def build_context(options: SMTPServerOptions) -> Any:
    """
    The connection creator for this server's TLS: C{options.tls_context} if
    the application gave one, a L{ServerTLS} if a certificate (or an SNI
    name) is configured, else C{None} (no STARTTLS, no implicit TLS).

    @raise TLSConfigurationError: if a file cannot be read or used.
    """
    if options.tls_context is not None:
        return options.tls_context
    if not (options.tls_cert or options.tls_key or options.sni_options or options.tls_sni_dir):
        return None
    return ServerTLS(options)


def stdlib_engine_fits(options: SMTPServerOptions) -> bool:
    """
    Whether Python's ssl module can serve these options: not when client
    certificates are requested (accepting an unverified one and reporting
    it needs pyOpenSSL's verify callback) nor when the application gave
    pyOpenSSL contexts.
    """
    if options.tls_context is not None or options.request_cert or options.reject_unauthorized:
        return False
    for value in (options.sni_options or {}).values():
        if not isinstance(value, str | os.PathLike | tuple | list):
            return False
    return True


def is_implicit(transport: Any) -> bool:
    """Whether the transport itself is TLS (an C{ssl:}/C{tls:} endpoint)."""
    return isinstance(transport, TLSMemoryBIOProtocol)


def can_start_tls(transport: Any) -> bool:
    """Whether STARTTLS can be done on this transport."""
    return ITLSTransport.providedBy(transport) and not is_implicit(transport)


def describe(handle: Any, session: Session) -> bool:
    """
    Fill in C{session.tls_options} (C{name}: cipher, C{version}: protocol)
    and C{session.servername} (the SNI name the client asked for, in Unicode)
    from the OpenSSL connection C{handle}.  Returns whether it could.
    """
    if handle is None:
        return False
    if isinstance(handle, ssl.SSLObject):
        cipher = handle.cipher()
        if cipher is None:
            return False
        session.tls_options = {"name": cipher[0], "version": handle.version()}
        sni = getattr(handle, "servername", None)
        if sni:
            session.servername = _unicode_name(sni.encode("ascii", "replace"))
        return True
    try:
        name = handle.get_cipher_name()
        version = handle.get_protocol_version_name()
        servername = handle.get_servername()
    except Exception:
        return False
    session.tls_options = {"name": name, "version": version}
    if servername:
        session.servername = _unicode_name(servername)
    return True


def _unicode_name(raw: bytes) -> str:
    text = raw.decode("ascii", "replace").rstrip(".").lower()
    try:
        return text.encode("ascii").decode("idna")
    except UnicodeError:
        return text
