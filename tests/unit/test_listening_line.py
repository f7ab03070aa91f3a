"""
The line the daemon logs for each port it listens on (issue 17, points 4
and 9): what the port speaks (SMTP or LMTP, STARTTLS or TLS), which build
of the core runs, and, on a loopback address, how to listen publicly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions
from smtpsession.service import SMTPService
from tests.tlsutil import make_ca


class _Port:
    """A listening port on a given address (MemoryReactor's ignore the interface)."""

    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:
        return self.address

    def stopListening(self) -> None:
        pass


class _Endpoint:
    def __init__(self, address: Any) -> None:
        self.address = address

    def listen(self, factory: Any) -> Any:
        from twisted.internet.defer import succeed

        return succeed(_Port(self.address))


def line(options: SMTPServerOptions, endpoint: Any) -> str:
    reactor = MemoryReactorClock()
    factory = SMTPServerFactory(Handler(), options, reactor=reactor)
    service = SMTPService(factory, [endpoint], reactor=reactor)
    with capturedLogs() as events:
        service.startService()
    [text] = [formatEvent(e) for e in events if "listening on" in formatEvent(e)]
    return text


LOOPBACK = IPv4Address("TCP", "127.0.0.1", 2525)


def test_plain_smtp_on_loopback_says_how_to_listen_publicly() -> None:
    text = line(SMTPServerOptions(), _Endpoint(LOOPBACK))
    assert text.startswith("smtpsession listening on 127.0.0.1:2525 (SMTP, ")
    assert text.endswith("; loopback only: --port tcp:25 (or tcp6:25) listens on every interface")


@pytest.mark.parametrize(
    "address",
    [IPv4Address("TCP", "0.0.0.0", 25), IPv6Address("TCP", "::", 25), IPv4Address("TCP", "192.0.2.1", 25)],
)
def test_public_addresses_get_no_hint(address: Any) -> None:
    assert "loopback only" not in line(SMTPServerOptions(), _Endpoint(address))


def test_ipv6_loopback_gets_the_hint() -> None:
    text = line(SMTPServerOptions(), _Endpoint(IPv6Address("TCP", "::1", 2525)))
    assert text.startswith("smtpsession listening on [::1]:2525 (SMTP, ")
    assert "loopback only" in text


def test_lmtp_is_named() -> None:
    text = line(SMTPServerOptions(lmtp=True), _Endpoint(LOOPBACK))
    assert "(LMTP, " in text


def test_starttls_is_named(tmp_path: Path) -> None:
    identity = make_ca(tmp_path).issue("server", ["mail.example.test"])
    options = SMTPServerOptions(tls_cert=str(identity.cert), tls_key=str(identity.key))
    assert "(SMTP with STARTTLS, " in line(options, _Endpoint(LOOPBACK))
