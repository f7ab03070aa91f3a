# -*- test-case-name: tests.integration.test_relay -*-
"""
L{RelayHandler}: forward each message to an upstream SMTP or LMTP server.

The relay is interactive, not store-and-forward: each client session gets
its own upstream session, opened at the first C{MAIL FROM}, and every
command is answered with what the upstream answered.  So a recipient the
upstream refuses is refused to the client at C{RCPT} time, an LMTP
upstream's per-recipient answers reach an LMTP client one by one, the body
is streamed through as it arrives (with backpressure both ways), and the
client never gets C{250} for a message the upstream did not take.  When the
upstream cannot be reached or goes away, the client gets a temporary
failure (C{451 4.4.1}) and keeps the message.

The upstream side is Twisted's own mail client (C{twisted.mail.smtp.
ESMTPClient}), which does the greeting, C{EHLO}/C{LHLO}, C{STARTTLS} (with a
C{service_identity}-verified certificate by default) and C{AUTH}; this
module then drives the transaction itself, one command per hook.

Limits of the approach, by design: a message with several recipients sent
over SMTP (not LMTP) to an LMTP upstream gets one answer, so when the
upstream takes it for some recipients and refuses it for others, the client
is told the worst answer (a temporary failure if there is one, else the
permanent one): never a C{250} for a recipient that did not get the
message, at the price of a possible duplicate for those that did.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.mail import smtp as twisted_smtp
from twisted.python.failure import Failure
from zope.interface import implementer

from smtpsession._core import app_replies
from smtpsession.errors import SMTPError
from smtpsession.handler import Handler
from smtpsession.handlers._trace import default_hostname, received_header
from smtpsession.handlers.maildir import as_bool

__all__ = ["RelayHandler", "UpstreamError"]

_STARTTLS_MODES = ("opportunistic", "require", "never")


class UpstreamError(Exception):
    """The upstream session failed (connect, TLS, AUTH, timeout, lost)."""


def _xtext(value: str) -> str:
    """RFC 3461 xtext: C{+XX} for C{+}, C{=} and anything outside C{!..~}."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (43, 61):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


@implementer(IConsumer, IPushProducer)
class _BodyPipe:
    """
    Carries the message body from the client's stream to the upstream
    transport, dot-stuffing it (RFC 5321 §4.5.2), and relays backpressure:
    the upstream transport pauses the stream, which pauses the client.  If
    the upstream goes away mid-body, the rest is swallowed so that the
    client's body still ends normally (and gets a 451).
    """

    def __init__(self, transport: Any, on_write: Any) -> None:
        self._transport = transport
        self._on_write = on_write
        self._producer: Any = None
        self._line_start = True
        self._tail = b"\r\n"
        self.lost = False

    # IConsumer, for the stream
    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._producer = producer
        if not self.lost:
            self._transport.registerProducer(self, True)

    def unregisterProducer(self) -> None:
        self._producer = None
        if not self.lost:
            self._transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        if not data or self.lost:
            return
        out = data.replace(b"\n.", b"\n..")
        if self._line_start and data[:1] == b".":
            out = b"." + out
        self._line_start = data[-1:] == b"\n"
        self._tail = (self._tail + data)[-2:]
        self._transport.write(out)
        self._on_write()

    def terminator(self) -> bytes:
        """What ends the DATA: the final CRLF if the body lacks one, then C{.}."""
        return b".\r\n" if self._tail == b"\r\n" else b"\r\n.\r\n"

    # IPushProducer, for the upstream transport
    def pauseProducing(self) -> None:
        if self._producer is not None:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        if self._producer is not None:
            self._producer.resumeProducing()

    def stopProducing(self) -> None:
        self.connection_lost()

    def connection_lost(self) -> None:
        """The upstream is gone: swallow the rest and keep the client going."""
        if self.lost:
            return
        self.lost = True
        if self._producer is not None:
            self._producer.resumeProducing()


class _UpstreamClient(twisted_smtp.ESMTPClient):
    """
    twisted.mail's ESMTP client, used for the session set-up (greeting,
    EHLO or LHLO, STARTTLS, AUTH), then driven one command at a time.
    """

    debug = False  # no per-line log kept

    def __init__(
        self,
        identity: str,
        *,
        context: Any,
        require_tls: bool,
        lmtp: bool,
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        secret = password.encode("utf-8") if password is not None else None
        super().__init__(secret, context, identity.encode("ascii", "replace"))
        self.lmtp = lmtp
        self.requireTransportSecurity = require_tls
        self.heloFallback = not lmtp and not require_tls
        self.timeout = timeout  # type: ignore[assignment]
        self._command_timeout = timeout
        self.extensions: dict[bytes, bytes | None] = {}
        self.ready: Deferred[_UpstreamClient] = Deferred()
        self._waiting: Deferred[list[tuple[int, bytes]]] | None = None
        self._replies: list[tuple[int, bytes]] = []
        self._count = 0
        self.connected_ = False
        self.pipe: _BodyPipe | None = None
        if username:
            user = username.encode("utf-8")
            self.requireAuthentication = True
            self.registerAuthenticator(twisted_smtp.CramMD5ClientAuthenticator(user))
            self.registerAuthenticator(twisted_smtp.LOGINAuthenticator(user))
            self.registerAuthenticator(twisted_smtp.PLAINAuthenticator(user))

    # -- set-up (twisted.mail's state machine) ------------------------------

    def connectionMade(self) -> None:
        self.connected_ = True
        super().connectionMade()

    def esmtpState_ehlo(self, code: int, resp: bytes) -> None:
        if not self.lmtp:
            super().esmtpState_ehlo(code, resp)
            return
        self._expected = twisted_smtp.SUCCESS
        self._okresponse = self.esmtpState_serverConfig
        self._failresponse = self.esmtpEHLORequired
        self.sendLine(b"LHLO " + self.identity)

    def esmtpState_serverConfig(self, code: int, resp: bytes) -> None:
        extensions: dict[bytes, bytes | None] = {}
        for line in resp.splitlines():
            parts = line.split(None, 1)
            if parts:
                extensions[parts[0].upper()] = parts[1] if len(parts) > 1 else None
        self.extensions = extensions
        super().esmtpState_serverConfig(code, resp)

    def smtpState_from(self, code: int, resp: bytes) -> None:
        # Where twisted.mail would start its own transaction: hand over.
        self.setTimeout(None)
        self._await_nothing()
        if not self.ready.called:
            self.ready.callback(self)

    def sendError(self, exc: BaseException) -> None:
        self._fail(UpstreamError(str(exc) or type(exc).__name__))
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        self.connected_ = False
        if self.pipe is not None:
            self.pipe.connection_lost()
        self._fail(UpstreamError(f"connection lost: {reason.getErrorMessage()}"))

    def _fail(self, error: Exception) -> None:
        if not self.ready.called:
            self.ready.errback(Failure(error))
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.errback(Failure(error))

    # -- one command at a time ---------------------------------------------

    @property
    def secure(self) -> bool:
        return bool(self._tlsMode)

    def command(self, line: bytes | None, replies: int = 1) -> Deferred[list[tuple[int, bytes]]]:
        """
        Send C{line} (or nothing, to wait for the replies to a body) and fire
        with C{replies} (code, text) pairs.
        """
        if not self.connected_:
            d: Deferred[list[tuple[int, bytes]]] = Deferred()
            d.errback(Failure(UpstreamError("not connected")))
            return d
        self._replies = []
        self._count = replies
        self._expected = range(0, 1000)
        self._okresponse = self._failresponse = self._reply
        self._waiting = d = Deferred()
        self.setTimeout(self._command_timeout)
        if line is not None:
            self.sendLine(line)
        return d

    def _reply(self, code: int, resp: bytes) -> None:
        self._replies.append((code, resp))
        if len(self._replies) < self._count:
            return
        self.setTimeout(None)
        self._await_nothing()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.callback(self._replies)

    def _await_nothing(self) -> None:
        self._expected = range(0, 1000)
        self._okresponse = self._failresponse = self._unsolicited

    def _unsolicited(self, code: int, resp: bytes) -> None:
        # A reply nobody asked for: usually 421 before an idle close.
        if self.transport is not None:
            self.transport.loseConnection()

    def body_written(self) -> None:
        """The body is moving: the upstream is not the one stalling."""
        self.resetTimeout()

    def quit(self) -> None:
        """Say goodbye politely, without waiting for the answer."""
        if self.connected_ and self.transport is not None:
            self._await_nothing()
            self.sendLine(b"QUIT")
            self.transport.loseConnection()


class _Upstream:
    """The relay's state for one client session."""

    __slots__ = ("accepted", "client", "in_transaction")

    def __init__(self) -> None:
        self.client: _UpstreamClient | None = None
        self.in_transaction = False
        self.accepted: list[str] = []


class RelayHandler(Handler):
    """
    Forward every message to one upstream SMTP or LMTP server.

    @param host: the upstream's host name or address.
    @param port: its port (default 25; 24 is usual for LMTP).
    @param endpoint: a Twisted client endpoint string used instead of
        C{host}/C{port}, e.g. C{"unix:/run/dovecot/lmtp"}.
    @param lmtp: speak LMTP (LHLO, one answer per recipient) upstream.
    @param starttls: C{"opportunistic"} (use STARTTLS when offered; the
        default), C{"require"} (refuse to relay without it) or C{"never"}.
    @param tls_verify: verify the upstream's certificate and host name with
        C{service_identity} (default); C{False} encrypts without checking.
    @param tls_hostname: the name the certificate must carry (default:
        C{host}).
    @param tls_ca: a PEM file of CA certificates to trust instead of the
        system's.
    @param username: authenticate upstream with this user (CRAM-MD5, LOGIN
        or PLAIN, as offered) and C{password}; AUTH is then required.
    @param helo: the name sent in EHLO/LHLO (default: this machine's name).
    @param timeout: seconds to wait for each upstream answer.
    @param connect_timeout: seconds to wait for the connection.
    @param received: prepend a C{Received} header (RFC 5321 §4.4 requires
        one of every relay).
    @param hostname: the C{by} name of that header (the daemon passes
        C{--hostname}).
    @param reactor: the reactor (default: the global one).

    Every argument may be given as text (C{--handler-option port=24}).
    """

    log = Logger()

    def __init__(
        self,
        host: str = "localhost",
        port: int | str = 25,
        *,
        endpoint: str | None = None,
        lmtp: bool | str = False,
        starttls: str = "opportunistic",
        tls_verify: bool | str = True,
        tls_hostname: str | None = None,
        tls_ca: str | None = None,
        username: str | None = None,
        password: str | None = None,
        helo: str | None = None,
        timeout: float | str = 300.0,
        connect_timeout: float | str = 30.0,
        received: bool | str = True,
        hostname: str | None = None,
        reactor: Any = None,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.endpoint = endpoint
        self.lmtp = as_bool(lmtp)
        starttls = starttls.lower()
        if starttls not in _STARTTLS_MODES:
            raise ValueError(f"starttls must be one of {', '.join(_STARTTLS_MODES)}, not {starttls!r}")
        self.starttls = starttls
        self.tls_verify = as_bool(tls_verify)
        self.tls_hostname = tls_hostname or host
        self.tls_ca = tls_ca
        if (username is None) != (password is None):
            raise ValueError("username and password go together")
        self.username = username
        self._password = password
        self.helo = helo or default_hostname()
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout)
        self.received = as_bool(received)
        self.hostname = hostname or default_hostname()
        self._reactor = reactor
        self._context: Any = None
        if starttls != "never":
            self._context = self._tls_context()  # fail now, not per message
        self._sessions: dict[str, _Upstream] = {}

    def __repr__(self) -> str:
        where = self.endpoint or f"{self.host}:{self.port}"
        return f"RelayHandler({where!r}, lmtp={self.lmtp}, starttls={self.starttls!r})"

    # ------------------------------------------------------------------
    # Hooks
    # ------------------------------------------------------------------

    async def on_mail_from(self, address: Any, session: Any) -> None:
        """Open (or reuse) the upstream session and send it this MAIL."""
        state = self._sessions.setdefault(session.id, _Upstream())
        client = await self._connected(state, session)
        line = self._mail_line(address, session, client)
        code, text = await self._ask(client, line, session)
        if not 200 <= code < 300:
            raise app_replies.upstream_refusal(code, text)
        state.in_transaction = True
        state.accepted = []

    async def on_rcpt_to(self, address: Any, session: Any) -> None:
        """Send this RCPT upstream; its answer is the client's answer."""
        state = self._sessions.get(session.id)
        client = state.client if state is not None else None
        if state is None or client is None or not client.connected_ or not state.in_transaction:
            raise app_replies.upstream_lost()
        line = f"RCPT TO:<{address.address}>"
        if b"DSN" in client.extensions and address.dsn is not None:
            if address.dsn.notify:
                line += " NOTIFY=" + ",".join(address.dsn.notify)
            if address.dsn.orcpt:
                line += " ORCPT=" + _xtext(address.dsn.orcpt)
        code, text = await self._ask(client, line.encode("utf-8"), session)
        if not 200 <= code < 300:
            raise app_replies.upstream_refusal(code, text)
        state.accepted.append(address.address.lower())

    async def on_data(self, stream: Any, session: Any) -> Any:
        """Stream the body upstream; answer with the upstream's answer(s)."""
        envelope = session.envelope
        state = self._sessions.get(session.id)
        client = state.client if state is not None else None
        if state is None or client is None or not client.connected_ or not state.accepted:
            raise app_replies.upstream_lost()
        accepted = list(state.accepted)
        code, text = await self._ask(client, b"DATA", session)
        if code != 354:
            state.in_transaction = False
            raise app_replies.upstream_refusal(code, text)
        pipe = _BodyPipe(client.transport, client.body_written)
        client.pipe = pipe
        try:
            if self.received:
                pipe.write(received_header(session, envelope, self.hostname))
            await stream.write_to(pipe)
        except BaseException:
            # The body will not be complete: the upstream must not get the
            # final dot, so its half of the message dies with the connection.
            self._drop(state)
            raise
        finally:
            client.pipe = None
        if pipe.lost:
            self._drop(state)
            raise app_replies.upstream_lost()
        transport: Any = client.transport
        transport.write(pipe.terminator())
        count = len(accepted) if client.lmtp else 1
        try:
            replies = await client.command(None, count)
        except UpstreamError as e:
            self._log_upstream(session, e)
            self._drop(state)
            raise app_replies.upstream_lost() from None
        state.in_transaction = False
        state.accepted = []
        return self._answers(replies, accepted, envelope, session, client.lmtp)

    def on_close(self, session: Any) -> None:
        """The client is gone: close its upstream session."""
        state = self._sessions.pop(session.id, None)
        if state is not None and state.client is not None:
            state.client.quit()

    # ------------------------------------------------------------------
    # Upstream session
    # ------------------------------------------------------------------

    def _get_reactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def _tls_context(self) -> Any:
        from twisted.internet import ssl

        if not self.tls_verify:
            return ssl.CertificateOptions(verify=False)
        if self.tls_ca:
            with open(self.tls_ca, "rb") as f:
                pem = f.read()
            certs = [
                ssl.Certificate.loadPEM(block + b"-----END CERTIFICATE-----\n")
                for block in pem.split(b"-----END CERTIFICATE-----")
                if b"-----BEGIN CERTIFICATE-----" in block
            ]
            if not certs:
                raise ValueError(f"no certificate in {self.tls_ca}")
            trust = ssl.trustRootFromCertificates(certs)
        else:
            trust = ssl.platformTrust()
        return ssl.optionsForClientTLS(self.tls_hostname, trustRoot=trust)

    def _client_endpoint(self) -> Any:
        from twisted.internet.endpoints import HostnameEndpoint, clientFromString

        reactor = self._get_reactor()
        if self.endpoint:
            return clientFromString(reactor, self.endpoint)
        return HostnameEndpoint(reactor, self.host, self.port, timeout=self.connect_timeout)

    async def _connected(self, state: _Upstream, session: Any) -> _UpstreamClient:
        client = state.client
        if client is not None and client.connected_:
            if not state.in_transaction:
                return client
            try:
                code, _ = await self._ask(client, b"RSET", session)
            except SMTPError:
                code = 0
            if 200 <= code < 300:
                state.in_transaction = False
                return client
            self._drop(state)
        state.client = None
        state.in_transaction = False
        client = _UpstreamClient(
            self.helo,
            context=self._context,
            require_tls=self.starttls == "require",
            lmtp=self.lmtp,
            username=self.username,
            password=self._password,
            timeout=self.timeout,
        )
        from twisted.internet.endpoints import connectProtocol

        try:
            await connectProtocol(self._client_endpoint(), client)
            await client.ready
        except Exception as e:
            self._log_upstream(session, e)
            if client.transport is not None:
                client.transport.abortConnection()  # type: ignore[attr-defined]
            raise app_replies.upstream_unavailable() from None
        if session.id not in self._sessions:
            # The client left while we were connecting.
            client.quit()
            raise app_replies.upstream_unavailable()
        state.client = client
        return client

    async def _ask(self, client: _UpstreamClient, line: bytes, session: Any) -> tuple[int, bytes]:
        try:
            [(code, text)] = await client.command(line)
        except UpstreamError as e:
            self._log_upstream(session, e)
            raise app_replies.upstream_lost() from None
        return code, text

    def _drop(self, state: _Upstream) -> None:
        client, state.client = state.client, None
        state.in_transaction = False
        state.accepted = []
        if client is not None and client.transport is not None:
            client.transport.abortConnection()  # type: ignore[attr-defined]

    def _mail_line(self, address: Any, session: Any, client: _UpstreamClient) -> bytes:
        """
        The MAIL command for upstream, with the parameters the upstream
        understands.  They come from the client's MAIL parameters
        (C{address.args}), since the envelope is filled in only once this
        hook has accepted the sender.
        """
        ext = client.extensions
        args = address.args
        line = f"MAIL FROM:<{address.address}>"
        size = args.get("SIZE")
        if size and b"SIZE" in ext:
            line += f" SIZE={size}"
        body = str(args.get("BODY", "")).upper()
        if body == "BINARYMIME":
            raise app_replies.cannot_relay_binarymime()
        if body == "8BITMIME" and b"8BITMIME" in ext:
            line += " BODY=8BITMIME"
        if "SMTPUTF8" in args:
            if b"SMTPUTF8" not in ext:
                raise app_replies.upstream_lacks_smtputf8()
            line += " SMTPUTF8"
        if "REQUIRETLS" in args:
            if b"REQUIRETLS" not in ext or not client.secure:
                raise app_replies.upstream_lacks_requiretls()
            line += " REQUIRETLS"
        if b"DSN" in ext:
            ret = args.get("RET")
            if isinstance(ret, str):
                line += f" RET={ret.upper()}"
            envid = args.get("ENVID")
            if isinstance(envid, str):
                line += f" ENVID={_xtext(envid)}"
        return line.encode("utf-8")

    def _answers(
        self,
        replies: Sequence[tuple[int, bytes]],
        accepted: list[str],
        envelope: Any,
        session: Any,
        upstream_lmtp: bool,
    ) -> Any:
        def answer(code: int, text: bytes) -> Any:
            if 200 <= code < 300:
                return app_replies.upstream_success_text(text)
            return app_replies.upstream_refusal(code, text)

        if not session.transmission_type.startswith("LMTP"):
            errors = [app_replies.upstream_refusal(c, t) for c, t in replies if not 200 <= c < 300]
            if not errors:
                return app_replies.upstream_success_text(replies[0][1])
            temporary = [e for e in errors if e.code is not None and e.code < 500]
            raise (temporary or errors)[0]
        if not upstream_lmtp:
            return answer(*replies[0])
        by_address: dict[str, tuple[int, bytes]] = {}
        for address, reply in zip(accepted, replies, strict=False):
            by_address.setdefault(address, reply)
        lost = app_replies.UPSTREAM_NO_ANSWER
        return [answer(*by_address.get(a.address.lower(), lost)) for a in envelope.rcpt_to]

    def _log_upstream(self, session: Any, error: BaseException) -> None:
        self.log.warn(
            "[{session_id}] upstream {upstream}: {error}",
            session_id=session.id,
            upstream=self.endpoint or f"{self.host}:{self.port}",
            error=str(error) or type(error).__name__,
        )
