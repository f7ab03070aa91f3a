# -*- test-case-name: tests.protocol.test_factory -*-
"""
L{SMTPServerFactory}: one per listening server; builds a protocol per
connection and holds what connections share (options, hooks, TLS context,
the live-session set used for C{max_clients} and the graceful drain).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtpsession import tls
from smtpsession._core import machine, verdicts
from smtpsession._core.settings import CoreConfig
from smtpsession._hooks import HookTable
from smtpsession._tls_layer import OpenSSLLayer, StdlibLayer, new_connection
from smtpsession.options import SMTPServerOptions, is_trusted
from smtpsession.protocol import SMTPServerProtocol, _TurnSender

if TYPE_CHECKING:
    from smtpsession.session import Envelope, Session
    from smtpsession.stream import MessageStream

__all__ = ["SMTPServerFactory"]


class SMTPServerFactory(ServerFactory):
    """
    Serve SMTP or LMTP with C{handler} on any stream endpoint.

    @param handler: an object with some of the L{smtpsession.ISMTPHandler}
        hooks (usually a L{smtpsession.Handler} subclass).
    @param options: L{smtpsession.SMTPServerOptions}; defaults if omitted.
    @param reactor: the reactor (for timers and DNS); the global one if
        omitted.
    """

    protocol = SMTPServerProtocol
    log = Logger()

    def __init__(
        self,
        handler: object,
        options: SMTPServerOptions | None = None,
        *,
        reactor: Any = None,
    ) -> None:
        if options is None:
            options = SMTPServerOptions()
        if not isinstance(options, SMTPServerOptions):
            raise TypeError("options must be an SMTPServerOptions instance")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.handler = handler
        self.options = options
        self.clock: IReactorTime = reactor
        self.reactor = reactor
        self.hooks = HookTable(handler)
        self.connections: set[SMTPServerProtocol] = set()
        self._closing: Deferred[None] | None = None
        self._drained: list[Deferred[None]] = []
        self._force_call: Any = None
        self._sweep: Any = None
        self._senders: dict[Any, _TurnSender] = {}
        self._tick = min(1.0, options.socket_timeout / 4)
        self._tls_context = tls.build_context(options)
        if options.secure and not options.secured and self._tls_context is None:
            self.log.warn(
                "secure=True but no certificate is configured: connections on "
                "plain TCP ports will be dropped (ssl: and tls: endpoints are fine)"
            )
        self.authenticator = self._make_authenticator()
        self.auth_enabled = self.authenticator is not None and "AUTH" not in (
            options.disabled_commands
        )
        self._log_quiet = options.ignored_hosts
        self._core_configs: dict[bool, CoreConfig] = {}

    # ------------------------------------------------------------------
    # Used by the protocol
    # ------------------------------------------------------------------

    def buildProtocol(self, addr: Any) -> SMTPServerProtocol:
        p = SMTPServerProtocol(self)
        p.factory = self
        return p

    def _admit(self, proto: SMTPServerProtocol) -> bytes | None:
        """Register a new connection, or say why it is refused."""
        options = self.options
        if self._closing is not None:
            return verdicts.connection_refusal(options.name, verdicts.SHUTTING_DOWN)
        if options.max_clients and len(self.connections) >= options.max_clients:
            return verdicts.connection_refusal(options.name, verdicts.TOO_MANY_CLIENTS)
        self.connections.add(proto)
        return None

    def core_config(self, tls_available: bool) -> CoreConfig:
        """The core's view of this server's configuration (one per TLS availability)."""
        cfg = self._core_configs.get(tls_available)
        if cfg is None:
            hooks = self.hooks
            cfg = self._core_configs[tls_available] = machine.configure(
                self.options,
                tls_available=tls_available,
                auth_enabled=self.auth_enabled,
                mail_hook=hooks.on_mail_from is not None,
                rcpt_hook=hooks.on_rcpt_to is not None,
                data_hook=hooks.on_data is not None,
            )
        return cfg

    def _turn_sender(self, reactor: Any) -> _TurnSender:
        """The L{protocol._TurnSender} of the reactor a connection lives in."""
        sender = self._senders.get(reactor)
        if sender is None:
            sender = self._senders[reactor] = _TurnSender(reactor)
        return sender

    def _watch_idle(self) -> None:
        """
        Make sure the idle sweep runs.  One timer serves every connection:
        each sweep asks every protocol whether its client has been silent
        for C{socket_timeout}, so a timeout fires at most one tick late.
        """
        if self._sweep is None:
            self._sweep = self.clock.callLater(self._tick, self._sweep_idle)

    def _sweep_idle(self) -> None:
        self._sweep = None
        if not self.connections:
            return
        now = self.clock.seconds()
        for proto in list(self.connections):
            proto._idle_check(now)
        if self.connections and self._sweep is None:
            self._sweep = self.clock.callLater(self._tick, self._sweep_idle)

    def _forget(self, proto: SMTPServerProtocol) -> None:
        self.connections.discard(proto)
        if self._closing is not None and not self.connections:
            self._finish_close()

    def tls_available(self, transport: Any) -> bool:
        return self._tls_context is not None and tls.can_start_tls(transport)

    def tls_is_implicit(self, transport: Any) -> bool:
        return tls.is_implicit(transport)

    def _tls_creator(self) -> Any:
        if self._tls_context is None:
            raise RuntimeError(
                "TLS requested (secure=True) but no certificate is configured "
                "(tls_cert, tls_sni_dir, sni_options or tls_context)"
            )
        return self._tls_context

    def tls_layer(self, proto: SMTPServerProtocol) -> StdlibLayer | OpenSSLLayer | None:
        """
        Our own TLS layer for C{proto}, or C{None} if C{start_tls} must be
        used instead (a creator that gives no pyOpenSSL connection).
        """
        creator = self._tls_creator()
        if isinstance(creator, tls.ServerTLS):
            return creator.new_layer()
        connection = new_connection(creator, proto)
        return None if connection is None else OpenSSLLayer(connection)

    def start_tls(self, transport: Any) -> None:
        transport.startTLS(self._tls_creator())

    def describe_tls(self, handle: Any, session: Session) -> None:
        """Fill in the session's TLS fields from the OpenSSL connection."""
        creator = self._tls_context
        if isinstance(creator, tls.ServerTLS):
            creator.describe(handle, session)
        else:
            tls.describe(handle, session)

    def client_certificate_ok(self, handle: Any, session: Session) -> bool:
        creator = self._tls_context
        if isinstance(creator, tls.ServerTLS):
            return creator.client_certificate_ok(handle)
        return True

    def _make_authenticator(self) -> Any:
        """
        What checks credentials: the handler's C{on_auth}, else a
        C{twisted.cred} checker from the options (offering only the
        mechanisms that checker can verify), else nothing (no AUTH).
        """
        if self.hooks.on_auth is not None:
            return self.hooks.on_auth
        checker = self.options.credentials_checker
        if checker is not None:
            from smtpsession.cred import checker_authenticator, mechanisms_for

            usable = mechanisms_for(checker)
            methods = tuple(m for m in self.options.auth_methods if m in usable)
            if methods != tuple(self.options.auth_methods):
                self.log.warn(
                    "AUTH {dropped} not offered: the credentials checker cannot "
                    "verify them",
                    dropped=",".join(m for m in self.options.auth_methods if m not in usable),
                )
                self.options = self.options.replace(auth_methods=methods)
            return checker_authenticator(checker)
        return None

    # ------------------------------------------------------------------
    # Shutdown
    # ------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """
        Drain and close every session (see "Shutdown" in the docs).

        Sessions without a transaction in progress are told C{421} at once;
        transactions in progress may finish within C{timeout} seconds
        (default: the C{close_timeout} option); then every remaining session
        gets C{421} and is closed.  New connections are refused with 421.
        The Deferred fires when the last connection is gone.  Stop listening
        first (C{port.stopListening()}), or new clients keep arriving.
        """
        d: Deferred[None] = Deferred()
        if self._closing is None:
            self._closing = Deferred()
            if timeout is None:
                timeout = self.options.close_timeout
            self._force_call = self.clock.callLater(timeout, self._force_close)
            for proto in list(self.connections):
                proto.begin_shutdown()
        if not self.connections:
            self._finish_close()
            return succeed(None)
        self._drained.append(d)
        return d

    def _force_close(self) -> None:
        self._force_call = None
        for proto in list(self.connections):
            proto.force_close()

    def _finish_close(self) -> None:
        if self._force_call is not None and self._force_call.active():
            self._force_call.cancel()
        self._force_call = None
        waiting, self._drained = self._drained, []
        for d in waiting:
            d.callback(None)

    # ------------------------------------------------------------------
    # Logging: per session and per transaction, never per command
    # ------------------------------------------------------------------

    def _quiet(self, session: Session | None) -> bool:
        return bool(
            session is not None
            and self._log_quiet
            and is_trusted(self._log_quiet, session.remote_address)  # type: ignore[arg-type]
        )

    def _log_connect(self, proto: SMTPServerProtocol) -> None:
        # Per connection, so only with the transaction log (twistd's log
        # observer formats every event, debug included: tens of
        # microseconds each, more than a small message costs to receive).
        if not self.options.transaction_log:
            return
        s = proto.session
        if s is None or self._quiet(s):
            return
        self.log.debug(
            "[{session_id}] connection from {remote_address}:{remote_port}"
            " ({client_hostname})",
            session_id=s.id,
            remote_address=s.remote_address,
            remote_port=s.remote_port,
            client_hostname=s.client_hostname,
        )

    def _log_close(self, proto: SMTPServerProtocol, reason: Failure) -> None:
        if not self.options.transaction_log:
            return
        s = proto.session
        if s is None or self._quiet(s):
            return
        self.log.debug(
            "[{session_id}] closed after {transactions} transaction(s)",
            session_id=s.id,
            transactions=s.transaction - 1,
        )

    def _log_auth(self, proto: SMTPServerProtocol, ok: bool) -> None:
        s = proto.session
        if s is None:
            return
        # The username is logged; the password, token or digest never is.
        self.log.info(
            "[{session_id}] authentication {result} for {user!r}",
            session_id=s.id,
            result="succeeded" if ok else "failed",
            user=str(s.user) if ok else None,
        )

    def _log_transaction(
        self,
        proto: SMTPServerProtocol,
        envelope: Envelope | None,
        stream: MessageStream | None,
        codes: str,
    ) -> None:
        """
        The one log event of a transaction: sender, recipients, size,
        result (one code per reply, C{;}-separated in LMTP) and duration
        (from DATA or the first BDAT to the final reply), plus the client,
        so that the line stands on its own.
        """
        if not self.options.transaction_log or envelope is None:
            return
        s = proto.session
        if s is None or self._quiet(s):
            return
        self.log.info(
            "[{session_id}] from=<{mail_from}> to={rcpt_to} size={size} "
            "result={result} duration={duration:.3f}s client={client}",
            session_id=s.id,
            mail_from=envelope.mail_from.address if envelope.mail_from else "",
            rcpt_to=",".join(f"<{a.address}>" for a in envelope.rcpt_to),
            size=stream.byte_length if stream is not None else 0,
            result=codes,
            duration=max(0.0, self.clock.seconds() - proto._data_started),
            client=s.remote_address,
            transaction=s.transaction - 1,  # data_result counted it
        )
