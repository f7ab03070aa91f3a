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

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IDelayedCall, IHandshakeListener, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession import _opening
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
from smtpsession._hooks import call_hook
from smtpsession._server import Server
from smtpsession._tls_session import TLSSession
from smtpsession._transaction import HookCall, Transaction
from smtpsession._twisted_shim import set_read_size
from smtpsession._writer import ReplyWriter
from smtpsession.errors import AuthUnavailable, HookTimeout, SMTPError
from smtpsession.session import Session, new_session_id
from smtpsession.stream import MessageStream, StreamAborted

__all__ = ["SMTPServerProtocol", "new_session_id", "normalise_address", "HALF_CLOSE_TIMEOUT"]

normalise_address = _opening.normalise_address

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
        self._last_activity = server.clock.seconds()
        self._opening = _opening.Opening(self, server)
        self._opening.start()

    def dataReceived(self, data: bytes) -> None:
        self._last_activity = self._server.clock.seconds()
        conn = self._conn
        if conn is None:
            return
        opening = self._opening
        if opening is not None and opening.proxy is not None:
            opening.proxy_received(data)
            return
        if len(data) >= _READ_SIZE:
            tx = self._tx
            writer = self._writer
            if tx is not None and not tx.big_reads and writer is not None and writer.direct:
                # A large body is streaming in: read it in bigger bites
                # (fewer calls per byte); _end_body_reads puts the default back.
                tx.big_reads = True
                set_read_size(self.transport, _BODY_READ_SIZE)
        tls = self._tls
        if tls is not None and tls.layer is not None:
            data, peer_closed = tls.receive(data)
            if peer_closed:
                # close_notify: the client is done; answer in kind and hang up.
                if data and not self._lost:
                    conn.receive_data(data)
                    self._process()
                self._close()
                return
            if not data:
                return
        conn.receive_data(data)
        self._process()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        if self._lost:
            return
        self._lost = True
        call = self._close_call
        self._close_call = None
        if call is not None and call.active():
            call.cancel()
        tls = self._tls
        if tls is not None:
            tls.stop_timer()
        if self._refused:
            return
        server = self._server
        session = self.session
        opening = self._opening
        if tls is not None and tls.handshaking and session is not None:
            # One line per failed handshake (what OpenSSL said, never data).
            server.log_lines.tls_failed(session, reason.getErrorMessage(), handshake=True)
        server.forget(self)
        if self._writer is not None:
            self._writer.lost()
        self._drop_hook()
        if opening is not None:
            opening.stop()
        conn = self._conn
        if conn is not None:
            aborted = conn.connection_lost()
            if aborted is not None or self._tx is not None:
                self._abort_transaction("connection lost")
        if session is not None and (opening is None or opening.connect_called):
            # on_close pairs with on_connect: a connection that never got that
            # far (bad PROXY header, failed TLS handshake) has no session to end.
            fn = server.pipeline.on_close
            if fn is not None:
                call_hook(fn, (session,), self._close_done)
            server.log_lines.closed(session)

    def _close_done(self, value: Any, failure: Failure | None) -> None:
        if failure is not None:
            self._server.log_lines.hook_failed(self.session, "on_close", failure)

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
                self._process()

    def _pause_stream(self) -> None:
        self._pause(_STREAM)

    def _resume_stream(self) -> None:
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

    def greeted(self) -> None:
        """The greeting is queued (L{smtpsession._opening}): commands may come."""
        self._opening = None
        self._greeted = True
        self._server.log_lines.connected(self.session)  # type: ignore[arg-type]
        self._process()

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
                        self._close()
                        break
                    self._dispatch[type(ev)](self, ev)  # type: ignore[operator]
                if not self._again or self._hook is not None:
                    break
        finally:
            self._processing = False
        self._flush()

    def flush(self) -> None:
        """Send what the core queued; close if it decided so."""
        self._flush()

    def _flush(self) -> None:
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
            self._close()

    def _write(self, data: bytes) -> None:
        tls = self._tls
        if tls is not None and tls.layer is not None:
            tls.send(data)
        else:
            self._writer.write(data)  # type: ignore[union-attr]

    def write_raw(self, data: bytes) -> None:
        """C{TLSHost}: bytes as they are (our TLS layer's ciphertext)."""
        self._writer.write(data)  # type: ignore[union-attr]

    def _close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        conn = self._conn
        if conn is not None:
            data = conn.data_to_send()
            if data:
                self._write(data)
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

    def call(self, fn: Any, args: tuple[Any, ...], name: str, cont: Any) -> None:
        """
        Call a hook's chain; continue parsing at once or when its answer
        comes (or C{hook_timeout} gives up on it: C{cont} then gets a
        L{HookTimeout} failure).  Reading stops while it is pending.
        """

        def later(value: Any, failure: Failure | None) -> None:
            hook = self._hook
            if hook is None or hook.late is not later or hook.timing_out:
                return  # the connection went, or a timeout answers instead
            self._hook = None
            hook.stop_timer()
            if self._lost or self._conn is None or self._conn.closed:
                return
            # The client now waits for us no more: its idle time starts.
            self._last_activity = self._server.clock.seconds()
            try:
                cont(value, failure)
            finally:
                self._resume(_HOOK, process=False)
                self._process()

        pending = call_hook(fn, args, cont, later)
        if pending is not None:
            self._hold(HookCall(pending, name, later))

    def _hold(self, hook: HookCall) -> None:
        """A hook's answer is due: stop reading, start its deadline."""
        self._hook = hook
        server = self._server
        hook.start_timer(server.clock, server.options.hook_timeout, self._hook_timed_out)
        self._pause(_HOOK)

    def _hook_timed_out(self) -> None:
        hook = self._hook
        if hook is None:
            return
        self._server.log_lines.hook_timed_out(self.session, hook.name, hook.seconds)
        hook.time_out(HookTimeout(f"{hook.name} did not answer within {hook.seconds:g} s"))

    def _drop_hook(self) -> None:
        """Forget the pending hook (answered, or its connection is going)."""
        hook = self._hook
        self._hook = None
        if hook is not None:
            hook.stop_timer()

    def outcome(self, failure: Failure | None, hook: str) -> BaseException | None:
        """The exception a hook failed with, for the core; logged if unexpected."""
        if failure is None:
            return None
        if not failure.check(SMTPError, AuthUnavailable, StreamAborted, HookTimeout):
            self._server.log_lines.hook_failed(self.session, hook, failure)
        return failure.value

    def _on_mail_from(self, ev: MailFrom) -> None:
        self.call(self._server.pipeline.on_mail_from, (ev.address, self.session), "on_mail_from", self._mail_done)

    def _mail_done(self, value: Any, failure: Failure | None) -> None:
        self._conn.mail_from_result(self.outcome(failure, "on_mail_from"), value)  # type: ignore[union-attr]

    def _on_rcpt_to(self, ev: RcptTo) -> None:
        self.call(self._server.pipeline.on_rcpt_to, (ev.address, self.session), "on_rcpt_to", self._rcpt_done)

    def _rcpt_done(self, value: Any, failure: Failure | None) -> None:
        self._conn.rcpt_to_result(self.outcome(failure, "on_rcpt_to"), value)  # type: ignore[union-attr]

    def _on_auth(self, ev: Auth) -> None:
        self.call(self._server.pipeline.on_auth, (ev.request, self.session), "on_auth", self._auth_done)

    def _auth_done(self, value: Any, failure: Failure | None) -> None:
        ok = self._conn.auth_result(value, self.outcome(failure, "on_auth"))  # type: ignore[union-attr]
        self._server.log_lines.authenticated(self.session, ok)  # type: ignore[arg-type]

    # ------------------------------------------------------------------
    # The message body and on_data
    # ------------------------------------------------------------------

    def _on_data_start(self, ev: DataStart) -> None:
        server = self._server
        stream = MessageStream(server.options.size, self._pause_stream, self._resume_stream)
        started = server.clock.seconds() if server.log_lines.transactions else 0.0
        tx = self._tx = Transaction(stream, started)
        fn = server.pipeline.on_data
        if fn is None:
            stream.drain()
            tx.outcome = (None, None)
            return

        def done(value: Any, failure: Failure | None) -> None:
            self._data_done(tx, value, failure)

        tx.pending = call_hook(fn, (stream, self.session), done)

    def _data_done(self, tx: Transaction, value: Any, failure: Failure | None) -> None:
        hook = self._hook
        if tx is not self._tx or self._lost or (hook is not None and hook.timing_out):
            # Ended meanwhile (RSET, QUIT, lost, timed out): nobody to tell.
            if failure is not None and not failure.check(
                SMTPError, StreamAborted, HookTimeout, CancelledError
            ):
                self.outcome(failure, "on_data")
            return
        tx.pending = None
        tx.outcome = (value, failure)
        if not tx.waiting:
            # Answered before the body ended: drain the rest.
            tx.stream.drain()
            return
        tx.waiting = False
        self._drop_hook()
        self._last_activity = self._server.clock.seconds()
        self._resume(_HOOK, process=False)
        try:
            self._answer_data()
        finally:
            self._process()

    def _on_body_rejected(self, ev: BodyRejected) -> None:
        if self._tx is not None:
            self._tx.stream.fail(ev.error)

    def _on_data_end(self, ev: DataEnd) -> None:
        tx = self._tx
        assert tx is not None
        if tx.big_reads:
            tx.big_reads = False
            set_read_size(self.transport, _READ_SIZE)
        if ev.rejected is None:
            tx.stream.end()
        if tx.outcome is not None:
            self._answer_data()
            return
        # The body is in; on_data's answer is due from now on.
        tx.waiting = True

        def timed_out(value: Any, failure: Failure | None) -> None:
            self._data_done(tx, None, failure)

        self._hold(HookCall(tx.pending, "on_data", timed_out))

    def _answer_data(self) -> None:
        conn = self._conn
        tx = self._tx
        assert conn is not None and tx is not None and tx.outcome is not None
        self._tx = None
        value, failure = tx.outcome
        session = self.session
        assert session is not None
        envelope = session.envelope
        codes, wrong = conn.data_outcome(value, self.outcome(failure, "on_data"))
        log = self._server.log_lines
        if wrong is not None:
            log.wrong_lmtp_results(session, wrong, len(envelope.rcpt_to))
        if log.transactions:
            log.transaction(session, envelope, tx.stream.byte_length, codes, tx.started)

    def _on_data_aborted(self, ev: DataAborted) -> None:
        self._abort_transaction(ev.reason)

    def _abort_transaction(self, reason: str) -> None:
        tx = self._tx
        self._tx = None
        if tx is None:
            return
        if tx.big_reads and not self._lost:
            set_read_size(self.transport, _READ_SIZE)
        if tx.waiting:
            tx.waiting = False
            self._drop_hook()
            self._resume(_HOOK)
        tx.stream.fail(StreamAborted(reason))

    def _on_starttls(self, ev: StartTLS) -> None:
        self._flush()
        self.start_tls("starttls")

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
    # TLS (the handshake's details are in smtpsession._tls_session)
    # ------------------------------------------------------------------

    def expect_handshake(self, kind: str) -> None:
        """The transport is TLS already: wait for its handshake."""
        server = self._server
        self._tls = TLSSession(self, kind, server.clock, server.options.tls_handshake_timeout, None)

    def start_tls(self, kind: str) -> None:
        """Start TLS: our own layer, or Twisted's when the context needs it."""
        server = self._server
        try:
            layer = server.tls.layer(self)
            self._tls = TLSSession(
                self, kind, server.clock, server.options.tls_handshake_timeout, layer
            )
            if layer is None:
                # Twisted's TLS layer becomes our transport; what is still
                # pending (the 220) must go out in clear before it.
                self._writer.twisted_tls_started()  # type: ignore[union-attr]
                server.tls.start_twisted_tls(self.transport)
        except Exception:
            server.log_lines.tls_start_failed(self.session)  # type: ignore[arg-type]
            self.abort()

    def tls_failed(self, reason: str) -> None:
        """C{TLSHost}: a failed handshake or a broken record: log, close."""
        tls = self._tls
        assert tls is not None and self.session is not None
        self._server.log_lines.tls_failed(self.session, reason, handshake=tls.handshaking)
        tls.handshake_done()  # logged here, not again when the socket closes
        self._close()

    def tls_timed_out(self) -> None:
        """C{TLSHost}: the handshake took too long."""
        self._server.log_lines.tls_timed_out(self.session)  # type: ignore[arg-type]
        self.abort()

    def handshakeCompleted(self) -> None:
        """IHandshakeListener: the TLS handshake is done."""
        tls = self._tls
        if tls is None or not tls.handshaking or self._lost:
            return  # renegotiation (refused by our context) or too late
        tls.handshake_done()
        session = self.session
        conn = self._conn
        assert session is not None and conn is not None
        session.secure = True
        handle = tls.handle
        if tls.layer is None:
            self._writer.twisted_tls_established(self.transport)  # type: ignore[union-attr]
            try:
                handle = self.transport.getHandle()  # type: ignore[union-attr]
            except Exception:
                handle = None
        server = self._server
        server.tls.describe(handle, session)
        conn.secure_changed()
        if not server.tls.client_certificate_ok(handle):
            self.abort()
            return
        if tls.kind == "implicit":
            self._opening.tls_done()  # type: ignore[union-attr]
            return
        # RFC 3207 §4.2: forget what was said in the clear before on_secure
        # sees the session.
        conn.tls_established()
        self.run_on_secure(self._process)

    def run_on_secure(self, then: Any) -> None:
        """Call C{on_secure}; C{then()} if it agrees, else its refusal and close."""
        fn = self._server.pipeline.on_secure
        if fn is None:
            then()
            return

        def secured(value: Any, failure: Failure | None) -> None:
            conn = self._conn
            if self._lost or conn is None or conn.closed:
                return
            if not conn.secure_result(self.outcome(failure, "on_secure")):
                self._flush()
                return
            then()

        self.call(fn, (self.session,), "on_secure", secured)

    # ------------------------------------------------------------------
    # Timers and shutdown
    # ------------------------------------------------------------------

    def idle_check(self, now: float) -> None:
        """
        The server's sweep asks: has the client been silent too long?  A
        pending hook does not stop the clock; a body reader that lags does
        (we stopped reading, not the client): the client then gets a whole
        timeout once we listen again.
        """
        if self._lost or self._closing:
            return
        if self._paused & _STREAM:
            self._last_activity = now
            return
        if now - self._last_activity < self._server.options.socket_timeout:
            return
        conn = self._conn
        tls = self._tls
        if conn is None or not self._greeted or (tls is not None and tls.handshaking):
            self.abort()
            return
        self._drop_hook()
        if self._tx is not None:
            self._abort_transaction("timeout")
        conn.timeout()
        self._flush()

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
        self._flush()

    def force_close(self) -> None:
        """The shutdown grace period is over."""
        conn = self._conn
        if conn is None or self._lost:
            return
        self._drop_hook()
        if self._tx is not None:
            self._abort_transaction("server shutting down")
        if not self._greeted:
            self.abort()
            return
        conn.force_close()
        self._flush()
