"""
The TLS and AUTH examples of docs/howto/tls-and-auth.rst work as printed:
each docs/examples/tls_*.py and auth_*.py is imported (or run as a program)
and used with real clients on 127.0.0.1, against certificates the test makes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from smtpsession.cred import hash_password
from smtpsession.testing import serve
from tests.tlsutil import CA, Dialog, Identity, make_ca, peer_fingerprint

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"tls_auth_example_{name}", EXAMPLES / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Identity, Identity]:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("server", ["mail.example.test"]), ca.issue("other", ["other.example.test"])


def context(ca: CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca.path))
    ctx.check_hostname = False
    return ctx


def test_tls_server_program(pki: tuple[CA, Identity, Identity], tmp_path: Path) -> None:
    """tls_server.py as a program: STARTTLS and SMTPS listeners, SNI from a directory."""
    ca, server, other = pki
    sni = tmp_path / "sni"
    sni.mkdir()
    shutil.copy(other.combined, sni / "other.pem")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLES / "tls_server.py"),
            str(server.cert),
            str(server.key),
            str(sni),
            "--ports",
            "0,0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ports = {}
        for _ in range(2):
            line = proc.stdout.readline()  # bounded: the program prints these first
            kind, _, address = line.strip().partition(" on ")
            ports[kind] = int(address.rsplit(":", 1)[1])
        with smtplib.SMTP("127.0.0.1", ports["STARTTLS"], timeout=10) as c:
            c.starttls(context=context(ca))
            c.sendmail("a@example.com", ["b@example.com"], b"Subject: 1\r\n\r\nx\r\n")
        with Dialog(("127.0.0.1", ports["SMTPS"])) as d:
            d.implicit_tls(context(ca), "other.example.test")
            assert peer_fingerprint(d.tls) == other.fingerprint
            d.reply()
            d.ehlo()
            for line in ("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"):
                d.command(line)
            assert d.command("Subject: 2\r\n\r\nx\r\n.")[0] == 250
        lines = [proc.stdout.readline().strip() for _ in range(2)]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert lines[0].endswith("server name -, ESMTPS")
    assert "TLSv1.3" in lines[1] and lines[1].endswith("server name other.example.test, ESMTPS")


def test_auth_handler(
    pki: tuple[CA, Identity, Identity], capsys: pytest.CaptureFixture[str]
) -> None:
    """auth_handler.py: PLAIN, LOGIN, CRAM-MD5 and XOAUTH2, and senders limited to the user."""
    ca, server, _ = pki
    example = load("auth_handler")
    handler = example.Submission({"alice@example.com": "pw"}, {"tok-123": "alice@example.com"})
    options = example.submission_options(str(server.cert), str(server.key)).replace(
        disable_reverse_lookup=True
    )
    with serve(handler, options) as srv:
        for mechanism in ("PLAIN", "LOGIN", "CRAM-MD5"):
            with smtplib.SMTP(*srv.address, timeout=10) as c:
                c.starttls(context=context(ca))
                c.ehlo()
                c.user, c.password = "alice@example.com", "pw"
                fn = getattr(c, "auth_" + mechanism.lower().replace("-", "_"))
                assert c.auth(mechanism, fn)[0] == 235
                c.sendmail("alice@example.com", ["b@example.com"], b"x\r\n")
                with pytest.raises(smtplib.SMTPSenderRefused) as info:
                    c.sendmail("boss@example.com", ["b@example.com"], b"x\r\n")
                assert info.value.smtp_code == 553
        with smtplib.SMTP(*srv.address, timeout=10) as c:
            c.starttls(context=context(ca))
            c.ehlo()
            assert (
                c.auth(
                    "XOAUTH2",
                    lambda challenge=None: "user=alice@example.com\x01auth=Bearer tok-123\x01\x01",
                )[0]
                == 235
            )
        with smtplib.SMTP(*srv.address, timeout=10) as c:
            c.starttls(context=context(ca))
            c.ehlo()
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.auth(
                    "XOAUTH2",
                    lambda challenge=None: (
                        "" if challenge else "user=alice@example.com\x01auth=Bearer nope\x01\x01"
                    ),
                )
            c.user, c.password = "alice@example.com", "wrong"
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.auth("CRAM-MD5", c.auth_cram_md5)
    out = capsys.readouterr().out
    assert out.count("alice@example.com sent 3 bytes (ESMTPSA)") == 3


def test_auth_password_file(
    pki: tuple[CA, Identity, Identity], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """auth_password_file.py: the checker from a hashed password file, over SMTPS."""
    ca, server, _ = pki
    example = load("auth_password_file")
    users = tmp_path / "users.txt"
    users.write_text(f"alice:{hash_password('pw', cost=4)}\n")
    options = example.password_file_options(str(users), str(server.cert), str(server.key))
    with serve(example.Inbox(), options.replace(disable_reverse_lookup=True)) as srv:
        with smtplib.SMTP_SSL(*srv.address, context=context(ca), timeout=10) as c:
            c.ehlo()
            assert c.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
            c.login("alice", "pw")
            c.sendmail("alice@example.com", ["b@example.com"], b"hello\r\n")
        with smtplib.SMTP_SSL(*srv.address, context=context(ca), timeout=10) as c:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                c.login("alice", "wrong")
    assert "7 bytes from user alice" in capsys.readouterr().out
