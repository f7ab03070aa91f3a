"""
The protocol's own TLS layer (smtpsession._tls_layer), both engines, against
a client on Python's ssl module over memory BIOs, without sockets.  First the
layers alone, then the protocol on a StringTransport doing STARTTLS and
implicit TLS through them (Twisted's startTLS must not be used).
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest
from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, ITLSTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

from smtpsession import Handler, SMTPServerOptions
from smtpsession._tls_layer import OpenSSLLayer, StdlibLayer, TLSFailure, new_connection
from smtpsession.factory import SMTPServerFactory
from smtpsession.session import Session
from smtpsession.tls import ServerTLS, describe
from tests.tlsutil import CA, Identity, client_context, make_ca


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CA, Identity]:
    ca = make_ca(tmp_path_factory.mktemp("layer-pki"))
    return ca, ca.issue("mx", ["mx.example.test"])


class Client:
    """A TLS client on memory BIOs: what it would send, what it got."""

    def __init__(self, ca: CA, tls13: bool = True) -> None:
        ctx = client_context(ca)
        if not tls13:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="mx.example.test")
        self.done = False

    def step(self, data: bytes = b"") -> bytes:
        """Feed the server's bytes; returns the client's next bytes."""
        if data:
            self.incoming.write(data)
        if not self.done:
            try:
                self.obj.do_handshake()
                self.done = True
            except ssl.SSLWantReadError:
                pass
        return self.outgoing.read()

    def send(self, plain: bytes) -> bytes:
        self.obj.write(plain)
        return self.outgoing.read()

    def read(self, data: bytes) -> bytes:
        self.incoming.write(data)
        out = b""
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                return out
            if not chunk:
                return out
            out += chunk


Layer = StdlibLayer | OpenSSLLayer


@pytest.fixture(params=["stdlib", "openssl"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def handshake(layer: Layer, client: Client) -> None:
    data = client.step()
    for _ in range(10):
        assert layer.receive(data) == b""
        reply = layer.output()
        data = client.step(reply)
        if layer.established and client.done:
            if data:
                layer.receive(data)
            return
    raise AssertionError("handshake did not finish")


def server_layer(identity: Identity, engine: str) -> Layer:
    options = SMTPServerOptions(name="mx", tls_cert=str(identity.combined))
    return ServerTLS(options, engine=engine).new_layer()


@pytest.mark.parametrize("tls13", [True, False], ids=["TLSv1.3", "TLSv1.2"])
def test_round_trip(pki: tuple[CA, Identity], tls13: bool, engine: str) -> None:
    """Handshake, then plaintext both ways, batched and in pieces."""
    ca, identity = pki
    layer, client = server_layer(identity, engine), Client(ca, tls13)
    assert type(layer) is (StdlibLayer if engine == "stdlib" else OpenSSLLayer)
    handshake(layer, client)
    session = Session(id="x")
    assert describe(layer.handle, session)
    assert session.tls_options is not None
    assert session.tls_options["version"] == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert session.servername == "mx.example.test"
    records = client.send(b"EHLO a\r\n") + client.send(b"MAIL FROM:<a@b>\r\n")
    # Split mid-record: nothing comes out until the record is whole.
    assert layer.receive(records[:5]) == b""
    assert layer.receive(records[5:]) == b"EHLO a\r\nMAIL FROM:<a@b>\r\n"
    assert client.read(layer.send(b"250 ok\r\n")) == b"250 ok\r\n"
    big = b"x" * 100_000  # several records in one send
    assert client.read(layer.send(big)) == big
    body = client.send(big)
    assert layer.receive(body) == big


def test_garbage_is_an_error(pki: tuple[CA, Identity], engine: str) -> None:
    """Plaintext where a ClientHello belongs fails the handshake with an alert."""
    layer = server_layer(pki[1], engine)
    with pytest.raises(TLSFailure):
        layer.receive(b"EHLO plaintext\r\n" * 4)
    assert not layer.established
    assert layer.failed and layer.send(b"250 in clear?\r\n") == b""


def test_close_notify(pki: tuple[CA, Identity], engine: str) -> None:
    """The client's close_notify is noticed; data before it is kept."""
    ca, identity = pki
    layer, client = server_layer(identity, engine), Client(ca)
    handshake(layer, client)
    data = client.send(b"QUIT\r\n")
    try:
        client.obj.unwrap()
    except ssl.SSLWantReadError:
        pass
    data += client.outgoing.read()
    assert layer.receive(data) == b"QUIT\r\n"
    assert layer.peer_closed
    assert layer.close()  # our close_notify


def test_failed_layer_sends_nothing(pki: tuple[CA, Identity], engine: str) -> None:
    ca, identity = pki
    layer, client = server_layer(identity, engine), Client(ca)
    handshake(layer, client)
    layer.failed = True
    assert layer.send(b"250 secret\r\n") == b""


def test_new_connection_accepts_what_start_tls_accepts() -> None:
    """A connection creator, a context factory; anything else falls back."""

    @implementer(IOpenSSLServerConnectionCreator)
    class Creator:
        def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:
            return SSL.Connection(SSL.Context(SSL.TLS_METHOD))

    assert isinstance(new_connection(Creator(), None), SSL.Connection)

    class Factory:
        def getContext(self) -> SSL.Context:
            return SSL.Context(SSL.TLS_METHOD)

    assert isinstance(new_connection(Factory(), None), SSL.Connection)
    assert new_connection(object(), None) is None


# ---------------------------------------------------------------------------
# The protocol driving the layer
# ---------------------------------------------------------------------------


@implementer(ITLSTransport)
class NoStartTLSTransport(StringTransport):
    """A transport offering startTLS that the protocol must not use."""

    def startTLS(self, contextFactory: Any) -> None:
        raise AssertionError("Twisted's TLS layer was used")


class Secured(Handler):
    def __init__(self) -> None:
        self.secured: list[Any] = []

    def on_secure(self, session: Any) -> None:
        self.secured.append((session.servername, dict(session.tls_options)))


def connect(identity: Identity, engine: str, **kw: Any) -> tuple[Any, StringTransport, Secured]:
    handler = Secured()
    if engine == "openssl":
        kw["request_cert"] = True  # which needs pyOpenSSL
    options = SMTPServerOptions(
        name="mx.example", disable_reverse_lookup=True, tls_cert=str(identity.combined), **kw
    )
    factory = SMTPServerFactory(handler, options, reactor=MemoryReactorClock())
    proto = factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 40000))
    transport = NoStartTLSTransport(
        hostAddress=IPv4Address("TCP", "192.0.2.25", 25),
        peerAddress=IPv4Address("TCP", "192.0.2.1", 40000),
    )
    proto.makeConnection(transport)
    return proto, transport, handler


def take(transport: StringTransport) -> bytes:
    out = transport.value()
    transport.clear()
    return out


def tls_handshake(proto: Any, transport: StringTransport, client: Client) -> None:
    data = client.step()
    for _ in range(10):
        proto.dataReceived(data)
        data = client.step(take(transport))
        if client.done and proto.session.secure:
            if data:
                proto.dataReceived(data)
            return
    raise AssertionError("handshake did not finish")


def test_starttls_through_the_layer(pki: tuple[CA, Identity], engine: str) -> None:
    """STARTTLS: 220 in clear, plaintext after it dropped, then EHLO inside TLS."""
    ca, identity = pki
    proto, transport, handler = connect(identity, engine)
    assert type(proto._server.tls.layer(proto)) is (
        StdlibLayer if engine == "stdlib" else OpenSSLLayer
    )
    assert take(transport).startswith(b"220 ")
    proto.dataReceived(b"EHLO c\r\nSTARTTLS\r\nMAIL FROM:<smuggled@x>\r\n")
    assert take(transport).endswith(b"220 2.0.0 Ready to start TLS\r\n")
    client = Client(ca)
    tls_handshake(proto, transport, client)
    [(servername, details)] = handler.secured
    assert servername == "mx.example.test" and details["version"] == "TLSv1.3"
    proto.dataReceived(client.send(b"MAIL FROM:<a@b.example>\r\n"))
    # Enhanced codes come back only with the next EHLO.
    assert client.read(take(transport)) == b"503 Error: send HELO/EHLO first\r\n"
    proto.dataReceived(client.send(b"EHLO c\r\n"))
    reply = client.read(take(transport))
    assert reply.startswith(b"250-mx.example") and b"STARTTLS" not in reply
    assert proto.session.transmission_type == "ESMTPS"
    proto.dataReceived(client.send(b"QUIT\r\n"))
    assert client.read(take(transport)).startswith(b"221 ")
    assert transport.disconnecting


def test_implicit_tls_through_the_layer(pki: tuple[CA, Identity], engine: str) -> None:
    """secure=True on a plain transport: nothing in clear, greeting inside TLS."""
    ca, identity = pki
    proto, transport, handler = connect(identity, engine, secure=True)
    assert transport.value() == b""
    client = Client(ca)
    tls_handshake(proto, transport, client)
    assert client.read(take(transport)).startswith(b"220 mx.example ESMTP")
    assert len(handler.secured) == 1


def test_failed_handshake_is_logged_and_closed(pki: tuple[CA, Identity], engine: str) -> None:
    """A client speaking plaintext after STARTTLS: one log line, connection closed."""
    _, identity = pki
    proto, transport, _ = connect(identity, engine)
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        take(transport)
        proto.dataReceived(b"EHLO c\r\nSTARTTLS\r\n")
        take(transport)
        proto.dataReceived(b"MAIL FROM:<a@b>\r\n" * 8)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert transport.disconnecting
    # Whatever went out is a TLS alert (content type 21), never a reply in clear.
    out = transport.value()
    assert not out or out[0] == 21
    lines = [formatEvent(e) for e in events]
    assert any("TLS handshake with 192.0.2.1 failed" in line for line in lines)
