"""
Fuzz the SASL exchanges of AUTH (L{SaslExchange}): PLAIN, LOGIN,
CRAM-MD5 and XOAUTH2.

    python fuzz/fuzz_sasl.py [libFuzzer flags] [corpus dirs]

Input: byte 0 chooses the mechanism (bits 0-1), whether the first line is
an initial response (bit 2) and the mode (bit 3), then the rest:

  - raw mode: the client's lines, LF-separated, as the exchange gets them
    (any bytes but LF).  Every outcome is a 334 challenge (one line,
    CRLF), an error reply pair, or credentials whose fields are sane
    (a non-empty user name without control characters, text fields as
    C{str}); nothing else, never an exception, and nothing after the end;
  - round-trip mode: the rest is split at NULs into an identity, a user
    name and a secret, which a well-behaved client encodes; the exchange
    must give back exactly those (and CRAM-MD5 must validate the right
    secret, and only that one), or refuse them if they cannot be
    credentials (an empty user name, control characters in it).

Secrets never show in the credentials' C{repr}.
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import base64
import hmac
import re
from typing import Any

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core.sasl import MECHANISMS, AuthRequest, Challenge, SaslExchange

INITIAL, ROUND_TRIP = 4, 8
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_REPLY = re.compile(rb"[2-5][0-9][0-9][ -][^\r\n]*\r\n\Z")


def check_outcome(method: str, outcome: Any) -> str:
    """The kind of a step's outcome, after checking its shape."""
    if isinstance(outcome, Challenge):
        line = outcome.line
        assert line.startswith(b"334 ") and line.endswith(b"\r\n"), line
        assert b"\r" not in line[:-2] and b"\n" not in line[:-2], line
        base64.b64decode(line[4:-2], validate=True)
        return "challenge"
    if isinstance(outcome, AuthRequest):
        assert outcome.method == method, (outcome.method, method)
        user = outcome.username
        assert isinstance(user, str) and user, user
        assert not _CONTROLS.search(user), user
        for field in (outcome.password, outcome.access_token, outcome.authzid):
            assert field is None or isinstance(field, str), field
        if method in ("PLAIN", "LOGIN"):
            assert outcome.password is not None
        if method == "XOAUTH2":
            assert outcome.access_token, outcome.access_token
        shown = repr(outcome)
        for secret in (outcome.password, outcome.access_token):
            if secret and len(secret) >= 8 and secret not in user and secret not in method:
                assert secret not in shown, "a secret in the repr"
        return "request"
    assert isinstance(outcome, tuple) and len(outcome) == 2, outcome
    for reply in outcome:
        assert isinstance(reply, bytes) and _REPLY.match(reply), reply
        assert reply[:1] in b"45", reply
    return "error"


def run_raw(method: str, initial: bool, rest: bytes) -> None:
    lines = [line[:-1] if line.endswith(b"\r") else line for line in rest.split(b"\n")]
    exchange = SaslExchange(method, "mx.example")
    first = lines.pop(0) if initial else None
    kind = check_outcome(method, exchange.start(first))
    if method == "CRAM-MD5" and first is not None:
        assert kind == "error", "CRAM-MD5 takes no initial response"
    for line in lines:
        if kind != "challenge":
            break
        kind = check_outcome(method, exchange.step(line))
        if line == b"*":
            assert kind == "error", "* must cancel the exchange"


def answer(challenge: Challenge) -> bytes:
    return base64.b64decode(challenge.line[4:-2], validate=True)


def run_round_trip(method: str, initial: bool, rest: bytes) -> None:
    parts = [p.decode("utf-8", "replace") for p in rest.split(b"\0", 2)]
    authzid, user, secret = [*parts, "", ""][:3]
    if method == "XOAUTH2":
        # The token is what follows "auth=Bearer " up to ^A, stripped.
        secret = secret.replace("\x01", "").strip()
    # What a client cannot encode at all: a NUL in a PLAIN field, a ^A in
    # an XOAUTH2 user name (the separators).  Only the shape is checked.
    encodable = not (
        (method == "PLAIN" and "\0" in secret) or (method == "XOAUTH2" and "\x01" in user)
    )
    valid = bool(user) and not _CONTROLS.search(user)
    if method == "PLAIN":
        valid = bool(user or authzid) and not _CONTROLS.search(user + authzid)
    elif method == "XOAUTH2":
        valid = valid and bool(secret)
    exchange = SaslExchange(method, "mx.example")

    def first(response: bytes) -> Any:
        """The first response: initial, or after the empty challenge."""
        if initial:
            return exchange.start(response)
        assert isinstance(exchange.start(None), Challenge)
        return exchange.step(response)

    outcome: Any
    if method == "PLAIN":
        outcome = first(base64.b64encode(f"{authzid}\0{user}\0{secret}".encode()))
    elif method == "LOGIN":
        outcome = first(base64.b64encode(user.encode()))
        if isinstance(outcome, Challenge):
            assert answer(outcome) == b"Password:"
            outcome = exchange.step(base64.b64encode(secret.encode()))
    elif method == "CRAM-MD5":
        challenge = exchange.start(None)
        assert isinstance(challenge, Challenge)
        digest = hmac.new(secret.encode(), answer(challenge), "md5").hexdigest()
        outcome = exchange.step(base64.b64encode(f"{user} {digest}".encode()))
    else:
        outcome = first(base64.b64encode(f"user={user}\x01auth=Bearer {secret}\x01\x01".encode()))
    kind = check_outcome(method, outcome)
    if not encodable:
        return
    if not valid:
        assert kind == "error", (method, authzid, user, outcome)
        return
    assert kind == "request", (method, authzid, user, secret, outcome)
    assert isinstance(outcome, AuthRequest)
    if method == "PLAIN":
        assert outcome.username == (user or authzid)
        assert outcome.authzid == (authzid or None)
    else:
        assert outcome.username == user, (outcome.username, user)
    if method in ("PLAIN", "LOGIN"):
        assert outcome.password == secret
    if method == "XOAUTH2":
        assert outcome.access_token == secret
    assert outcome.validate_password(secret) is (method != "XOAUTH2")
    assert outcome.validate_password(secret + "x") is False


def test_one_input(data: bytes) -> None:
    if not data:
        return
    method = MECHANISMS[data[0] & 3]
    initial = bool(data[0] & INITIAL)
    if data[0] & ROUND_TRIP:
        run_round_trip(method, initial, data[1:])
    else:
        run_raw(method, initial, data[1:])


def seeds() -> list[bytes]:
    def b64(raw: bytes) -> bytes:
        return base64.b64encode(raw)

    raw = [
        (0, b64(b"\0user\0pass")),
        (0, b64(b"admin\0user\0pass")),
        (0, b"=\n*"),
        (1, b64(b"user") + b"\n" + b64(b"pass")),
        (1, b"*"),
        (2, b64(b"user " + b"0123456789abcdef" * 2)),
        (3, b64(b"user=u@example.com\x01auth=Bearer token\x01\x01")),
        (3, b"not base64!"),
    ]
    out = []
    for mech, rest in raw:
        out.append(bytes([mech]) + rest)
        out.append(bytes([mech | INITIAL]) + rest)
    for mech in range(4):
        out.append(bytes([mech | ROUND_TRIP]) + b"authz\0user\0secret")
        out.append(bytes([mech | ROUND_TRIP | INITIAL]) + b"\0us\xc3\xa9r\0s\x01cret")
    return out


DICTIONARY = [b"=", b"*", b"\0", b"user=", b"auth=Bearer ", b"\x01", b"=="]


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
