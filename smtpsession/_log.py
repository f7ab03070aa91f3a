# -*- test-case-name: tests.integration.test_logging -*-
"""
L{ConnectionLog}: every log line a connection writes, in one module.

One event per transaction and, at debug level, one per connection; never
one per command (twistd's observer formats every event, debug included,
and a formatted event costs more than a small message takes to receive).
Hook failures, TLS failures and invalid PROXY headers are logged as they
happen.  Secrets never reach these lines: authentication is logged with
the user name only, never a password, a token or a SASL line.

The line formats are documented in docs/howto/daemon.rst ("Logging").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtpsession.options import is_trusted
from smtpsession.session import Envelope, Session

__all__ = ["ConnectionLog"]


class ConnectionLog:
    """The log lines of the connections of one server."""

    log = Logger(namespace="smtpsession.connection")

    def __init__(
        self, clock: IReactorTime, transactions: bool, ignored: Sequence[Any]
    ) -> None:
        self._clock = clock
        #: Log transactions (info) and connections (debug).
        self.transactions = transactions
        self._ignored = ignored

    def quiet(self, session: Session | None) -> bool:
        """Whether C{session}'s peer is one whose traffic is not logged (health checks)."""
        return bool(
            session is not None
            and self._ignored
            and is_trusted(self._ignored, session.remote_address)
        )

    def connected(self, s: Session) -> None:
        if not self.transactions or self.quiet(s):
            return
        self.log.debug(
            "[{session_id}] connection from {remote_address}:{remote_port}"
            " ({client_hostname})",
            session_id=s.id,
            remote_address=s.remote_address,
            remote_port=s.remote_port,
            client_hostname=s.client_hostname,
        )

    def closed(self, s: Session) -> None:
        if not self.transactions or self.quiet(s):
            return
        self.log.debug(
            "[{session_id}] closed after {transactions} transaction(s)",
            session_id=s.id,
            transactions=s.transaction - 1,
        )

    def authenticated(self, s: Session, ok: bool) -> None:
        # The username is logged; the password, token or digest never is.
        self.log.info(
            "[{session_id}] authentication {result} for {user!r}",
            session_id=s.id,
            result="succeeded" if ok else "failed",
            user=str(s.user) if ok else None,
        )

    def transaction(
        self, s: Session, envelope: Envelope, size: int, codes: str, started: float
    ) -> None:
        """
        The one log event of a transaction: sender, recipients, size, result
        (one code per reply, C{;}-separated in LMTP) and duration (from DATA
        or the first BDAT to the final reply), plus the client, so that the
        line stands on its own.
        """
        if not self.transactions or self.quiet(s):
            return
        self.log.info(
            "[{session_id}] from=<{mail_from}> to={rcpt_to} size={size} "
            "result={result} duration={duration:.3f}s client={client}",
            session_id=s.id,
            mail_from=envelope.mail_from.address if envelope.mail_from else "",
            rcpt_to=",".join(f"<{a.address}>" for a in envelope.rcpt_to),
            size=size,
            result=codes,
            duration=max(0.0, self._clock.seconds() - started),
            client=s.remote_address,
            transaction=s.transaction - 1,  # the final reply counted it
        )

    def wrong_lmtp_results(self, s: Session, given: int, recipients: int) -> None:
        self.log.error(
            "[{session_id}] on_data returned {n} results for {m} LMTP recipients",
            session_id=s.id,
            n=given,
            m=recipients,
        )

    def hook_failed(self, s: Session | None, hook: str, failure: Failure) -> None:
        self.log.failure(
            "Hook {hook} failed (session {session_id})",
            failure,
            hook=hook,
            session_id=s.id if s is not None else None,
        )

    def hook_timed_out(self, s: Session | None, hook: str, seconds: float) -> None:
        self.log.warn(
            "[{session_id}] Hook {hook} did not answer within {seconds}s: cancelled",
            session_id=s.id if s is not None else None,
            hook=hook,
            seconds=seconds,
        )

    def invalid_proxy_header(self, s: Session, reason: str) -> None:
        self.log.info(
            "[{session_id}] Invalid PROXY header from {address}: {reason}",
            session_id=s.id,
            address=s.remote_address,
            reason=reason,
        )

    def tls_failed(self, s: Session, reason: str, handshake: bool) -> None:
        """One line per failed handshake or broken record (what OpenSSL said, never data)."""
        if handshake:
            what = "TLS handshake with {address} failed: {reason}"
        else:
            what = "TLS error from {address}: {reason}"
        self.log.info("[{session_id}] " + what, session_id=s.id, address=s.remote_address, reason=reason)

    def tls_timed_out(self, s: Session) -> None:
        self.log.info(
            "[{session_id}] TLS handshake timed out for {address}",
            session_id=s.id,
            address=s.remote_address,
        )

    def tls_start_failed(self, s: Session) -> None:
        self.log.failure("[{session_id}] Could not start TLS", session_id=s.id)

    def send_failed(self, **kw: Any) -> None:
        self.log.failure("Could not send replies", **kw)
