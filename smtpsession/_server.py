# -*- test-case-name: tests.protocol.test_protocol,tests.protocol.test_shutdown -*-
"""
L{Server}: what every connection of one listener shares, and the
bookkeeping of the connections themselves.

The factory (the public L{smtpsession.SMTPServerFactory}) makes one and
hands it to each protocol it builds; protocols never reach into the
factory.  Held here: the options, the clock, the hook pipeline, the
authenticator, TLS, the core's configuration, the log, the live
connections (for C{max_clients} and the drain), one idle sweep for all of
them, and the reactor turn's reply sender.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from smtpsession._core import machine, verdicts
from smtpsession._core.settings import CoreConfig
from smtpsession._hooks import HookTable
from smtpsession._log import ConnectionLog
from smtpsession._tls_config import ServerTLSConfig
from smtpsession._writer import TurnSender
from smtpsession.limits import builtin_filters
from smtpsession.options import SMTPServerOptions, is_trusted
from smtpsession.pipeline import Pipeline

__all__ = ["Server", "Connection"]


class Connection(Protocol):
    """What the server asks of each live connection."""

    def idle_check(self, now: float) -> None: ...

    def begin_shutdown(self) -> None: ...

    def force_close(self) -> None: ...


class Server:
    """
    The shared state of one listener.

    @param handler: the application's handler.
    @param options: the server's options.
    @param reactor: timers, DNS and the reactor turn's sender.
    @param filters: the hook pipeline's filters, outermost first.
    """

    log = Logger()

    def __init__(
        self,
        handler: object,
        options: SMTPServerOptions,
        reactor: Any,
        filters: Sequence[object] = (),
    ) -> None:
        self.clock: IReactorTime = reactor
        self.reactor = reactor
        self.tls = ServerTLSConfig(options)
        hooks = HookTable(handler)
        authenticator, options = _authenticator(hooks, options, self.log)
        self.options = options
        self.pipeline = Pipeline(
            hooks, [*builtin_filters(options, reactor), *filters], authenticator
        )
        self.auth_enabled = authenticator is not None and "AUTH" not in options.disabled_commands
        self.log_lines = ConnectionLog(reactor, options.transaction_log, options.ignored_hosts)
        self.connections: set[Connection] = set()
        #: Connections per client address, for max_connections_per_ip.
        self._per_address: dict[str, int] = {}
        self._core_configs: dict[bool, CoreConfig] = {}
        self._senders: dict[Any, TurnSender] = {}
        self._tick = min(1.0, options.socket_timeout / 4)
        self._sweep: IDelayedCall | None = None
        self._closing = False
        self._drained: list[Deferred[None]] = []
        self._force_call: IDelayedCall | None = None

    # -- per connection -------------------------------------------------------------

    def core_config(self, tls_available: bool) -> CoreConfig:
        """The core's view of this server's configuration (one per TLS availability)."""
        cfg = self._core_configs.get(tls_available)
        if cfg is None:
            p = self.pipeline
            cfg = self._core_configs[tls_available] = machine.configure(
                self.options,
                tls_available=tls_available,
                auth_enabled=self.auth_enabled,
                mail_hook=p.on_mail_from is not None,
                rcpt_hook=p.on_rcpt_to is not None,
                data_hook=p.on_data is not None,
                helo_hook=p.on_helo is not None,
                vrfy_hook=p.on_vrfy is not None,
                expn_hook=p.on_expn is not None,
                rset_hook=p.on_rset is not None,
            )
        return cfg

    def admit(self, connection: Connection) -> bytes | None:
        """Register a new connection, or return the reply that refuses it."""
        options = self.options
        if self._closing:
            return verdicts.connection_refusal(options.name, verdicts.SHUTTING_DOWN)
        if options.max_clients and len(self.connections) >= options.max_clients:
            return verdicts.connection_refusal(options.name, verdicts.TOO_MANY_CLIENTS)
        self.connections.add(connection)
        if self._sweep is None:
            self._sweep = self.clock.callLater(self._tick, self._sweep_idle)
        return None

    def admit_address(self, address: str) -> tuple[bool, str | None]:
        """
        Count a connection from C{address} (its final one: after PROXY).
        Returns whether it may go on, and the key it was counted under (to
        give to L{forget}; C{None} when not counted: exempt networks, no
        limit).  Called before anything costly (DNS, hooks) is spent on the
        connection.
        """
        options = self.options
        limit = options.max_connections_per_ip
        if not limit or is_trusted(options.limits_exempt, address):
            return True, None
        count = self._per_address.get(address, 0)
        if count >= limit:
            return False, None
        self._per_address[address] = count + 1
        return True, address

    def forget(self, connection: Connection, address: str | None = None) -> None:
        """A connection is gone (it was counted under C{address}, if given)."""
        if address is not None:
            count = self._per_address.pop(address, 0) - 1
            if count > 0:
                self._per_address[address] = count
        self.connections.discard(connection)
        if self._closing and not self.connections:
            self._finish_close()

    def turn_sender(self, reactor: Any) -> TurnSender:
        """The L{TurnSender} of the reactor a connection lives in."""
        sender = self._senders.get(reactor)
        if sender is None:
            sender = self._senders[reactor] = TurnSender(reactor)
        return sender

    def _sweep_idle(self) -> None:
        """
        One timer for every connection (a DelayedCall each would cost ~400
        bytes per idle client): each sweep asks every connection whether
        its client has been silent too long, so a timeout fires at most one
        tick late.
        """
        self._sweep = None
        if not self.connections:
            return
        now = self.clock.seconds()
        for connection in list(self.connections):
            connection.idle_check(now)
        if self.connections and self._sweep is None:
            self._sweep = self.clock.callLater(self._tick, self._sweep_idle)

    # -- shutdown -----------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> Deferred[None]:
        """Drain and close every connection (see L{SMTPServerFactory.close})."""
        if not self._closing:
            self._closing = True
            if timeout is None:
                timeout = self.options.close_timeout
            self._force_call = self.clock.callLater(timeout, self._force_close)
            for connection in list(self.connections):
                connection.begin_shutdown()
        if not self.connections:
            self._finish_close()
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drained.append(d)
        return d

    def _force_close(self) -> None:
        self._force_call = None
        for connection in list(self.connections):
            connection.force_close()

    def _finish_close(self) -> None:
        self.log_lines.flush()
        call = self._force_call
        self._force_call = None
        if call is not None and call.active():
            call.cancel()
        waiting, self._drained = self._drained, []
        for d in waiting:
            d.callback(None)


def _authenticator(
    hooks: HookTable, options: SMTPServerOptions, log: Logger
) -> tuple[Callable[..., Any] | None, SMTPServerOptions]:
    """
    What checks credentials: the handler's C{on_auth}, else a
    C{twisted.cred} checker from the options (offering only the mechanisms
    that checker can verify, hence the options it returns), else nothing
    (no AUTH).
    """
    if hooks.on_auth is not None:
        return hooks.on_auth, options
    checker = options.credentials_checker
    if checker is None:
        return None, options
    from smtpsession.cred import checker_authenticator, mechanisms_for

    usable = mechanisms_for(checker)
    methods = tuple(m for m in options.auth_methods if m in usable)
    if methods != tuple(options.auth_methods):
        log.warn(
            "AUTH {dropped} not offered: the credentials checker cannot verify them",
            dropped=",".join(m for m in options.auth_methods if m not in usable),
        )
        options = options.replace(auth_methods=methods)
    return checker_authenticator(checker), options
