"""
What the fuzzing work found (docs/fuzzing.md, "Crashes found and fixed"):
each test here replays the input of a finding (and smaller ones like
it), and fails without its fix.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpsession import Handler
from smtpsession._core.events import DataAborted, DataStart, StartTLS
from smtpsession._core.proxy import ProxyError, ProxyHeaderParser
from smtpsession.stream import StreamAborted
from tests.protocol.harness import FakeServer
from tests.unit.coreclient import CoreClient, codes

ENVELOPE = "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\n"


def body_events(c: CoreClient) -> list[str]:
    return [type(ev).__name__ for ev in c.events if isinstance(ev, (DataStart, DataAborted))]


# -- A hello between BDAT chunks left the body open ------------------------------------
#
# Found by the session state machine (tests/unit/test_session_machine.py):
# EHLO, MAIL, RCPT, "BDAT 0", EHLO; the connection then closed with the
# body still open.  A hello resets the transaction (RFC 5321 §4.1.4: as
# RSET does), but the core dropped the body without telling the driver,
# so on_data's stream never ended (and never failed): the handler waited
# for ever, holding whatever it had opened for the message.


@pytest.mark.parametrize(("lmtp", "hello"), [(False, "EHLO"), (False, "HELO"), (True, "LHLO")])
def test_a_hello_between_bdat_chunks_aborts_the_body(lmtp: bool, hello: str) -> None:
    c = CoreClient(lmtp=lmtp)
    c.lines(f"{hello} client.example")
    assert codes(c.send(ENVELOPE + "BDAT 0\r\n")) == [250, 250, 250]
    assert codes(c.lines(f"{hello} client.example")) == [250]
    assert body_events(c) == ["DataStart", "DataAborted"]
    assert c.aborted[0].reason == hello
    # A new transaction has a body of its own, and nothing is left open.
    assert codes(c.send(ENVELOPE + "BDAT 3 LAST\r\nabc")) == [250, 250, 250]
    assert body_events(c) == ["DataStart", "DataAborted", "DataStart"]
    assert c.bodies == [b"abc"]
    assert c.conn.connection_lost() is None


class Collect(Handler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    async def on_data(self, stream: Any, session: Any) -> Any:
        try:
            async for _ in stream:
                pass
        except Exception as e:
            self.errors.append(e)
            raise


def test_a_hello_between_bdat_chunks_ends_the_handlers_stream() -> None:
    """Through the driver: the handler's stream fails, as after RSET."""
    handler = Collect()
    client = FakeServer(handler).connect()
    client.lines("EHLO client.example")
    assert codes(client.send((ENVELOPE + "BDAT 5\r\nhello").encode())) == [250, 250, 250]
    assert codes(client.lines("EHLO client.example")) == [250]
    assert len(handler.errors) == 1 and isinstance(handler.errors[0], StreamAborted)


def test_starttls_between_bdat_chunks_aborts_the_body() -> None:
    """
    The same hole by STARTTLS, which resets the session once TLS is up
    (RFC 3207 §4.2): the body is aborted when the command is accepted,
    before the handshake starts.
    """
    c = CoreClient(tls_available=True)
    c.lines("EHLO client.example")
    assert codes(c.send(ENVELOPE + "BDAT 2\r\nab")) == [250, 250, 250]
    assert codes(c.lines("STARTTLS")) == [220]
    assert [type(ev).__name__ for ev in c.events[-2:]] == ["DataAborted", "StartTLS"]
    assert c.aborted[0].reason == "STARTTLS"
    assert isinstance(c.pending, StartTLS)
    c.session.secure = True
    c.conn.secure_changed()
    c.conn.tls_established()
    assert c.conn.connection_lost() is None


# -- PROXY v1: a bare LF inside the header ----------------------------------------------
#
# Found by fuzz/fuzz_proxy.py (its first input below, after 194,807
# executions): a v1 header with a bare LF before its CRLF was accepted
# when it arrived whole ("PROXY UNKNOWN" takes any text up to the CRLF)
# and refused when the proxy's segment ended between the LF and the CRLF,
# so the same bytes meant two things.  A v1 header ends at its first LF,
# which must follow a CR.

LF_INSIDE = [
    b"PROXY UNKNOWN 001:192.0.2.7 192.0.2.1 5Tz\n\t& 25\r\nie!\x11le\r\n",
    b"PROXY UNKNOWN x\ny\r\nEHLO x\r\n",
    b"PROXY UNKNOWN\n\r\n",
    b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\n\r\n",
]


@pytest.mark.parametrize("header", LF_INSIDE)
@pytest.mark.parametrize("step", [None, 1, 16])
def test_proxy_v1_header_with_a_bare_lf_is_refused(header: bytes, step: int | None) -> None:
    """Refused, whole or in pieces (it was accepted whole)."""
    parser = ProxyHeaderParser()
    pieces = (
        [header] if step is None else [header[i : i + step] for i in range(0, len(header), step)]
    )
    with pytest.raises(ProxyError):
        for piece in pieces:
            assert parser.feed(piece) is None


# -- A body both too big and with a bare LF: the reply depended on the segments --------
#
# Found while checking the session harness's "same outcome however cut"
# property by hand (fuzz/fuzz_session.py flags it for this input, but
# its runs had not reached it): the core refused the body for the first
# fault it saw in a segment, checking the bare line ending before the
# size.  Whole, this body was refused as bare (554); cut after the size
# limit and before the LF, as too big (552).  A bare CR/LF anywhere in
# the body now decides, whatever the segments.

OVERSIZED_AND_BARE = b"x" * 400 + b"\nbare\r\n.\r\n"


@pytest.mark.parametrize("cut", [None, 350, 400, 401])
def test_the_refusal_of_a_body_does_not_depend_on_its_segments(cut: int | None) -> None:
    c = CoreClient(size=300)
    c.lines("EHLO client.example")
    replies = c.send(ENVELOPE + "DATA\r\n")
    body = OVERSIZED_AND_BARE
    for piece in [body] if cut is None else [body[:cut], body[cut:]]:
        replies += c.send(piece)
    assert codes(replies) == [250, 250, 354, 554], replies
    assert c.bodies == []
