# -*- test-case-name: tests.integration.test_auth -*-
"""
AUTH through C{twisted.cred}: check SMTP credentials with any
C{ICredentialsChecker} instead of writing C{on_auth}, and a password file
with hashed passwords for the daemon's C{--auth-file}.

With C{SMTPServerOptions(credentials_checker=checker)} and no C{on_auth} in
the handler, the server offers the mechanisms the checker can verify:

  - PLAIN and LOGIN when it accepts C{IUsernamePassword} (or
    C{IUsernameHashedPassword});
  - CRAM-MD5 when it accepts C{IUsernameHashedPassword}: the checker calls
    C{checkPassword(stored_plaintext_password)}, which recomputes the HMAC in
    constant time.  A store of hashed passwords cannot do CRAM-MD5 (the
    mechanism needs the plaintext on the server), which is one more reason
    to prefer PLAIN over TLS;
  - never XOAUTH2 (C{twisted.cred} has no bearer-token credentials); use
    C{on_auth} for tokens.

The avatar id the checker returns becomes C{session.user} (decoded to
C{str} if it is bytes).  C{UnauthorizedLogin} and C{UnhandledCredentials}
mean C{535}; any other failure means C{454 4.7.0} (temporary) and is logged.

Password file format (one user per line, C{#} comments and blank lines
ignored)::

    alice:$scrypt$ln=15,r=8,p=1$<salt>$<hash>
    bob:$pbkdf2-sha256$i=600000$<salt>$<hash>

C{<salt>} and C{<hash>} are standard base64 without padding; C{ln} is log2
of scrypt's N.  Fields after a third C{:} are ignored.  Produce lines with::

    python -m smtpsession.cred hash alice          # asks for the password
    python -m smtpsession.cred hash --scheme pbkdf2-sha256 bob < password.txt

The file is read again when its modification time or size changes.
Hashes are verified in the reactor's thread pool (both stdlib functions
release the GIL), so a slow KDF does not stall other sessions; an unknown
user costs the same work as a known one.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import hmac
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.internet.defer import Deferred, DeferredSemaphore, fail, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession._core.sasl import AuthRequest
from smtpsession.errors import AuthUnavailable

__all__ = [
    "PasswordFileChecker",
    "checker_authenticator",
    "checker_from_file",
    "hash_password",
    "mechanisms_for",
    "verify_password",
]

log = Logger()

#: Default cost parameters (2026: OWASP's guidance or above).
SCRYPT_LN, SCRYPT_R, SCRYPT_P = 15, 8, 1
PBKDF2_ITERATIONS = 600_000

_SCHEMES = ("scrypt", "pbkdf2-sha256")


# ---------------------------------------------------------------------------
# The bridge
# ---------------------------------------------------------------------------


@implementer(IUsernamePassword, IUsernameHashedPassword)
class _PasswordCredentials:
    """PLAIN/LOGIN credentials, in the shape C{twisted.cred} expects."""

    __slots__ = ("password", "username")

    def __init__(self, username: bytes, password: bytes) -> None:
        self.username = username
        self.password = password

    def checkPassword(self, password: bytes) -> bool:
        return hmac.compare_digest(self.password, password)

    def __repr__(self) -> str:
        return f"<credentials for {self.username!r}>"


@implementer(IUsernameHashedPassword)
class _CramMD5Credentials:
    """CRAM-MD5: the checker hands us the stored password to test."""

    __slots__ = ("_auth", "username")

    def __init__(self, auth: AuthRequest) -> None:
        self.username = auth.username.encode("utf-8")
        self._auth = auth

    def checkPassword(self, password: bytes | str) -> bool:
        return self._auth.validate_password(password)

    def __repr__(self) -> str:
        return f"<CRAM-MD5 credentials for {self.username!r}>"


def mechanisms_for(checker: Any) -> frozenset[str]:
    """The SASL mechanisms C{checker} can verify."""
    interfaces = tuple(getattr(checker, "credentialInterfaces", ()))

    def accepts(iface: Any) -> bool:
        return any(i is iface or i.extends(iface) for i in interfaces)

    out: set[str] = set()
    if accepts(IUsernamePassword) or accepts(IUsernameHashedPassword):
        out.update(("PLAIN", "LOGIN"))
    if accepts(IUsernameHashedPassword):
        out.add("CRAM-MD5")
    return frozenset(out)


def checker_authenticator(
    checker: ICredentialsChecker,
) -> Callable[[AuthRequest, Any], Any]:
    """
    An authenticator for the server: C{(auth, session) -> user | None |
    Deferred}, backed by C{checker}.
    """
    if not ICredentialsChecker.providedBy(checker) and not hasattr(checker, "requestAvatarId"):
        raise TypeError(f"{checker!r} is not a twisted.cred ICredentialsChecker")
    usable = mechanisms_for(checker)

    def authenticate(auth: AuthRequest, session: Any) -> Any:
        if auth.method not in usable:
            return None
        credentials: Any
        if auth.method == "CRAM-MD5":
            credentials = _CramMD5Credentials(auth)
        else:
            credentials = _PasswordCredentials(
                auth.username.encode("utf-8"), (auth.password or "").encode("utf-8")
            )
        d: Deferred[Any] = maybeDeferred(checker.requestAvatarId, credentials)
        d.addCallbacks(_avatar, _refused)
        return d

    return authenticate


def _avatar(avatar_id: Any) -> Any:
    if isinstance(avatar_id, bytes):
        return avatar_id.decode("utf-8", "replace")
    return avatar_id or None


def _refused(failure: Failure) -> Any:
    if failure.check(UnauthorizedLogin, UnhandledCredentials):
        return None
    if failure.check(AuthUnavailable):
        return failure  # already a temporary failure, said why
    # The checker could not answer (its database is down, say): logged
    # here with its traceback, and a temporary failure for the client.
    log.failure("The credentials checker failed", failure)
    raise AuthUnavailable(failure.getErrorMessage())


# ---------------------------------------------------------------------------
# Password hashes
# ---------------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(password: bytes, salt: bytes, ln: int, r: int, p: int, dklen: int = 32) -> bytes:
    n = 1 << ln
    # OpenSSL needs about 128 * n * r * p bytes; allow twice that.
    maxmem = 256 * n * r * p + (1 << 20)
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=maxmem)


def hash_password(
    password: str | bytes,
    scheme: str = "scrypt",
    *,
    cost: int | None = None,
) -> str:
    """
    A salted hash of C{password} for the password file.

    @param scheme: C{"scrypt"} (default) or C{"pbkdf2-sha256"}.
    @param cost: log2(N) for scrypt, iterations for PBKDF2 (the defaults
        suit production; tests use small values).
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    salt = os.urandom(16)
    if scheme == "scrypt":
        ln = SCRYPT_LN if cost is None else cost
        digest = _scrypt(password, salt, ln, SCRYPT_R, SCRYPT_P)
        return f"$scrypt$ln={ln},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"
    if scheme == "pbkdf2-sha256":
        iterations = PBKDF2_ITERATIONS if cost is None else cost
        digest = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
        return f"$pbkdf2-sha256$i={iterations}${_b64(salt)}${_b64(digest)}"
    raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(_SCHEMES)}")


class _Hash:
    """A parsed password hash: how to recompute it, and the expected value."""

    __slots__ = ("compute", "digest")

    def __init__(self, compute: Callable[[bytes], bytes], digest: bytes) -> None:
        self.compute = compute
        self.digest = digest

    def matches(self, password: bytes) -> bool:
        return hmac.compare_digest(self.compute(password), self.digest)


def _params(text: str, names: Sequence[str]) -> dict[str, int]:
    out = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in names or not value.isdigit() or key in out:
            raise ValueError(f"bad parameters {text!r}")
        out[key] = int(value)
    if set(out) != set(names):
        raise ValueError(f"parameters {text!r} must be {','.join(names)}")
    return out


def _parse_hash(text: str) -> _Hash:
    """Parse C{$scheme$params$salt$hash}; C{ValueError} if malformed."""
    parts = text.split("$")
    if len(parts) != 5 or parts[0] != "":
        raise ValueError("expected $scheme$parameters$salt$hash")
    _, scheme, params, salt_b64, digest_b64 = parts
    if scheme not in _SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known: {', '.join(_SCHEMES)}")
    try:
        salt = _unb64(salt_b64)
        digest = _unb64(digest_b64)
    except (binascii.Error, ValueError):
        raise ValueError("salt and hash must be base64") from None
    if len(salt) < 8 or len(digest) < 16:
        raise ValueError("salt or hash too short")
    if scheme == "scrypt":
        p = _params(params, ("ln", "r", "p"))
        ln, r, par = p["ln"], p["r"], p["p"]
        if not (1 <= ln <= 20 and 1 <= r <= 32 and 1 <= par <= 16):
            raise ValueError("scrypt parameters out of range")

        def scrypt(password: bytes) -> bytes:
            return _scrypt(password, salt, ln, r, par, len(digest))

        return _Hash(scrypt, digest)
    if scheme == "pbkdf2-sha256":
        iterations = _params(params, ("i",))["i"]
        if not 1000 <= iterations <= 10_000_000:
            raise ValueError("pbkdf2 iterations out of range")

        def pbkdf2(password: bytes) -> bytes:
            return hashlib.pbkdf2_hmac("sha256", password, salt, iterations, len(digest))

        return _Hash(pbkdf2, digest)
    raise AssertionError(scheme)  # pragma: no cover


def verify_password(hashed: str, password: str | bytes) -> bool:
    """Whether C{password} matches C{hashed} (from L{hash_password})."""
    if isinstance(password, str):
        password = password.encode("utf-8")
    return _parse_hash(hashed).matches(password)


# ---------------------------------------------------------------------------
# The password file checker
# ---------------------------------------------------------------------------


def _read_file(path: str) -> dict[bytes, _Hash]:
    """Parse a password file; C{ValueError} naming the bad line."""
    users: dict[bytes, _Hash] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, rest = line.partition(":")
            hashed = rest.split(":", 1)[0]
            if not sep or not user or not hashed:
                raise ValueError(f"{path}, line {number}: expected user:$scheme$...")
            try:
                users[user.encode("utf-8")] = _parse_hash(hashed)
            except ValueError as e:
                # The message names the line, never its content (a hash).
                raise ValueError(f"{path}, line {number}: {e}") from None
    return users


def _dummy_for(users: dict[bytes, _Hash]) -> _Hash:
    """
    What an unknown user's password is checked against: the work of a real
    entry with a digest nobody knows, so that unknown users cost as much as
    known ones (no user enumeration by timing).
    """
    for entry in users.values():
        return _Hash(entry.compute, os.urandom(len(entry.digest)))
    return _Hash(lambda password: b"", os.urandom(32))


#: Password hashes computed at once: each scrypt takes 16 MiB and tens of
#: milliseconds, so a flood of guesses must not run them all together.
HASHES_AT_ONCE = 2
#: Guesses waiting for a turn; beyond this, AUTH fails temporarily (454)
#: at once, and memory and CPU stay bounded whatever the flood.
HASHES_WAITING = 32


@implementer(ICredentialsChecker)
class PasswordFileChecker:
    """
    A C{twisted.cred} checker for a file of C{user:$scheme$...} lines.

    Hashes are computed off the reactor thread, L{HASHES_AT_ONCE} at a
    time, with at most L{HASHES_WAITING} guesses queued: an AUTH flood
    turns into quick C{454} replies, not into memory or CPU exhaustion,
    and real logins keep their turn.

    @param path: the password file.
    @param reactor: the reactor whose thread pool runs the hash function
        (the global one if omitted).
    @raise OSError: if the file cannot be read.
    @raise ValueError: if a line is malformed (the message names the line).
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, path: str, *, reactor: Any = None) -> None:
        self.path = path
        self._reactor = reactor
        self._stamp = self._stat()
        self._users = _read_file(path)
        self._dummy = _dummy_for(self._users)
        self._turns = DeferredSemaphore(HASHES_AT_ONCE)

    def _stat(self) -> tuple[int, int]:
        st = os.stat(self.path)
        return (st.st_mtime_ns, st.st_size)

    def _current_users(self) -> dict[bytes, _Hash]:
        try:
            stamp = self._stat()
            if stamp != self._stamp:
                self._users = _read_file(self.path)
                self._dummy = _dummy_for(self._users)
                self._stamp = stamp
                log.info("Reloaded password file {path}", path=self.path)
        except (OSError, ValueError) as e:
            log.error("Keeping the previous password file: {error}", error=e)
        return self._users

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        """Verify C{credentials}; fires with the user name or fails."""
        username: bytes = credentials.username
        password: bytes = credentials.password
        entry = self._current_users().get(username)
        target = entry if entry is not None else self._dummy

        def check() -> bool:
            return target.matches(password) and entry is not None

        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        from twisted.internet.threads import deferToThreadPool

        turns = self._turns
        if len(turns.waiting) >= HASHES_WAITING:
            return fail(AuthUnavailable("too many password checks waiting"))
        d = turns.run(deferToThreadPool, reactor, reactor.getThreadPool(), check)

        def result(ok: bool) -> bytes | tuple[()]:
            if not ok:
                raise UnauthorizedLogin()
            return username

        return d.addCallback(result)


def checker_from_file(path: str) -> PasswordFileChecker:
    """
    The checker for the daemon's C{--auth-file PATH}.

    @raise OSError: if the file cannot be read.
    @raise ValueError: if a line is malformed.
    """
    return PasswordFileChecker(path)


# ---------------------------------------------------------------------------
# python -m smtpsession.cred hash
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: print a password file line (or just the hash)."""
    parser = argparse.ArgumentParser(
        prog="python -m smtpsession.cred",
        description="Make password hashes for smtpsession's --auth-file.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser(
        "hash",
        help="hash a password (asked for on a terminal, else read from stdin)",
    )
    h.add_argument("user", nargs="?", help="print 'user:hash', a password file line")
    h.add_argument("--scheme", choices=_SCHEMES, default="scrypt")
    args = parser.parse_args(argv)
    if args.user is not None and (":" in args.user or not args.user.strip()):
        parser.error("the user name must be non-empty and must not contain ':'")
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("Empty password refused.", file=sys.stderr)
        return 1
    hashed = hash_password(password, args.scheme)
    print(f"{args.user}:{hashed}" if args.user is not None else hashed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
