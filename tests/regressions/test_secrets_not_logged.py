"""
Credentials never reach the logs: run sessions with every SASL mechanism
(successes, wrong passwords, aborted and malformed exchanges, a failing
on_auth, the twisted.cred bridge), capture every log event the server emits
(all levels, tracebacks included), Python logging and the process's output,
and look for each secret in plain, base64 and hex form.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher

from smtpsession import Handler, SMTPServerOptions
from smtpsession.cred import checker_from_file, hash_password
from smtpsession.testing import serve
from tests.tlsutil import CA, Dialog, Identity, client_context, make_ca

PASSWORD = "Tr0ub4dor&3-never-log-me"
TOKEN = "ya29.A0ARrdaM-never-log-this-token"
WRONG = "wr0ng-pa55-also-secret"


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


class Auth(Handler):
    """Accepts alice/PASSWORD for every mechanism and TOKEN for XOAUTH2; 'crash' raises."""

    def on_auth(self, auth: Any, session: Any) -> Any:
        if auth.username == "crash":
            raise RuntimeError(f"directory lookup failed for {auth!r}")
        if auth.method == "XOAUTH2":
            return auth.username if auth.access_token == TOKEN else None
        return auth.username if auth.validate_password(PASSWORD) else None


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Identity]:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("server", ["mail.example.test"])


def session(server: Any, pki: tuple[CA, Identity]) -> Dialog:
    d = Dialog(server.address)
    d.reply()
    d.ehlo()
    d.starttls(client_context(pki[0]), "mail.example.test")
    d.ehlo()
    return d


def exchanges(server: Any, pki: tuple[CA, Identity]) -> list[str]:
    """Run every kind of AUTH exchange; return the secrets' wire forms seen."""
    wire: list[str] = []

    def run(*lines: str) -> list[int]:
        wire.extend(lines)
        with session(server, pki) as d:
            codes = []
            for line in lines:
                code, text = d.command(line)
                codes.append(code)
                if code == 334 and text and line.startswith("AUTH CRAM-MD5"):
                    break
            d.command("QUIT")
            return codes

    for password, ok in [(PASSWORD, 235), (WRONG, 535)]:
        assert run("AUTH PLAIN " + b64(f"\0alice\0{password}"))[-1] == ok
        assert run("AUTH PLAIN", b64(f"admin\0alice\0{password}"))[-1] == ok
        assert run("AUTH LOGIN", b64("alice"), b64(password))[-1] == ok
        assert run("AUTH LOGIN " + b64("alice"), b64(password))[-1] == ok
        with session(server, pki) as d:
            code, text = d.command("AUTH CRAM-MD5")
            assert code == 334
            digest = hmac.new(password.encode(), base64.b64decode(text), hashlib.md5).hexdigest()
            answer = b64(f"alice {digest}")
            wire.extend([digest, answer])
            assert d.command(answer)[0] == ok
    for token, ok in [(TOKEN, 235), (WRONG, 535)]:
        line = b64(f"user=alice@example.com\x01auth=Bearer {token}\x01\x01")
        wire.append(line)
        with session(server, pki) as d:
            code, _ = d.command("AUTH XOAUTH2 " + line)
            if ok == 535:
                assert code == 334
                code, _ = d.command("")
            assert code == ok
    # Aborted, malformed and crashing exchanges.
    assert run("AUTH LOGIN", b64("alice"), "*")[-1] == 501
    assert run("AUTH PLAIN " + b64(f"alice\0{PASSWORD}"))[-1] == 501
    assert run("AUTH PLAIN " + b64(f"\0crash\0{PASSWORD}"))[-1] == 451
    assert run("AUTH LOGIN " + b64("crash"), b64(PASSWORD))[-1] == 451
    return wire


def forms(secret: str) -> set[str]:
    """The ways a secret could show up in a log."""
    raw = secret.encode()
    return {
        secret,
        raw.hex(),
        raw.hex().upper(),
        b64(raw),
        b64(raw).rstrip("="),
        repr(raw),
    }


def test_secrets_never_logged(
    pki: tuple[CA, Identity],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """No password, token, digest or AUTH line appears in any log event, traceback or output."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    caplog.set_level(logging.DEBUG)
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password(PASSWORD, cost=4)}\n")
    base = dict(
        name="mail.example.test",
        disable_reverse_lookup=True,
        tls_cert=str(pki[1].cert),
        tls_key=str(pki[1].key),
        auth_methods=["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
    )
    try:
        with serve(Auth(), SMTPServerOptions(**base)) as server:
            wire = exchanges(server, pki)
        # The twisted.cred bridge with the hashed password file.
        checker = checker_from_file(str(users))
        with serve(Handler(), SMTPServerOptions(**base, credentials_checker=checker)) as server:
            for password, ok in [(PASSWORD, 235), (WRONG, 535)]:
                with session(server, pki) as d:
                    line = "AUTH PLAIN " + b64(f"\0alice\0{password}")
                    wire.append(line)
                    assert d.command(line)[0] == ok
    finally:
        globalLogPublisher.removeObserver(events.append)

    texts = []
    for event in events:
        texts.append(repr(event))
        text = formatEvent(event)
        if text:
            texts.append(text)
        failure = event.get("log_failure")
        if failure is not None:
            texts.append(failure.getTraceback())
    out, err = capfd.readouterr()
    texts += [caplog.text, out, err]
    everything = "\n".join(texts)

    # The capture is real: it saw authentications and the crash's traceback.
    assert "authentication succeeded" in everything
    assert "authentication failed" in everything
    # The user name tried is logged with a failure (for fail2ban-style tools).
    assert "authentication failed for 'alice' from 127.0.0.1" in everything
    assert "directory lookup failed" in everything and "Traceback" in everything

    secrets = set()
    for secret in (PASSWORD, WRONG, TOKEN):
        secrets |= forms(secret)
    for piece in wire:
        secrets.add(piece.split(" ")[-1])
    secrets.discard("")
    leaked = sorted(s for s in secrets if len(s) >= 8 and s in everything)
    assert leaked == []
