"""
TLS on real sockets on 127.0.0.1, with certificates made by the test: STARTTLS
and implicit TLS (``secure=True`` on a plain port, and ``ssl:``/``tls:``
endpoints), SNI from a map and from a directory, TLS versions and ciphers,
client certificates, handshake timeouts and failures, and what the session
and the hooks see.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import ssl
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from smtpsession import SMTPError, SMTPServerOptions
from smtpsession.testing import serve
from tests.tlsutil import (
    PKI,
    Dialog,
    Identity,
    client_context,
    peer_fingerprint,
    recorder,
)
from tests.tlsutil import tls_server_options as options


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def context(pki: PKI, **kw: Any) -> ssl.SSLContext:
    return client_context(pki.ca, **kw)


def closed_within(dialog: Dialog, seconds: float) -> bool:
    """Whether the server closes the connection within C{seconds} (a bound)."""
    dialog.sock.settimeout(seconds)
    try:
        return dialog.closed()
    except TimeoutError:
        return False


# ---------------------------------------------------------------------------
# STARTTLS
# ---------------------------------------------------------------------------


def test_starttls_with_smtplib(pki: PKI) -> None:
    """smtplib's starttls() works; the message and session say TLS; on_secure runs once."""
    handler = recorder()
    with serve(handler, options(pki)) as server:
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert client.starttls(context=context(pki, check_hostname=False))[0] == 220
            client.ehlo()
            assert not client.has_extn("starttls")
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: s\r\n\r\nsecret\r\n")
    [message] = handler.messages
    assert message.secure is True
    assert message.transmission_type == "ESMTPS"
    [(sid, servername, tls_options)] = handler.secured
    assert sid == message.session.id
    assert servername is None  # smtplib sends no SNI to an IP address
    assert tls_options["version"] in ("TLSv1.2", "TLSv1.3")
    assert tls_options["name"]
    assert handler.connected == [(False, None)]


def test_ehlo_required_again_after_starttls(pki: PKI) -> None:
    """RFC 3207 §4.2: after the handshake the client must EHLO again."""
    with serve(recorder(), options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.starttls(context(pki), "mail.example.test")
        assert d.command("MAIL FROM:<a@example.com>")[0] == 503
        assert "STARTTLS" not in d.ehlo()
        assert d.command("STARTTLS") == (503, "5.5.1 Error: TLS already active")
        assert d.command("MAIL FROM:<a@example.com>")[0] == 250


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_starttls_versions(pki: PKI, version: ssl.TLSVersion) -> None:
    """TLS 1.2 and 1.3 both work, and tls_options reports the version negotiated."""
    handler = recorder()
    ctx = context(pki)
    ctx.minimum_version = ctx.maximum_version = version
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.starttls(ctx, "mail.example.test")
        d.ehlo()
        negotiated = (d.tls.version(), d.tls.cipher()[0])
    assert negotiated[0] == version.name.replace("_", ".")
    [(_, _, tls_options)] = handler.secured
    assert (tls_options["version"], tls_options["name"]) == negotiated


def test_min_version_enforced(pki: PKI) -> None:
    """tls_min_version='TLSv1.3' refuses a TLS 1.2-only client (and no on_secure)."""
    handler = recorder()
    ctx = context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with serve(handler, options(pki, tls_min_version="TLSv1.3")) as server:
        with Dialog(server.address) as d:
            d.reply()
            d.ehlo()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                d.starttls(ctx, "mail.example.test")
    assert handler.secured == []


def test_ciphers_option(pki: PKI) -> None:
    """tls_ciphers restricts the TLS 1.2 ciphers to the ones named."""
    handler = recorder()
    ctx = context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    cipher = "ECDHE-ECDSA-CHACHA20-POLY1305"
    with serve(handler, options(pki, tls_ciphers=cipher)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.starttls(ctx, "mail.example.test")
        d.ehlo()
    assert handler.secured[0][2]["name"] == cipher


def test_bad_cipher_string_refused_at_start(pki: PKI) -> None:
    """A cipher string that selects nothing is a configuration error at start-up."""
    from smtpsession.factory import SMTPServerFactory
    from smtpsession.tls import TLSConfigurationError

    with pytest.raises(TLSConfigurationError, match="tls_ciphers"):
        SMTPServerFactory(recorder(), options(pki, tls_ciphers="NO-SUCH-CIPHER"))


def test_handshake_failure_closes_and_server_survives(pki: PKI) -> None:
    """Garbage instead of a ClientHello ends that connection only (and is logged)."""
    handler = recorder()
    with serve(handler, options(pki)) as server:
        with Dialog(server.address) as d:
            d.reply()
            d.ehlo()
            d.command("STARTTLS")
            d.send(b"this is not TLS\r\n" * 4)
            assert closed_within(d, 10)
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.starttls(context=context(pki, check_hostname=False))
            assert client.noop()[0] == 250
    assert len(handler.secured) == 1


def test_handshake_timeout(pki: PKI) -> None:
    """A client that never completes the handshake is dropped (STARTTLS and implicit)."""
    handler = recorder()
    opts = options(pki, tls_handshake_timeout=0.3)
    with serve(handler, opts) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.command("STARTTLS")
        assert closed_within(d, 10)
    with serve(handler, opts.replace(secure=True)) as server, Dialog(server.address) as d:
        assert closed_within(d, 10)
    assert handler.secured == []
    assert len(handler.connected) == 1  # only the STARTTLS one got that far


def test_on_secure_refusal_after_starttls(pki: PKI) -> None:
    """An SMTPError from on_secure is sent over TLS, then the connection closes."""
    handler = recorder()

    def on_secure(session: Any) -> None:
        raise SMTPError(554, "Error: no TLS for you")

    handler.on_secure = on_secure  # type: ignore[method-assign]
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.starttls(context(pki), "mail.example.test")
        assert d.reply() == (554, "Error: no TLS for you")
        assert closed_within(d, 10)


# ---------------------------------------------------------------------------
# Implicit TLS
# ---------------------------------------------------------------------------


def test_implicit_tls_with_smtp_ssl(pki: PKI) -> None:
    """secure=True on a plain TCP port: SMTP_SSL works; secure before on_connect."""
    handler = recorder(users={"alice": "pw"})
    order: list[str] = []
    plain_connect = handler.on_connect

    def on_connect(session: Any) -> None:
        order.append("connect")
        plain_connect(session)

    def on_secure(session: Any) -> None:
        order.append("secure")

    handler.on_connect = on_connect  # type: ignore[method-assign]
    handler.on_secure = on_secure  # type: ignore[method-assign]
    with serve(handler, options(pki, secure=True)) as server:
        ctx = context(pki, check_hostname=False)
        with smtplib.SMTP_SSL(*server.address, context=ctx, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("starttls")
            client.login("alice", "pw")
            client.sendmail("a@example.com", ["b@example.com"], b"x\r\n")
    assert order == ["connect", "secure"]
    [(secure, tls_options)] = handler.connected
    assert secure is True and tls_options["version"] in ("TLSv1.2", "TLSv1.3")
    [message] = handler.messages
    assert (message.secure, message.user, message.transmission_type) == (True, "alice", "ESMTPSA")


@pytest.mark.parametrize("kind", ["ssl", "tls"])
def test_implicit_tls_endpoints(pki: PKI, kind: str, tmp_path: Path) -> None:
    """ssl: and tls: endpoints are recognised as TLS: secure before on_connect, on_secure once."""
    handler = recorder()
    if kind == "ssl":
        endpoint = (
            f"ssl:0:interface=127.0.0.1:privateKey={pki.server.key}:certKey={pki.server.cert}"
        )
    else:
        directory = tmp_path / "pems"
        directory.mkdir()
        # Key and leaf only: Twisted 26.10's tls: endpoint loops forever on a
        # chain that includes a self-signed root (its _sni inferDomainMapping
        # follows issuer links without stopping at a root).
        leaf = pki.server.certificate.public_bytes(serialization.Encoding.PEM)
        (directory / "server.pem").write_bytes(pki.server.key.read_bytes() + leaf)
        endpoint = f"tls:{directory}:port=0:interface=127.0.0.1"
    opts = SMTPServerOptions(name="mail.example.test", disable_reverse_lookup=True)
    with serve(handler, opts, endpoint=endpoint) as server, Dialog(server.address) as d:
        d.implicit_tls(context(pki), "mail.example.test")
        assert d.reply()[0] == 220
        caps = d.ehlo()
        assert "STARTTLS" not in caps
        assert d.command("STARTTLS")[0] in (500, 503)
        d.command("QUIT")
    [(secure, tls_options)] = handler.connected
    assert secure is True
    assert tls_options is not None and tls_options["version"] in ("TLSv1.2", "TLSv1.3")
    [(_, servername, _)] = handler.secured
    assert servername == "mail.example.test"


def test_secure_without_certificate_is_refused_cleanly(pki: PKI) -> None:
    """secure=True with no certificate on a plain port closes connections, no greeting."""
    handler = recorder()
    opts = SMTPServerOptions(name="m", disable_reverse_lookup=True, secure=True)
    with serve(handler, opts) as server:
        try:
            with Dialog(server.address) as d:
                assert closed_within(d, 10)
        except ConnectionResetError:
            pass  # aborted before connect() returned: closed just the same
        with pytest.raises((ssl.SSLError, ConnectionError, smtplib.SMTPServerDisconnected)):
            smtplib.SMTP_SSL(*server.address, context=context(pki), timeout=10)
    assert handler.connected == []


# ---------------------------------------------------------------------------
# SNI
# ---------------------------------------------------------------------------


def sni_cases(pki: PKI) -> list[tuple[str, Identity, str]]:
    """(name asked, certificate expected, session.servername expected)."""
    return [
        ("mail.example.test", pki.server, "mail.example.test"),
        ("other.example.test", pki.other, "other.example.test"),
        ("OTHER.example.test", pki.other, "other.example.test"),
        ("a.wild.example.test", pki.wild, "a.wild.example.test"),
        ("xn--bcher-kva.example.test", pki.idn, "bücher.example.test"),
        ("unknown.example.test", pki.server, "unknown.example.test"),
    ]


def sni_directory(pki: PKI, root: Path) -> Path:
    directory = root / "sni"
    directory.mkdir()
    for ident in (pki.other, pki.wild, pki.idn):
        shutil.copy(ident.combined, directory / ident.combined.name)
    (directory / "README.txt").write_text("not a certificate")
    return directory


@pytest.mark.parametrize("source", ["map", "directory"])
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_sni(pki: PKI, tmp_path: Path, source: str, mode: str) -> None:
    """Each name gets its own certificate, and session.servername says which was asked."""
    if source == "map":
        sni = {
            "other.example.test": str(pki.other.combined),
            "*.wild.example.test": (str(pki.wild.cert), str(pki.wild.key)),
            "bücher.example.test": str(pki.idn.combined),
        }
        opts = options(pki, sni_options=sni, secure=mode == "implicit")
    else:
        directory = sni_directory(pki, tmp_path)
        opts = options(pki, tls_sni_dir=str(directory), secure=mode == "implicit")
    handler = recorder()
    cases = sni_cases(pki)
    with serve(handler, opts) as server:
        for asked, identity, _ in cases:
            ctx = context(pki, check_hostname=False)
            with Dialog(server.address) as d:
                if mode == "implicit":
                    d.implicit_tls(ctx, asked)
                    d.reply()
                else:
                    d.reply()
                    d.ehlo()
                    d.starttls(ctx, asked)
                assert peer_fingerprint(d.tls) == identity.fingerprint, asked
                d.ehlo()
                d.command("QUIT")
    assert [servername for _, servername, _ in handler.secured] == [c[2] for c in cases]


def test_sni_certificate_verifies_for_each_name(pki: PKI) -> None:
    """A verifying client (hostname checks on) accepts both names' certificates."""
    opts = options(pki, sni_options={"other.example.test": str(pki.other.combined)})
    with serve(recorder(), opts) as server:
        for name in ("mail.example.test", "other.example.test"):
            with Dialog(server.address) as d:
                d.reply()
                d.ehlo()
                d.starttls(context(pki), name)  # raises if the certificate does not match
                assert d.ehlo()


def test_sni_without_default_certificate(pki: PKI) -> None:
    """With only SNI names, a known name works and a client without SNI is refused."""
    opts = SMTPServerOptions(
        name="mail.example.test",
        disable_reverse_lookup=True,
        sni_options={"other.example.test": str(pki.other.combined)},
    )
    with serve(recorder(), opts) as server:
        with Dialog(server.address) as d:
            d.reply()
            d.ehlo()
            d.starttls(context(pki), "other.example.test")
            assert d.ehlo()
        with Dialog(server.address) as d:
            d.reply()
            d.ehlo()
            with pytest.raises((ssl.SSLError, ConnectionError)):
                d.starttls(context(pki, check_hostname=False), None)


# ---------------------------------------------------------------------------
# Client certificates
# ---------------------------------------------------------------------------


def client_cert_context(pki: PKI, identity: Identity | None) -> ssl.SSLContext:
    ctx = context(pki)
    if identity is not None:
        ctx.load_cert_chain(str(identity.cert), str(identity.key))
    return ctx


@pytest.mark.parametrize(
    "who,authorized",
    [("client", True), ("stranger", False), (None, False)],
)
def test_request_cert(pki: PKI, who: str | None, authorized: bool) -> None:
    """request_cert asks for a certificate and reports it; nobody is refused."""
    handler = recorder()
    identity = getattr(pki, who) if who else None
    opts = options(pki, request_cert=True, tls_ca=str(pki.ca.path))
    with serve(handler, opts) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        d.starttls(client_cert_context(pki, identity), "mail.example.test")
        assert d.ehlo()
    [(_, _, tls_options)] = handler.secured
    assert tls_options["authorized"] is authorized
    cert = tls_options["peer_certificate"]
    if identity is None:
        assert cert is None
    else:
        assert cert == identity.certificate


@pytest.mark.parametrize("who,accepted", [("client", True), ("stranger", False), (None, False)])
def test_reject_unauthorized(pki: PKI, who: str | None, accepted: bool) -> None:
    """reject_unauthorized: only a certificate from tls_ca gets through the handshake."""
    handler = recorder()
    identity = getattr(pki, who) if who else None
    opts = options(pki, reject_unauthorized=True, tls_ca=str(pki.ca.path), secure=True)
    with serve(handler, opts) as server, Dialog(server.address) as d:
        try:
            d.implicit_tls(client_cert_context(pki, identity), "mail.example.test")
            code, _ = d.reply()  # TLS 1.3: a refusal shows at the first read
        except (ssl.SSLError, ConnectionError):
            code = 0
        assert (code == 220) is accepted
    if accepted:
        [(_, _, tls_options)] = handler.secured
        assert tls_options["authorized"] is True
    else:
        assert handler.secured == [] and handler.connected == []


# ---------------------------------------------------------------------------
# Reloading certificates
# ---------------------------------------------------------------------------


def test_default_certificate_reloaded(
    pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A renewed certificate file is served to new connections without a restart."""
    import smtpsession.tls

    monkeypatch.setattr(smtpsession.tls, "RELOAD_INTERVAL", 0.0)
    combined = tmp_path / "current.pem"
    shutil.copy(pki.server.combined, combined)
    opts = options(pki, tls_cert=str(combined), tls_key=None)
    with serve(recorder(), opts) as server:
        fingerprints = []
        for source in (pki.server, pki.other):
            shutil.copy(source.combined, combined)
            # A distinct modification time even within one timestamp tick.
            st = combined.stat()
            os.utime(
                combined, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000 * len(fingerprints))
            )
            with Dialog(server.address) as d:
                d.reply()
                d.ehlo()
                d.starttls(context(pki, check_hostname=False), None)
                fingerprints.append(peer_fingerprint(d.tls))
    assert fingerprints == [pki.server.fingerprint, pki.other.fingerprint]


# ---------------------------------------------------------------------------
# Renegotiation
# ---------------------------------------------------------------------------


def test_renegotiation_refused(pki: PKI) -> None:
    """
    A TLS 1.2 client asking to renegotiate is refused (OpenSSL's
    OP_NO_RENEGOTIATION), and on_secure is not called a second time.
    """
    from OpenSSL import SSL

    handler = recorder()
    with serve(handler, options(pki)) as server, Dialog(server.address) as d:
        d.reply()
        d.ehlo()
        assert d.command("STARTTLS")[0] == 220
        # pyOpenSSL wants a blocking socket; the kernel's receive timeout
        # still bounds every read.
        d.sock.settimeout(None)
        d.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 10, 0))
        ctx = SSL.Context(SSL.TLS_METHOD)
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
        ctx.load_verify_locations(str(pki.ca.path))
        conn = SSL.Connection(ctx, d.sock)
        conn.set_connect_state()
        conn.set_tlsext_host_name(b"mail.example.test")
        conn.do_handshake()
        assert conn.get_protocol_version_name() == "TLSv1.2"
        conn.sendall(b"EHLO c\r\n")
        assert conn.recv(65536).startswith(b"250-")
        refused = False
        try:
            assert conn.renegotiate()
            conn.do_handshake()
            conn.sendall(b"NOOP\r\n")
            conn.recv(65536)  # the server's refusal shows up here at the latest
        except SSL.Error as e:
            refused = "no renegotiation" in str(e)
        assert refused
    assert len(handler.secured) == 1


def test_requiretls_over_starttls(pki: PKI) -> None:
    """REQUIRETLS: advertised and accepted inside TLS, recorded in the envelope."""
    handler = recorder()
    with serve(handler, options(pki, hide_requiretls=False)) as server:
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("requiretls")
            assert client.mail("a@example.com", ["REQUIRETLS"])[0] == 530
            client.starttls(context=context(pki, check_hostname=False))
            client.ehlo()
            assert client.has_extn("requiretls")
            client.sendmail(
                "a@example.com", ["b@example.com"], b"x\r\n", mail_options=["REQUIRETLS"]
            )
    [message] = handler.messages
    assert message.envelope.require_tls is True
