# -*- test-case-name: tests.protocol.test_shutdown -*-
"""
L{SMTPServerFactory}: one per listening server; builds a protocol per
connection.  What the connections share lives in L{smtpsession._server}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ServerFactory

from smtpsession._core.settings import CoreConfig
from smtpsession._hooks import HookTable
from smtpsession._server import Connection, Server
from smtpsession.options import SMTPServerOptions
from smtpsession.pipeline import Pipeline
from smtpsession.protocol import SMTPServerProtocol

__all__ = ["SMTPServerFactory"]


class SMTPServerFactory(ServerFactory):
    """
    Serve SMTP or LMTP with C{handler} on any stream endpoint.

    @param handler: an object with some of the L{smtpsession.ISMTPHandler}
        hooks (usually a L{smtpsession.Handler} subclass).
    @param options: L{smtpsession.SMTPServerOptions}; defaults if omitted.
    @param reactor: the reactor (for timers and DNS); the global one if
        omitted.
    @param filters: the hook pipeline's filters (L{smtpsession.pipeline}),
        in the order they see each call; the handler comes last.
    """

    protocol = SMTPServerProtocol

    def __init__(
        self,
        handler: object,
        options: SMTPServerOptions | None = None,
        *,
        reactor: Any = None,
        filters: Sequence[object] = (),
    ) -> None:
        if options is None:
            options = SMTPServerOptions()
        if not isinstance(options, SMTPServerOptions):
            raise TypeError("options must be an SMTPServerOptions instance")
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.handler = handler
        self._server = Server(handler, options, reactor, filters)

    @property
    def options(self) -> SMTPServerOptions:
        """The options in force (AUTH mechanisms a checker cannot verify removed)."""
        return self._server.options

    @property
    def clock(self) -> IReactorTime:
        return self._server.clock

    @property
    def reactor(self) -> Any:
        return self._server.reactor

    @property
    def pipeline(self) -> Pipeline:
        """The hook chains: the filters, then the handler."""
        return self._server.pipeline

    @property
    def hooks(self) -> HookTable:
        """The handler's own hooks (C{None} where it keeps the default)."""
        return self._server.pipeline.hooks

    @property
    def connections(self) -> set[Connection]:
        """The live connections."""
        return self._server.connections

    @property
    def auth_enabled(self) -> bool:
        """Whether AUTH can be offered (credentials can be checked)."""
        return self._server.auth_enabled

    @property
    def starttls_configured(self) -> bool:
        """Whether a certificate is configured, so STARTTLS is offered on plain TCP."""
        return self._server.tls.context is not None

    def core_config(self, tls_available: bool) -> CoreConfig:
        return self._server.core_config(tls_available)

    def log_in_batches(self) -> None:
        """
        Write the connection and transaction log lines straight to twistd's
        log file, once per reactor turn, when logging is twistd's (see
        L{smtpsession._log.LineBatch}); otherwise nothing changes.
        L{smtpsession.service.SMTPService} does it when it starts.
        """
        self._server.log_lines.write_directly(self._server.reactor)

    def buildProtocol(self, addr: Any) -> SMTPServerProtocol:
        return SMTPServerProtocol(self._server, self)

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
        return self._server.close(timeout)
