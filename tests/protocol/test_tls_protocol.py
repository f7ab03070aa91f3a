"""
The TLS flow of L{SMTPServerProtocol} without sockets or OpenSSL: a
StringTransport that records C{startTLS}, a fake negotiated connection and a
fake clock.  It pins down the order of events: nothing is said before an
implicit handshake completes, C{on_connect} then C{on_secure} then the
greeting, plaintext pipelined after STARTTLS never runs, C{on_secure} once
per connection even if the handshake callback fires again, and handshakes
that never finish are cut off.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from zope.interface import implementer

from smtpsession import Handler, SMTPError, SMTPServerOptions
from smtpsession.factory import SMTPServerFactory
from smtpsession.protocol import SMTPServerProtocol


class FakeHandle:
    """What an OpenSSL connection reports after a handshake."""

    def get_cipher_name(self) -> str:
        return "TLS_AES_128_GCM_SHA256"

    def get_protocol_version_name(self) -> str:
        return "TLSv1.3"

    def get_servername(self) -> bytes:
        return b"MX.Example.test"


@implementer(ITLSTransport)
class TLSStringTransport(StringTransport):
    """A StringTransport that can 'start TLS' (it only records the call)."""

    def __init__(self) -> None:
        super().__init__(
            hostAddress=IPv4Address("TCP", "192.0.2.25", 25),
            peerAddress=IPv4Address("TCP", "192.0.2.1", 40000),
        )
        self.tls_started: list[Any] = []

    def startTLS(self, contextFactory: Any) -> None:
        self.tls_started.append(contextFactory)

    def getHandle(self) -> FakeHandle:
        return FakeHandle()


class Recorder(Handler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.secure_result: Any = None

    def on_connect(self, session: Any) -> None:
        self.calls.append(("connect", (session.secure, dict(session.tls_options or {}))))

    def on_secure(self, session: Any) -> Any:
        self.calls.append(("secure", session.servername))
        return self.secure_result

    def on_mail_from(self, address: Any, session: Any) -> None:
        self.calls.append(("mail", address.address))

    def on_close(self, session: Any) -> None:
        self.calls.append(("close", None))


CONTEXT = object()  # stands for the TLS connection creator


def connect(
    handler: Recorder, **kw: Any
) -> tuple[SMTPServerProtocol, TLSStringTransport, MemoryReactorClock]:
    clock = MemoryReactorClock()
    kw.setdefault("name", "mx.example")
    kw.setdefault("disable_reverse_lookup", True)
    options = SMTPServerOptions(tls_context=CONTEXT, **kw)
    factory = SMTPServerFactory(handler, options, reactor=clock)
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
    transport = TLSStringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def replies(transport: StringTransport) -> list[str]:
    out = transport.value().decode().splitlines()
    transport.clear()
    return out


class TestImplicitTLS:
    def test_order_of_events(self) -> None:
        """secure=True: startTLS at once; on_connect (secure) then on_secure then greeting."""
        handler = Recorder()
        proto, transport, _ = connect(handler, secure=True)
        assert transport.tls_started == [CONTEXT]
        assert transport.value() == b"" and handler.calls == []
        proto.handshakeCompleted()
        assert handler.calls == [
            ("connect", (True, {"name": "TLS_AES_128_GCM_SHA256", "version": "TLSv1.3"})),
            ("secure", "mx.example.test"),
        ]
        assert replies(transport) == ["220 mx.example ESMTP"]
        assert proto.session is not None and proto.session.transmission_type == "SMTPS"

    def test_handshake_timeout(self) -> None:
        """A handshake that never completes is aborted; no hook runs, nothing is said."""
        handler = Recorder()
        _, transport, clock = connect(handler, secure=True, tls_handshake_timeout=7)
        clock.advance(6.9)
        assert not transport.disconnecting
        clock.advance(0.2)
        assert transport.disconnecting
        assert transport.value() == b"" and handler.calls == []

    def test_on_secure_refusal(self) -> None:
        """An SMTPError from on_secure replaces the greeting and closes."""
        handler = Recorder()
        handler.secure_result = Deferred()
        proto, transport, _ = connect(handler, secure=True)
        proto.handshakeCompleted()
        assert transport.value() == b""  # waiting for on_secure
        handler.secure_result.errback(SMTPError(554, "Error: go away"))
        assert replies(transport) == ["554 Error: go away"]
        assert transport.disconnecting


class TestStartTLS:
    def start(
        self, handler: Recorder, **kw: Any
    ) -> tuple[SMTPServerProtocol, TLSStringTransport, MemoryReactorClock]:
        proto, transport, clock = connect(handler, **kw)
        replies(transport)
        proto.dataReceived(b"EHLO c.example\r\n")
        assert "250-STARTTLS" in replies(transport)
        return proto, transport, clock

    def test_pipelined_plaintext_never_runs(self) -> None:
        """STARTTLS + MAIL in one read: 220, startTLS, and the MAIL is gone for good."""
        handler = Recorder()
        proto, transport, _ = self.start(handler)
        proto.dataReceived(b"STARTTLS\r\nMAIL FROM:<x@y.example>\r\nRSET\r\n")
        assert replies(transport) == ["220 2.0.0 Ready to start TLS"]
        assert transport.tls_started == [CONTEXT]
        proto.handshakeCompleted()
        proto.dataReceived(b"EHLO c.example\r\nRCPT TO:<v@example.com>\r\n")
        out = replies(transport)
        assert out[-1] == "503 5.5.1 Error: need MAIL command"
        assert [c for c in handler.calls if c[0] == "mail"] == []

    def test_on_secure_once_and_renegotiation_ignored(self) -> None:
        """on_secure runs once per STARTTLS; a second handshake callback changes nothing."""
        handler = Recorder()
        proto, _, _ = self.start(handler)
        proto.dataReceived(b"STARTTLS\r\n")
        proto.handshakeCompleted()
        proto.handshakeCompleted()
        assert [c for c in handler.calls if c[0] == "secure"] == [("secure", "mx.example.test")]
        session = proto.session
        assert session is not None
        assert (session.secure, session.servername) == (True, "mx.example.test")
        assert session.tls_options == {"name": "TLS_AES_128_GCM_SHA256", "version": "TLSv1.3"}

    def test_commands_wait_for_on_secure(self) -> None:
        """Commands that arrive while on_secure is pending are answered after it, in order."""
        handler = Recorder()
        handler.secure_result = Deferred()
        proto, transport, _ = self.start(handler)
        proto.dataReceived(b"STARTTLS\r\n")
        replies(transport)
        proto.handshakeCompleted()
        proto.dataReceived(b"EHLO c.example\r\nNOOP\r\n")
        assert transport.value() == b""
        handler.secure_result.callback(None)
        out = replies(transport)
        assert out[0].startswith("250-mx.example") and out[-1] == "250 2.0.0 OK"

    def test_handshake_timeout(self) -> None:
        """A STARTTLS handshake that never completes is aborted after the timeout."""
        handler = Recorder()
        proto, transport, clock = self.start(handler, tls_handshake_timeout=3)
        proto.dataReceived(b"STARTTLS\r\n")
        clock.advance(3.1)
        assert transport.disconnecting
        assert [c for c in handler.calls if c[0] == "secure"] == []

    def test_secure_session_refuses_second_starttls(self) -> None:
        """After the handshake, STARTTLS is 503 and no longer advertised."""
        handler = Recorder()
        proto, transport, _ = self.start(handler)
        proto.dataReceived(b"STARTTLS\r\n")
        proto.handshakeCompleted()
        replies(transport)
        proto.dataReceived(b"EHLO c.example\r\nSTARTTLS\r\n")
        out = replies(transport)
        assert "STARTTLS" not in " ".join(out[:-1])
        assert out[-1] == "503 5.5.1 Error: TLS already active"
        assert transport.tls_started == [CONTEXT]

    def test_on_secure_sees_nothing_learnt_in_the_clear(self) -> None:
        """
        RFC 3207 §4.2: after STARTTLS the session forgets what it learnt
        before TLS (the greeting, the user), and on_secure already sees it
        forgotten.  (It used to see the cleartext login until after it had
        answered.)
        """

        class Seer(Recorder):
            def on_auth(self, auth: Any, session: Any) -> Any:
                return auth.username

            def on_secure(self, session: Any) -> Any:
                self.calls.append(
                    ("secure", (session.user, session.opening_command, session.host_name_appears_as))
                )

        handler = Seer()
        proto, transport, _ = self.start(handler, allow_insecure_auth=True)
        proto.dataReceived(b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n")
        assert replies(transport) == ["235 2.7.0 Authentication successful"]
        assert proto.session is not None and proto.session.user == "user"
        proto.dataReceived(b"STARTTLS\r\n")
        proto.handshakeCompleted()
        assert ("secure", (None, None, None)) in handler.calls
        assert proto.session.transmission_type == "SMTPS"
