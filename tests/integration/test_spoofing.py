"""
Who may rewrite the client's address, on real sockets: XCLIENT and
XFORWARD only from the networks they trust, judged by the client's final
address (the PROXY header's, when a trusted balancer sent one), so that no
Internet client behind a trusted balancer inherits the balancer's trust;
and a PROXY header only from the networks trusted to send one (more in
tests/integration/test_proxy_protocol.py).
"""

from __future__ import annotations

import pytest

from smtpsession.testing import RecordingHandler, serve
from tests.conftest import options
from tests.rawsmtp import RawClient

NOT_ALLOWED = (550, "5.7.0 Error: Not allowed")


@pytest.mark.parametrize("verb", ["XCLIENT", "XFORWARD"])
def test_an_untrusted_peer_cannot_rewrite_its_address(verb: str) -> None:
    """Trusted: 192.0.2.0/24 only.  A client from 127.0.0.1 is not offered
    the command, is refused it, and its mail keeps its real address."""
    handler = RecordingHandler()
    trust = {"use_" + verb.lower(): ["192.0.2.0/24"]}
    with serve(handler, options(**trust)) as server:
        client = RawClient(*server.address)
        try:
            code, text = client.command("EHLO spoofer.test")
            assert code == 250 and verb not in text
            assert client.command(f"{verb} ADDR=198.51.100.7 NAME=trusted.example") == NOT_ALLOWED
            client.start_message("a@example.org", ["b@example.com"])
            client.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
            assert client.reply()[0] == 250
        finally:
            client.close()
    [message] = handler.messages
    assert message.session.remote_address == "127.0.0.1"
    assert message.session.x_client == {} and message.session.x_forward == {}


def test_a_trusted_peer_can() -> None:
    """Control: trusted 127.0.0.0/8, XCLIENT rewrites the address."""
    handler = RecordingHandler()
    with serve(handler, options(use_xclient=["127.0.0.0/8"])) as server:
        client = RawClient(*server.address)
        try:
            assert "XCLIENT" in client.command("EHLO mta.test")[1]
            assert client.command("XCLIENT ADDR=198.51.100.7")[0] == 220
            client.start_message("a@example.org", ["b@example.com"])
            client.send(b"Subject: x\r\n\r\nx\r\n.\r\n")
            assert client.reply()[0] == 250
        finally:
            client.close()
    [message] = handler.messages
    assert message.session.remote_address == "198.51.100.7"
    assert message.session.x_client["ADDR"] == "198.51.100.7"


def test_behind_a_trusted_balancer_the_client_address_decides() -> None:
    """The balancer (127.0.0.1) is trusted for PROXY and XCLIENT; a client
    it forwards from 203.0.113.9 is not in the XCLIENT list, so it cannot
    use XCLIENT through the balancer's trust."""
    opts = options(use_proxy=["127.0.0.0/8"], use_xclient=["127.0.0.0/8"])
    with serve(RecordingHandler(), opts) as server:
        client = RawClient(*server.address, read_greeting=False)
        try:
            client.send(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 25\r\n")
            assert client.reply()[0] == 220
            code, text = client.command("EHLO forwarded.test")
            assert code == 250 and "XCLIENT" not in text
            assert client.command("XCLIENT ADDR=127.0.0.1") == NOT_ALLOWED
        finally:
            client.close()


def test_an_untrusted_peer_cannot_send_a_proxy_header() -> None:
    """PROXY is expected only from 192.0.2.0/24: from 127.0.0.1 the server
    greets at once and the header is an unknown command; the session keeps
    the real address."""
    handler = RecordingHandler()
    with serve(handler, options(use_proxy=["192.0.2.0/24"])) as server:
        client = RawClient(*server.address)
        try:
            assert client.greeting is not None and client.greeting[0] == 220
            assert client.command("PROXY TCP4 198.51.100.7 192.0.2.25 40000 25") == (
                500,
                "Error: command not recognized",
            )
            assert client.command("EHLO spoofer.test")[0] == 250
        finally:
            client.close()
    [session] = handler.sessions
    assert session.remote_address == "127.0.0.1" and session.proxy is None
