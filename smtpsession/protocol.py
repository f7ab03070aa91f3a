# -*- test-case-name: tests.protocol.test_protocol -*-
"""
L{SMTPServerProtocol}: the thin Twisted driver of the sans-IO core.

It turns transport callbacks into core calls and core events into hook
calls, and owns everything that needs a clock or a socket: the idle timer,
TLS, the reverse lookup, backpressure and closing.  It makes no protocol
decision of its own.

Flow control, in one place: reading from the client is paused while a hook
is pending (replies stay in order and pipelined input stays bounded), while
the body reader lags (L{MessageStream} high-water mark), and while the
client does not read our replies (this protocol is the transport's push
producer).  Each reason is one bit of C{_paused}; reading resumes only when
all are clear.
"""

from __future__ import annotations

from sys import intern
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession._core.addresses import canonical_ip
from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Auth,
    BodyRejected,
    DataAborted,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
    StartTLS,
)
from smtpsession._core.proxy import ProxyError, ProxyHeaderParser
from smtpsession._hooks import call_hook
from smtpsession._tls_layer import OpenSSLLayer, StdlibLayer, TLSFailure
from smtpsession.errors import AuthUnavailable, SMTPError
from smtpsession.options import is_trusted
from smtpsession.session import Session, new_session_id
from smtpsession.stream import MessageStream, StreamAborted

if TYPE_CHECKING:
    from smtpsession.factory import SMTPServerFactory

__all__ = ["SMTPServerProtocol", "new_session_id", "normalise_address"]

# Reasons to stop reading from the client (bits of _paused).
_HOOK = 1
_STREAM = 2
_WRITE = 4

#: After we decide to close, how long a client that does not read its last
#: reply may keep the socket (smtp-server: min(socket timeout, 5 s)).
HALF_CLOSE_TIMEOUT = 5.0

#: Twisted's TCP read size, and the one used while a large body streams in
#: (small reads must stay small: every recv() allocates its full size).
_READ_SIZE = 65536
_BODY_READ_SIZE = 262144


def _can_write_directly(transport: Any) -> bool:
    """
    Whether L{SMTPServerProtocol._send_pending} may bypass the write queue:
    only on Twisted's own TCP server transport, whose queue it can see.
    """
    try:
        from twisted.internet.tcp import Server
    except ImportError:  # pragma: no cover
        return False
    return (
        type(transport) is Server
        and not getattr(transport, "TLS", False)
        and hasattr(transport, "_tempDataBuffer")
        and hasattr(transport, "socket")
    )


class _TurnSender:
    """
    Sends the replies of one reactor turn together, once the turn has
    handled every socket that was ready.

    Why: when the client is on the same host (a proxy in front of us, a
    local MTA delivering over LMTP, a load generator), the kernel delivers
    a reply inside our C{send} and wakes the client there, on our system
    time.  A reply sent the moment it is made usually finds the client
    asleep (it has long dealt with the previous one): under 50 busy
    sessions on loopback that cost about 7 us of a 1 KB message's 60.  Sent
    at the end of the turn, the replies to every client served in that turn
    go out back to back and mostly find their reader awake.  The wait is
    what that turn still had to do, never a timer: the flush is the first
    thing the reactor runs after the sockets (C{callLater(0)}), the way
    Redis writes its replies just before it polls again.

    With a single busy client there is nothing to send along, and the
    C{callLater} per turn would cost a tenth of its messages per second:
    replies then go out at once.  Holding back starts again when a second
    connection writes, and stops after L{_ALONE} turns that had only one.
    """

    __slots__ = ("_reactor", "_due", "_call", "_holding", "_alone", "_last")

    #: Turns in a row with one connection's replies before we stop holding.
    _ALONE = 8

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._due: list[SMTPServerProtocol] = []
        self._call: Any = None
        self._holding = False
        self._alone = 0
        self._last: object = None  # the connection that sent last, while not holding

    def add(self, proto: SMTPServerProtocol) -> None:
        if not self._holding:
            if proto is self._last:
                proto._send_pending()
                return
            self._holding = True  # a second client: hold back from here
            self._alone = 0
            self._last = None
        self._due.append(proto)
        if self._call is None:
            self._call = self._reactor.callLater(0, self._run)

    def forget(self, proto: SMTPServerProtocol) -> None:
        """A connection is gone: keep no reference to it."""
        if self._last is proto:
            self._last = None

    def _run(self) -> None:
        self._call = None
        due, self._due = self._due, []
        if len(due) == 1:
            self._alone += 1
            if self._alone >= self._ALONE:
                self._holding = False
                self._last = due[0]
        else:
            self._alone = 0
        for proto in due:
            try:
                proto._send_pending()
            except Exception:
                # Not one client's broken socket for everyone's replies.
                proto.log.failure("Could not send replies")
                proto._abort()


def _tls_writer(transport: Any) -> Any:
    """
    A cheaper way to write on a TLS connection, or C{None}.

    Twisted's TLS transport holds small writes back until the next reactor
    turn so that it can merge them into one TLS record, and the encrypted
    bytes then wait one more turn for the socket.  The protocol already
    writes each batch of replies once, so neither wait buys anything here:
    this writes through L{TLSMemoryBIOProtocol.write} (the unbuffered base
    class's method) and hands the ciphertext to the socket at once.
    """
    try:
        from twisted.internet.tcp import Server
        from twisted.protocols.tls import TLSMemoryBIOProtocol
    except ImportError:  # pragma: no cover
        return None
    tls = (
        transport
        if isinstance(transport, TLSMemoryBIOProtocol)
        else getattr(transport, "protocol", None)
    )
    if not isinstance(tls, TLSMemoryBIOProtocol):
        return None
    write = TLSMemoryBIOProtocol.write
    # Below the TLS layer: the TCP transport itself (implicit TLS) or the
    # wrapper STARTTLS puts around it.
    below = getattr(tls, "transport", None)
    tcp = getattr(below, "_connection", below)
    if type(tcp) is not Server or not hasattr(tcp, "_tempDataBuffer"):
        return lambda data: write(tls, data)

    def tls_write(data: bytes) -> None:
        write(tls, data)
        if tcp._tempDataBuffer and tcp.connected and not tcp.disconnecting:
            tcp.doWrite()

    return tls_write


def normalise_address(host: str) -> str:
    """An IP address without the ``::ffff:`` of IPv4-mapped IPv6."""
    if ":" not in host:
        return host  # IPv4 (or a UNIX socket path): already canonical
    try:
        return canonical_ip(host.split("%", 1)[0])
    except ValueError:
        return host


@implementer(IHandshakeListener, IPushProducer)
class SMTPServerProtocol(Protocol):
    """One SMTP/LMTP connection; built by L{SMTPServerFactory}."""

    # Slots keep a connection small: past 30 attributes an instance dict
    # stops sharing its keys and costs ~1.5 KB per idle client.
    __slots__ = (
        # Twisted's Protocol has no slots: its three attributes are slots
        # here too, or every connection would carry an instance dict.
        "connected",
        "factory",
        "transport",
        "_again",
        "_close_call",
        "_closing",
        "_conn",
        "_connect_called",
        "_data_generation",
        "_data_outcome",
        "_data_started",
        "_data_waiting",
        "_data_rejected",
        "_direct",
        "_greeted",
        "_last_activity",
        "_lost",
        "_paused",
        "_pending",
        "_processing",
        "_proxy",
        "_refused",
        "_stream",
        "_tls",
        "_tls_call",
        "_tls_pending",
        "_tls_writer",
        "_waiting",
        "session",
    )

    log = Logger()

    def __init__(self, factory: SMTPServerFactory) -> None:
        self.factory = factory
        self.transport = None
        self.connected = 0
        self.session: Session | None = None
        self._conn: ServerConnection | None = None
        self._paused = 0
        self._waiting = False  # a hook's answer is due
        self._processing = False
        self._again = False
        self._lost = False
        self._greeted = False
        self._closing = False
        self._refused = False
        self._last_activity = 0.0
        self._close_call: Any = None
        self._tls_call: Any = None
        self._tls_pending: str | None = None  # "implicit" or "starttls"
        self._stream: MessageStream | None = None
        self._data_outcome: tuple[Any, Failure | None] | None = None
        self._data_waiting = False
        self._data_rejected: Any = None
        self._data_generation = 0
        self._data_started = 0.0  # for the transaction log's duration
        # Where replies go on a plain TCP socket: the reactor turn's sender
        # (see _write); None when they go through transport.write.
        self._direct: _TurnSender | None = None
        self._pending = b""  # replies waiting for the end of the turn
        self._tls_writer: Any = None
        self._tls: StdlibLayer | OpenSSLLayer | None = None
        self._connect_called = False
        self._proxy: ProxyHeaderParser | None = None

    # ------------------------------------------------------------------
    # IProtocol
    # ------------------------------------------------------------------

    def connectionMade(self) -> None:
        factory = self.factory
        transport = self.transport
        assert transport is not None
        options = factory.options
        refusal = factory._admit(self)
        if refusal is not None:
            self._refused = True
            transport.write(refusal)
            transport.loseConnection()
            return
        if hasattr(transport, "setTcpNoDelay"):
            try:
                transport.setTcpNoDelay(True)
            except OSError:
                pass
        transport.registerProducer(self, True)  # type: ignore[attr-defined]
        if _can_write_directly(transport):
            self._direct = factory._turn_sender(transport.reactor)  # type: ignore[attr-defined]
        peer = transport.getPeer()
        host = transport.getHost()
        session = Session()  # its id is made when first read
        # Interned: every client of one listener (or behind one proxy)
        # shares these strings instead of holding a copy each.
        session.remote_address = intern(normalise_address(getattr(peer, "host", "") or ""))
        session.remote_port = getattr(peer, "port", 0) or 0
        session.local_address = intern(normalise_address(getattr(host, "host", "") or ""))
        session.local_port = getattr(host, "port", 0) or 0
        session.client_hostname = intern(f"[{session.remote_address}]")
        if options.secured:
            session.secure = True
        self.session = session
        self._conn = ServerConnection(
            factory.core_config(factory.tls_available(transport)), session
        )
        self._last_activity = factory.clock.seconds()
        factory._watch_idle()
        if options.use_proxy and is_trusted(options.use_proxy, session.remote_address):
            # A load balancer speaks first: its PROXY header, then the client.
            self._proxy = ProxyHeaderParser()
            return
        self._begin(b"")

    def _begin(self, early: bytes) -> None:
        """
        The peer's address is final (socket or PROXY header): decide what it
        may do, then start TLS or go straight to the greeting.  C{early} is
        what arrived after a PROXY header: a TLS ClientHello, or a client
        talking before the greeting.
        """
        factory = self.factory
        options = factory.options
        session = self.session
        assert session is not None and self._conn is not None
        self._conn.set_proxy_trust(
            is_trusted(options.use_xclient, session.remote_address),
            is_trusted(options.use_xforward, session.remote_address),
        )
        transport = self.transport
        if factory.tls_is_implicit(transport):
            self._expect_handshake("implicit")
        elif options.secure and not options.secured:
            self._start_tls("implicit")
            if early and not self._lost:
                # Hand the TLS layer the bytes that arrived with the PROXY
                # header (Twisted's layer, if used, sits in front of us).
                if self._tls is not None:
                    self.dataReceived(early)
                else:
                    transport.protocol.dataReceived(early)  # type: ignore[union-attr]
            return
        else:
            self._after_tls()
        if early:
            self.dataReceived(early)

    def _proxy_received(self, data: bytes) -> None:
        parser = self._proxy
        assert parser is not None and self.session is not None
        try:
            result = parser.feed(data)
        except ProxyError as e:
            self._proxy = None
            self.log.info(
                "[{session_id}] Invalid PROXY header from {address}: {reason}",
                session_id=self.session.id,
                address=self.session.remote_address,
                reason=str(e),
            )
            if self._conn is not None:
                self._conn.proxy_failed()
            self._flush()
            return
        if result is None:
            return
        info, rest = result
        self._proxy = None
        session = self.session
        if info.source is not None:
            session.remote_address, session.remote_port = info.source
            session.client_hostname = f"[{session.remote_address}]"
        if info.destination is not None:
            session.local_address, session.local_port = info.destination
        session.proxy = info
        self._begin(rest)

    def dataReceived(self, data: bytes) -> None:
        self._last_activity = self.factory.clock.seconds()
        conn = self._conn
        if conn is None:
            return
        if self._proxy is not None:
            self._proxy_received(data)
            return
        if len(data) >= _READ_SIZE and self._direct is not None and self._stream is not None:
            # A large body is streaming in: read it in bigger bites (fewer
            # calls per byte); _end_body_reads puts the default back.
            self.transport.bufferSize = _BODY_READ_SIZE  # type: ignore[union-attr]
        if self._tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        conn.receive_data(data)
        self._process()

    def _decrypt(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out; the handshake and TLS errors on the way."""
        tls = self._tls
        assert tls is not None
        handshaking = not tls.established
        try:
            data = tls.receive(data)
        except TLSFailure as e:
            self._tls_failed(e.reason)
            return b""
        # Handshake flights, and after it what OpenSSL answers by itself
        # (a refused renegotiation, a key update): the client may wait for it.
        out = tls.output()
        if out:
            self._write(out, raw=True)
        if handshaking and tls.established:
            self.handshakeCompleted()
        if tls.peer_closed:
            # close_notify: the client is done; answer in kind and hang up.
            if data and not self._lost:
                assert self._conn is not None
                self._conn.receive_data(data)
                self._process()
            self._close()
            return b""
        return data

    def _tls_failed(self, reason: str) -> None:
        """A failed handshake or a broken record: send OpenSSL's alert, close."""
        tls = self._tls
        assert tls is not None and self.session is not None
        if self._tls_pending is not None:
            self._tls_pending = None  # logged here, not again when the socket closes
            what = "TLS handshake with {address} failed: {reason}"
        else:
            what = "TLS error from {address}: {reason}"
        self.log.info(
            "[{session_id}] " + what,
            session_id=self.session.id,
            address=self.session.remote_address,
            reason=reason,
        )
        out = tls.output()  # the alert; the layer sends nothing more after it
        if out:
            self._write(out, raw=True)
        self._close()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._lost:
            return
        self._lost = True
        for name in ("_close_call", "_tls_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
        if self._refused:
            return
        if self._tls_pending is not None and self.session is not None:
            # One line per failed handshake (what OpenSSL said, never data).
            self.log.info(
                "[{session_id}] TLS handshake with {address} failed: {reason}",
                session_id=self.session.id,
                address=self.session.remote_address,
                reason=reason.getErrorMessage(),
            )
        self.factory._forget(self)
        if self._direct is not None:
            self._direct.forget(self)
        conn = self._conn
        if conn is not None:
            aborted = conn.connection_lost()
            if aborted is not None or self._stream is not None:
                self._abort_stream("connection lost")
        session = self.session
        if session is not None and self._connect_called:
            # on_close pairs with on_connect: a connection that never got that
            # far (bad PROXY header, failed TLS handshake) has no session to end.
            fn = self.factory.hooks.on_close
            if fn is not None:
                call_hook(fn, (session,), self._close_done)
            self.factory._log_close(self, reason)

    # ------------------------------------------------------------------
    # IPushProducer: the transport tells us it cannot write more
    # ------------------------------------------------------------------

    def pauseProducing(self) -> None:
        self._pause(_WRITE)

    def resumeProducing(self) -> None:
        self._resume(_WRITE)

    def stopProducing(self) -> None:
        pass

    def _pause(self, bit: int) -> None:
        if not self._paused and self.transport is not None and not self._lost:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        self._paused |= bit

    def _resume(self, bit: int, process: bool = True) -> None:
        if not self._paused & bit:
            return
        self._paused &= ~bit
        if not self._paused and not self._lost and self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
            if process and not self._waiting:
                self._process()

    def _pause_stream(self) -> None:
        self._pause(_STREAM)

    def _resume_stream(self) -> None:
        self._resume(_STREAM)

    # ------------------------------------------------------------------
    # Start of a session: TLS, reverse lookup, on_connect, greeting
    # ------------------------------------------------------------------

    def _expect_handshake(self, kind: str) -> None:
        self._tls_pending = kind
        self._tls_call = self.factory.clock.callLater(
            self.factory.options.tls_handshake_timeout, self._handshake_timeout
        )

    def _start_tls(self, kind: str) -> None:
        self._expect_handshake(kind)
        try:
            self._tls = self.factory.tls_layer(self)
            if self._tls is None:
                # Twisted's TLS layer: it becomes our transport; what is
                # still pending (the 220) must go out in clear before it.
                self._send_pending()
                self._direct = None
                self.factory.start_tls(self.transport)
        except Exception:
            self.log.failure(
                "[{session_id}] Could not start TLS",
                session_id=self.session.id if self.session else None,
            )
            self._abort()

    def _handshake_timeout(self) -> None:
        self._tls_call = None
        self.log.info(
            "[{session_id}] TLS handshake timed out for {address}",
            session_id=self.session.id if self.session else None,
            address=self.session.remote_address if self.session else "?",
        )
        self._abort()

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake is done."""
        kind = self._tls_pending
        if kind is None or self._lost:
            return  # renegotiation (refused by our context) or too late
        self._tls_pending = None
        if self._tls_call is not None and self._tls_call.active():
            self._tls_call.cancel()
        self._tls_call = None
        session = self.session
        assert session is not None and self._conn is not None
        session.secure = True
        if self._tls is not None:
            handle: Any = self._tls.handle
        else:
            self._tls_writer = _tls_writer(self.transport)
            try:
                handle = self.transport.getHandle()  # type: ignore[union-attr]
            except Exception:
                handle = None
        self.factory.describe_tls(handle, session)
        self._conn.secure_changed()
        if not self.factory.client_certificate_ok(handle, session):
            self._abort()
            return
        if kind == "implicit":
            self._after_tls()
        else:
            self._run_on_secure(self._starttls_secured)

    def _after_tls(self) -> None:
        session = self.session
        assert session is not None
        options = self.factory.options
        if options.disable_reverse_lookup:
            self._run_on_connect()
            return
        from smtpsession.dns import reverse_lookup

        d = reverse_lookup(session.remote_address, options.resolver, self.factory.clock, 1.5)
        d.addCallback(self._looked_up)

    def _looked_up(self, name: str | None) -> None:
        if self._lost or self.session is None:
            return
        if name:
            self.session.client_hostname = name
        self._run_on_connect()

    def _run_on_connect(self) -> None:
        if self._lost or (self._conn is not None and self._conn.closed):
            return
        fn = self.factory.hooks.on_connect
        assert self.session is not None
        self._connect_called = True
        if fn is None:
            self._connected(None, None)
        else:
            call_hook(fn, (self.session,), self._connected)

    def _connected(self, value: Any, failure: Failure | None) -> None:
        conn = self._conn
        if self._lost or conn is None or conn.closed:
            return
        if not conn.connect_result(self._hook_error(failure, "on_connect")):
            self._flush()
            return
        if self.session is not None and self.session.secure and not self.factory.options.secured:
            # Implicit TLS: on_secure runs after on_connect, before the greeting.
            self._run_on_secure(self._greet)
        else:
            self._greet()

    def _run_on_secure(self, then: Any) -> None:
        fn = self.factory.hooks.on_secure
        if fn is None:
            then()
            return
        self._hold()
        assert self.session is not None

        def secured(value: Any, failure: Failure | None) -> None:
            self._release(process=False)
            if self._lost or self._conn is None or self._conn.closed:
                return
            if not self._conn.secure_result(self._hook_error(failure, "on_secure")):
                self._flush()
                return
            then()

        call_hook(fn, (self.session,), secured)

    def _greet(self) -> None:
        conn = self._conn
        assert conn is not None
        conn.greet()
        self._greeted = True
        self.factory._log_connect(self)
        self._process()

    def _starttls_secured(self) -> None:
        assert self._conn is not None
        self._conn.tls_established()
        self._process()

    # ------------------------------------------------------------------
    # The event loop
    # ------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            self._again = True
            return
        conn = self._conn
        if conn is None or self._lost:
            return
        self._processing = True
        try:
            while True:
                self._again = False
                while not self._waiting:
                    ev = conn.next_event()
                    if type(ev) is bytes:
                        stream = self._stream
                        if stream is not None:
                            stream.feed(ev)
                        continue
                    if ev is NEED_DATA or ev is PAUSED:
                        break
                    if ev is CLOSED:
                        self._close()
                        break
                    self._dispatch[type(ev)](self, ev)  # type: ignore[operator]
                if not self._again or self._waiting:
                    break
        finally:
            self._processing = False
        self._flush()

    def _flush(self) -> None:
        conn = self._conn
        if conn is None:
            return
        data = conn.data_to_send()
        if data and not self._lost:
            self._write(data)
        if conn.closed and not self._closing:
            self._close()

    def _write(self, data: bytes, raw: bool = False) -> None:
        """
        Send replies (C{raw}: bytes already encrypted, or no TLS).  On a plain
        TCP transport they wait for the end of the reactor turn
        (L{_TurnSender}), then go straight to the socket (L{_send_pending}).
        """
        if not raw:
            tls = self._tls
            if tls is not None:
                try:
                    data = tls.send(data)
                except TLSFailure as e:
                    self._tls_failed(e.reason)
                    return
                if not data:
                    return
            elif self._tls_writer is not None:
                self._tls_writer(data)
                return
        sender = self._direct
        if sender is not None:
            if self._pending:
                self._pending += data
            else:
                self._pending = data
                sender.add(self)
            return
        self.transport.write(data)  # type: ignore[union-attr]

    def _send_pending(self) -> None:
        """
        Send what L{_write} kept back, straight to the socket when Twisted's
        write queue is empty: C{transport.write} would only queue it for the
        next reactor turn, which costs two epoll updates and a wakeup per
        reply.  Whatever the socket does not take goes through
        C{transport.write} as usual, and from then on every write does, until
        the queue is empty again.
        """
        data = self._pending
        if not data:
            return
        self._pending = b""
        if self._lost:
            return
        t: Any = self.transport
        if not t.dataBuffer and not t._tempDataBuffer:
            if t.connected and not t.disconnecting:
                # The socket itself, not writeSomeData: that wraps the data
                # in a memoryview and the call in a retry loop, about 4.7k
                # instructions per reply.  (Python retries EINTR itself.)
                try:
                    sent = t.socket.send(data)
                except OSError:
                    # Would block, or the connection failed: Twisted's own
                    # write meets the same and handles it.
                    sent = 0
                if sent == len(data):
                    return
                if sent:
                    data = data[sent:]
        t.write(data)

    def _close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        conn = self._conn
        if conn is not None:
            data = conn.data_to_send()
            if data:
                self._write(data)
        tls = self._tls
        if tls is not None and not tls.failed:
            notify = tls.close()
            if notify:
                self._write(notify, raw=True)
        self._send_pending()  # the last replies, before the socket closes
        # A TLS transport waits for its producer to go away before it sends
        # close_notify and closes; without this a TLS session would only end
        # when the half-close timer below aborts it.
        self.transport.unregisterProducer()  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]
        self._close_call = self.factory.clock.callLater(
            min(self.factory.options.socket_timeout, HALF_CLOSE_TIMEOUT), self._abort
        )

    def _abort(self) -> None:
        self._close_call = None
        if not self._lost and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _hold(self) -> None:
        """A hook is pending: stop parsing and stop reading."""
        self._waiting = True
        self._pause(_HOOK)

    def _release(self, process: bool = True) -> None:
        self._waiting = False
        self._resume(_HOOK, process)

    def _call(self, fn: Any, args: tuple[Any, ...], cont: Any) -> None:
        """Call a hook; continue parsing at once or when its result comes."""

        def later(value: Any, failure: Failure | None) -> None:
            self._waiting = False
            if self._lost or self._conn is None or self._conn.closed:
                # Closed meanwhile (shutdown grace period over): the answer
                # has nobody to go to.
                return
            try:
                cont(value, failure)
            finally:
                self._resume(_HOOK, process=False)
                self._process()

        if not call_hook(fn, args, cont, later):
            self._hold()

    def _hook_error(self, failure: Failure | None, hook: str) -> BaseException | None:
        """The exception a hook failed with, for the core; logged if unexpected."""
        if failure is None:
            return None
        if not failure.check(SMTPError, AuthUnavailable, StreamAborted):
            self.log.failure(
                "Hook {hook} failed (session {session_id})",
                failure,
                hook=hook,
                session_id=self.session.id if self.session else None,
            )
        return failure.value

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def _on_mail_from(self, ev: MailFrom) -> None:
        fn = self.factory.hooks.on_mail_from
        if fn is None:
            self._conn.mail_from_result(None)  # type: ignore[union-attr]
            return
        self._call(fn, (ev.address, self.session), self._mail_done)

    def _mail_done(self, value: Any, failure: Failure | None) -> None:
        error = self._hook_error(failure, "on_mail_from")
        self._conn.mail_from_result(error, value)  # type: ignore[union-attr]

    def _on_rcpt_to(self, ev: RcptTo) -> None:
        fn = self.factory.hooks.on_rcpt_to
        if fn is None:
            self._conn.rcpt_to_result(None)  # type: ignore[union-attr]
            return
        self._call(fn, (ev.address, self.session), self._rcpt_done)

    def _rcpt_done(self, value: Any, failure: Failure | None) -> None:
        error = self._hook_error(failure, "on_rcpt_to")
        self._conn.rcpt_to_result(error, value)  # type: ignore[union-attr]

    def _on_auth(self, ev: Auth) -> None:
        check = self.factory.authenticator
        assert check is not None
        self._call(check, (ev.request, self.session), self._auth_done)

    def _auth_done(self, value: Any, failure: Failure | None) -> None:
        conn = self._conn
        assert conn is not None
        ok = conn.auth_result(value, self._hook_error(failure, "on_auth"))
        self.factory._log_auth(self, ok)

    def _on_data_start(self, ev: DataStart) -> None:
        options = self.factory.options
        stream = MessageStream(options.size, self._pause_stream, self._resume_stream)
        self._stream = stream
        self._data_outcome = None
        self._data_waiting = False
        self._data_generation += 1
        if options.transaction_log:
            self._data_started = self.factory.clock.seconds()
        generation = self._data_generation
        fn = self.factory.hooks.on_data
        if fn is None:
            stream.drain()
            self._data_outcome = (None, None)
            return

        def done(value: Any, failure: Failure | None) -> None:
            if generation != self._data_generation or self._lost:
                if failure is not None and not failure.check(SMTPError, StreamAborted):
                    self._hook_error(failure, "on_data")
                return
            self._data_outcome = (value, failure)
            if not self._data_waiting:
                # Answered before the body ended: drain the rest.
                stream.drain()
                return
            self._data_waiting = False
            self._release(process=False)
            try:
                self._answer_data()
            finally:
                self._process()

        call_hook(fn, (stream, self.session), done)

    def _on_body_rejected(self, ev: BodyRejected) -> None:
        stream = self._stream
        if stream is not None:
            stream.fail(ev.error)

    def _end_body_reads(self) -> None:
        t: Any = self.transport
        if self._direct is not None and t.bufferSize != _READ_SIZE:
            t.bufferSize = _READ_SIZE

    def _on_data_end(self, ev: DataEnd) -> None:
        self._end_body_reads()
        stream = self._stream
        self._data_rejected = ev.rejected
        if stream is not None and ev.rejected is None:
            stream.end()
        if self._data_outcome is None:
            self._data_waiting = True
            self._hold()
            return
        self._answer_data()

    def _answer_data(self) -> None:
        conn = self._conn
        assert conn is not None
        outcome = self._data_outcome
        assert outcome is not None
        value, failure = outcome
        self._data_outcome = None
        stream = self._stream
        self._stream = None
        session = self.session
        envelope = session.envelope if session else None
        recipients = len(envelope.rcpt_to) if envelope is not None else 0
        codes, wrong = conn.data_outcome(value, self._hook_error(failure, "on_data"))
        if wrong is not None:
            self.log.error(
                "[{session_id}] on_data returned {n} results for {m} LMTP recipients",
                session_id=session.id if session else None,
                n=wrong,
                m=recipients,
            )
        self.factory._log_transaction(self, envelope, stream, codes)

    def _on_data_aborted(self, ev: DataAborted) -> None:
        self._abort_stream(ev.reason)

    def _abort_stream(self, reason: str) -> None:
        if not self._lost:
            self._end_body_reads()
        stream = self._stream
        self._stream = None
        self._data_generation += 1
        self._data_outcome = None
        if self._data_waiting:
            self._data_waiting = False
            self._release()
        if stream is not None:
            stream.fail(StreamAborted(reason))

    def _on_starttls(self, ev: StartTLS) -> None:
        self._flush()
        self._start_tls("starttls")

    _dispatch = {
        MailFrom: _on_mail_from,
        RcptTo: _on_rcpt_to,
        Auth: _on_auth,
        DataStart: _on_data_start,
        BodyRejected: _on_body_rejected,
        DataEnd: _on_data_end,
        DataAborted: _on_data_aborted,
        StartTLS: _on_starttls,
    }

    # ------------------------------------------------------------------
    # Timers and shutdown
    # ------------------------------------------------------------------

    def _idle_check(self, now: float) -> None:
        """
        Called by the factory's sweep (one timer for all connections, not a
        DelayedCall each: a DelayedCall costs ~400 bytes per idle client).
        """
        if self._lost or self._closing:
            return
        idle = now - self._last_activity
        # Not the client's fault: a hook is pending, or we stopped reading
        # because the body's reader lags.
        if self._waiting or self._paused & (_HOOK | _STREAM):
            # The client gets a whole timeout once we listen again.
            self._last_activity = now
            return
        if idle < self.factory.options.socket_timeout:
            return
        conn = self._conn
        if conn is None:
            self._abort()
            return
        if self._tls_pending is not None or not self._greeted:
            self._abort()
            return
        conn.timeout()
        self._flush()

    def begin_shutdown(self) -> None:
        """The server is stopping: let the core tell the client."""
        conn = self._conn
        if conn is None or self._lost:
            return
        if not self._greeted or self._tls_pending is not None:
            self._abort()
            return
        conn.begin_shutdown()
        self._flush()

    def force_close(self) -> None:
        """The shutdown grace period is over."""
        conn = self._conn
        if conn is None or self._lost:
            return
        if self._stream is not None:
            self._abort_stream("server shutting down")
        if not self._greeted:
            self._abort()
            return
        conn.force_close()
        self._flush()

    def _close_done(self, value: Any, failure: Failure | None) -> None:
        if failure is not None:
            self._hook_error(failure, "on_close")
