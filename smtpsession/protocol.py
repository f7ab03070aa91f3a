# -*- test-case-name: tests.protocol.test_protocol -*-
"""
L{SMTPServerProtocol}: the thin Twisted driver of the sans-IO core.

It turns transport callbacks into core calls and core events into calls of
the hook pipeline, and hands the outcomes back to the core untouched (the
core decides every reply).  It owns what needs a clock or a socket, each in
a small object of its own: the replies' way out (L{ReplyWriter}), TLS
(L{TLSSession}), the message body on its way to C{on_data}
(L{Transaction}); the start of a session (PROXY header, reverse lookup,
C{on_connect}, greeting) is in L{smtpsession._opening}.

Flow control, in one place: reading from the client is paused while a hook
is pending (replies stay in order and pipelined input stays bounded), while
the body reader lags (L{MessageStream} high-water mark), and while the
client does not read our replies (this protocol is the transport's push
producer).  Each reason is one bit of C{_paused}; reading resumes only when
all are clear.

Deadlines: the idle timer (C{socket_timeout}) runs whatever the hooks do;
only a reader that lags behind the body stops it (that is our doing, not
the client's).  A hook that does not answer within C{hook_timeout} is
cancelled and answered with L{HookTimeout}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession import _asking, _deadlines, _opening, _transaction
from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    BodyRejected,
    DataAborted,
    DataEnd,
    DataStart,
    StartTLS,
)
from smtpsession._server import Server
from smtpsession._tls_session import TLSSession
from smtpsession._transaction import READ_SIZE, HookCall, Transaction
from smtpsession._writer import ReplyWriter
from smtpsession.session import Session, new_session_id

__all__ = ["SMTPServerProtocol", "new_session_id", "normalise_address", "HALF_CLOSE_TIMEOUT"]

normalise_address = _opening.normalise_address

# Reasons to stop reading from the client (bits of _paused).
_HOOK = 1
_STREAM = 2
_WRITE = 4

#: After we decide to close, how long a client that does not read its last
#: reply may keep the socket (smtp-server: min(socket timeout, 5 s)).
HALF_CLOSE_TIMEOUT = 5.0


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
        "session",
        "_server",
        "_conn",
        "_writer",
        "_tls",
        "_tx",
        "_hook",
        "_opening",
        "_paused",
        "_processing",
        "_again",
        "_lost",
        "_greeted",
        "_closing",
        "_refused",
        "_last_activity",
        "_started",
        "_client_key",
        "_close_call",
    )

    def __init__(self, server: Server, factory: Any = None) -> None:
        self.factory = factory
        self.transport = None
        self.connected = 0
        self.session: Session | None = None
        self._server = server
        self._conn: ServerConnection | None = None
        self._writer: ReplyWriter | None = None
        self._tls: TLSSession | None = None
        self._tx: Transaction | None = None
        self._hook: HookCall | None = None  # a hook whose answer is due
        #: The start of the session until the greeting (None after it).
        self._opening: _opening.Opening | None = None
        self._paused = 0
        self._processing = False
        self._again = False
        self._lost = False
        self._greeted = False
        self._closing = False
        self._refused = False
        self._last_activity = 0.0
        self._started = 0.0
        #: The address counted against max_connections_per_ip, if any.
        self._client_key: str | None = None
        self._close_call: IDelayedCall | None = None

    # ------------------------------------------------------------------
    # IProtocol
    # ------------------------------------------------------------------

    def connectionMade(self) -> None:
        server = self._server
        transport: Any = self.transport
        refusal = server.admit(self)
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
        transport.registerProducer(self, True)
        self._writer = ReplyWriter(transport, server.turn_sender)
        session = self.session = _opening.new_session(transport, server.options)
        self._conn = ServerConnection(
            server.core_config(server.tls.available(transport)), session
        )
        self._last_activity = self._started = server.clock.seconds()
        self._opening = _opening.Opening(self, server)
        self._opening.start()

    def dataReceived(self, data: bytes) -> None:
        conn = self._conn
        if conn is None:
            return
        opening = self._opening
        if opening is not None and opening.proxy is not None:
            opening.proxy_received(data)
            return
        progress = conn.progress
        if len(data) >= READ_SIZE:
            tx = self._tx
            writer = self._writer
            if tx is not None and writer is not None and writer.direct:
                tx.read_in_big_bites()
        tls = self._tls
        if tls is not None and tls.layer is not None:
            data, peer_closed = tls.receive(data)
            if peer_closed:
                # close_notify: the client is done; answer in kind and hang up.
                if data and not self._lost:
                    conn.receive_data(data)
                    self.process()
                self.close()
                return
            if not data:
                return
        conn.receive_data(data)
        self.process()
        if conn.progress != progress:
            # A command line or a piece of body (the core says which is
            # which: see _core.body.BODY_PROGRESS): the client is not idle.
            # (Bytes alone do not count: one a second is a slowloris.)
            self._last_activity = self._server.clock.seconds()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._lost:
            return
        self._lost = True
        call = self._close_call
        self._close_call = None
        if call is not None and call.active():
            call.cancel()
        tls = self._tls
        if self._refused:
            return
        if tls is not None:
            tls.lost(reason.getErrorMessage())
        server = self._server
        session = self.session
        opening = self._opening
        server.forget(self, self._client_key)
        if self._writer is not None:
            self._writer.lost()
        self._drop_hook()
        if opening is not None:
            opening.stop()
        conn = self._conn
        if conn is not None:
            conn.connection_lost()
        if self._tx is not None:
            self._tx.abort("connection lost")
        if session is not None and (opening is None or opening.connect_called):
            # on_close pairs with on_connect: a connection that never got that
            # far (bad PROXY header, failed TLS handshake) has no session to end.
            _asking.closed(self)

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
        if not self._paused and not self._lost and not self._closing and self.transport is not None:
            self.transport.resumeProducing()  # type: ignore[attr-defined]
            if process and self._hook is None:
                self.process()

    def pause_stream(self) -> None:
        """The body's reader lags: stop reading from the client."""
        self._pause(_STREAM)

    def resume_stream(self) -> None:
        self._resume(_STREAM)

    # ------------------------------------------------------------------
    # The event loop
    # ------------------------------------------------------------------

    @property
    def conn(self) -> ServerConnection | None:
        """The core (C{OpeningHost})."""
        return self._conn

    @property
    def gone(self) -> bool:
        """The connection is lost (C{OpeningHost})."""
        return self._lost

    @property
    def own_tls_layer(self) -> bool:
        """TLS runs in our own layer, not Twisted's (C{OpeningHost})."""
        return self._tls is not None and self._tls.layer is not None

    def counted_under(self, key: str | None) -> None:
        """C{OpeningHost}: this connection counts against C{key}'s limit."""
        self._client_key = key

    def greeted(self) -> None:
        """The greeting is queued (L{smtpsession._opening}): commands may come."""
        self._opening = None
        self._greeted = True
        self._server.log_lines.connected(self.session)  # type: ignore[arg-type]
        self.process()

    def process(self) -> None:
        """Parse what is buffered as far as the core can go; send the replies."""
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
                while self._hook is None:
                    ev = conn.next_event()
                    if type(ev) is bytes:
                        tx = self._tx
                        if tx is not None:
                            tx.stream.feed(ev)
                        continue
                    if ev is NEED_DATA or ev is PAUSED:
                        break
                    if ev is CLOSED:
                        self.close()
                        break
                    self._dispatch[type(ev)](self, ev)  # type: ignore[operator]
                if not self._again or self._hook is not None:
                    break
        finally:
            self._processing = False
        self.flush()

    def flush(self) -> None:
        """Send what the core queued; close if it decided so."""
        conn = self._conn
        if conn is None:
            return
        data = conn.data_to_send()
        if data and not self._lost:
            tls = self._tls
            if tls is not None and tls.layer is not None:
                tls.send(data)
            else:
                self._writer.write(data)  # type: ignore[union-attr]
        if conn.closed and not self._closing:
            self.close()

    @property
    def writer(self) -> ReplyWriter | None:
        """The way out (C{TLSHost})."""
        return self._writer

    def write_raw(self, data: bytes) -> None:
        """C{TLSHost}: bytes as they are (our TLS layer's ciphertext)."""
        self._writer.write(data)  # type: ignore[union-attr]

    def close(self) -> None:
        """Send the last replies, close_notify on TLS, then close."""
        if self._closing or self._lost:
            return
        self._closing = True
        self.flush()  # what the core queued last
        if self._tls is not None:
            self._tls.close()
        if self._writer is not None:
            self._writer.flush()  # the last replies, before the socket closes
        transport: Any = self.transport
        # A TLS transport waits for its producer to go away before it sends
        # close_notify and closes; without this a TLS session would only end
        # when the half-close timer below aborts it.
        transport.unregisterProducer()
        transport.loseConnection()
        self._close_call = self._server.clock.callLater(
            min(self._server.options.socket_timeout, HALF_CLOSE_TIMEOUT), self.abort
        )

    def abort(self) -> None:
        """Drop the connection now, without a word."""
        self._close_call = None
        if not self._lost and self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------
    # Hooks: call the pipeline, hand the outcome to the core
    # ------------------------------------------------------------------

    @property
    def server(self) -> Server:
        return self._server

    @property
    def pending_hook(self) -> HookCall | None:
        """The hook whose answer is due, if any (C{AskingHost})."""
        return self._hook

    def hold(self, hook: HookCall) -> None:
        """A hook's answer is due: stop reading, start its deadline."""
        self._hook = hook
        server = self._server
        hook.start_timer(server.clock, server.options.hook_timeout, self._hook_timed_out)
        self._pause(_HOOK)

    def _hook_timed_out(self) -> None:
        _asking.timed_out(self)

    def _drop_hook(self) -> None:
        """Forget the pending hook (answered, or its connection is going)."""
        hook = self._hook
        self._hook = None
        if hook is not None:
            hook.stop_timer()

    def release(self) -> None:
        """A held hook answered: the client's idle time starts; read again."""
        self._drop_hook()
        self._last_activity = self._server.clock.seconds()
        self._resume(_HOOK, process=False)

    def outcome(self, failure: Failure | None, hook: str) -> BaseException | None:
        """The exception a hook failed with, for the core (C{TransactionHost})."""
        return _asking.outcome(self, failure, hook)

    # ------------------------------------------------------------------
    # The message body and on_data (see smtpsession._transaction)
    # ------------------------------------------------------------------

    @property
    def transaction(self) -> Transaction | None:
        """The body on its way to on_data, if any (C{TransactionHost})."""
        return self._tx

    def transaction_began(self, tx: Transaction) -> None:
        self._tx = tx

    def transaction_over(self, tx: Transaction) -> None:
        """C{TransactionHost}: the body's final answer went to the core."""
        if self._tx is tx:
            self._tx = None

    def _on_starttls(self, ev: StartTLS) -> None:
        self.flush()
        self.start_tls("starttls")

    _dispatch = {
        **_asking.QUESTIONS,  # MailFrom, RcptTo, Auth, Helo, ...: ask a hook
        DataStart: _transaction.data_start,
        BodyRejected: _transaction.body_rejected,
        DataEnd: _transaction.data_end,
        DataAborted: _transaction.data_aborted,
        StartTLS: _on_starttls,
    }

    # ------------------------------------------------------------------
    # TLS (the handshake's details are in smtpsession._tls_session)
    # ------------------------------------------------------------------

    def expect_handshake(self, kind: str) -> None:
        """The transport is TLS already: wait for its handshake."""
        self._tls = TLSSession(self, self._server, kind, None)

    def start_tls(self, kind: str) -> None:
        """Start TLS on this plain connection (STARTTLS, or C{secure})."""
        self._tls = TLSSession.start(self, self._server, kind)

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake is done."""
        if self._tls is not None and not self._lost:
            self._tls.completed()

    def implicit_tls_done(self) -> None:
        """C{TLSHost}: implicit TLS is up, the opening goes on."""
        assert self._opening is not None
        self._opening.tls_done()

    def run_on_secure(self, then: Callable[[], None]) -> None:
        """C{TLSHost}: call C{on_secure}, then C{then()} if it agrees."""
        _asking.on_secure(self, then)

    # ------------------------------------------------------------------
    # Timers and shutdown
    # ------------------------------------------------------------------

    def idle_check(self, now: float) -> None:
        """The server's sweep asks: has a deadline passed (L{_deadlines})?"""
        if self._lost or self._closing:
            return
        tx = self._tx
        which = _deadlines.passed(
            self._server.options,
            now,
            self._started,
            self._last_activity,
            tx.started if tx is not None and not tx.waiting else None,
            bool(self._paused & _STREAM),
        )
        if which is None:
            return
        if which == _deadlines.READER_LAGS:
            self._last_activity = now  # a whole timeout once we read again
            return
        conn = self._conn
        tls = self._tls
        if conn is None or not self._greeted or (tls is not None and tls.handshaking):
            self.abort()
            return
        self._drop_hook()
        if tx is not None:
            tx.abort("timeout")
        if which == _deadlines.SESSION:
            conn.session_expired()
        elif which == _deadlines.BODY:
            conn.body_expired()
        else:
            conn.timeout()
        self.flush()

    def begin_shutdown(self) -> None:
        """The server is stopping: let the core tell the client."""
        conn = self._conn
        if conn is None or self._lost:
            return
        tls = self._tls
        if not self._greeted or (tls is not None and tls.handshaking):
            self.abort()
            return
        conn.begin_shutdown()
        self.flush()

    def force_close(self) -> None:
        """The shutdown grace period is over."""
        conn = self._conn
        if conn is None or self._lost:
            return
        self._drop_hook()
        if self._tx is not None:
            self._tx.abort("server shutting down")
        if not self._greeted:
            self.abort()
            return
        conn.force_close()
        self.flush()
