# -*- test-case-name: tests.integration.test_amqp -*-
"""
L{AMQPHandler}: publish each accepted message to RabbitMQ (AMQP 0-9-1).

For an application that already consumes a queue: the mail server becomes
one more producer, and the application never speaks SMTP.  The promise is
the Maildir handler's, with the broker in place of the disk: the client
gets C{250} only after the broker's publisher confirm, that is once the
broker has taken responsibility for the message (for a persistent message
in a durable queue: once it is on the broker's disk).  Until then the
message exists only in this process and in the client's queue, so every
failure on the way (broker down or restarting, connection lost before the
confirm, a nack, a message no queue would take, no confirm within
C{hook_timeout}) is a temporary failure, C{451 4.3.0}, and the client keeps
the message and tries again later.

That makes delivery I{at least once}, not exactly once: when the broker
stored a message but its confirm is lost (the connection drops at that
moment, or the confirm comes after C{hook_timeout}), the client is told
C{451}, retries, and the queue gets the message twice.  Nothing here can
tell the two apart; a consumer that must not see duplicates keeps the
C{Message-ID} headers it has seen.

The handler is a Twisted service: L{smtpsession.service.SMTPService}
starts it with the server, in the process that serves (each worker of
C{--workers}, never their supervisor), and stops it after the drain, when
no session can publish any more.  Started, it keeps one connection to the
broker, made at once, whether the broker is there or not (so the daemon
starts while the broker is away), and made again after every failure or
broker restart, with a growing delay (0.5 s, doubling, up to
C{max_reconnect_delay}).  While it is down, C{MAIL} gets C{451} at once.
The message is published with C{mandatory} set, so a message that no queue
would take (the queue was deleted, no binding matches) is returned by the
broker and refused, never confirmed into nowhere.

AMQP sends a message as one unit, so the body is held in memory until it is
published: at most the server's C{size} (10 MiB by default) per
transaction in progress.

pika (the C{amqp} extra) is imported when a handler is made, not with this
module, so that smtpsession works without it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.defer import TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from smtpsession._core import app_replies
from smtpsession.errors import SMTPError
from smtpsession.handler import Handler
from smtpsession.handlers._trace import default_hostname, received_header
from smtpsession.handlers.maildir import as_bool

__all__ = ["AMQPHandler", "DEFAULT_URL"]

#: Where the handler connects by default: RabbitMQ's out-of-the-box account
#: on this machine.
DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"

#: The first wait before connecting again; it doubles at each failure.
FIRST_RECONNECT_DELAY = 0.5

#: How long stopping waits for the confirms of messages still under way
#: (after the drain, only those of clients that went away meanwhile).
CLOSE_GRACE = 10.0

INSTALL_HINT = "the AMQP handler needs pika: pip install smtpsession[amqp]"


def _pika() -> Any:
    """The pika package, or an ImportError that says how to install it."""
    try:
        # The Twisted adapter and the exceptions are submodules: import
        # them too, so that they are attributes of the package.
        import pika
        import pika.adapters.twisted_connection
        import pika.exceptions
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return pika


def _without_password(url: str) -> str:
    """The URL fit for a log line: the password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _describe(failure: Failure | BaseException) -> str:
    error = failure.value if isinstance(failure, Failure) else failure
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class _OneConnection(Factory):
    """Hands out one protocol, quietly (attempts repeat during an outage)."""

    noisy = False

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Any:
        return self._protocol


class _BrokerLink:
    """
    The handler's connection to the broker and its one channel, in confirm
    mode: connected by L{start}, connected again after each failure,
    closed by L{close}.

    C{channel} is set only while everything is ready to publish.
    """

    def __init__(self, handler: AMQPHandler, reactor: Any) -> None:
        self._handler = handler
        self.log: Logger = handler.log  # the handler's namespace in the log
        self._reactor = reactor
        self.pika = _pika()
        self._parameters = self.pika.URLParameters(handler.url)
        self.channel: Any = None
        self._protocol: Any = None
        self._opening: Deferred[Any] | None = None
        self._retry: IDelayedCall | None = None
        self._delay = FIRST_RECONNECT_DELAY
        self._trouble: str | None = None
        self.closing = True  # until started
        self._closed: Deferred[None] | None = None
        #: on_data calls under way, and who waits for there to be none.
        self.active = 0
        self._idle: list[Deferred[None]] = []

    # -- starting and stopping ----------------------------------------------

    def start(self) -> None:
        """Connect now, and again whenever the connection fails."""
        self.closing = False
        self._closed = None
        self._delay = FIRST_RECONNECT_DELAY
        self.connect()

    def close(self) -> Deferred[None]:
        """
        Stop connecting; once the messages under way are answered (at most
        L{CLOSE_GRACE} seconds), close the connection.  Fires when closed.
        """
        if self._closed is None:
            self.closing = True
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
            self._retry = None
            self._closed = ensureDeferred(self._close())
        done: Deferred[None] = Deferred()
        self._closed.addBoth(lambda _: done.callback(None))
        return done

    async def _close(self) -> None:
        if self.active:
            idle: Deferred[None] = Deferred()
            self._idle.append(idle)
            idle.addTimeout(CLOSE_GRACE, self._reactor)
            try:
                await idle
            except Exception:
                pass  # defer.TimeoutError: close anyway
        if self._opening is not None:
            self._opening.cancel()
        protocol, self._protocol = self._protocol, None
        self.channel = None
        if protocol is None or protocol.transport is None:
            return
        self.log.info("AMQP: closing the connection to {broker}", broker=self._handler)
        closed = protocol.closed
        if closed is None or not protocol.is_open:
            protocol.transport.abortConnection()
            return
        waiting: Deferred[Any] = Deferred()
        closed.addBoth(lambda _: None if waiting.called else waiting.callback(None))
        protocol.close()
        waiting.addTimeout(5.0, self._reactor)
        try:
            await waiting
        except Exception:
            if protocol.transport is not None:
                protocol.transport.abortConnection()

    def began(self) -> None:
        """An on_data call begins (L{close} waits for it)."""
        self.active += 1

    def ended(self) -> None:
        self.active -= 1
        if self.active == 0:
            idle, self._idle = self._idle, []
            for d in idle:
                if not d.called:
                    d.callback(None)

    # -- the connection -----------------------------------------------------

    def connect(self) -> None:
        """One attempt: TCP, AMQP handshake, channel, queue, confirm mode."""
        self._retry = None
        if self.closing:
            return
        twisted_connection = self.pika.adapters.twisted_connection
        protocol = twisted_connection.TwistedProtocolConnection(
            self._parameters, custom_reactor=self._reactor
        )
        self._protocol = protocol
        opening = ensureDeferred(self._open(protocol))
        opening.addTimeout(self._handler.connect_timeout, self._reactor)
        opening.addCallbacks(
            self._opened, self._failed, callbackArgs=(protocol,), errbackArgs=(protocol,)
        )
        self._opening = opening

    async def _open(self, protocol: Any) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint

        handler = self._handler
        endpoint = HostnameEndpoint(
            self._reactor, handler.host, handler.port, timeout=handler.connect_timeout
        )
        await endpoint.connect(_OneConnection(protocol))
        await protocol.ready
        channel = await protocol.channel()
        if handler.exchange:
            # Only a check: the exchange is the broker administrator's.
            await channel.exchange_declare(exchange=handler.exchange, passive=True)
        if handler.declare_queue:
            channel = await self._declare_queue(protocol, channel)
        await channel.confirm_delivery()
        return channel

    async def _declare_queue(self, protocol: Any, channel: Any) -> Any:
        """
        Make sure the queue exists.  A queue that is there already is used
        as it is (whatever its arguments, quorum or classic); only a
        missing one is declared, durable.  The broker closes a channel on
        which a passive declaration fails, so that takes a second channel.
        """
        handler = self._handler
        queue = handler.routing_key
        try:
            await channel.queue_declare(queue=queue, passive=True)
        except self.pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 404:
                raise
            channel = await protocol.channel()
            await channel.queue_declare(queue=queue, durable=True)
        if handler.exchange:
            await channel.queue_bind(queue=queue, exchange=handler.exchange, routing_key=queue)
        return channel

    def _opened(self, channel: Any, protocol: Any) -> None:
        self._opening = None
        if self.closing or protocol is not self._protocol:
            protocol.transport.abortConnection()
            return
        self.channel = channel
        self._delay = FIRST_RECONNECT_DELAY
        again = " again" if self._trouble is not None else ""
        self._trouble = None
        self.log.info("AMQP: connected{again} to {broker}", again=again, broker=self._handler)
        protocol.closed.addCallback(self._lost, protocol)
        channel.on_closed.addCallback(self._channel_closed, protocol)

    def _failed(self, failure: Failure, protocol: Any) -> None:
        self._opening = None
        if protocol.transport is not None:
            protocol.transport.abortConnection()
        if protocol is self._protocol:
            self._protocol = None
        if self.closing:
            return
        if failure.check(DeferredTimeout, CancelledError):
            error = f"no answer within {self._handler.connect_timeout:g} s"
        elif type(failure.value) is self.pika.exceptions.AMQPConnectionError:
            # pika's Twisted adapter keeps the reason to itself.
            error = "the broker ended the handshake (wrong user or password, or no such vhost?)"
        else:
            error = _describe(failure)
        if error != self._trouble:
            # Once per outage (and when the reason changes), not per attempt.
            self._trouble = error
            self.log.warn(
                "AMQP: cannot connect to {broker}: {error}; mail gets 451 until it can",
                broker=self._handler,
                error=error,
            )
        self._try_again()

    def _channel_closed(self, reason: Any, protocol: Any) -> None:
        """The broker closed the channel (e.g. the exchange went): start over."""
        if protocol is self._protocol and protocol.transport is not None:
            self.channel = None
            protocol.transport.abortConnection()

    def _lost(self, reason: Any, protocol: Any) -> None:
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.channel = None
        if self.closing:
            return
        self._trouble = _describe(reason) if isinstance(reason, BaseException) else "closed"
        self.log.warn(
            "AMQP: connection to {broker} lost: {error}; connecting again",
            broker=self._handler,
            error=self._trouble,
        )
        self._try_again()

    def _try_again(self) -> None:
        if self.closing or self._retry is not None:
            return
        delay = self._delay
        self._delay = min(delay * 2, self._handler.max_reconnect_delay)
        self._retry = self._reactor.callLater(delay, self.connect)

    # -- publishing ---------------------------------------------------------

    def publish(self, body: bytes, properties: Any) -> Deferred[None]:
        """
        Publish and fire when the broker confirms; fail on a nack, a
        return, or the channel's end.  Cancelling stops the wait only: a
        confirm that comes later is ignored.
        """
        handler = self._handler
        channel = self.channel
        if channel is None:
            raise app_replies.queue_unavailable()
        try:
            confirm = channel.basic_publish(
                exchange=handler.exchange,
                routing_key=handler.routing_key,
                body=body,
                properties=properties,
                mandatory=True,
            )
        except Exception:
            confirm = Deferred()
            confirm.errback()
        answer: Deferred[None] = Deferred()

        def confirmed(_: object) -> None:
            if not answer.called:
                answer.callback(None)

        def failed(failure: Failure) -> None:
            if not answer.called:
                answer.errback(failure)

        confirm.addCallbacks(confirmed, failed)
        return answer

    def refusal(self, error: BaseException) -> SMTPError:
        """The reply for a publication that failed."""
        exceptions = self.pika.exceptions
        if isinstance(error, (exceptions.NackError, exceptions.UnroutableError)):
            return app_replies.queue_refused()
        return app_replies.queue_unavailable()


class AMQPHandler(Handler, Service):
    """
    Publish every message to a RabbitMQ queue or exchange; answer C{250}
    only after the broker's publisher confirm.

    It is a Twisted service: L{startService} connects (and keeps
    connecting), L{stopService} closes.  L{smtpsession.service.SMTPService}
    (what the daemon runs) calls both, and so does
    L{smtpsession.testing.serve}; code that serves a factory by other
    means calls them itself, in the reactor's thread.  Until started it
    answers every C{MAIL} with C{451}.

    @param url: the broker, C{amqp://user:password@host:port/vhost} (the
        default virtual host C{/} is written C{%2F}); pika's query
        parameters (C{?heartbeat=30}) are accepted.
    @param exchange: the exchange to publish to; C{""} (the default) is the
        default exchange, which routes to the queue named C{routing_key}.
        A named exchange must exist: it is checked, never declared.
    @param routing_key: the routing key (and the queue's name).
    @param declare_queue: make sure a queue named C{routing_key} exists
        (declared durable if missing; bound to C{exchange} with the
        routing key when there is one).
    @param received: prepend a C{Received} trace header.
    @param hostname: the C{by} name of that header.
    @param connect_timeout: seconds one connection attempt may take.
    @param max_reconnect_delay: the longest wait between attempts.
    @param reactor: the reactor (default: the global one).

    Every argument may be given as text (C{--handler-option
    declare_queue=no}).  The AMQP message: the body is the message as
    received (after the C{Received} line), persistent, C{message_id}
    C{<session id>.<transaction>}, C{content_type} C{message/rfc822}, the
    envelope in the headers C{x-mail-from} (C{""} for the null sender) and
    C{x-rcpt-to} (a list).
    """

    log = Logger()

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        exchange: str = "",
        routing_key: str = "smtpsession",
        declare_queue: bool | str = True,
        received: bool | str = True,
        hostname: str | None = None,
        connect_timeout: float | str = 10.0,
        max_reconnect_delay: float | str = 10.0,
        reactor: Any = None,
    ) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "amqps":
            raise ValueError("amqps:// is not supported yet; use amqp:// (on a trusted network)")
        if scheme != "amqp" or not parts.hostname:
            raise ValueError(
                f"url must look like amqp://user:password@host:5672/vhost, "
                f"not {_without_password(url)!r}"
            )
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 5672  # a bad port raises ValueError here
        self.exchange = exchange
        if not routing_key and not exchange:
            raise ValueError("routing_key is needed with the default exchange")
        self.routing_key = routing_key
        self.declare_queue = as_bool(declare_queue)
        if self.declare_queue and not routing_key:
            raise ValueError("declare_queue needs a routing_key (the queue's name)")
        self.received = as_bool(received)
        self.hostname = hostname or default_hostname()
        self.connect_timeout = float(connect_timeout)
        self.max_reconnect_delay = float(max_reconnect_delay)
        if self.connect_timeout <= 0 or self.max_reconnect_delay <= 0:
            raise ValueError("connect_timeout and max_reconnect_delay must be positive")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._link = _BrokerLink(self, reactor)  # imports pika, checks the URL's query
        self._unstarted_warned = False

    def __repr__(self) -> str:
        where = f"exchange {self.exchange!r}" if self.exchange else "the default exchange"
        return (
            f"AMQPHandler({_without_password(self.url)!r}, {where}, "
            f"routing_key={self.routing_key!r})"
        )

    def __str__(self) -> str:
        return _without_password(self.url)

    @property
    def connected(self) -> bool:
        """Whether messages can be published now."""
        return self._link.channel is not None and not self._link.closing

    def startService(self) -> None:
        """Connect to the broker now, and again whenever the connection fails."""
        super().startService()
        self._link.start()

    def stopService(self) -> Deferred[None]:
        """
        Stop connecting; once the messages under way are answered (at most
        L{CLOSE_GRACE} seconds), close the connection.  Fires when closed.
        """
        super().stopService()
        return self._link.close()

    # ------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------

    def on_mail_from(self, address: Any, session: Any) -> None:
        """No broker, no transaction: the client need not send the body."""
        if not self.connected:
            if not self.running and not self._unstarted_warned:
                self._unstarted_warned = True
                self.log.warn(
                    "AMQP: {handler} is not started (startService): every MAIL gets 451",
                    handler=self,
                )
            raise app_replies.queue_unavailable()

    async def on_data(self, stream: Any, session: Any) -> None:
        """Take the whole body, publish it, answer when the broker confirms."""
        envelope = session.envelope  # the server starts a new one after DATA
        message_id = f"{session.id}.{getattr(session, 'transaction', 1)}"
        if not self.connected:
            raise app_replies.queue_unavailable()  # the server drains the rest
        link = self._link
        link.began()
        try:
            parts = [received_header(session, envelope, self.hostname)] if self.received else []
            async for chunk in stream:
                if not stream.size_exceeded:
                    parts.append(chunk)
            if stream.size_exceeded:
                raise app_replies.message_too_big()
            properties = self._properties(envelope, message_id)
            try:
                await link.publish(b"".join(parts), properties)
            except (SMTPError, CancelledError):
                raise  # not connected; or hook_timeout, answered by the server
            except Exception as e:
                self.log.warn(
                    "[{session_id}] AMQP: {broker} did not take message {message_id}: {error}",
                    session_id=session.id,
                    broker=self,
                    message_id=message_id,
                    error=_describe(e),
                )
                raise link.refusal(e) from None
        finally:
            link.ended()

    def _properties(self, envelope: Any, message_id: str) -> Any:
        sender = envelope.mail_from.address if envelope.mail_from is not None else ""
        pika = self._link.pika
        return pika.BasicProperties(
            content_type="message/rfc822",
            delivery_mode=2,  # persistent
            message_id=message_id,
            timestamp=int(time.time()),
            headers={
                "x-mail-from": sender,
                "x-rcpt-to": [a.address for a in envelope.rcpt_to],
            },
        )

