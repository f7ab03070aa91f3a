"""
SASL in the sans-IO core: each mechanism's exchange (PLAIN, LOGIN,
CRAM-MD5, XOAUTH2) on its own, then AUTH, STARTTLS and REQUIRETLS as the
connection answers them (reference §4.3's STARTTLS and AUTH tables, bugs 1,
7 and 8 of §9), with no sockets and no reactor.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

import pytest

from smtpsession._core import replies as R
from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import CLOSED, NEED_DATA, PAUSED, Auth, MailFrom, StartTLS
from smtpsession._core.sasl import AuthRequest, Challenge, SaslExchange, xoauth2_error_challenge
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session


def b64(text: str | bytes) -> str:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return base64.b64encode(text).decode("ascii")


def plain(user: str, password: str, authzid: str = "") -> bytes:
    return b64(f"{authzid}\0{user}\0{password}").encode()


# ---------------------------------------------------------------------------
# The exchanges alone
# ---------------------------------------------------------------------------


class TestPlain:
    def test_initial_response(self) -> None:
        """PLAIN with an initial response yields the credentials at once."""
        out = SaslExchange("PLAIN", "mx").start(plain("alice", "pw"))
        assert isinstance(out, AuthRequest)
        assert (out.method, out.username, out.password, out.authzid) == (
            "PLAIN",
            "alice",
            "pw",
            None,
        )

    def test_authzid_and_authcid(self) -> None:
        """Both identities are exposed; an empty authcid falls back to the authzid."""
        out = SaslExchange("PLAIN", "mx").start(plain("alice", "pw", authzid="boss"))
        assert isinstance(out, AuthRequest)
        assert (out.username, out.authzid) == ("alice", "boss")
        out = SaslExchange("PLAIN", "mx").start(plain("", "pw", authzid="boss"))
        assert isinstance(out, AuthRequest)
        assert out.username == "boss"

    def test_without_initial_response(self) -> None:
        """Without an initial response the server asks with an empty 334."""
        ex = SaslExchange("PLAIN", "mx")
        first = ex.start(None)
        assert isinstance(first, Challenge) and first.line == b"334 \r\n"
        out = ex.step(plain("alice", "pw"))
        assert isinstance(out, AuthRequest) and out.password == "pw"

    @pytest.mark.parametrize(
        "token",
        [
            b64("alice\0pw"),  # two fields
            b64("a\0b\0c\0d"),  # four fields
            b64("\0\0pw"),  # no identity at all
            b64("\0al\x01ice\0pw"),  # control character in the authcid
            b64("bo\nss\0alice\0pw"),  # control character in the authzid
            b64(b"\0\xff\xfe\0pw"),  # not UTF-8
        ],
    )
    def test_invalid_userdata(self, token: str) -> None:
        """A token that is not authzid NUL authcid NUL password is 501 invalid userdata."""
        assert SaslExchange("PLAIN", "mx").start(token.encode()) == R.AUTH_INVALID_USERDATA

    def test_not_base64(self) -> None:
        """A response that is not base64 is refused with 501 5.5.2."""
        assert SaslExchange("PLAIN", "mx").start(b"not base64!") == R.AUTH_BAD_BASE64
        assert R.AUTH_BAD_BASE64[1].startswith(b"501 5.5.2 ")

    def test_abort(self) -> None:
        """A lone '*' answering a 334 aborts with 501 (RFC 4954 §4)."""
        ex = SaslExchange("PLAIN", "mx")
        ex.start(None)
        assert ex.step(b"*") == R.AUTH_ABORTED


class TestLogin:
    def test_two_steps(self) -> None:
        """LOGIN asks for the user name, then the password, in base64."""
        ex = SaslExchange("LOGIN", "mx")
        first = ex.start(None)
        assert isinstance(first, Challenge)
        assert first.line == b"334 " + b64("Username:").encode() + b"\r\n"
        second = ex.step(b64("alice").encode())
        assert isinstance(second, Challenge)
        assert second.line == b"334 " + b64("Password:").encode() + b"\r\n"
        out = ex.step(b64("pw").encode())
        assert isinstance(out, AuthRequest)
        assert (out.method, out.username, out.password) == ("LOGIN", "alice", "pw")

    def test_initial_response(self) -> None:
        """AUTH LOGIN <user> skips the first question."""
        ex = SaslExchange("LOGIN", "mx")
        first = ex.start(b64("alice").encode())
        assert isinstance(first, Challenge) and first.line == b"334 UGFzc3dvcmQ6\r\n"

    def test_empty_username(self) -> None:
        """An empty user name is 501 missing username."""
        ex = SaslExchange("LOGIN", "mx")
        ex.start(None)
        assert ex.step(b"") == R.AUTH_MISSING_USERNAME

    def test_control_characters(self) -> None:
        """A user name with control characters is 501 invalid userdata."""
        ex = SaslExchange("LOGIN", "mx")
        ex.start(None)
        assert ex.step(b64("al\rice").encode()) == R.AUTH_INVALID_USERDATA

    def test_abort_at_each_step(self) -> None:
        """'*' aborts at the user name and at the password."""
        ex = SaslExchange("LOGIN", "mx")
        ex.start(None)
        assert ex.step(b"*") == R.AUTH_ABORTED
        ex = SaslExchange("LOGIN", "mx")
        ex.start(b64("alice").encode())
        assert ex.step(b"*") == R.AUTH_ABORTED


class TestCramMD5:
    def challenge(self, ex: SaslExchange) -> bytes:
        out = ex.start(None)
        assert isinstance(out, Challenge)
        assert out.line.startswith(b"334 ") and out.line.endswith(b"\r\n")
        return base64.b64decode(out.line[4:-2])

    def test_challenge_shape_and_randomness(self) -> None:
        """The challenge is <32 hex digits.unixtime@name>, and never repeats."""
        seen = set()
        for _ in range(20):
            text = self.challenge(SaslExchange("CRAM-MD5", "mx.example")).decode()
            assert re.fullmatch(r"<[0-9a-f]{32}\.[0-9]+@mx\.example>", text), text
            seen.add(text)
        assert len(seen) == 20

    def test_digest_checked_in_constant_time(self) -> None:
        """validate_password recomputes HMAC-MD5 of the challenge: right secret only."""
        ex = SaslExchange("CRAM-MD5", "mx")
        challenge = self.challenge(ex)
        digest = hmac.new(b"tanstaaftanstaaf", challenge, hashlib.md5).hexdigest()
        out = ex.step(b64(f"tim {digest}").encode())
        assert isinstance(out, AuthRequest)
        assert out.username == "tim" and out.password is None
        assert out.validate_password("tanstaaftanstaaf")
        assert out.validate_password(b"tanstaaftanstaaf")
        assert not out.validate_password("wrong")

    def test_initial_response_refused(self) -> None:
        """CRAM-MD5 takes no initial response: 501 syntax."""
        out = SaslExchange("CRAM-MD5", "mx").start(b"abc")
        assert out == R.pair(501, "Error: syntax: AUTH CRAM-MD5")

    @pytest.mark.parametrize("answer", ["tim", "tim nothex", " " + "0" * 32, "tim " + "0" * 31])
    def test_malformed_response(self, answer: str) -> None:
        """A response that is not 'user hexdigest' is 501 invalid userdata."""
        ex = SaslExchange("CRAM-MD5", "mx")
        ex.start(None)
        assert ex.step(b64(answer).encode()) == R.AUTH_INVALID_USERDATA


class TestXOAuth2:
    def token(self, user: str = "alice@example.com", token: str = "ya29.tok") -> bytes:
        return b64(f"user={user}\x01auth=Bearer {token}\x01\x01").encode()

    def test_initial_response(self) -> None:
        """The XOAUTH2 string yields the user and the access token."""
        out = SaslExchange("XOAUTH2", "mx").start(self.token())
        assert isinstance(out, AuthRequest)
        assert (out.username, out.access_token, out.password) == (
            "alice@example.com",
            "ya29.tok",
            None,
        )

    def test_without_initial_response(self) -> None:
        """Without one the server sends an empty 334 first."""
        ex = SaslExchange("XOAUTH2", "mx")
        first = ex.start(None)
        assert isinstance(first, Challenge) and first.line == b"334 \r\n"
        assert isinstance(ex.step(self.token()), AuthRequest)

    @pytest.mark.parametrize(
        "text", ["auth=Bearer x\x01\x01", "user=a\x01\x01", "user=a\x01auth=Bearer \x01\x01"]
    )
    def test_missing_parts(self, text: str) -> None:
        """A missing user or token is 501 invalid userdata."""
        assert SaslExchange("XOAUTH2", "mx").start(b64(text).encode()) == R.AUTH_INVALID_USERDATA

    def test_error_challenge(self) -> None:
        """The failure challenge carries base64 JSON: a default, or the handler's."""
        line = xoauth2_error_challenge(None)
        assert line.startswith(b"334 ") and line.endswith(b"\r\n")
        assert json.loads(base64.b64decode(line[4:-2]))["status"] == "401"
        line = xoauth2_error_challenge({"status": "400", "schemes": "bearer"})
        assert json.loads(base64.b64decode(line[4:-2])) == {"status": "400", "schemes": "bearer"}


def test_auth_request_repr_hides_secrets() -> None:
    """repr() of an AuthRequest shows the method and user, never a secret."""
    for req in [
        AuthRequest("PLAIN", "alice", password="hunter2"),
        AuthRequest("XOAUTH2", "alice", access_token="ya29.secret-token"),
        AuthRequest("CRAM-MD5", "alice", challenge="<c@x>", digest="0" * 32),
    ]:
        text = repr(req) + str(req)
        assert "alice" in text
        for secret in ("hunter2", "ya29.secret-token", "0" * 32, "<c@x>"):
            assert secret not in text


def test_plain_validate_password() -> None:
    """validate_password also works for PLAIN/LOGIN, so handlers need one call."""
    req = AuthRequest("LOGIN", "alice", password="pw")
    assert req.validate_password("pw")
    assert not req.validate_password("pW")
    assert not AuthRequest("XOAUTH2", "a", access_token="t").validate_password("t")


# ---------------------------------------------------------------------------
# AUTH, STARTTLS and REQUIRETLS in the connection
# ---------------------------------------------------------------------------


class Client:
    """A ServerConnection and a synchronous application around it."""

    def __init__(
        self,
        *,
        secure: bool = False,
        tls: bool = True,
        auth: bool = True,
        users: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("name", "mx.example")
        self.options = SMTPServerOptions(**options)
        self.session = Session(id="s", remote_address="192.0.2.1", client_hostname="[192.0.2.1]")
        self.session.secure = secure
        self.conn = ServerConnection(
            self.options, self.session, tls_available=tls, auth_enabled=auth
        )
        self.conn.secure_changed()
        self.users = {"alice": "pw"} if users is None else users
        self.verdict: Any = None  # force an on_auth answer (SMTPError or value)
        self.requests: list[AuthRequest] = []
        self.starttls = 0
        self.mails = 0
        self.conn.greet()
        self.conn.data_to_send()

    def on_auth(self, req: AuthRequest) -> Any:
        self.requests.append(req)
        if self.verdict is not None:
            return self.verdict
        password = self.users.get(req.username)
        if password is not None and req.validate_password(password):
            return req.username
        return None

    def send(self, *lines: str, raw: bytes | None = None) -> list[str]:
        """Send lines in one write; return the reply lines."""
        self.conn.receive_data(
            raw if raw is not None else "".join(x + "\r\n" for x in lines).encode()
        )
        while True:
            ev = self.conn.next_event()
            if isinstance(ev, Auth):
                value = self.on_auth(ev.request)
                if isinstance(value, SMTPError):
                    self.conn.auth_result(None, value)
                else:
                    self.conn.auth_result(value)
            elif isinstance(ev, MailFrom):
                self.mails += 1
                self.conn.mail_from_result(None)
            elif isinstance(ev, StartTLS):
                self.starttls += 1
            elif ev in (NEED_DATA, PAUSED, CLOSED):
                break
        return self.conn.data_to_send().decode().splitlines()

    def ehlo(self) -> list[str]:
        return [line[4:] for line in self.send("EHLO client.example")[1:]]

    def handshake(self) -> None:
        """Pretend the TLS handshake the driver started has completed."""
        self.session.secure = True
        self.conn.secure_changed()
        self.conn.tls_established()


def login(user: str = "alice", password: str = "pw") -> str:
    return "AUTH PLAIN " + plain(user, password).decode()


class TestAdvertising:
    def test_not_on_cleartext(self) -> None:
        """On cleartext AUTH is not advertised (we do not offer what we would refuse)."""
        c = Client()
        caps = c.ehlo()
        assert "STARTTLS" in caps
        assert not any(cap.startswith("AUTH") for cap in caps)

    def test_on_tls_in_configured_order(self) -> None:
        """Over TLS the configured mechanisms are advertised in order; STARTTLS is not."""
        c = Client(secure=True, auth_methods=["CRAM-MD5", "PLAIN", "XOAUTH2"])
        caps = c.ehlo()
        assert "AUTH CRAM-MD5 PLAIN XOAUTH2" in caps
        assert "STARTTLS" not in caps

    def test_allow_insecure_auth(self) -> None:
        """allow_insecure_auth advertises and accepts AUTH in cleartext."""
        c = Client(allow_insecure_auth=True)
        assert "AUTH PLAIN LOGIN" in c.ehlo()
        assert c.send(login()) == ["235 2.7.0 Authentication successful"]

    def test_not_without_a_checker(self) -> None:
        """Without on_auth or a checker AUTH is neither offered nor required."""
        c = Client(secure=True, auth=False)
        assert not any(cap.startswith("AUTH") for cap in c.ehlo())
        assert c.send("AUTH PLAIN x") == ["500 5.5.2 Error: command not recognized"]
        assert c.send("MAIL FROM:<a@example.com>") == ["250 2.1.0 Accepted"]

    def test_disabled(self) -> None:
        """disabled_commands=['AUTH'] removes AUTH and its requirement."""
        c = Client(secure=True, disabled_commands=["AUTH"])
        assert not any(cap.startswith("AUTH") for cap in c.ehlo())
        assert c.send("MAIL FROM:<a@example.com>")[0].startswith("250")

    def test_hidden_once_authenticated(self) -> None:
        """EHLO after a successful AUTH no longer lists AUTH."""
        c = Client(secure=True)
        c.ehlo()
        c.send(login())
        assert not any(cap.startswith("AUTH") for cap in c.ehlo())

    def test_unknown_mechanisms_never_offered(self) -> None:
        """An unknown mechanism (smtp-server bug 8: XCLIENT) is refused when configured."""
        with pytest.raises(ValueError, match="XCLIENT"):
            SMTPServerOptions(auth_methods=["PLAIN", "XCLIENT"])

    def test_requiretls(self) -> None:
        """REQUIRETLS is advertised only on TLS sessions (when not hidden)."""
        assert "REQUIRETLS" not in Client(hide_requiretls=False, auth=False).ehlo()
        assert "REQUIRETLS" in Client(secure=True, hide_requiretls=False, auth=False).ehlo()
        assert "REQUIRETLS" not in Client(secure=True, auth=False).ehlo()


class TestAuthReplies:
    def test_cleartext_538(self) -> None:
        """AUTH on cleartext is 538 5.7.11, even for an unknown mechanism."""
        c = Client()
        c.ehlo()
        assert c.send("AUTH PLAIN") == ["538 5.7.11 Error: Must issue a STARTTLS command first"]
        assert c.send("AUTH FOO") == ["538 5.7.11 Error: Must issue a STARTTLS command first"]

    def test_before_ehlo_503(self) -> None:
        """AUTH before EHLO is 503 send HELO/EHLO first."""
        c = Client(secure=True)
        assert c.send(login()) == ["503 Error: send HELO/EHLO first"]

    def test_unknown_mechanism_504(self) -> None:
        """A mechanism that is not offered is 504."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send("AUTH CRAM-MD5") == ["504 5.5.4 Error: Unrecognized authentication type"]
        assert c.send("AUTH") == ["501 5.5.4 Error: syntax: AUTH mechanism [initial-response]"]

    def test_success_235(self) -> None:
        """Good credentials: 235 2.7.0, session.user set, ESMTPSA."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send(login()) == ["235 2.7.0 Authentication successful"]
        assert c.session.user == "alice"
        assert c.session.transmission_type == "ESMTPSA"

    def test_already_authenticated_503(self) -> None:
        """A second AUTH is 503 No identity changes permitted."""
        c = Client(secure=True)
        c.ehlo()
        c.send(login())
        assert c.send(login()) == ["503 5.5.1 Error: No identity changes permitted"]

    def test_during_transaction_503(self) -> None:
        """AUTH inside a mail transaction is refused (RFC 4954 §4)."""
        c = Client(secure=True, auth_optional=True)
        c.ehlo()
        c.send("MAIL FROM:<a@example.com>")
        [reply] = c.send(login())
        assert reply.startswith("503 5.5.1 ")

    def test_wrong_credentials_535(self) -> None:
        """An on_auth returning None is 535 5.7.8; the session stays unauthenticated."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send(login("alice", "nope")) == [
            "535 5.7.8 Error: Authentication credentials invalid"
        ]
        assert c.session.user is None
        assert c.send("MAIL FROM:<a@example.com>") == ["530 5.7.0 Error: authentication Required"]

    def test_handler_error(self) -> None:
        """An SMTPError from on_auth is sent as is (535 gets 5.7.8 by default)."""
        c = Client(secure=True)
        c.ehlo()
        c.verdict = SMTPError(535, "Go away")
        assert c.send(login()) == ["535 5.7.8 Go away"]
        c.verdict = SMTPError(454, "Error: Temporary authentication failure", "4.7.0")
        assert c.send(login()) == ["454 4.7.0 Error: Temporary authentication failure"]

    def test_mail_before_auth_530_and_auth_optional(self) -> None:
        """MAIL before AUTH is 530; with auth_optional it is accepted."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send("MAIL FROM:<a@example.com>") == ["530 5.7.0 Error: authentication Required"]
        c = Client(secure=True, auth_optional=True)
        c.ehlo()
        assert c.send("MAIL FROM:<a@example.com>") == ["250 2.1.0 Accepted"]

    def test_custom_auth_required_message(self) -> None:
        """auth_required_message sets the 530 text."""
        c = Client(secure=True, auth_required_message="Log in first")
        c.ehlo()
        assert c.send("RCPT TO:<a@example.com>") == ["530 5.7.0 Log in first"]

    @pytest.mark.parametrize(
        "line,reply",
        [
            ("AUTH PLAIN a b", "501 5.5.4 Error: syntax: AUTH PLAIN token"),
            ("AUTH LOGIN a b", "501 5.5.4 Error: syntax: AUTH LOGIN"),
            ("AUTH XOAUTH2 a b", "501 5.5.4 Error: syntax: AUTH XOAUTH2 token"),
            ("AUTH CRAM-MD5 a b", "501 5.5.4 Error: syntax: AUTH CRAM-MD5"),
            ("AUTH CRAM-MD5 abc", "501 5.5.4 Error: syntax: AUTH CRAM-MD5"),
            ("AUTH PLAIN " + b64("nouser"), "501 5.5.4 Error: invalid userdata"),
            ("AUTH PLAIN %%%", "501 5.5.2 Error: Cannot decode response"),
            ("AUTH LOGIN " + b64("a\x00b"), "501 5.5.4 Error: invalid userdata"),
            ("AUTH XOAUTH2 " + b64("user=a\x01\x01"), "501 5.5.4 Error: invalid userdata"),
        ],
    )
    def test_syntax_errors(self, line: str, reply: str) -> None:
        """Every mechanism's syntax errors are 501 and leave no exchange open."""
        c = Client(secure=True, auth_methods=["PLAIN", "LOGIN", "XOAUTH2", "CRAM-MD5"])
        c.ehlo()
        assert c.send(line) == [reply]
        assert c.send("NOOP") == ["250 2.0.0 OK"]
        assert c.requests == []

    @pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "XOAUTH2", "CRAM-MD5"])
    def test_abort(self, mechanism: str) -> None:
        """'*' answering any 334 is 501 aborted; MAIL is then still 530."""
        c = Client(secure=True, auth_methods=[mechanism])
        c.ehlo()
        [challenge] = c.send(f"AUTH {mechanism}")
        assert challenge.startswith("334 ")
        assert c.send("*") == ["501 5.7.0 Authentication aborted"]
        assert c.send("MAIL FROM:<a@example.com>") == ["530 5.7.0 Error: authentication Required"]

    def test_login_steps(self) -> None:
        """LOGIN: 334 user, 334 password, 235; and with an initial response."""
        c = Client(secure=True, auth_methods=["LOGIN"])
        c.ehlo()
        assert c.send("AUTH LOGIN") == ["334 VXNlcm5hbWU6"]
        assert c.send(b64("alice")) == ["334 UGFzc3dvcmQ6"]
        assert c.send(b64("pw")) == ["235 2.7.0 Authentication successful"]
        c = Client(secure=True, auth_methods=["LOGIN"])
        c.ehlo()
        assert c.send("AUTH LOGIN " + b64("alice"), b64("pw")) == [
            "334 UGFzc3dvcmQ6",
            "235 2.7.0 Authentication successful",
        ]

    def test_plain_without_initial_response(self) -> None:
        """PLAIN: 'AUTH PLAIN' gets '334 ' then the token; '=' is an empty response."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send("AUTH PLAIN") == ["334 "]
        assert c.send(plain("alice", "pw").decode()) == ["235 2.7.0 Authentication successful"]
        c = Client(secure=True)
        c.ehlo()
        assert c.send("AUTH PLAIN =") == ["501 5.5.4 Error: invalid userdata"]

    def test_cram_md5(self) -> None:
        """CRAM-MD5 end to end: the handler checks the digest with validate_password."""
        c = Client(secure=True, auth_methods=["CRAM-MD5"])
        c.ehlo()
        [line] = c.send("AUTH CRAM-MD5")
        challenge = base64.b64decode(line[4:])
        digest = hmac.new(b"pw", challenge, hashlib.md5).hexdigest()
        assert c.send(b64(f"alice {digest}")) == ["235 2.7.0 Authentication successful"]
        c = Client(secure=True, auth_methods=["CRAM-MD5"])
        c.ehlo()
        [line] = c.send("AUTH CRAM-MD5")
        bad = hmac.new(b"wrong", base64.b64decode(line[4:]), hashlib.md5).hexdigest()
        assert c.send(b64(f"alice {bad}")) == [
            "535 5.7.8 Error: Authentication credentials invalid"
        ]

    def test_xoauth2_failure_flow(self) -> None:
        """A refused XOAUTH2: 334 base64 JSON, the client's empty line, then 535 5.7.8."""
        c = Client(secure=True, auth_methods=["XOAUTH2"])
        c.ehlo()
        token = b64("user=alice\x01auth=Bearer bad\x01\x01")
        [line] = c.send("AUTH XOAUTH2 " + token)
        assert line.startswith("334 ")
        assert json.loads(base64.b64decode(line[4:]))["status"] == "401"
        assert c.send("") == ["535 5.7.8 Error: Username and Password not accepted"]
        assert c.session.user is None
        assert c.send("NOOP") == ["250 2.0.0 OK"]

    def test_xoauth2_error_data(self) -> None:
        """The handler chooses the JSON by setting auth.error_data."""
        c = Client(secure=True, auth_methods=["XOAUTH2"])
        c.ehlo()

        def refuse(req: AuthRequest) -> None:
            req.error_data = {"status": "400", "schemes": "Bearer", "scope": "smtp"}
            return None

        c.on_auth = refuse  # type: ignore[method-assign]
        [line] = c.send("AUTH XOAUTH2 " + b64("user=alice\x01auth=Bearer t\x01\x01"))
        assert json.loads(base64.b64decode(line[4:])) == {
            "status": "400",
            "schemes": "Bearer",
            "scope": "smtp",
        }
        assert c.send("x") == ["535 5.7.8 Error: Username and Password not accepted"]

    def test_xoauth2_success(self) -> None:
        """An accepted XOAUTH2 token is 235 at once."""
        c = Client(secure=True, auth_methods=["XOAUTH2"])
        c.ehlo()
        c.on_auth = lambda req: req.username if req.access_token == "good" else None  # type: ignore[method-assign]
        assert c.send("AUTH XOAUTH2 " + b64("user=alice\x01auth=Bearer good\x01\x01")) == [
            "235 2.7.0 Authentication successful"
        ]
        assert c.session.user == "alice"


class TestUnauthenticatedLimit:
    def test_limit(self) -> None:
        """With AUTH required, the Nth unauthenticated command is 421 and closes."""
        c = Client(secure=True, max_allowed_unauthenticated_commands=3)
        replies = c.send("EHLO a", "NOOP", "NOOP", "NOOP")
        assert replies[-1] == "421 4.4.2 Error: too many unauthenticated commands"
        assert c.conn.closed

    @pytest.mark.parametrize("value", [0, None, False])
    def test_no_limit(self, value: Any) -> None:
        """0, None and False all mean no limit (smtp-server bug 1)."""
        c = Client(secure=True, max_allowed_unauthenticated_commands=value)
        replies = c.send("EHLO a", *["NOOP"] * 50)
        assert replies[-50:] == ["250 2.0.0 OK"] * 50
        assert not c.conn.closed

    def test_sasl_lines_do_not_count(self) -> None:
        """SASL continuation lines are not commands (smtp-server bug 7)."""
        c = Client(
            secure=True,
            auth_methods=["LOGIN"],
            max_allowed_unauthenticated_commands=3,
            max_auth_failures=0,  # five failures: not guessing, for this test
        )
        c.ehlo()  # 1
        for _ in range(5):
            assert c.send("AUTH LOGIN", b64("alice"), b64("bad"))[-1].startswith("535")
        assert c.send("NOOP") == ["250 2.0.0 OK"]  # 2
        assert c.send("AUTH LOGIN", b64("alice"), b64("pw"))[-1].startswith("235")
        assert c.send("NOOP", "NOOP", "NOOP", "NOOP") == ["250 2.0.0 OK"] * 4

    def test_not_when_auth_optional(self) -> None:
        """auth_optional lifts the limit (nobody has to authenticate)."""
        c = Client(secure=True, auth_optional=True, max_allowed_unauthenticated_commands=2)
        assert c.send("EHLO a", "NOOP", "NOOP", "NOOP")[-1] == "250 2.0.0 OK"


class TestMailParameters:
    def test_auth_parameter(self) -> None:
        """AUTH= is kept for an authenticated client and is <> otherwise (RFC 4954 §5)."""
        c = Client(secure=True, auth_optional=True)
        c.ehlo()
        c.send("MAIL FROM:<a@example.com> AUTH=bob+2Bx@example.com")
        assert c.session.envelope.mail_from is not None
        assert c.session.envelope.mail_from.args["AUTH"] == "<>"
        c.send("RSET", login())
        c.send("MAIL FROM:<a@example.com> AUTH=bob+2Bx@example.com")
        assert c.session.envelope.mail_from.args["AUTH"] == "bob+x@example.com"

    def test_auth_parameter_syntax(self) -> None:
        """A valueless or non-xtext AUTH= is refused with 501."""
        c = Client(secure=True, auth_optional=True)
        c.ehlo()
        [reply] = c.send("MAIL FROM:<a@example.com> AUTH")
        assert reply.startswith("501 ")

    def test_requiretls(self) -> None:
        """REQUIRETLS: 530 on cleartext, recorded in the envelope on TLS, flag only."""
        c = Client(auth=False)
        c.ehlo()
        [reply] = c.send("MAIL FROM:<a@example.com> REQUIRETLS")
        assert reply.startswith("530 5.7.10 ")
        c = Client(secure=True, auth=False)
        c.ehlo()
        assert c.send("MAIL FROM:<a@example.com> REQUIRETLS=yes")[0].startswith("501 ")
        assert c.send("MAIL FROM:<a@example.com> REQUIRETLS") == ["250 2.1.0 Accepted"]
        assert c.session.envelope.require_tls is True


class TestStartTLS:
    def test_ready(self) -> None:
        """STARTTLS: 220 then a StartTLS event for the driver."""
        c = Client()
        c.ehlo()
        assert c.send("STARTTLS") == ["220 2.0.0 Ready to start TLS"]
        assert c.starttls == 1

    def test_argument_501(self) -> None:
        """STARTTLS with an argument is 501 (smtp-server issue #260)."""
        c = Client()
        c.ehlo()
        assert c.send("STARTTLS now") == ["501 5.5.4 Error: syntax: STARTTLS"]
        assert c.starttls == 0

    def test_already_secure_503(self) -> None:
        """STARTTLS on a TLS session is 503 TLS already active."""
        c = Client(secure=True)
        c.ehlo()
        assert c.send("STARTTLS") == ["503 5.5.1 Error: TLS already active"]

    def test_unavailable_or_disabled_500(self) -> None:
        """Without a certificate, or disabled, STARTTLS is unknown (500) and not advertised."""
        for c in (Client(tls=False), Client(disabled_commands=["STARTTLS"])):
            assert "STARTTLS" not in c.ehlo()
            assert c.send("STARTTLS") == ["500 5.5.2 Error: command not recognized"]

    def test_hidden_still_works(self) -> None:
        """hide_starttls removes the keyword but the command works."""
        c = Client(hide_starttls=True)
        assert "STARTTLS" not in c.ehlo()
        assert c.send("STARTTLS") == ["220 2.0.0 Ready to start TLS"]

    def test_pipelined_plaintext_dropped(self) -> None:
        """Commands sent in the clear after STARTTLS are never parsed (CVE-2011-0411 class)."""
        c = Client(auth=False)
        c.ehlo()
        replies = c.send(raw=b"STARTTLS\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<z@y.example>\r\n")
        assert replies == ["220 2.0.0 Ready to start TLS"]
        c.handshake()
        assert c.send("NOOP") == ["250 OK"]
        assert c.mails == 0
        assert c.session.envelope.mail_from is None

    def test_everything_reset_after_tls(self) -> None:
        """After the handshake: no user, no greeting, no envelope; EHLO is required again."""
        c = Client(allow_insecure_auth=True)
        c.ehlo()
        c.send(login())
        assert c.session.user == "alice"
        c.send("STARTTLS")
        c.handshake()
        s = c.session
        assert (s.user, s.opening_command, s.host_name_appears_as) == (None, None, None)
        assert s.transmission_type == "SMTPS"
        assert c.send("MAIL FROM:<a@example.com>") == ["503 Error: send HELO/EHLO first"]
        caps = c.ehlo()
        assert "AUTH PLAIN LOGIN" in caps and "STARTTLS" not in caps
        assert c.send(login()) == ["235 2.7.0 Authentication successful"]
        assert s.transmission_type == "ESMTPSA"
