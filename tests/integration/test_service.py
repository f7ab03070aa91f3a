"""
SMTPService, the IService for embedding (and what twistd runs): it listens
on its endpoints, and stopping it is the graceful shutdown of API.md: stop
listening, let transactions in progress finish within close_timeout, 421
everyone else, fire when the last connection is gone.

The services run on the global reactor in smtpsession.testing's background
thread; every call into them goes through call_in_reactor.
"""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.application.service import Application, IService, Service

from smtpsession import SMTPServerFactory, SMTPServerOptions
from smtpsession.service import ListenError, SMTPService
from smtpsession.testing import RecordingHandler, call_in_reactor
from tests.conftest import wait_until
from tests.rawsmtp import RawClient, connect_refused


def make_service(
    handler: Any, endpoints: list[str] | None = None, **options: Any
) -> SMTPService:
    from twisted.internet import reactor

    options.setdefault("name", "service.test")
    options.setdefault("disable_reverse_lookup", True)

    def build() -> SMTPService:
        factory = SMTPServerFactory(handler, SMTPServerOptions(**options), reactor=reactor)
        return SMTPService(factory, endpoints or ["tcp:0:interface=127.0.0.1"])

    service: SMTPService = call_in_reactor(build)
    return service


def start(service: SMTPService) -> int:
    """Start like twistd does; return the (first) port."""
    call_in_reactor(service.privilegedStartService)
    call_in_reactor(service.startService)
    ports = call_in_reactor(service.when_listening)
    return int(ports[0].getHost().port)


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


@pytest.fixture
def running(handler: RecordingHandler) -> Iterator[tuple[SMTPService, int]]:
    service = make_service(handler, close_timeout=10)
    port = start(service)
    yield service, port
    if service.running:
        call_in_reactor(service.stopService)


def test_serves_and_stops(running: tuple[SMTPService, int], handler: RecordingHandler) -> None:
    """A started service accepts mail; once stopped, connections are refused."""
    service, port = running
    with smtplib.SMTP("127.0.0.1", port) as client:
        client.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert len(handler.messages) == 1
    call_in_reactor(service.stopService)
    assert not service.running
    assert connect_refused("127.0.0.1", port)


def test_in_an_application(handler: RecordingHandler) -> None:
    """The service composes with twisted.application like any other."""
    service = make_service(handler)
    application = Application("mail")
    service.setServiceParent(application)
    top = IService(application)
    call_in_reactor(top.privilegedStartService)
    call_in_reactor(top.startService)
    port = call_in_reactor(service.when_listening)[0].getHost().port
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.noop()[0] == 250
    call_in_reactor(top.stopService)
    assert connect_refused("127.0.0.1", port)


def test_stop_drains(running: tuple[SMTPService, int], handler: RecordingHandler) -> None:
    """Stopping while one client is in the middle of a body and another is
    idle: the idle one gets 421 at once, new connections are refused, the
    body may finish (250, then 421), and only then does the stop finish."""
    service, port = running
    busy = RawClient("127.0.0.1", port)
    busy.start_message("a@example.org", ["b@example.com"])
    busy.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
    idle = RawClient("127.0.0.1", port)
    assert idle.command("EHLO idle.test")[0] == 250

    stopping: list[Any] = []
    call_in_reactor(lambda: stopping.append(service.stopService()))
    assert idle.reply()[0] == 421
    wait_until(lambda: connect_refused("127.0.0.1", port))
    assert not call_in_reactor(lambda: stopping[0].called)

    busy.send(b"second half\r\n.\r\n")
    assert busy.reply()[0] == 250
    assert busy.reply()[0] == 421
    call_in_reactor(lambda: stopping[0])  # waits for it to fire
    assert [m.data for m in handler.messages] == [b"Subject: in flight\r\n\r\nfirst half\r\nsecond half\r\n"]
    busy.close()
    idle.close()


def test_stop_forces_after_close_timeout(handler: RecordingHandler) -> None:
    """A transaction that does not finish within close_timeout is ended
    with 421 and the stop completes; the message is not delivered."""
    service = make_service(handler, close_timeout=0.5)
    port = start(service)
    stalled = RawClient("127.0.0.1", port)
    stalled.start_message("a@example.org", ["b@example.com"])
    stalled.send(b"Subject: never finished\r\n\r\n")
    call_in_reactor(service.stopService)  # waits for the drain (bounded by close_timeout)
    code, _ = stalled.reply()
    assert code == 421
    assert stalled.closed()
    assert handler.messages == []
    stalled.close()


def test_port_in_use_is_a_listen_error(handler: RecordingHandler) -> None:
    """A port that cannot be opened raises ListenError (one line naming the
    endpoint) from privilegedStartService, and the ports opened before it
    are closed again."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        busy_port = taken.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free_port = probe.getsockname()[1]
        service = make_service(
            handler,
            [f"tcp:{free_port}:interface=127.0.0.1", f"tcp:{busy_port}:interface=127.0.0.1"],
        )
        with pytest.raises(ListenError) as info:
            call_in_reactor(service.privilegedStartService)
    message = str(info.value)
    assert f"tcp:{busy_port}" in message and "in use" in message and "\n" not in message
    assert service.ports == []
    wait_until(lambda: connect_refused("127.0.0.1", free_port))


def test_needs_an_endpoint(handler: RecordingHandler) -> None:
    """An SMTPService with nothing to listen on is a mistake, said at once."""
    with pytest.raises(ValueError):
        SMTPService(SMTPServerFactory(handler), [])


class ServiceHandler(RecordingHandler, Service):
    """A handler that is a Twisted service too (as the AMQP handler is)."""

    def __init__(self) -> None:
        RecordingHandler.__init__(self)
        self.events: list[str] = []

    def startService(self) -> None:
        Service.startService(self)
        self.events.append("started")

    def stopService(self) -> Any:
        Service.stopService(self)
        self.events.append(f"stopped after {len(self.messages)} messages")


def test_a_handler_service_runs_while_the_server_does() -> None:
    """A handler providing IService is started with the server and stopped
    only after the drain, when no session can call it any more."""
    handler = ServiceHandler()
    service = make_service(handler, close_timeout=10)
    assert handler.events == []
    port = start(service)
    assert handler.events == ["started"]
    busy = RawClient("127.0.0.1", port)
    busy.start_message("a@example.org", ["b@example.com"])
    busy.send(b"Subject: in flight\r\n\r\n")
    stopping: list[Any] = []
    call_in_reactor(lambda: stopping.append(service.stopService()))
    wait_until(lambda: connect_refused("127.0.0.1", port))
    assert handler.events == ["started"]  # still draining: still running
    busy.send(b"body\r\n.\r\n")
    assert busy.reply()[0] == 250
    call_in_reactor(lambda: stopping[0])
    assert handler.events == ["started", "stopped after 1 messages"]
    busy.close()


def test_the_testing_server_runs_a_handler_service_too() -> None:
    """smtpsession.testing.serve() starts a handler that is a Twisted
    service with the server and stops it after the drain, as SMTPService."""
    from smtpsession.testing import serve

    handler = ServiceHandler()
    with serve(handler) as server, smtplib.SMTP(*server.address) as client:
        assert handler.events == ["started"]
        client.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert handler.events == ["started", "stopped after 1 messages"]
