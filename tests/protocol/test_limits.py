"""
Per-client limits and session deadlines (API.md, "Policy and abuse
limits"), on the in-memory server: what one client may take, and for how
long.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from smtpsession import Handler
from tests.protocol.harness import FakeServer, codes

TOO_MANY = "421 4.7.0 Too many connections from your address"


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


class Users(Handler):
    def on_auth(self, auth: Any, session: Any) -> Any:
        return auth.username if auth.password == "right" else None


# -- max_connections_per_ip -----------------------------------------------------------


def test_one_address_gets_its_share_and_no_more() -> None:
    server = FakeServer(max_connections_per_ip=2, limits_exempt=())
    a = server.connect("192.0.2.7")
    b = server.connect("192.0.2.7")
    c = server.connect("192.0.2.7", read_greeting=False)
    assert c.replies() == [TOO_MANY]
    c.advance(0)
    assert not c.connected
    assert a.connected and b.connected
    # Another address is not affected; a freed slot can be taken again.
    server.connect("192.0.2.8")
    a.disconnect()
    d = server.connect("192.0.2.7")
    assert d.connected


def test_the_limit_counts_the_proxied_address() -> None:
    """Behind PROXY, every client shares the balancer's address: the header's counts."""
    server = FakeServer(
        max_connections_per_ip=1, limits_exempt=(), use_proxy=True
    )

    def via_proxy(client_ip: str) -> Any:
        c = server.connect("10.0.0.1", read_greeting=False)
        return c, c.send(f"PROXY TCP4 {client_ip} 192.0.2.25 40000 25\r\n".encode())

    _, first = via_proxy("198.51.100.1")
    _, other = via_proxy("198.51.100.2")
    _, again = via_proxy("198.51.100.1")
    assert codes(first) == [220] and codes(other) == [220]
    assert again == [TOO_MANY]


def test_exempt_networks_are_not_counted() -> None:
    """By default loopback is exempt: a local MTA or a load generator is not a client to limit."""
    server = FakeServer(max_connections_per_ip=1)
    clients = [server.connect("127.0.0.1") for _ in range(3)]
    assert all(c.connected for c in clients)
    assert codes(server.connect("192.0.2.9", read_greeting=False).replies()) == [220]
    assert server.connect("192.0.2.9", read_greeting=False).replies() == [TOO_MANY]


# -- max_auth_failures and auth_failure_delay --------------------------------------------


def test_auth_failures_are_slowed_then_end_the_session() -> None:
    server = FakeServer(
        Users(), allow_insecure_auth=True, max_auth_failures=3, auth_failure_delay=2
    )
    c = server.connect()
    c.lines("EHLO c")
    for _ in range(2):
        assert c.lines(f"AUTH PLAIN {plain('ann', 'wrong')}") == []  # the tarpit
        assert c.advance(1.9) == []
        assert c.advance(0.2) == ["535 5.7.8 Error: Authentication credentials invalid"]
    assert c.lines(f"AUTH PLAIN {plain('ann', 'wrong')}") == []
    assert c.advance(2.1) == ["421 4.7.0 Error: too many failed authentications"]
    c.advance(0)
    assert not c.connected


def test_a_right_password_is_not_slowed() -> None:
    server = FakeServer(Users(), allow_insecure_auth=True, auth_failure_delay=5)
    c = server.connect()
    c.lines("EHLO c")
    assert c.lines(f"AUTH PLAIN {plain('ann', 'right')}") == ["235 2.7.0 Authentication successful"]


def test_guessing_is_bounded_by_default() -> None:
    """Default options: the fifth failure ends the session."""
    server = FakeServer(Users(), allow_insecure_auth=True)
    c = server.connect()
    c.lines("EHLO c")
    answers = []
    for _ in range(5):
        c.lines(f"AUTH PLAIN {plain('ann', 'wrong')}")
        answers += c.advance(1.1)
    assert codes(answers) == [535, 535, 535, 535, 421]


# -- max_transactions ---------------------------------------------------------------


def test_max_transactions() -> None:
    c = FakeServer(max_transactions=2).connect()
    c.lines("EHLO c")
    assert codes(c.send_message()) == [250, 250, 354, 250]
    assert codes(c.send_message()) == [250, 250, 354, 250]
    assert c.lines("MAIL FROM:<a@example.com>") == [
        "421 4.7.0 Error: too many messages in one session"
    ]
    c.advance(0)
    assert not c.connected


# -- pregreet_delay -------------------------------------------------------------------


def test_pregreet_a_patient_client_is_greeted() -> None:
    server = FakeServer(pregreet_delay=3)
    c = server.connect(read_greeting=False)
    assert c.advance(2.9) == []
    assert c.advance(0.2) == ["220 mx.example ESMTP"]
    assert codes(c.lines("EHLO c")) == [250]


def test_pregreet_an_early_talker_is_refused() -> None:
    server = FakeServer(pregreet_delay=3)
    c = server.connect(read_greeting=False)
    c.advance(1)
    assert c.send(b"EHLO bot\r\n") == ["554 5.5.1 Error: talking before the greeting"]
    c.advance(5)
    assert not c.connected


# -- deadlines -----------------------------------------------------------------------


def test_trickling_bytes_is_cut_at_the_idle_timeout() -> None:
    c = FakeServer(socket_timeout=10).connect()
    c.lines("EHLO c")
    out = []
    for _ in range(12):
        c.send(b"N")
        out += c.advance(1)
    assert out == ["421 4.4.2 Timeout - closing connection"]


@pytest.mark.parametrize("verb", ["DATA", "BDAT 100000 LAST"])
def test_trickling_body_bytes_is_cut_at_the_idle_timeout(verb: str) -> None:
    """A body sent a byte a second is no more progress than a command line
    sent so: the idle timer cuts it, not only data_timeout (off here)."""
    c = FakeServer(socket_timeout=10, data_timeout=0).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    if verb == "DATA":
        assert codes(c.lines("DATA")) == [354]
    else:
        assert c.send(b"BDAT 100000 LAST\r\n") == []
    out = []
    for _ in range(12):
        c.send(b"x")
        out += c.advance(1)
    assert out == ["421 4.4.2 Timeout - closing connection"]


@pytest.mark.parametrize(
    ("piece", "verb"),
    [
        (b"a short line\r\n", "DATA"),  # lines, however slow
        (b"y" * 300, "DATA"),  # no line end, but bytes that add up
        (b"z" * 300, "BDAT 100000 LAST"),
    ],
)
def test_a_slow_body_is_still_progress(piece: bytes, verb: str) -> None:
    """A slow but real body is not idle: lines, or a kilobyte within the
    timeout (300 bytes every 2 s), keep the session going for 40 s, four
    idle timeouts."""
    c = FakeServer(socket_timeout=10, data_timeout=0).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    if verb == "DATA":
        c.lines("DATA")
    else:
        c.send(b"BDAT 100000 LAST\r\n")
    out = []
    for _ in range(20):
        c.send(piece)
        out += c.advance(2)
    assert out == []
    assert c.connected


def test_complete_commands_keep_a_session_alive_until_session_timeout() -> None:
    c = FakeServer(socket_timeout=60, session_timeout=300).connect()
    out = []
    for _ in range(7):
        out += c.lines("NOOP")
        out += c.advance(50)
    assert out == ["250 OK"] * 6 + ["421 Error: session too long - closing connection"]


def test_a_body_that_never_ends_is_cut_at_data_timeout() -> None:
    c = FakeServer(socket_timeout=60, data_timeout=100).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA")
    out = []
    for _ in range(12):
        c.send(b"a line of body\r\n")  # progress: the idle timer never fires
        out += c.advance(10)
    assert out == ["421 4.4.2 Error: message took too long - closing connection"]


# -- size ---------------------------------------------------------------------------


def test_bdat_over_the_size_is_refused_at_once() -> None:
    """BDAT 100000000000 LAST: 552 and the end of the session, before a byte is read."""
    c = FakeServer().connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    assert c.lines("BDAT 100000000000 LAST") == [
        "552 5.3.4 Error: message exceeds fixed maximum message size 10485760"
    ]
    c.advance(0)
    assert not c.connected


def test_bdat_chunks_add_up_to_the_limit() -> None:
    c = FakeServer(size=100).connect()
    c.lines("EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    assert c.send(b"BDAT 60\r\n" + b"x" * 60) == ["250 2.0.0 OK: 60 octets received"]
    assert codes(c.send(b"BDAT 60 LAST\r\n")) == [552]


@pytest.mark.parametrize("flag", ["size", "reject_oversized", "max_connections_per_ip"])
def test_defaults_for_the_public_internet(flag: str) -> None:
    from smtpsession import SMTPServerOptions

    expected = {"size": 10 * 1024 * 1024, "reject_oversized": True, "max_connections_per_ip": 50}
    assert getattr(SMTPServerOptions(), flag) == expected[flag]

def test_a_peer_address_is_parsed_once_within_bounds() -> None:
    """limits_exempt (like every trusted-networks setting) parses the client's
    address once per address (ipaddress parsing on every connection was
    most of the admission's cost), and the memory of it is bounded."""
    from twisted.internet.testing import MemoryReactorClock

    from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions, options

    server = SMTPServerFactory(Handler(), SMTPServerOptions(), reactor=MemoryReactorClock())._server
    options._peer_ip.cache_clear()
    for address in ["127.0.0.1", "192.0.2.1", "127.0.0.1", "192.0.2.1"]:
        server.admit_address(address)
    info = options._peer_ip.cache_info()
    assert (info.misses, info.hits) == (2, 2)
    assert info.maxsize == 4096
    assert server.admit_address("127.0.0.5") == (True, None)  # exempt: not counted
    assert server.admit_address("198.51.100.7") == (True, "198.51.100.7")
    assert server.admit_address("not an address") == (True, "not an address")
