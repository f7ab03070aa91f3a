"""
L{smtpsession.tls.ServerTLS} without sockets: how contexts are built from
the options, how SNI names are found, and when files are read again (a
fake clock; the disk is looked at only when a reload is due, never per
unknown name).
"""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL

import smtpsession.tls as tls
from smtpsession.options import SMTPServerOptions
from smtpsession.tls import ServerTLS, TLSConfigurationError, normalise_server_name
from tests.tlsutil import CA, make_ca


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(params=["stdlib", "openssl"])
def engine(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both TLS engines."""
    return str(request.param)


def fingerprint(ctx: Any) -> bytes:
    """The SHA-256 fingerprint of the certificate a context serves."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    if isinstance(ctx, ssl.SSLContext):
        # Python's ssl module cannot list a context's certificate: shake hands.
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
        bios = [ssl.MemoryBIO() for _ in range(4)]
        server_end = ctx.wrap_bio(bios[0], bios[1], server_side=True)
        client_end = client.wrap_bio(bios[2], bios[3])
        for _ in range(5):
            for end in (client_end, server_end):
                try:
                    end.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            bios[0].write(bios[3].read())
            bios[2].write(bios[1].read())
        der = client_end.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256())
    conn = SSL.Connection(ctx)
    cert = conn.get_certificate(as_cryptography=True)
    assert cert is not None
    return cert.fingerprint(hashes.SHA256())


def base_context(server: ServerTLS) -> Any:
    handle = server.new_layer().handle
    return handle.context if isinstance(handle, ssl.SSLObject) else handle.get_context()


def bump_mtime(path: Path) -> None:
    """Make a rewrite visible even within one file-system timestamp tick."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


class Counting:
    """Wrap a function and count its calls."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, *args: Any, **kw: Any) -> Any:
        self.calls += 1
        return self.fn(*args, **kw)


def test_normalise_server_name() -> None:
    """Names compare as lower-case A-labels without a trailing dot; wildcards stay."""
    assert normalise_server_name("Mail.Example.COM.") == "mail.example.com"
    assert normalise_server_name(b"mail.example.com") == "mail.example.com"
    assert normalise_server_name("bücher.example") == "xn--bcher-kva.example"
    assert normalise_server_name("*.Example.com") == "*.example.com"
    with pytest.raises(ValueError):
        normalise_server_name(" . ")


def test_context_settings(ca: CA, engine: str) -> None:
    """The context refuses renegotiation and compression and honours the minimum version."""
    ident = ca.issue("s1", ["a.example"])
    server = ServerTLS(
        SMTPServerOptions(name="m", tls_cert=str(ident.combined), tls_min_version="TLSv1.3"),
        engine=engine,
    )
    ctx = base_context(server)
    if engine == "stdlib":
        for flag in (ssl.OP_NO_RENEGOTIATION, ssl.OP_NO_COMPRESSION, ssl.OP_CIPHER_SERVER_PREFERENCE):
            assert ctx.options & flag
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    else:
        current = server.new_layer().handle.set_options(0)
        for flag in (SSL.OP_NO_RENEGOTIATION, SSL.OP_NO_COMPRESSION, SSL.OP_CIPHER_SERVER_PREFERENCE):
            assert current & flag
    assert fingerprint(ctx) == ident.fingerprint


def test_engine_choice(ca: CA) -> None:
    """Python's ssl module unless client certificates or pyOpenSSL contexts need pyOpenSSL."""
    ident = str(ca.issue("e1", ["e.example"]).combined)
    assert ServerTLS(SMTPServerOptions(name="m", tls_cert=ident)).engine == "stdlib"
    for kw in ({"request_cert": True}, {"reject_unauthorized": True},
               {"sni_options": {"x.example": SSL.Context(SSL.TLS_METHOD)}}):
        server = ServerTLS(SMTPServerOptions(name="m", tls_cert=ident, **kw))
        assert server.engine == "openssl", kw
    with pytest.raises(ValueError):
        ServerTLS(SMTPServerOptions(name="m", tls_cert=ident, request_cert=True), engine="stdlib")


def test_separate_key_file_and_mismatch(ca: CA) -> None:
    """tls_key may be a separate file; a key that does not match is refused at start."""
    one = ca.issue("k1", ["one.example"])
    two = ca.issue("k2", ["two.example"])
    ServerTLS(SMTPServerOptions(name="m", tls_cert=str(one.cert), tls_key=str(one.key)))
    with pytest.raises(TLSConfigurationError, match="does not match"):
        ServerTLS(SMTPServerOptions(name="m", tls_cert=str(one.cert), tls_key=str(two.key)))


@pytest.mark.parametrize(
    "kw,message",
    [
        ({"tls_cert": "/nonexistent/cert.pem"}, "cannot read /nonexistent/cert.pem"),
        ({"tls_key": "/k.pem"}, "tls_key is set but tls_cert is not"),
        ({"tls_sni_dir": "/nonexistent-dir"}, "is not a directory"),
        ({"sni_options": {"a.example": 42}}, "must be a PEM path"),
        ({"sni_options": {"": "/x.pem"}}, "bad server name"),
        ({"tls_cert": "CA", "tls_ciphers": "NOPE"}, "selects no usable cipher"),
    ],
)
def test_configuration_errors(ca: CA, kw: dict[str, Any], message: str) -> None:
    """Bad TLS settings fail at start-up with a message naming the problem."""
    if kw.get("tls_cert") == "CA":
        kw["tls_cert"] = str(ca.issue("c", ["c.example"]).combined)
    with pytest.raises(TLSConfigurationError, match=message):
        tls.build_context(SMTPServerOptions(name="m", **kw))


def test_encrypted_key_refused(ca: CA, tmp_path: Path) -> None:
    """An encrypted private key is a clear error, not a prompt."""
    ident = ca.issue("enc", ["enc.example"])
    key = serialization.load_pem_private_key(ident.key.read_bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    (tmp_path / "enc.key").write_bytes(encrypted)
    with pytest.raises(TLSConfigurationError, match="encrypted keys are not supported"):
        ServerTLS(
            SMTPServerOptions(name="m", tls_cert=str(ident.cert), tls_key=str(tmp_path / "enc.key"))
        )


def test_no_tls_without_certificates() -> None:
    """Without any certificate there is no TLS (no STARTTLS offered)."""
    assert tls.build_context(SMTPServerOptions(name="m")) is None


def test_tls_context_passed_through() -> None:
    """A ready context factory in tls_context is used as it is."""
    marker = object()
    assert tls.build_context(SMTPServerOptions(name="m", tls_context=marker)) is marker


def test_sni_map_lookup(ca: CA, engine: str) -> None:
    """The map serves exact names, wildcards one level deep, and IDNs."""
    a = ca.issue("a", ["a.example"])
    w = ca.issue("w", ["*.w.example"])
    i = ca.issue("i", ["xn--bcher-kva.example"])
    server = ServerTLS(
        SMTPServerOptions(
            name="m",
            sni_options={
                "A.example": str(a.combined),
                "*.w.example": (str(w.cert), str(w.key)),
                "bücher.example": str(i.combined),
            },
        ),
        engine=engine,
    )
    assert server.has_names
    assert fingerprint(server.context_for(b"a.example")) == a.fingerprint  # type: ignore[arg-type]
    assert fingerprint(server.context_for(b"x.w.example")) == w.fingerprint  # type: ignore[arg-type]
    assert server.context_for(b"y.x.w.example") is None  # one level only
    assert server.context_for(b"w.example") is None
    assert fingerprint(server.context_for(b"xn--bcher-kva.example")) == i.fingerprint  # type: ignore[arg-type]
    assert server.context_for(None) is None
    assert server.context_for(b"\xff\xfe") is None


def test_sni_directory_is_read_only_when_a_reload_is_due(
    ca: CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """
    Unknown names cost a dictionary lookup: the directory is scanned at most
    once per RELOAD_INTERVAL, when a connection starts, and unchanged files
    are not parsed again.
    """
    a = ca.issue("a", ["a.example"])
    b = ca.issue("b", ["b.example"])
    directory = tmp_path / "sni"
    directory.mkdir()
    shutil.copy(a.combined, directory / "a.pem")
    scans = Counting(tls._PEMDirectory.refresh)
    parses = Counting(tls._load_identity)
    monkeypatch.setattr(tls._PEMDirectory, "refresh", lambda self: scans(self))
    monkeypatch.setattr(tls, "_load_identity", parses)
    clock = Clock()
    server = ServerTLS(
        SMTPServerOptions(name="m", tls_sni_dir=str(directory)), clock=clock, engine=engine
    )
    assert (scans.calls, parses.calls) == (1, 1)

    for i in range(1000):
        assert server.context_for(f"nobody{i}.example".encode()) is None
        server.new_layer()
    assert (scans.calls, parses.calls) == (1, 1)

    shutil.copy(b.combined, directory / "b.pem")
    assert server.context_for(b"b.example") is None  # not before the interval
    clock.now += tls.RELOAD_INTERVAL
    server.new_layer()
    assert (scans.calls, parses.calls) == (2, 2)  # a.pem was not parsed again
    assert fingerprint(server.context_for(b"b.example")) == b.fingerprint  # type: ignore[arg-type]

    (directory / "a.pem").unlink()
    clock.now += tls.RELOAD_INTERVAL
    server.new_layer()
    assert server.context_for(b"a.example") is None
    assert server.context_for(b"b.example") is not None


def test_half_written_file_keeps_the_old_certificate(
    ca: CA, tmp_path: Path, engine: str
) -> None:
    """A file that stops parsing (a renewal in progress) keeps serving the old version."""
    a = ca.issue("a", ["a.example"])
    directory = tmp_path / "sni"
    directory.mkdir()
    target = directory / "a.pem"
    shutil.copy(a.combined, target)
    clock = Clock()
    server = ServerTLS(
        SMTPServerOptions(name="m", tls_sni_dir=str(directory)), clock=clock, engine=engine
    )
    target.write_bytes(a.combined.read_bytes()[:100])
    clock.now += tls.RELOAD_INTERVAL
    server.new_layer()
    assert fingerprint(server.context_for(b"a.example")) == a.fingerprint  # type: ignore[arg-type]


def test_default_certificate_reload(ca: CA, tmp_path: Path, engine: str) -> None:
    """The default certificate is re-read when its file changes, after the interval."""
    a = ca.issue("a", ["a.example"])
    b = ca.issue("b", ["b.example"])
    current = tmp_path / "current.pem"
    shutil.copy(a.combined, current)
    clock = Clock()
    server = ServerTLS(
        SMTPServerOptions(name="m", tls_cert=str(current)), clock=clock, engine=engine
    )
    assert fingerprint(base_context(server)) == a.fingerprint
    shutil.copy(b.combined, current)
    bump_mtime(current)
    assert fingerprint(base_context(server)) == a.fingerprint  # not due yet
    clock.now += tls.RELOAD_INTERVAL
    assert fingerprint(base_context(server)) == b.fingerprint
    current.write_text("garbage")
    bump_mtime(current)
    clock.now += tls.RELOAD_INTERVAL
    assert fingerprint(base_context(server)) == b.fingerprint  # kept the good one
