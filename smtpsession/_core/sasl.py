# -*- test-case-name: tests.unit.test_sasl -*-
"""
SASL mechanisms for AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN, CRAM-MD5
(RFC 2195) and XOAUTH2, as small step machines.

Each exchange is fed the client's lines and answers with one of three
outcomes: a challenge to send (and wait), an L{AuthRequest} for the
application to judge, or an error reply that ends the exchange.  The
exchange never sees the network and never logs: credentials only ever live
in the L{AuthRequest}, whose C{repr} hides them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import time
from typing import Any

from smtpsession._core import replies as R

__all__ = ["MECHANISMS", "AuthRequest", "Challenge", "SaslExchange"]

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")

#: The error XOAUTH2 servers send in their 334 (Google's shape).
DEFAULT_XOAUTH2_ERROR = {
    "status": "401",
    "schemes": "bearer",
    "scope": "https://mail.google.com/",
}


class AuthRequest:
    """
    Credentials presented by a client, handed to C{on_auth}.

    ``method`` is the mechanism name.  ``username`` is always set.  PLAIN and
    LOGIN carry ``password``; PLAIN also ``authzid`` (the identity to act
    as, or C{None}).  XOAUTH2 carries ``access_token``.  CRAM-MD5 carries no
    secret: call L{validate_password} with the user's stored password.

    A handler rejecting XOAUTH2 may set ``error_data`` (a JSON-serialisable
    dict) to choose the error the client receives in the 334 challenge.
    """

    __slots__ = (
        "_challenge",
        "_digest",
        "access_token",
        "authzid",
        "error_data",
        "method",
        "password",
        "username",
    )

    def __init__(
        self,
        method: str,
        username: str,
        password: str | None = None,
        access_token: str | None = None,
        authzid: str | None = None,
        challenge: str | None = None,
        digest: str | None = None,
    ) -> None:
        self.method = method
        self.username = username
        self.password = password
        self.access_token = access_token
        self.authzid = authzid
        self.error_data: dict[str, Any] | None = None
        self._challenge = challenge
        self._digest = digest

    def validate_password(self, secret: str | bytes) -> bool:
        """
        Whether C{secret} is the password that produced the client's answer.

        For CRAM-MD5 this recomputes the HMAC-MD5 of the challenge and
        compares in constant time; for PLAIN and LOGIN it compares with the
        password sent, also in constant time, so handlers can use one call
        for every mechanism.
        """
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if self.method == "CRAM-MD5":
            if self._challenge is None or self._digest is None:
                return False
            expected = hmac.new(secret, self._challenge.encode("utf-8"), "md5").hexdigest()
            return hmac.compare_digest(expected, self._digest.lower())
        if self.password is None:
            return False
        return hmac.compare_digest(secret, self.password.encode("utf-8"))

    def __repr__(self) -> str:
        # Never show secrets: this object ends up in logs and tracebacks.
        return f"<AuthRequest method={self.method!r} username={self.username!r}>"


class Challenge:
    """An outcome of a step: send C{line} (a full 334 reply) and wait."""

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        self.line = line


def _b64(line: bytes) -> bytes | None:
    """Decode a client response; C{None} if it is not base64."""
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        return None


def _challenge(text: bytes) -> Challenge:
    return Challenge(b"334 " + base64.b64encode(text) + b"\r\n")


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


Outcome = Challenge | AuthRequest | tuple[bytes, bytes]


class SaslExchange:
    """
    One AUTH exchange.  L{start} takes the initial response (or C{None}),
    L{step} each following client line (without CRLF).  Both return an
    C{Outcome}: a L{Challenge}, an L{AuthRequest} or an error reply pair.
    """

    def __init__(self, method: str, server_name: str) -> None:
        self.method = method
        self._server_name = server_name
        self._username: str | None = None
        self._cram: str | None = None
        self._stepper = {
            "PLAIN": self._plain,
            "LOGIN": self._login,
            "CRAM-MD5": self._cram_md5,
            "XOAUTH2": self._xoauth2,
        }[method]

    def start(self, initial: bytes | None) -> Outcome:
        """Begin the exchange with the optional initial response."""
        m = self.method
        if m == "CRAM-MD5":
            if initial is not None:
                return R.pair(501, "Error: syntax: AUTH CRAM-MD5")
            self._cram = f"<{secrets.token_hex(16)}.{int(time.time())}@{self._server_name}>"
            return _challenge(self._cram.encode("utf-8"))
        if initial is None:
            if m == "LOGIN":
                return Challenge(b"334 VXNlcm5hbWU6\r\n")
            return Challenge(b"334 \r\n")
        if initial == b"=":  # RFC 4954 §4: "=" is an empty initial response
            initial = b""
        return self._stepper(initial)

    def step(self, line: bytes) -> Outcome:
        """Feed the client's answer to the last challenge."""
        if line == b"*":
            return R.AUTH_ABORTED
        return self._stepper(line)

    # -- mechanisms ---------------------------------------------------------

    def _plain(self, line: bytes) -> Outcome:
        raw = _b64(line)
        if raw is None:
            return R.AUTH_BAD_BASE64
        fields = raw.split(b"\0")
        if len(fields) != 3:
            return R.AUTH_INVALID_USERDATA
        decoded = [_text(f) for f in fields]
        if any(d is None for d in decoded):
            return R.AUTH_INVALID_USERDATA
        authzid, authcid, password = decoded
        assert authzid is not None and authcid is not None and password is not None
        username = authcid or authzid
        if not username or _CONTROLS.search(authcid) or _CONTROLS.search(authzid):
            return R.AUTH_INVALID_USERDATA
        return AuthRequest("PLAIN", username, password=password, authzid=authzid or None)

    def _login(self, line: bytes) -> Outcome:
        raw = _b64(line)
        if raw is None:
            return R.AUTH_BAD_BASE64
        text = _text(raw)
        if text is None:
            return R.AUTH_INVALID_USERDATA
        if self._username is None:
            if not text:
                return R.AUTH_MISSING_USERNAME
            if _CONTROLS.search(text):
                return R.AUTH_INVALID_USERDATA
            self._username = text
            return Challenge(b"334 UGFzc3dvcmQ6\r\n")
        return AuthRequest("LOGIN", self._username, password=text)

    def _cram_md5(self, line: bytes) -> Outcome:
        raw = _b64(line)
        if raw is None:
            return R.AUTH_BAD_BASE64
        text = _text(raw)
        if text is None or " " not in text:
            return R.AUTH_INVALID_USERDATA
        username, _, digest = text.rpartition(" ")
        if (
            not username
            or _CONTROLS.search(username)
            or re.fullmatch("[0-9a-fA-F]{32}", digest) is None
        ):
            return R.AUTH_INVALID_USERDATA
        return AuthRequest("CRAM-MD5", username, challenge=self._cram, digest=digest)

    def _xoauth2(self, line: bytes) -> Outcome:
        raw = _b64(line)
        if raw is None:
            return R.AUTH_BAD_BASE64
        text = _text(raw)
        if text is None:
            return R.AUTH_INVALID_USERDATA
        user = token = None
        for part in text.split("\x01"):
            if part.startswith("user="):
                user = part[5:]
            elif part[:12].lower() == "auth=bearer ":
                token = part[12:].strip()
        if not user or not token or _CONTROLS.search(user):
            return R.AUTH_INVALID_USERDATA
        return AuthRequest("XOAUTH2", user, access_token=token)


def xoauth2_error_challenge(data: dict[str, Any] | None) -> bytes:
    """The 334 reply that carries an XOAUTH2 error to the client."""
    payload = json.dumps(data if data is not None else DEFAULT_XOAUTH2_ERROR)
    return b"334 " + base64.b64encode(payload.encode("utf-8")) + b"\r\n"
