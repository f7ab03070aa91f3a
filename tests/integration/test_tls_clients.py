"""
Real TLS clients against smtpsession on 127.0.0.1: ``openssl s_client
-starttls smtp`` with TLS 1.2 and 1.3 (and SNI), swaks with STARTTLS and
implicit TLS and each AUTH mechanism, and nodemailer (npm) sending with
STARTTLS and AUTH.  Certificates are made by the test; clients verify them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.testing import serve
from tests.conftest import require_program
from tests.tlsutil import PKI, recorder, tls_server_options

pytestmark = pytest.mark.external

USERS = {"alice": "correct horse battery", "bob": "b0b-pw"}
JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


def options(pki: PKI, **kw: Any) -> SMTPServerOptions:
    kw.setdefault("auth_methods", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
    kw.setdefault("sni_options", {"other.example.test": str(pki.other.combined)})
    return tls_server_options(pki, **kw)


def run(args: list[str], stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
    )


# ---------------------------------------------------------------------------
# openssl s_client
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag,version", [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")])
@pytest.mark.parametrize(
    "name,subject",
    [("mail.example.test", "mail.example.test"), ("other.example.test", "other.example.test")],
)
def test_openssl_s_client(pki: PKI, flag: str, version: str, name: str, subject: str) -> None:
    """s_client -starttls smtp verifies the certificate for the SNI name asked, in TLS 1.2 and 1.3."""
    openssl = require_program("openssl")
    handler = recorder()
    with serve(handler, options(pki)) as server:
        out = run(
            [
                openssl,
                "s_client",
                "-starttls",
                "smtp",
                flag,
                "-crlf",
                "-ign_eof",
                "-connect",
                f"127.0.0.1:{server.port}",
                "-servername",
                name,
                "-CAfile",
                str(pki.ca.path),
                "-verify_return_error",
                "-verify_hostname",
                name,
            ],
            stdin="EHLO s-client.example\nNOOP\nQUIT\n",
        )
    text = out.stdout
    assert out.returncode == 0, out.stderr + text
    assert "Verify return code: 0 (ok)" in text
    assert f"subject=CN = {subject}" in text
    assert f", {version}, Cipher is " in text
    assert "250 2.0.0 OK" in text and "221 2.0.0 Bye" in text
    [(_, servername, tls_options)] = handler.secured
    assert servername == name
    assert tls_options["version"] == version


# ---------------------------------------------------------------------------
# swaks
# ---------------------------------------------------------------------------


def swaks(server: Any, pki: PKI, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        [
            require_program("swaks"),
            "--server",
            f"127.0.0.1:{server.port}",
            "--from",
            "alice@example.com",
            "--to",
            "rcpt@example.com",
            "--helo",
            "swaks.client.example",
            "--tls-verify",
            "--tls-ca-path",
            str(pki.ca.path),
            "--tls-sni",
            "mail.example.test",
            "--timeout",
            "20",
            *extra,
        ],
        timeout=60,
    )


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
@pytest.mark.parametrize("tls", ["--tls", "--tlsc"])
def test_swaks_auth(pki: PKI, mechanism: str, tls: str) -> None:
    """swaks with STARTTLS (--tls) or implicit TLS (--tlsc) authenticates with each mechanism."""
    handler = recorder(users=USERS)
    with serve(handler, options(pki, secure=tls == "--tlsc")) as server:
        out = swaks(
            server,
            pki,
            tls,
            "--auth",
            mechanism,
            "--auth-user",
            "alice",
            "--auth-password",
            USERS["alice"],
        )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "235 2.7.0 Authentication successful" in out.stdout
    [message] = handler.messages
    assert (message.user, message.secure, message.transmission_type) == ("alice", True, "ESMTPSA")
    assert message.session.servername == "mail.example.test"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_swaks_auth_failure(pki: PKI, mechanism: str) -> None:
    """swaks with a wrong password gets 535 and sends nothing."""
    handler = recorder(users=USERS)
    with serve(handler, options(pki)) as server:
        out = swaks(
            server,
            pki,
            "--tls",
            "--auth",
            mechanism,
            "--auth-user",
            "alice",
            "--auth-password",
            "wrong",
        )
    assert out.returncode != 0
    assert "535 5.7.8 Error: Authentication credentials invalid" in out.stdout
    assert handler.messages == []


# ---------------------------------------------------------------------------
# nodemailer
# ---------------------------------------------------------------------------


def nodemailer(server: Any, pki: PKI, **cfg: Any) -> dict[str, Any]:
    node = require_program("node")
    if not (JS / "node_modules" / "nodemailer").is_dir():
        pytest.fail("nodemailer is not installed; run ./run-tests.sh (npm install in tests/js)")
    cfg = {"port": server.port, "ca": str(pki.ca.path), "servername": "mail.example.test", **cfg}
    out = run([node, str(JS / "send_mail.js"), json.dumps(cfg)], timeout=60)
    assert out.stdout.strip(), out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert (out.returncode == 0) == result["ok"], out.stderr
    return result


@pytest.mark.parametrize("method", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_nodemailer_starttls_auth(pki: PKI, method: str) -> None:
    """nodemailer with requireTLS (STARTTLS) and AUTH delivers; the session knows both."""
    handler = recorder(users=USERS)
    with serve(handler, options(pki)) as server:
        result = nodemailer(server, pki, user="bob", **{"pass": USERS["bob"]}, method=method)
    assert result["ok"], result
    assert result["accepted"] == ["rcpt@example.com"]
    [message] = handler.messages
    assert (message.user, message.transmission_type) == ("bob", "ESMTPSA")
    assert b"Hello from nodemailer." in message.data
    assert handler.secured[0][1] == "mail.example.test"


def test_nodemailer_implicit_tls(pki: PKI) -> None:
    """nodemailer with secure: true (SMTPS) against secure=True."""
    handler = recorder(users=USERS)
    with serve(handler, options(pki, secure=True)) as server:
        result = nodemailer(server, pki, secure=True, user="alice", **{"pass": USERS["alice"]})
    assert result["ok"], result
    assert handler.messages[0].user == "alice"


def test_nodemailer_wrong_password(pki: PKI) -> None:
    """nodemailer reports EAUTH with our 535 reply."""
    handler = recorder(users=USERS)
    with serve(handler, options(pki)) as server:
        result = nodemailer(server, pki, user="bob", **{"pass": "wrong"})
    assert not result["ok"]
    assert (result["code"], result["responseCode"]) == ("EAUTH", 535)
    assert handler.messages == []


def test_nodemailer_xoauth2(pki: PKI) -> None:
    """nodemailer's OAuth2 (XOAUTH2) with a good token, and the 334/535 flow for a bad one."""
    handler = recorder()

    def on_auth(auth: Any, session: Any) -> Any:
        return auth.username if auth.access_token == "ya29.good" else None

    handler.on_auth = on_auth
    with serve(handler, options(pki)) as server:
        good = nodemailer(server, pki, user="alice@example.com", accessToken="ya29.good")
        bad = nodemailer(server, pki, user="alice@example.com", accessToken="ya29.bad")
    assert good["ok"], good
    assert not bad["ok"] and bad["responseCode"] == 535, bad
    assert [m.user for m in handler.messages] == ["alice@example.com"]
