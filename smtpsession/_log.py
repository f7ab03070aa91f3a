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

Under twistd, the lines of connections and transactions skip the logging
system: a L{LineBatch} formats them exactly as twistd's text observer
would (timestamp, C{[system]}, text) and writes each reactor turn's lines
to twistd's log file at once.  A log event formatted by that observer
costs more than receiving a small message (about 270,000 instructions
against 190,000, measured with callgrind); a line in a batch costs a
twentieth of that.  Anywhere else (an embedding application with its own
observers, C{--syslog}, a custom C{--logger}) they are ordinary log
events, with their fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel, formatTime
from twisted.python.failure import Failure

from smtpsession import _twisted_shim
from smtpsession.options import is_trusted
from smtpsession.session import Envelope, Session

__all__ = ["ConnectionLog", "LineBatch"]

#: The namespace of the connection log lines (the C{[system]} of a line).
NAMESPACE = "smtpsession.connection"


class LineBatch:
    """
    Lines for twistd's log file, written once per reactor turn.

    Each line is formatted as the file's observer formats an event:
    C{"{time} [{namespace}#{level}] {text}"}, its time stamp made once a
    second.  Made only by L{attach}, which checks that the observer would
    write exactly that; before every write it checks the observer is still
    the only one (otherwise the lines go out as events after all).
    """

    __slots__ = (
        "_observer", "_out", "_reactor", "_lines", "_call", "_second", "_stamp", "_log", "debug",
        "_system", "_delay",
    )

    def __init__(self, observer: Any, out: Any, reactor: Any, log: Logger) -> None:
        self._observer = observer
        self._out = out
        self._reactor = reactor
        self._log = log
        self._lines: list[str] = []
        self._call: Any = None
        self._second = -1
        self._stamp = ""
        #: Whether debug lines are wanted: the lines skip the observer, so
        #: they follow the level of a filter in front of it (--log-level).
        self.debug = getattr(observer, "min_level", LogLevel.debug) is LogLevel.debug
        #: What follows C{namespace#level} in the brackets: a worker's number
        #: (see smtpsession._daemon_log.worker_observer), or nothing.
        self._system = getattr(observer, "system_suffix", "")
        #: Seconds the lines wait before they are written: 0 (the end of the
        #: reactor turn), longer in a worker, whose lines the supervisor
        #: copies (fewer, larger writes: see smtpsession._daemon_log).
        self._delay = getattr(observer, "batch_delay", 0.0)

    @classmethod
    def attach(cls, reactor: Any, log: Logger) -> LineBatch | None:
        """A batch for twistd's log file, or C{None} when logging is set up otherwise."""
        found = _twisted_shim.sole_text_log_file()
        if found is None:
            return None
        observer, out = found
        batch = cls(observer, out, reactor, log)
        when = reactor.seconds()
        probe = {
            "log_format": "{text}",
            "text": "probe",
            "log_time": when,
            "log_namespace": NAMESPACE,
            "log_level": LogLevel.info,
        }
        if observer.formatEvent(probe) != batch.format(when, "info", "probe"):
            return None  # a format of its own: let it format our events
        return batch

    def format(self, when: float, level: str, text: str) -> str:
        second = int(when)
        if second != self._second:
            self._second = second
            self._stamp = formatTime(when)
        return f"{self._stamp} [{NAMESPACE}#{level}{self._system}] {text}\n"

    def add(self, when: float, level: str, text: str) -> None:
        """One line; it is written at the end of this reactor turn."""
        self._lines.append(self.format(when, level, text))
        if self._call is None:
            self._call = self._reactor.callLater(self._delay, self.flush)

    def flush(self) -> None:
        """Write the lines kept so far (also when the server stops)."""
        call = self._call
        self._call = None
        if call is not None and call.active():
            call.cancel()
        lines = self._lines
        if not lines:
            return
        self._lines = []
        if not _twisted_shim.still_sole_observer(self._observer):
            for line in lines:  # logging changed meanwhile: as events, then
                head, text = line.split("] ", 1)
                level = LogLevel.levelWithName(head.rsplit("#", 1)[1].split(" ", 1)[0])
                self._log.emit(level, "{text}", text=text.rstrip("\n"))
            return
        self._out.write("".join(lines))
        self._out.flush()


class ConnectionLog:
    """The log lines of the connections of one server."""

    def __init__(
        self, clock: IReactorTime, transactions: bool, ignored: Sequence[Any]
    ) -> None:
        # An instance attribute: a Logger read from a class renames its
        # namespace after that class.
        self.log = Logger(namespace=NAMESPACE)
        self._clock = clock
        #: Log transactions (info) and connections (debug).
        self.transactions = transactions
        self._ignored = ignored
        #: Where the lines go under twistd (see L{LineBatch}); else None.
        self.batch: LineBatch | None = None

    def write_directly(self, reactor: Any) -> None:
        """Write connection and transaction lines to twistd's log file in batches, if it is there."""
        if self.transactions and self.batch is None:
            self.batch = LineBatch.attach(reactor, self.log)

    def flush(self) -> None:
        if self.batch is not None:
            self.batch.flush()

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
        batch = self.batch
        if batch is not None:
            if not batch.debug:
                return
            batch.add(
                self._clock.seconds(),
                "debug",
                f"[{s.id}] connection from {s.remote_address}:{s.remote_port} ({s.client_hostname})",
            )
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
        batch = self.batch
        if batch is not None:
            if not batch.debug:
                return
            batch.add(
                self._clock.seconds(),
                "debug",
                f"[{s.id}] closed after {s.transaction - 1} transaction(s)",
            )
            return
        self.log.debug(
            "[{session_id}] closed after {transactions} transaction(s)",
            session_id=s.id,
            transactions=s.transaction - 1,
        )

    def authenticated(self, s: Session, ok: bool, username: str | None) -> None:
        """
        One line per AUTH verdict, with the user name the client gave
        (and the address), so that fail2ban-style tools can act on
        failures; the password, token or digest is never logged.
        """
        self.log.info(
            "[{session_id}] authentication {result} for {user!r} from {client}",
            session_id=s.id,
            result="succeeded" if ok else "failed",
            user=str(s.user) if ok else username,
            client=s.remote_address,
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
        batch = self.batch
        if batch is not None:
            now = self._clock.seconds()
            sender = envelope.mail_from.address if envelope.mail_from else ""
            recipients = ",".join([f"<{a.address}>" for a in envelope.rcpt_to])
            batch.add(
                now,
                "info",
                f"[{s.id}] from=<{sender}> to={recipients} size={size} result={codes} "
                f"duration={max(0.0, now - started):.3f}s client={s.remote_address}",
            )
            return
        self.log.info(
            "[{session_id}] from=<{mail_from}> to={rcpt_to} size={size} "
            "result={result} duration={duration:.3f}s client={client}",
            session_id=s.id,
            mail_from=envelope.mail_from.address if envelope.mail_from else "",
            rcpt_to=",".join(f"<{a.address}>" for a in envelope.rcpt_to),
            recipients=[a.address for a in envelope.rcpt_to],
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
        if failure.check(RuntimeError) and "no running event loop" in str(failure.value):
            # The first thing a handler written for aiosmtpd meets: say the fix.
            self.log.error(
                "Hook {hook} uses asyncio, which needs Twisted's asyncio reactor: "
                "run twistd --reactor=asyncio -n smtpsession ... or smtpsession "
                "--reactor=asyncio ... (embedding: install "
                "twisted.internet.asyncioreactor before importing the reactor); "
                "see the handlers guide, 'asyncio'",
                hook=hook,
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
