# -*- test-case-name: tests.protocol.test_protocol,tests.integration.test_proxy_protocol -*-
"""
The start of a session, up to the greeting: L{Opening}.

In order: the PROXY header (from trusted load balancers), then implicit
TLS (the handshake and, after C{on_connect}, C{on_secure}), the reverse
lookup of the client's address, C{on_connect}, and the 220 greeting.  The
object lives only until the greeting; an idle client carries none.
"""

from __future__ import annotations

from collections.abc import Callable
from sys import intern
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure

from smtpsession._core import verdicts
from smtpsession._core.addresses import canonical_ip
from smtpsession._core.connection import ServerConnection
from smtpsession._core.proxy import ProxyError, ProxyHeaderParser
from smtpsession._hooks import call_hook
from smtpsession._server import Server
from smtpsession._transaction import HookCall
from smtpsession._twisted_shim import tls_wrapper_protocol
from smtpsession.errors import HookTimeout
from smtpsession.options import SMTPServerOptions, is_trusted
from smtpsession.session import Session

__all__ = ["Opening", "OpeningHost", "new_session", "normalise_address"]

#: How long the reverse lookup of a client may take.
REVERSE_LOOKUP_TIMEOUT = 1.5


def normalise_address(host: str) -> str:
    """An IP address without the ``::ffff:`` of IPv4-mapped IPv6."""
    if ":" not in host:
        return host  # IPv4 (or a UNIX socket path): already canonical
    try:
        return canonical_ip(host.split("%", 1)[0])
    except ValueError:
        return host


def new_session(transport: Any, options: SMTPServerOptions) -> Session:
    """The session of a new connection, from what the transport knows."""
    peer = transport.getPeer()
    host = transport.getHost()
    session = Session()  # its id is made when first read
    # Interned: every client of one listener (or behind one proxy) shares
    # these strings instead of holding a copy each.
    session.remote_address = intern(normalise_address(getattr(peer, "host", "") or ""))
    session.remote_port = getattr(peer, "port", 0) or 0
    session.local_address = intern(normalise_address(getattr(host, "host", "") or ""))
    session.local_port = getattr(host, "port", 0) or 0
    session.client_hostname = intern(f"[{session.remote_address}]")
    if options.secured:
        session.secure = True
    return session


class OpeningHost(Protocol):
    """What an L{Opening} asks of the protocol it serves."""

    session: Session | None
    transport: Any

    @property
    def conn(self) -> ServerConnection | None: ...

    @property
    def gone(self) -> bool: ...

    @property
    def own_tls_layer(self) -> bool: ...

    def dataReceived(self, data: bytes) -> None: ...

    def flush(self) -> None: ...

    def expect_handshake(self, kind: str) -> None: ...

    def start_tls(self, kind: str) -> None: ...

    def run_on_secure(self, then: Callable[[], None]) -> None: ...

    def greeted(self) -> None: ...

    def counted_under(self, key: str | None) -> None: ...

    def outcome(self, failure: Failure | None, hook: str) -> BaseException | None: ...


class Opening:
    """One session's way to its greeting."""

    __slots__ = ("_proto", "_server", "proxy", "connect_called", "_hook", "_pregreet")

    def __init__(self, proto: OpeningHost, server: Server) -> None:
        self._proto = proto
        self._server = server
        #: The PROXY header parser while the header is expected.
        self.proxy: ProxyHeaderParser | None = None
        #: on_connect was called (so on_close will be).
        self.connect_called = False
        self._hook: HookCall | None = None
        self._pregreet: IDelayedCall | None = None

    def start(self) -> None:
        options = self._server.options
        session = self._proto.session
        assert session is not None
        if options.use_proxy and is_trusted(options.use_proxy, session.remote_address):
            # A load balancer speaks first: its PROXY header, then the client.
            self.proxy = ProxyHeaderParser()
            return
        self._begin(b"")

    def proxy_received(self, data: bytes) -> None:
        parser = self.proxy
        proto = self._proto
        session = proto.session
        conn = proto.conn
        assert parser is not None and session is not None and conn is not None
        try:
            result = parser.feed(data)
        except ProxyError as e:
            self.proxy = None
            self._server.log_lines.invalid_proxy_header(session, str(e))
            conn.proxy_failed()
            proto.flush()
            return
        if result is None:
            return
        info, rest = result
        self.proxy = None
        if info.source is not None:
            session.remote_address, session.remote_port = info.source
            session.client_hostname = f"[{session.remote_address}]"
        if info.destination is not None:
            session.local_address, session.local_port = info.destination
        session.proxy = info
        self._begin(rest)

    def _begin(self, early: bytes) -> None:
        """
        The peer's address is final (socket or PROXY header): decide what it
        may do, then start TLS or go on to the greeting.  C{early} is what
        arrived after a PROXY header: a TLS ClientHello, or a client
        talking before the greeting.
        """
        proto = self._proto
        server = self._server
        options = server.options
        session = proto.session
        conn = proto.conn
        assert session is not None and conn is not None
        conn.set_proxy_trust(
            is_trusted(options.use_xclient, session.remote_address),
            is_trusted(options.use_xforward, session.remote_address),
        )
        transport = proto.transport
        if server.tls.implicit(transport):
            proto.expect_handshake("implicit")
        elif options.secure and not options.secured:
            proto.start_tls("implicit")
            if early and not proto.gone:
                # Hand the TLS layer the bytes that arrived with the PROXY
                # header (Twisted's layer, if used, sits in front of us).
                if proto.own_tls_layer:
                    proto.dataReceived(early)
                else:
                    tls_wrapper_protocol(transport).dataReceived(early)
            return
        else:
            self.tls_done()
        if early:
            proto.dataReceived(early)

    def tls_done(self) -> None:
        """
        No TLS, or implicit TLS is up: count the client against its
        address's limit, look it up, then on_connect.
        """
        server = self._server
        options = server.options
        proto = self._proto
        session = proto.session
        conn = proto.conn
        assert session is not None and conn is not None
        admitted, key = server.admit_address(session.remote_address)
        if not admitted:
            conn.refuse_connection(verdicts.TOO_MANY_FROM_ADDRESS)
            proto.flush()
            return
        proto.counted_under(key)
        if options.disable_reverse_lookup:
            self._run_on_connect()
            return
        from smtpsession.dns import reverse_lookup

        session = self._proto.session
        assert session is not None
        d = reverse_lookup(
            session.remote_address, options.resolver, server.clock, REVERSE_LOOKUP_TIMEOUT
        )
        d.addCallback(self._looked_up)

    def _looked_up(self, name: str | None) -> None:
        proto = self._proto
        if proto.gone or proto.session is None:
            return
        if name:
            proto.session.client_hostname = name
        self._run_on_connect()

    def _run_on_connect(self) -> None:
        proto = self._proto
        conn = proto.conn
        if proto.gone or (conn is not None and conn.closed):
            return
        fn = self._server.pipeline.on_connect
        self.connect_called = True
        if fn is None:
            self._connected(None, None)
            return
        # Not a hook that holds the session: reading goes on, so that a
        # client talking before the greeting is caught (the core refuses it).
        pending = call_hook(fn, (proto.session,), self._connected, self._late)
        if pending is not None:
            hook = self._hook = HookCall(pending, "on_connect", self._connected)
            hook.start_timer(self._server.clock, self._server.options.hook_timeout, self._timed_out)

    def _late(self, value: Any, failure: Failure | None) -> None:
        hook = self._hook
        if hook is None or hook.timing_out:
            return
        self._hook = None
        hook.stop_timer()
        self._connected(value, failure)

    def _timed_out(self) -> None:
        hook = self._hook
        if hook is None:
            return
        self._hook = None
        proto = self._proto
        self._server.log_lines.hook_timed_out(proto.session, "on_connect", hook.seconds)
        hook.time_out(HookTimeout("on_connect"))

    def _connected(self, value: Any, failure: Failure | None) -> None:
        proto = self._proto
        conn = proto.conn
        if proto.gone or conn is None or conn.closed:
            return
        if not conn.connect_result(proto.outcome(failure, "on_connect")):
            proto.flush()
            return
        session = proto.session
        if session is not None and session.secure and not self._server.options.secured:
            # Implicit TLS: on_secure runs after on_connect, before the greeting.
            proto.run_on_secure(self._greet)
        else:
            self._greet()

    def _greet(self) -> None:
        """
        The greeting, at once or after C{pregreet_delay}: a client that
        talks meanwhile is refused by the core (554 5.5.1), as a bot.
        """
        delay = self._server.options.pregreet_delay
        if delay and self._pregreet is None:
            self._pregreet = self._server.clock.callLater(delay, self._greet_now)
            return
        self._greet_now()

    def _greet_now(self) -> None:
        proto = self._proto
        conn = proto.conn
        if proto.gone or conn is None or conn.closed:
            return
        conn.greet()
        proto.greeted()

    def stop(self) -> None:
        """The connection went before its greeting: no timer may outlive it."""
        hook = self._hook
        self._hook = None
        if hook is not None:
            hook.stop_timer()
        pregreet = self._pregreet
        self._pregreet = None
        if pregreet is not None and pregreet.active():
            pregreet.cancel()
