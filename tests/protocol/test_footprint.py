"""
What an idle connection carries (the benchmark holds 10,000 of them after
EHLO).  No timing or byte counts here: only the structural properties that
keep the footprint small, each of which a refactoring could silently lose.
"""

from __future__ import annotations

import gc

from tests.protocol.harness import FakeServer


def test_idle_connection_carries_no_instance_dicts() -> None:
    """The protocol and the session materialise no __dict__ until a handler adds attributes."""
    server = FakeServer()
    conn = server.connect()
    assert conn.send(b"EHLO client.example\r\n")[0].startswith("250")
    proto = conn.proto
    session = proto.session
    assert session is not None
    # Resetting the envelope at EHLO must not have built the session's dict.
    assert not [r for r in gc.get_referents(session) if type(r) is dict]
    # Every attribute of the protocol, Twisted's included, is in a slot.
    assert vars(proto) == {}


def test_connections_share_their_configuration() -> None:
    """Settings fixed by the configuration live once per factory, not per connection."""
    server = FakeServer()
    a, b = server.connect(), server.connect("192.0.2.2")
    ca, cb = a.proto._conn, b.proto._conn
    assert ca.cfg is cb.cfg
    assert ca.cfg.commands is cb.cfg.commands
    other = FakeServer(lmtp=True).connect(read_greeting=False).proto._conn
    assert other.cfg is not ca.cfg and other.cfg.lmtp and not ca.cfg.lmtp


def test_clients_share_address_and_name_strings() -> None:
    """Two clients from one address, saying the same EHLO name, share those strings."""
    server = FakeServer()
    a, b = server.connect(), server.connect()
    for c in (a, b):
        c.send(b"EHLO Client.Example\r\n")
    sa, sb = a.proto.session, b.proto.session
    assert sa.remote_address is sb.remote_address
    assert sa.client_hostname is sb.client_hostname
    assert sa.host_name_appears_as == "client.example"
    assert sa.host_name_appears_as is sb.host_name_appears_as


def test_session_id_is_made_when_first_read() -> None:
    """No id string per idle client until something (a log line, a handler) reads it."""
    server = FakeServer(transaction_log=False)
    a, b = server.connect(), server.connect()
    sa, sb = a.proto.session, b.proto.session
    assert sa._id == "" and sb._id == ""
    first = sa.id
    assert len(first) == 32 and set(first) <= set("0123456789abcdef")
    assert sa.id is first  # made once, then kept
    assert sb.id != first


def test_configuration_is_built_once_per_server() -> None:
    """The factory builds the core's configuration once, not per connection."""
    server = FakeServer()
    first = server.connect().proto._conn.cfg
    for _ in range(3):
        assert server.connect().proto._conn.cfg is first
    assert server.factory.core_config(False) is first
