# -*- test-case-name: tests.integration.test_service -*-
"""
L{SMTPService}: an smtpsession server as a Twisted C{IService}.

This is what C{twistd smtpsession} runs, and what an embedder adds to an
C{Application} to get the same start-up and shutdown behaviour::

    from twisted.application.service import Application
    from smtpsession import SMTPServerFactory
    from smtpsession.service import SMTPService

    application = Application("mail")
    factory = SMTPServerFactory(MyHandler())
    SMTPService(factory, ["tcp:2525"]).setServiceParent(application)

A handler that is also a Twisted service (provides C{IService}, as the
AMQP handler does) is started with this service and stopped after the
drain.

Stopping the service is the graceful shutdown of the API contract: it stops
listening first (so new connections are refused by the operating system),
then drains the open sessions with C{factory.close()}, and its Deferred
fires when the last one is gone.  twistd waits for that Deferred when it
gets SIGTERM, which is how the daemon drains.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService, Service
from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from smtpsession import _twisted_shim

if TYPE_CHECKING:
    from smtpsession.factory import SMTPServerFactory

__all__ = ["ListenError", "SMTPService"]


def _core_build() -> str:
    """
    Which build of the protocol core is running (setup.py: pure Python, or
    compiled with mypyc): an operator reading the log should not have to
    guess what was installed.
    """
    from smtpsession._core import connection

    return "pure-Python" if (connection.__file__ or "").endswith(".py") else "compiled"


class ListenError(Exception):
    """
    The service could not listen on one of its endpoints (port in use,
    permission denied, bad path).  The message is one line that names the
    endpoint, fit to show an operator as is.
    """


class SMTPService(Service):
    """
    Listen with one L{SMTPServerFactory} on some endpoints; stop gracefully.

    @param factory: the server factory (its handler and options).
    @param endpoints: endpoint strings (C{"tcp:2525"},
        C{"unix:/run/lmtp.sock"}, C{"ssl:465:..."}) or
        C{IStreamServerEndpoint} providers.
    @param reactor: the reactor used to parse endpoint strings; the
        factory's by default.

    Listening happens in C{privilegedStartService}, before twistd sheds
    root privileges, so ports below 1024 work with C{twistd --uid}.  A port
    that cannot be opened raises L{ListenError} from there (after closing
    the ports already opened): a server that silently lacks one of its
    ports is worse than one that does not start.
    """

    name = "smtpsession"  # type: ignore[assignment]
    log = Logger()
    #: Whether the listening line is logged at info level (a worker of
    #: C{--workers} leaves it to its supervisor: debug).
    announce = True

    def __init__(
        self,
        factory: SMTPServerFactory,
        endpoints: Iterable[str | IStreamServerEndpoint] = ("tcp:2525",),
        *,
        reactor: Any = None,
    ) -> None:
        self.factory = factory
        self._reactor = reactor if reactor is not None else factory.reactor
        self._descriptions: list[str | IStreamServerEndpoint] = list(endpoints)
        if not self._descriptions:
            raise ValueError("SMTPService needs at least one endpoint")
        #: The listening ports, once listening (in the order of C{endpoints}).
        self.ports: list[IListeningPort] = []
        self._listening = False
        self._pending: list[Deferred[Any]] = []
        self._waiters: list[Deferred[Sequence[IListeningPort]]] = []
        self._failure: Failure | None = None

    def __repr__(self) -> str:
        return f"<SMTPService on {', '.join(map(str, self._descriptions))}>"

    # ------------------------------------------------------------------
    # IService
    # ------------------------------------------------------------------

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        # Embedders (and trial) may call startService alone.
        if not self._listening:
            self._listen()
        super().startService()
        # Logging is set up by now (twistd begins it before starting the
        # services): write the connection log in batches if it allows.
        self.factory.log_in_batches()
        handler = _handler_service(self.factory)
        if handler is not None and not handler.running:
            handler.startService()

    def stopService(self) -> Deferred[None]:
        """
        Stop listening, then drain like C{factory.close()}: sessions between
        transactions get C{421} at once, transactions in progress may finish
        within C{close_timeout}, then everyone gets C{421}.  Fires when the
        last connection is gone.
        """
        super().stopService()
        self._listening = False
        for d in self._pending:
            d.cancel()
        self._pending = []
        ports, self.ports = self.ports, []
        stopped = DeferredList(
            [maybeDeferred(p.stopListening) for p in ports], consumeErrors=True
        )
        done: Deferred[None] = Deferred()

        def drain(_: object) -> None:
            self.factory.close().addBoth(stop_handler).addBoth(done.callback)

        def stop_handler(_: object) -> Deferred[None] | None:
            handler = _handler_service(self.factory)
            if handler is None or not handler.running:
                return None
            stopping: Deferred[None] = maybeDeferred(handler.stopService)
            return stopping.addErrback(lambda f: self.log.failure("stopping the handler", f))

        stopped.addCallback(drain)
        return done

    # ------------------------------------------------------------------
    # Listening
    # ------------------------------------------------------------------

    def when_listening(self) -> Deferred[Sequence[IListeningPort]]:
        """
        A Deferred that fires with the listening ports once every endpoint
        listens, or fails with L{ListenError}.
        """
        if self._failure is not None:
            d: Deferred[Sequence[IListeningPort]] = Deferred()
            d.errback(self._failure)
            return d
        if self._listening and not self._pending:
            return succeed(list(self.ports))
        d = Deferred()
        self._waiters.append(d)
        return d

    def _endpoint(self, description: str | IStreamServerEndpoint) -> IStreamServerEndpoint:
        if not isinstance(description, str):
            return description
        from twisted.internet.endpoints import serverFromString

        return serverFromString(self._reactor, with_backlog(description))

    def _listen(self) -> None:
        self._listening = True
        self._failure = None
        slots: list[IListeningPort | None] = [None] * len(self._descriptions)
        for i, description in enumerate(self._descriptions):
            try:
                d = self._endpoint(description).listen(self._listening_factory())
            except Exception as e:
                d = Deferred()
                d.errback(Failure(e))
            self._pending.append(d)
            d.addCallbacks(
                self._listened,
                self._listen_failed,
                callbackArgs=(i, d, slots),
                errbackArgs=(description, d),
            )
            if self._failure is not None:
                # Synchronous failure (the usual case: TCP binds at once).
                failure = self._failure
                for port in [p for p in slots if p is not None]:
                    port.stopListening()
                for pending in self._pending:
                    pending.cancel()
                self._pending = []
                self.ports = []
                self._listening = False
                raise ListenError(failure.getErrorMessage())

    def _listening_factory(self) -> Any:
        """The factory the ports accept connections for."""
        return self.factory

    def _listened(
        self,
        port: IListeningPort,
        i: int,
        d: Deferred[Any],
        slots: list[IListeningPort | None],
    ) -> None:
        if d in self._pending:
            self._pending.remove(d)
        slots[i] = port
        self.ports = [p for p in slots if p is not None]
        host = port.getHost()
        self.log.emit(
            LogLevel.info if self.announce else LogLevel.debug,
            "smtpsession listening on {address} ({what}, {core} core){hint}",
            address=_describe(host),
            what=self._what(self._descriptions[i]),
            core=_core_build(),
            hint=_public_hint(host),
        )
        if not self._pending and self._listening:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                w.callback(list(self.ports))

    def _what(self, description: str | IStreamServerEndpoint) -> str:
        """What the port speaks: SMTP or LMTP, and its TLS, for the listening line."""
        what = "LMTP" if self.factory.options.lmtp else "SMTP"
        if isinstance(description, str) and description.split(":", 1)[0].lower() in ("ssl", "tls"):
            return f"{what} over TLS"
        if self.factory.starttls_configured:
            return f"{what} with STARTTLS"
        return what

    def _listen_failed(
        self,
        failure: Failure,
        description: str | IStreamServerEndpoint,
        d: Deferred[Any],
    ) -> None:
        if d in self._pending:
            self._pending.remove(d)
        from twisted.internet.defer import CancelledError

        if failure.check(CancelledError):
            return
        # The reason first: twistd shows only the first 100 bytes or so of a
        # daemon's start-up error, and endpoint strings can be long.
        message = f"cannot listen ({_reason(failure)}) on {description}"
        self.log.critical("smtpsession {message}", message=message)
        self._failure = Failure(ListenError(message))
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            w.errback(self._failure)


def _handler_service(factory: SMTPServerFactory) -> IService | None:
    """
    The handler, when it is a Twisted service too: started with the server
    and stopped after the last session is gone (a handler holding a
    connection to a broker opens it here, in the process that serves, and
    closes it once nothing can use it any more).
    """
    handler = getattr(factory, "handler", None)
    return handler if IService.providedBy(handler) else None


def _public_hint(address: Any) -> str:
    """
    For a loopback address, how to listen publicly: the daemon's default
    listens on 127.0.0.1 only (a fresh Maildir server open to the Internet
    is not a safe default), and a user who wants more must learn how here.
    """
    host = getattr(address, "host", None)
    try:
        loopback = host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return ""
    return "; loopback only: --port tcp:25 (or tcp6:25) listens on every interface"


def _describe(address: Any) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return name.decode() if isinstance(name, bytes) else str(name)
    return str(address)


def _reason(failure: Failure) -> str:
    """One line saying why listening failed, without the traceback."""
    from twisted.internet.error import CannotListenError

    value = failure.value
    if isinstance(value, CannotListenError):
        inner = value.socketError
        text = getattr(inner, "strerror", None) or str(inner)
        return text
    return " ".join(str(value).split()) or type(value).__name__


#: The listen backlog of the daemon's TCP endpoints.  Twisted's default, 50,
#: lets a burst of a few thousand connections go unanswered (measured: 292 of
#: 5,000 never greeted); the kernel caps it at net.core.somaxconn (4096 on
#: current Linux).
BACKLOG = 4096

_TCP_LIKE = ("tcp:", "tcp6:", "ssl:", "tls:")


def with_backlog(description: str) -> str:
    """
    A TCP-like endpoint string with C{backlog=BACKLOG} added, unless it
    names one itself; any other endpoint string as it is.
    """
    head = description.split(":", 1)[0].lower() + ":"
    if head not in _TCP_LIKE or "backlog=" in description:
        return description
    return f"{description}:backlog={BACKLOG}"


def cannot_listen(endpoint: object, description: str) -> str | None:
    """
    Why a TCP endpoint (as C{serverFromString} parsed C{description}) could
    not be listened on now (the port is taken, or needs privileges), or
    C{None}: a bind and close made before twistd daemonizes.  A failure
    after that is reported by twistd as a truncated bytes repr from the
    child process; found here, it is one readable line.  Other endpoints
    (unix:, systemd:, ...) and port 0 are not probed; the real listen still
    decides.
    """
    import errno
    import socket

    address = _twisted_shim.tcp_listen_address(endpoint)
    if address is None:
        return None
    host, port, ipv6 = address
    if port == 0:
        return None
    family = socket.AF_INET6 if ipv6 or ":" in host else socket.AF_INET
    if family == socket.AF_INET6 and not host:
        host = "::"
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Twisted does
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
                return f"cannot listen ({e.strerror}) on {description}"
    return None
