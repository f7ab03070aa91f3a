"""
The reverse lookup before the greeting, with a fake resolver on the fake
clock: the PTR name becomes C{client_hostname}; bad names, failures and
slow answers (capped at 1.5 s) leave C{[address]}; it can be turned off.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.names import dns
from twisted.names.error import DNSNameError

from smtpsession import Handler
from smtpsession.dns import valid_ptr_name
from tests.protocol.harness import FakeServer


def answer(*names: bytes) -> Any:
    records = [
        dns.RRHeader(name=b"x.in-addr.arpa", type=dns.PTR, payload=dns.Record_PTR(name=n))
        for n in names
    ]
    return (records, [], [])


class Resolver:
    """Answers lookupPointer with what the test says; records the queries."""

    def __init__(self, result: Any) -> None:
        self.result = result
        self.queries: list[tuple[str, Any]] = []
        self.pending: list[Deferred[Any]] = []

    def lookupPointer(self, name: str, timeout: Any = None) -> Deferred[Any]:
        self.queries.append((name, timeout))
        if self.result is None:
            d: Deferred[Any] = Deferred()
            self.pending.append(d)
            return d
        return self.result


class Seen(Handler):
    def __init__(self) -> None:
        self.hostnames: list[str] = []

    def on_connect(self, session: Any) -> Any:
        self.hostnames.append(session.client_hostname)


def serve(resolver: Resolver, **options: Any) -> tuple[FakeServer, Seen]:
    handler = Seen()
    options.setdefault("disable_reverse_lookup", False)
    return FakeServer(handler, resolver=resolver, **options), handler


def test_ptr_name_used() -> None:
    """The first PTR name, lower-cased and without its final dot, is client_hostname."""
    resolver = Resolver(succeed(answer(b"Mail.Example.COM.", b"other.example.")))
    server, handler = serve(resolver)
    c = server.connect("192.0.2.1")
    assert handler.hostnames == ["mail.example.com"]
    assert resolver.queries[0][0] == "1.2.0.192.in-addr.arpa"
    assert c.lines("EHLO c") [0].startswith("250-mx.example Nice to meet you, mail.example.com")


def test_ipv6_ptr_query() -> None:
    """IPv6 clients are looked up under ip6.arpa."""
    resolver = Resolver(succeed(answer(b"v6.example.")))
    server, handler = serve(resolver)
    server.connect("2001:db8::1")
    assert resolver.queries[0][0].endswith(".8.b.d.0.1.0.0.2.ip6.arpa")
    assert handler.hostnames == ["v6.example"]


@pytest.mark.parametrize(
    "name",
    [b"evil\r\nX-Injected: 1.example.", b"under score.example.", b"a" * 64 + b".example.",
     b"-bad.example.", b"x" * 250 + b".example."],
)
def test_invalid_ptr_names_discarded(name: bytes) -> None:
    """PTR names that are not host names (CRLF, spaces, long labels) are ignored."""
    server, handler = serve(Resolver(succeed(answer(name))))
    server.connect("192.0.2.1")
    assert handler.hostnames == ["[192.0.2.1]"]


@pytest.mark.parametrize(
    "result",
    [fail(DNSNameError("NXDOMAIN")), fail(RuntimeError("resolver bug")), succeed(([], [], []))],
)
def test_failures_fall_back_to_the_address(result: Deferred[Any]) -> None:
    """NXDOMAIN, errors and empty answers give [address] and never delay the greeting."""
    server, handler = serve(Resolver(result))
    server.connect("192.0.2.1")
    assert handler.hostnames == ["[192.0.2.1]"]


def test_resolver_raising_synchronously() -> None:
    """A resolver that raises instead of failing its Deferred is survived too."""

    class Broken:
        def lookupPointer(self, name: str, timeout: Any = None) -> Any:
            raise OSError("no resolv.conf")

    handler = Seen()
    server = FakeServer(handler, resolver=Broken(), disable_reverse_lookup=False)
    server.connect("192.0.2.1")
    assert handler.hostnames == ["[192.0.2.1]"]


def test_slow_lookup_capped_at_one_and_a_half_seconds() -> None:
    """A resolver that never answers holds the greeting 1.5 s at most."""
    resolver = Resolver(None)
    server, handler = serve(resolver)
    c = server.connect("192.0.2.1", read_greeting=False)
    assert c.advance(1.4) == []
    assert handler.hostnames == []
    assert c.advance(0.1) == ["220 mx.example ESMTP"]
    assert handler.hostnames == ["[192.0.2.1]"]
    # The late answer changes nothing.
    resolver.pending[0].callback(answer(b"late.example."))
    assert c.session.client_hostname == "[192.0.2.1]"


def test_disabled_reverse_lookup() -> None:
    """disable_reverse_lookup: no query at all; [address] at once."""
    resolver = Resolver(succeed(answer(b"never.example.")))
    server, handler = serve(resolver, disable_reverse_lookup=True)
    server.connect("192.0.2.1")
    assert resolver.queries == []
    assert handler.hostnames == ["[192.0.2.1]"]


def test_client_gone_during_lookup() -> None:
    """A client that leaves while the lookup runs never reaches on_connect or on_close."""
    closed: list[Any] = []

    class H(Seen):
        def on_close(self, session: Any) -> Any:
            closed.append(session)

    resolver = Resolver(None)
    handler = H()
    server = FakeServer(handler, resolver=resolver, disable_reverse_lookup=False)
    c = server.connect("192.0.2.1", read_greeting=False)
    c.disconnect()
    resolver.pending[0].callback(answer(b"late.example."))
    c.advance(2)
    assert handler.hostnames == [] and closed == []
    assert not server.factory.connections


@pytest.mark.parametrize(
    ("name", "ok"),
    [("mail.example.com", True), ("a", True), ("_dmarc.example", True), ("a-b.c", True),
     ("", False), ("a..b", False), ("-a.b", False), ("a-.b", False), ("a b", False),
     ("a" * 63 + ".b", True), ("a" * 64 + ".b", False), (("a" * 60 + ".") * 5, False)],
)
def test_valid_ptr_name(name: str, ok: bool) -> None:
    """Host-name syntax of PTR names (RFC 1123 labels, plus underscore)."""
    assert valid_ptr_name(name) is ok
