"""
Property tests of the core (after smtp-server's C{test/fuzz-test.js}):

  - any bytes, cut anywhere, with the application answering at random,
    produce well-formed replies and never an exception;
  - every command line gets exactly one reply (a 354 or 334 is followed by
    exactly one more once the body or SASL exchange ends), and the
    connection only closes after a 221 or 421;
  - the session stays usable: a probe RSET after the noise gets 250.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smtpsession._core.events import StartTLS
from smtpsession.errors import SMTPError
from tests.unit.coreclient import CoreClient, codes, split_replies

ALL_FEATURES: dict[str, Any] = {
    "size": 1_000_000,
    "use_xclient": True,
    "use_xforward": True,
    "auth_optional": True,
    "allow_insecure_auth": True,
    "auth_methods": ["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
}

CORPUS = [
    b"EHLO client.example",
    b"HELO client.example",
    b"MAIL FROM:<sender@example.com>",
    b"MAIL FROM:<sender@example.com> SIZE=100 BODY=8BITMIME SMTPUTF8",
    b"MAIL FROM:<> RET=HDRS ENVID=QQ314159",
    b'MAIL FROM:<"quoted local"@example.com>',
    b"RCPT TO:<rcpt@example.com>",
    b"RCPT TO:<rcpt@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;rcpt@example.com",
    b"RCPT TO:<postmaster>",
    b"RCPT TO:<user@[IPv6:2001:db8::1]>",
    b"DATA",
    b"RSET",
    b"NOOP",
    b"HELP",
    b"VRFY someone",
    b"EXPN list",
    b"AUTH PLAIN",
    b"AUTH PLAIN AHVzZXIAcGFzcw==",
    b"AUTH LOGIN",
    b"XCLIENT ADDR=192.0.2.9 NAME=relay.example PORT=25",
    b"XFORWARD ADDR=192.0.2.9 HELO=h.example",
    b"STARTTLS",
    b"QUIT",
]

HOSTILE = [b"\x00", b"\r", b"\n", b"\xf0\x9f\x92\xa9", b"A" * 600, b"<", b">", b":", b"=",
           b" ", b"\t", b"+", b"99999999999999999999999", b"-1", b"\xff", b"\x85"]


@st.composite
def mutated_line(draw: st.DrawFn) -> bytes:
    """A corpus command, possibly mutated (byte replace, truncate, insert, dup, remove)."""
    line = draw(st.sampled_from(CORPUS))
    kind = draw(st.sampled_from(["none", "replace", "truncate", "insert", "dup", "remove"]))
    if kind == "none" or not line:
        return line
    i = draw(st.integers(0, len(line) - 1))
    if kind == "replace":
        return line[:i] + bytes([draw(st.integers(0, 255))]) + line[i + 1 :]
    if kind == "truncate":
        return line[:i]
    if kind == "insert":
        return line[:i] + draw(st.sampled_from(HOSTILE)) + line[i:]
    tokens = line.split(b" ")
    j = draw(st.integers(0, len(tokens) - 1))
    if kind == "dup":
        tokens.insert(j, tokens[j])
    else:
        del tokens[j]
    return b" ".join(tokens)


def as_lines(items: list[bytes]) -> list[bytes]:
    """CRLF-terminate each item, then split at every LF: one element per line."""
    out = []
    for item in items:
        wire = item + b"\r\n"
        start = 0
        while True:
            nl = wire.find(b"\n", start)
            if nl < 0:
                break
            out.append(wire[start : nl + 1])
            start = nl + 1
    return out


def verb(line: bytes) -> bytes:
    return line.split(b" ", 1)[0].strip(b"\r\n").upper()


def verdicts(draw: Any) -> dict[str, Any]:
    """Random answers for the application's hooks."""
    error = st.sampled_from([None, SMTPError(550, "No"), SMTPError(451, "Later"),
                             SMTPError(421, "Bye")])
    return {
        "mail": draw(error),
        "rcpt": draw(error),
        "data": draw(st.sampled_from([[None], ["ok"], [SMTPError(554, "No")], []])),
        "auth": draw(st.sampled_from([None, "user"])),
    }


def client(policy: dict[str, Any], **options: Any) -> CoreClient:
    c = CoreClient(auth_enabled=True, tls_available=True, **ALL_FEATURES, **options)
    c.conn.set_proxy_trust(True, True)
    c.mail = lambda a: policy["mail"]
    c.rcpt = lambda a: policy["rcpt"]
    c.data = lambda body, session: policy["data"]
    c.auth = lambda request: policy["auth"]
    return c


def settle_tls(c: CoreClient) -> None:
    """Complete a STARTTLS the core asked for, as the driver would."""
    if isinstance(c.pending, StartTLS):
        c.pending = None
        c.session.secure = True
        c.conn.secure_changed()
        c.conn.tls_established()
        c.run()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_line(), min_size=1, max_size=25), st.booleans(), st.data())
def test_every_line_gets_exactly_one_reply(items: list[bytes], lmtp: bool, data: st.DataObject) -> None:
    """Each line sent on its own gets one reply; 221/421 are the only ways out."""
    policy = verdicts(data.draw)
    c = client(policy, lmtp=lmtp)
    for line in as_lines(items):
        if verb(line) == b"BDAT":
            continue  # its octets follow the line; counted in the BDAT tests
        replies = c.send(line)
        settle_tls(c)
        if replies and replies[-1].startswith("354"):
            # The body: end it at once; the final reply(ies) follow.
            assert len(replies) == 1, replies
            n = len(c.session.envelope.rcpt_to) if lmtp else 1
            replies = c.send(b".\r\n")
            assert len(replies) == n, replies
        elif replies and replies[-1].startswith("334"):
            assert len(replies) == 1, replies
            replies = c.send(b"*\r\n")
            assert len(replies) == 1, replies
        else:
            assert len(replies) == 1, (line, replies)
        if c.closed:
            assert replies[-1][:3] in ("221", "421"), replies
            break
        assert not any(r.startswith("221") for r in replies), replies
    if not c.closed:
        assert codes(c.lines("RSET")) == [250]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_line(), min_size=1, max_size=25), st.data())
def test_pipelined_lines_each_get_one_reply(items: list[bytes], data: st.DataObject) -> None:
    """All lines in one write (no DATA/AUTH/BDAT/STARTTLS): as many replies as lines."""
    policy = verdicts(data.draw)
    lines = [
        line for line in as_lines(items)
        if verb(line) not in (b"DATA", b"AUTH", b"BDAT", b"STARTTLS")
    ]
    c = client(policy)
    replies = c.send(b"".join(lines))
    if c.closed:
        assert len(replies) <= len(lines)
        assert replies[-1][:3] in ("221", "421")
    else:
        assert len(replies) == len(lines), (lines, replies)
        assert codes(c.lines("RSET")) == [250]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(st.binary(max_size=300), st.sampled_from(CORPUS).map(lambda b: b + b"\r\n"),
                  st.sampled_from(HOSTILE), st.just(b".\r\n"), st.just(b"BDAT 5\r\n")),
        max_size=40,
    ),
    st.booleans(),
    st.booleans(),
    st.data(),
)
def test_any_bytes_never_raise(
    chunks: list[bytes], lmtp: bool, lenient: bool, data: st.DataObject
) -> None:
    """Arbitrary input never raises and only ever produces well-formed replies."""
    policy = verdicts(data.draw)
    c = client(policy, lmtp=lmtp, lenient_line_endings=lenient, max_command_length=600)
    for chunk in chunks:
        was_closed = c.closed
        out = c.send(chunk)  # split_replies checks every reply line's shape
        settle_tls(c)
        if was_closed:
            assert out == []
    c.conn.connection_lost()
    assert c.closed
    assert split_replies(c.conn.data_to_send()) == []
