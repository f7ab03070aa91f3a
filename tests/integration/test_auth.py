"""
AUTH on real sockets on 127.0.0.1 with Python's smtplib: every mechanism's
success and failure over STARTTLS and implicit TLS, XOAUTH2's error flow,
the C{twisted.cred} bridge (any checker, no C{on_auth}), the hashed password
file behind the daemon's C{--auth-file}, and its C{hash} command.
"""

from __future__ import annotations

import base64
import json
import os
import smtplib
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import IUsernamePassword
from twisted.internet.defer import fail
from zope.interface import implementer

from smtpsession import Handler, SMTPError, SMTPServerOptions
from smtpsession.cred import (
    PasswordFileChecker,
    checker_from_file,
    hash_password,
    mechanisms_for,
    verify_password,
)
from smtpsession.testing import RecordingHandler, serve
from tests.tlsutil import CA, Identity, make_ca

USERS = {"alice": "correct horse", "bob": "s3cr3t-b0b"}  # smtplib: ASCII only
MECHANISMS = ["PLAIN", "LOGIN", "CRAM-MD5"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Identity]:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("server", ["mail.example.test"])


def options(pki: tuple[CA, Identity], **kw: Any) -> SMTPServerOptions:
    _, ident = pki
    kw.setdefault("name", "mail.example.test")
    kw.setdefault("disable_reverse_lookup", True)
    kw.setdefault("tls_cert", str(ident.cert))
    kw.setdefault("tls_key", str(ident.key))
    kw.setdefault("auth_methods", ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"])
    return SMTPServerOptions(**kw)


def tls_context(pki: tuple[CA, Identity]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki[0].path))
    ctx.check_hostname = False
    return ctx


def starttls_client(server: Any, pki: tuple[CA, Identity]) -> smtplib.SMTP:
    client = smtplib.SMTP(*server.address, timeout=10)
    client.starttls(context=tls_context(pki))
    client.ehlo()
    return client


def auth_function(client: smtplib.SMTP, mechanism: str) -> Any:
    return getattr(client, "auth_" + mechanism.lower().replace("-", "_"))


def login_with(client: smtplib.SMTP, mechanism: str, user: str, password: str) -> tuple[int, bytes]:
    client.user, client.password = user, password
    return client.auth(mechanism, auth_function(client, mechanism))


# ---------------------------------------------------------------------------
# smtplib, each mechanism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_smtplib_login(pki: tuple[CA, Identity], mechanism: str, mode: str) -> None:
    """smtplib authenticates with each mechanism; the message carries the user."""
    handler = RecordingHandler(users=USERS)
    opts = options(pki, secure=mode == "implicit")
    with serve(handler, opts) as server:
        if mode == "implicit":
            client = smtplib.SMTP_SSL(*server.address, context=tls_context(pki), timeout=10)
            client.ehlo()
        else:
            client = starttls_client(server, pki)
        with client:
            assert client.has_extn("auth")
            assert mechanism in client.esmtp_features["auth"].split()
            assert login_with(client, mechanism, "bob", USERS["bob"]) == (
                235,
                b"2.7.0 Authentication successful",
            )
            client.sendmail("bob@example.com", ["carol@example.com"], b"Subject: x\r\n\r\ny\r\n")
    [message] = handler.messages
    assert (message.user, message.transmission_type) == ("bob", "ESMTPSA")


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_smtplib_wrong_password(pki: tuple[CA, Identity], mechanism: str) -> None:
    """A wrong password is 535 5.7.8 for every mechanism; MAIL is then refused with 530."""
    handler = RecordingHandler(users=USERS)
    with serve(handler, options(pki)) as server, starttls_client(server, pki) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            login_with(client, mechanism, "alice", "wrong")
        assert info.value.smtp_code == 535
        assert info.value.smtp_error == b"5.7.8 Error: Authentication credentials invalid"
        assert client.mail("alice@example.com")[0] == 530
        # A later correct attempt on the same connection works.
        assert login_with(client, mechanism, "alice", USERS["alice"])[0] == 235
    assert handler.messages == []


def test_smtplib_login_picks_a_mechanism(pki: tuple[CA, Identity]) -> None:
    """client.login() (smtplib's own choice of mechanism) works."""
    with serve(RecordingHandler(users=USERS), options(pki)) as server:
        with starttls_client(server, pki) as client:
            assert client.login("alice", USERS["alice"])[0] == 235


def test_smtplib_refused_on_cleartext(pki: tuple[CA, Identity]) -> None:
    """In cleartext AUTH is not advertised, and trying anyway is 538."""
    with serve(RecordingHandler(users=USERS), options(pki)) as server:
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.ehlo()
            assert not client.has_extn("auth")
            assert client.docmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0x").decode()) == (
                538,
                b"5.7.11 Error: Must issue a STARTTLS command first",
            )


def test_smtplib_allow_insecure_auth(pki: tuple[CA, Identity]) -> None:
    """allow_insecure_auth: login in cleartext works; the session is ESMTPA."""
    handler = RecordingHandler(users=USERS)
    with serve(handler, options(pki, allow_insecure_auth=True)) as server:
        with smtplib.SMTP(*server.address, timeout=10) as client:
            client.login("alice", USERS["alice"])
            client.sendmail("alice@example.com", ["b@example.com"], b"x\r\n")
    assert handler.messages[0].transmission_type == "ESMTPA"


class XOAuth2:
    """An smtplib authobject for XOAUTH2; records the server's error challenge."""

    def __init__(self, user: str, token: str) -> None:
        self.user, self.token = user, token
        self.challenges: list[bytes] = []

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:
            return f"user={self.user}\x01auth=Bearer {self.token}\x01\x01"
        self.challenges.append(challenge)
        return ""  # the empty response the XOAUTH2 error flow expects


class TokenHandler(RecordingHandler):
    def on_auth(self, auth: Any, session: Any) -> Any:
        if auth.method == "XOAUTH2" and auth.access_token == "ya29.good":
            return auth.username
        auth.error_data = {"status": "401", "schemes": "bearer", "scope": "smtp"}
        return None


def test_smtplib_xoauth2(pki: tuple[CA, Identity]) -> None:
    """XOAUTH2 through client.auth(): a good token is 235; a bad one gets 334 JSON then 535."""
    handler = TokenHandler()
    with serve(handler, options(pki)) as server:
        with starttls_client(server, pki) as client:
            good = XOAuth2("alice@example.com", "ya29.good")
            assert client.auth("XOAUTH2", good)[0] == 235
            client.sendmail("alice@example.com", ["b@example.com"], b"x\r\n")
        with starttls_client(server, pki) as client:
            bad = XOAuth2("alice@example.com", "ya29.expired")
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.auth("XOAUTH2", bad)
            assert info.value.smtp_code == 535
            assert info.value.smtp_error == b"5.7.8 Error: Username and Password not accepted"
            [challenge] = bad.challenges
            assert json.loads(challenge) == {"status": "401", "schemes": "bearer", "scope": "smtp"}
            assert client.noop()[0] == 250
    assert [m.user for m in handler.messages] == ["alice@example.com"]


def test_handler_errors(pki: tuple[CA, Identity]) -> None:
    """on_auth raising SMTPError sends it; raising anything else is 451 4.3.0 (API.md)."""

    class Picky(Handler):
        def on_auth(self, auth: Any, session: Any) -> Any:
            if auth.username == "locked":
                raise SMTPError(535, "Account locked", "5.7.8")
            raise RuntimeError("directory is down")

    with serve(Picky(), options(pki)) as server, starttls_client(server, pki) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            login_with(client, "PLAIN", "locked", "x")
        assert (info.value.smtp_code, info.value.smtp_error) == (535, b"5.7.8 Account locked")
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            login_with(client, "PLAIN", "alice", "x")
        assert info.value.smtp_code == 451
        assert info.value.smtp_error == b"4.3.0 Error: internal server error"
        assert client.noop()[0] == 250


def test_async_on_auth(pki: tuple[CA, Identity]) -> None:
    """A coroutine on_auth works (the answer comes later, replies stay in order)."""

    class Slow(RecordingHandler):
        async def on_auth(self, auth: Any, session: Any) -> Any:
            from twisted.internet import reactor
            from twisted.internet.task import deferLater

            await deferLater(reactor, 0.05, lambda: None)
            return auth.username if auth.validate_password("pw") else None

    handler = Slow()
    with serve(handler, options(pki)) as server, starttls_client(server, pki) as client:
        client.login("alice", "pw")
        client.sendmail("alice@example.com", ["b@example.com"], b"x\r\n")
    assert handler.messages[0].user == "alice"


# ---------------------------------------------------------------------------
# twisted.cred
# ---------------------------------------------------------------------------


def memory_checker() -> InMemoryUsernamePasswordDatabaseDontUse:
    return InMemoryUsernamePasswordDatabaseDontUse(
        alice=USERS["alice"].encode(), bob=USERS["bob"].encode()
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_cred_checker_without_on_auth(pki: tuple[CA, Identity], mechanism: str) -> None:
    """Any ICredentialsChecker authenticates PLAIN, LOGIN and CRAM-MD5 with no on_auth."""
    handler = RecordingHandler()
    opts = options(pki, credentials_checker=memory_checker())
    with serve(handler, opts) as server, starttls_client(server, pki) as client:
        assert login_with(client, mechanism, "bob", USERS["bob"])[0] == 235
        client.sendmail("bob@example.com", ["c@example.com"], b"x\r\n")
    with serve(handler, opts) as server, starttls_client(server, pki) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            login_with(client, mechanism, "bob", "nope")
        assert info.value.smtp_code == 535
        with pytest.raises(smtplib.SMTPAuthenticationError):
            login_with(client, mechanism, "mallory", USERS["bob"])
    assert [m.user for m in handler.messages] == ["bob"]


def test_cred_mechanisms_follow_the_checker(pki: tuple[CA, Identity]) -> None:
    """Only what the checker can verify is offered: no CRAM-MD5 for hashed passwords, no XOAUTH2."""

    @implementer(IUsernamePassword)
    class Nobody:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials: Any) -> Any:
            from twisted.cred.error import UnauthorizedLogin

            return fail(UnauthorizedLogin())

    assert mechanisms_for(Nobody()) == {"PLAIN", "LOGIN"}
    assert mechanisms_for(memory_checker()) == {"PLAIN", "LOGIN", "CRAM-MD5"}
    with serve(RecordingHandler(), options(pki, credentials_checker=Nobody())) as server:
        with starttls_client(server, pki) as client:
            assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
    with serve(RecordingHandler(), options(pki, credentials_checker=memory_checker())) as server:
        with starttls_client(server, pki) as client:
            assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN", "CRAM-MD5"]


def test_cred_checker_failure_is_temporary(pki: tuple[CA, Identity]) -> None:
    """A checker that fails with something other than UnauthorizedLogin gives 454."""

    class Broken:
        credentialInterfaces = (IUsernamePassword,)

        def requestAvatarId(self, credentials: Any) -> Any:
            return fail(OSError("database unreachable"))

    with serve(RecordingHandler(), options(pki, credentials_checker=Broken())) as server:
        with starttls_client(server, pki) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                client.login("alice", "x")
            assert info.value.smtp_code == 454


def test_on_auth_wins_over_checker(pki: tuple[CA, Identity]) -> None:
    """With both, the handler's on_auth decides (the checker is not asked)."""
    handler = RecordingHandler(users={"carol": "pw"})
    opts = options(pki, credentials_checker=memory_checker())
    with serve(handler, opts) as server, starttls_client(server, pki) as client:
        assert client.login("carol", "pw")[0] == 235
    with serve(handler, opts) as server, starttls_client(server, pki) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", USERS["alice"])


# ---------------------------------------------------------------------------
# The password file
# ---------------------------------------------------------------------------


def bump_mtime(path: Path) -> None:
    """Make a rewrite visible even within one file-system timestamp tick."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def write_users(path: Path, users: dict[str, str], scheme: str = "scrypt") -> None:
    cost = 4 if scheme == "scrypt" else 1000  # cheap for tests
    lines = ["# smtpsession users", ""]
    lines += [f"{u}:{hash_password(p, scheme, cost=cost)}" for u, p in users.items()]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
def test_hash_round_trip(scheme: str) -> None:
    """hash_password/verify_password: right password only; salted (two hashes differ)."""
    cost = 4 if scheme == "scrypt" else 1000
    one = hash_password("pässword", scheme, cost=cost)
    two = hash_password("pässword", scheme, cost=cost)
    assert one != two and one.startswith(f"${scheme}$")
    assert verify_password(one, "pässword")
    assert not verify_password(one, "password")


def test_default_costs_are_production_grade() -> None:
    """Without a cost the defaults are used (scrypt N=2^15, PBKDF2 600k iterations)."""
    assert hash_password("x").startswith("$scrypt$ln=15,r=8,p=1$")
    assert hash_password("x", "pbkdf2-sha256").startswith("$pbkdf2-sha256$i=600000$")


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
def test_password_file_over_smtp(pki: tuple[CA, Identity], tmp_path: Path, scheme: str) -> None:
    """checker_from_file authenticates PLAIN and LOGIN; CRAM-MD5 is not offered."""
    path = tmp_path / "users"
    write_users(path, USERS, scheme)
    handler = RecordingHandler()
    opts = options(pki, credentials_checker=checker_from_file(str(path)))
    with serve(handler, opts) as server:
        for mechanism in ("PLAIN", "LOGIN"):
            with starttls_client(server, pki) as client:
                assert client.esmtp_features["auth"].split() == ["PLAIN", "LOGIN"]
                assert login_with(client, mechanism, "bob", USERS["bob"])[0] == 235
                client.sendmail("bob@example.com", ["c@example.com"], b"x\r\n")
            with starttls_client(server, pki) as client:
                for user, password in [("bob", "wrong"), ("nobody", USERS["bob"])]:
                    with pytest.raises(smtplib.SMTPAuthenticationError) as info:
                        login_with(client, mechanism, user, password)
                    assert info.value.smtp_code == 535
    assert [m.user for m in handler.messages] == ["bob", "bob"]


def test_password_file_reloaded(pki: tuple[CA, Identity], tmp_path: Path) -> None:
    """A changed file is read again at the next attempt; a broken one keeps the old users."""
    path = tmp_path / "users"
    write_users(path, {"alice": "one"})
    opts = options(pki, credentials_checker=checker_from_file(str(path)))
    with serve(RecordingHandler(), opts) as server:
        with starttls_client(server, pki) as client:
            assert client.login("alice", "one")[0] == 235
        write_users(path, {"alice": "two", "dave": "three"})
        bump_mtime(path)
        with starttls_client(server, pki) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alice", "one")
        with starttls_client(server, pki) as client:
            assert client.login("dave", "three")[0] == 235
        path.write_text("dave:not-a-hash\n")
        bump_mtime(path)
        with starttls_client(server, pki) as client:
            assert client.login("dave", "three")[0] == 235


@pytest.mark.parametrize(
    "content,message",
    [
        ("alice\n", "line 1: expected user:\\$scheme\\$"),
        ("# ok\nbob:$md5$x$y$z\n", "line 2: unknown scheme 'md5'"),
        ("carol:$scrypt$ln=99,r=8,p=1$c2FsdHNhbHQ$" + "A" * 43 + "\n", "out of range"),
        ("dave:$pbkdf2-sha256$i=5000$!!$abc\n", "base64"),
    ],
)
def test_password_file_errors(tmp_path: Path, content: str, message: str) -> None:
    """A malformed file is refused at start with the line number (never the line itself)."""
    path = tmp_path / "users"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        checker_from_file(str(path))
    assert "A" * 20 not in str(info.value)


def test_password_file_missing(tmp_path: Path) -> None:
    """A missing file is an OSError at start."""
    with pytest.raises(OSError):
        checker_from_file(str(tmp_path / "nope"))


def test_password_file_checker_is_a_cred_checker(tmp_path: Path) -> None:
    """The file checker is an ordinary ICredentialsChecker (usable with a Portal)."""
    from twisted.cred.checkers import ICredentialsChecker

    path = tmp_path / "users"
    write_users(path, {"alice": "pw"})
    checker = PasswordFileChecker(str(path))
    assert ICredentialsChecker.providedBy(checker)
    assert mechanisms_for(checker) == {"PLAIN", "LOGIN"}


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2-sha256"])
def test_hash_command(tmp_path: Path, scheme: str) -> None:
    """python -m smtpsession.cred hash USER prints a password file line that works."""
    out = subprocess.run(
        [sys.executable, "-m", "smtpsession.cred", "hash", "--scheme", scheme, "erin"],
        input="hunter2\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    line = out.stdout.strip()
    assert line.startswith(f"erin:${scheme}$")
    assert "hunter2" not in out.stdout + out.stderr
    path = tmp_path / "users"
    path.write_text(line + "\n")
    checker_from_file(str(path))
    assert verify_password(line.split(":", 1)[1], "hunter2")


def test_hash_command_refuses_bad_input() -> None:
    """An empty password or a user name with ':' is refused."""
    root = Path(__file__).resolve().parents[2]
    for args, stdin in [(["hash", "erin"], "\n"), (["hash", "a:b"], "pw\n")]:
        out = subprocess.run(
            [sys.executable, "-m", "smtpsession.cred", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=root,
        )
        assert out.returncode != 0
