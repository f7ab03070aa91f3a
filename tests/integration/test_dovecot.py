"""
LMTP into a real Dovecot with the built-in relay handler.

Dovecot is Debian's (C{dovecot-core}, C{dovecot-lmtpd}), started by
L{tests.integration.dovecot} with a configuration of its own on 127.0.0.1;
its users are alice, bob, full (over quota: 552 after the body) and broken
(a Maildir that cannot be created: 451 after the body); any other address is
unknown to it (550 at RCPT).

- an LMTP client talking to smtpsession (C{lmtp=True}) in front of Dovecot
  gets Dovecot's own answers: the refusal of an unknown user at RCPT, and
  one answer per recipient after the body;
- each recipient's copy in Dovecot's Maildir is the message as sent, byte
  for byte, after what Dovecot and smtpsession prepend (see
  L{test_stored_byte_identical});
- an SMTP client gets one answer for all recipients: the worst one;
- the daemon does the same with the options the docs give;
- Dovecot stopped, crashed or down: the client gets 4xx, never 250, and no
  Maildir has half a message or a message the client was not told about;
  the client's retry is delivered once;
- the client gone half-way through the body: Dovecot gets no final dot and
  stores nothing.

Every test here can fail: each was checked against a relay broken on
purpose (no dot-stuffing, one answer for every LMTP recipient, the best
answer instead of the worst, a 250 when the upstream is lost, the final dot
sent for a body the client did not finish) and against a Dovecot that adds
its Delivered-To header.
"""

from __future__ import annotations

import re
import signal
import smtplib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.handlers import RelayHandler
from smtpsession.testing import RunningServer, serve
from tests.conftest import wait_until
from tests.integration.dovecot import Dovecot, running_dovecot
from tests.integration.test_daemon import Daemon, twistd
from tests.rawsmtp import RawClient

pytestmark = pytest.mark.external

SENDER = "carol@example.org"

#: The message the byte-for-byte test sends: 8-bit text (UTF-8 and, in one
#: line, Latin-1 bytes that are not UTF-8), lines that start with dots (so
#: they are dot-stuffed on both hops), a lone dot, a tab, trailing spaces, a
#: line of 998 characters (the longest RFC 5321 allows) and one of 4000,
#: blank lines, and no blank line at the end.
SENT = (
    b"From: Carol <carol@example.org>\r\n"
    b"To: alice@example.com, bob@example.com\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <byte-identical@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    + "Grüße aus Köln, café, 日本語.\r\n".encode()
    + b"caf\xe9 (Latin-1, not UTF-8) \xff\xfe\x80\r\n"
    b".A line that starts with a dot.\r\n"
    b"..Two dots.\r\n"
    b".\r\n"
    b"\tA tab, and trailing spaces   \r\n" + b"L" * 998 + b"\r\n" + b"l" * 4000 + b"\r\n"
    b"\r\n"
    b"\r\n"
    b"Last line.\r\n"
)

#: A message with a header section only: no blank line, no body.
HEADERS_ONLY = b"Subject: headers only\r\nMessage-ID: <headers-only@example.org>\r\n"

#: smtpsession's Received header as Dovecot stores it (NL: its line ending).
RECEIVED = (
    rb"Received: from client\.test \(\[127\.0\.0\.1\]\)NL"
    rb"\tby mx\.test \(smtpsession\) with (?:LMTP|ESMTP) id [0-9a-f]{32}\.\d+(?:;NL\t|NL\tfor <[^>]+>; )"
    rb"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d [+-]\d{4}NL"
)


def received_pattern(newline: bytes) -> re.Pattern[bytes]:
    return re.compile(RECEIVED.replace(b"NL", re.escape(newline)))


def dot_stuffed(body: bytes) -> bytes:
    """The body as DATA carries it, with its end marker."""
    return re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the tests that leave it running (Maildir as it
    ships: LF line endings)."""
    with running_dovecot() as d:
        yield d


def relay(dovecot: Dovecot, *, endpoint: str | None = None) -> RelayHandler:
    """The relay handler with the options the docs give for Dovecot."""
    return RelayHandler(
        endpoint=endpoint or f"tcp:127.0.0.1:{dovecot.port}",
        lmtp=True,
        starttls="never",
        hostname="mx.test",
        timeout=10,
        connect_timeout=5,
    )


def front(handler: RelayHandler, *, lmtp: bool) -> Iterator[RunningServer]:
    options = SMTPServerOptions(name="mx.test", lmtp=lmtp, disable_reverse_lookup=True)
    with serve(handler, options) as server:
        yield server


@pytest.fixture
def lmtp_front(dovecot: Dovecot) -> Iterator[RunningServer]:
    """smtpsession speaking LMTP, relaying to Dovecot over TCP."""
    yield from front(relay(dovecot), lmtp=True)


@pytest.fixture
def smtp_front(dovecot: Dovecot) -> Iterator[RunningServer]:
    """smtpsession speaking SMTP, relaying to Dovecot's Unix socket."""
    yield from front(relay(dovecot, endpoint=f"unix:{dovecot.socket_path}"), lmtp=False)


def lmtp_transaction(
    client: RawClient, recipients: list[str], body: bytes, sender: str = SENDER
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """
    MAIL, one RCPT per recipient, and (if any was accepted) DATA with the
    body: the RCPT answers, and the answers after the body, one per
    accepted recipient, each read as its own line.
    """
    code, text = client.command(f"MAIL FROM:<{sender}> BODY=8BITMIME")
    assert code == 250, text
    rcpt = [client.command(f"RCPT TO:<{r}>") for r in recipients]
    accepted = [r for r, (code, _) in zip(recipients, rcpt, strict=True) if code == 250]
    if not accepted:
        return rcpt, []
    code, text = client.command("DATA")
    assert code == 354, text
    client.send(dot_stuffed(body))
    return rcpt, [client.reply() for _ in accepted]


def new_files(
    dovecot: Dovecot, users: list[str], before: dict[str, set[Path]]
) -> dict[str, list[Path]]:
    return {u: [p for p in dovecot.stored(u) if p not in before[u]] for u in users}


def snapshot(dovecot: Dovecot, users: list[str]) -> dict[str, set[Path]]:
    return {u: set(dovecot.stored(u)) for u in users}


ALL = ["alice", "bob", "full", "broken"]


# ---------------------------------------------------------------------------
# LMTP client, LMTP front, Dovecot
# ---------------------------------------------------------------------------


def test_lmtp_answers_per_recipient(dovecot: Dovecot, lmtp_front: RunningServer) -> None:
    """
    Five recipients through smtpsession's LMTP front: the unknown one is
    refused at RCPT with Dovecot's own 550; after the body each of the four
    others gets Dovecot's answer, in order: 250 (alice), 451 (broken's
    Maildir cannot be created), 552 (full is over quota), 250 (bob).  Only
    alice and bob have the message, once each, and Dovecot's log agrees.
    """
    before = snapshot(dovecot, ALL)
    saved_before = {u: dovecot.saved_in_log(u) for u in ALL}
    client = RawClient(*lmtp_front.address)
    try:
        assert client.greeting == (220, "mx.test LMTP")
        assert client.command("LHLO client.test")[0] == 250
        rcpt, after_body = lmtp_transaction(
            client,
            [
                "alice@example.com",
                "nobody@example.com",
                "broken@example.com",
                "full@example.com",
                "bob@example.com",
            ],
            b"Subject: per recipient\r\n\r\nHello.\r\n",
        )
        assert client.command("QUIT")[0] == 221
    finally:
        client.close()
    assert rcpt == [
        (250, "2.1.5 Accepted"),
        (550, "5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com"),
        (250, "2.1.5 Accepted"),
        (250, "2.1.5 Accepted"),
        (250, "2.1.5 Accepted"),
    ]
    codes = [code for code, _ in after_body]
    assert codes == [250, 451, 552, 250], after_body
    assert re.fullmatch(r"2\.6\.0 <alice@example\.com> \S+ Saved", after_body[0][1])
    assert after_body[1][1].startswith(
        "4.2.0 <broken@example.com> Internal error occurred. Refer to server log"
    )
    assert after_body[2][1] == "5.2.2 <full@example.com> Quota exceeded (mailbox for user is full)"
    assert re.fullmatch(r"2\.6\.0 <bob@example\.com> \S+ Saved", after_body[3][1])
    new = new_files(dovecot, ALL, before)
    assert {u: len(files) for u, files in new.items()} == {
        "alice": 1,
        "bob": 1,
        "full": 0,
        "broken": 0,
    }
    assert new["alice"][0].read_bytes().endswith(b"\nSubject: per recipient\n\nHello.\n")

    def saved() -> dict[str, int]:
        return {u: dovecot.saved_in_log(u) - saved_before[u] for u in ALL}

    # Dovecot's log service writes the lines a moment after the answers.
    expected = {"alice": 1, "bob": 1, "full": 0, "broken": 0}
    wait_until(lambda: saved() == expected, timeout=10)


@pytest.mark.parametrize("line_endings", ["LF", "CRLF"])
def test_stored_byte_identical(line_endings: str, request: pytest.FixtureRequest) -> None:
    """
    What lands in each user's Maildir is exactly

        Return-Path: <sender>                      (added by Dovecot)
        Received: from ... by mx.test (smtpsession) with LMTP id ...; date
                                                   (added by the relay)
        the message as the client sent it, byte for byte

    with, in Dovecot's default configuration (LF), every CRLF stored as LF:
    Dovecot's Maildir keeps LF line endings and adds CRs back when it serves
    the message (mail_save_crlf = no, the default).  With mail_save_crlf =
    yes (CRLF), the file is byte-identical with no conversion at all.
    Dovecot adds nothing else because of lmtp_add_received_header = no and
    lmtp_hdr_delivery_address = none (by default it would add its own
    Received header and a Delivered-To header).  The message has 8-bit
    text, dotted lines, long lines and blank lines (see L{SENT}); a second
    one has no body at all, and is stored without a blank line added.
    """
    if line_endings == "LF":
        d: Dovecot = request.getfixturevalue("dovecot")
    else:
        d = request.getfixturevalue("dovecot_crlf")
    newline = b"\n" if line_endings == "LF" else b"\r\n"
    before = snapshot(d, ["alice", "bob"])
    with serve(
        relay(d), SMTPServerOptions(name="mx.test", lmtp=True, disable_reverse_lookup=True)
    ) as server:
        client = RawClient(*server.address)
        try:
            client.command("LHLO client.test")
            rcpt, after_body = lmtp_transaction(
                client, ["alice@example.com", "bob@example.com"], SENT
            )
            assert [c for c, _ in rcpt + after_body] == [250, 250, 250, 250], after_body
            rcpt, after_body = lmtp_transaction(client, ["alice@example.com"], HEADERS_ONLY)
            assert [c for c, _ in rcpt + after_body] == [250, 250], after_body
        finally:
            client.close()
    new = new_files(d, ["alice", "bob"], before)
    assert [len(new["alice"]), len(new["bob"])] == [2, 1]
    [alice_full] = [p for p in new["alice"] if b"<byte-identical@" in p.read_bytes()]
    [alice_headers_only] = [p for p in new["alice"] if b"<headers-only@" in p.read_bytes()]
    [bob_full] = new["bob"]
    pattern = received_pattern(newline)
    for path, sent in [(alice_full, SENT), (bob_full, SENT), (alice_headers_only, HEADERS_ONLY)]:
        stored = path.read_bytes()
        return_path = f"Return-Path: <{SENDER}>".encode() + newline
        assert stored.startswith(return_path), stored[:200]
        received = pattern.match(stored, len(return_path))
        assert received is not None, stored[:400]
        expected = return_path + received.group(0) + sent.replace(b"\r\n", newline)
        assert stored == expected
        if line_endings == "CRLF":
            assert stored.endswith(sent)  # literally, no conversion
    # The two copies of one delivery are the same file content.
    assert alice_full.read_bytes() == bob_full.read_bytes()


@pytest.fixture(scope="module")
def dovecot_crlf() -> Iterator[Dovecot]:
    with running_dovecot(save_crlf=True) as d:
        yield d


# ---------------------------------------------------------------------------
# SMTP client, SMTP front, LMTP to Dovecot
# ---------------------------------------------------------------------------


def test_smtp_client_gets_the_worst_answer(dovecot: Dovecot, smtp_front: RunningServer) -> None:
    """
    An SMTP client through smtpsession's SMTP front (the relay on Dovecot's
    Unix socket) has one answer after the body for all its recipients:

    - unknown user refused at RCPT (Dovecot's 550), the others delivered:
      250, and sendmail reports the refused one;
    - Dovecot takes the message for alice but refuses it for full (552):
      the client gets 552;
    - ... and also fails temporarily for broken (451): the client gets the
      temporary failure, 451, and will retry.

    In the last two cases alice has the message although the client was
    not told so (the documented price: a duplicate when the client retries,
    never a loss).
    """
    before = snapshot(dovecot, ALL)
    with smtplib.SMTP(*smtp_front.address, timeout=20) as client:
        client.ehlo("client.test")
        refused = client.sendmail(
            SENDER,
            ["alice@example.com", "nobody@example.com", "bob@example.com"],
            b"Subject: one\r\n\r\nfor alice and bob\r\n",
        )
        assert refused == {
            "nobody@example.com": (
                550,
                b"5.1.1 <nobody@example.com> User doesn't exist: nobody@example.com",
            )
        }
        with pytest.raises(smtplib.SMTPDataError) as permanent:
            client.sendmail(
                SENDER, ["alice@example.com", "full@example.com"], b"Subject: two\r\n\r\n2\r\n"
            )
        assert (permanent.value.smtp_code, permanent.value.smtp_error) == (
            552,
            b"5.2.2 <full@example.com> Quota exceeded (mailbox for user is full)",
        )
        with pytest.raises(smtplib.SMTPDataError) as temporary:
            client.sendmail(
                SENDER,
                ["alice@example.com", "full@example.com", "broken@example.com"],
                b"Subject: three\r\n\r\n3\r\n",
            )
        assert temporary.value.smtp_code == 451
        error = temporary.value.smtp_error
        assert isinstance(error, bytes)
        assert error.startswith(b"4.2.0 <broken@example.com> Internal error")
    new = new_files(dovecot, ALL, before)
    subjects = {u: sorted(re.findall(rb"\nSubject: (\w+)\n", p.read_bytes())[0] for p in files)
                for u, files in new.items()}  # fmt: skip
    assert subjects == {
        "alice": [b"one", b"three", b"two"],
        "bob": [b"one"],
        "full": [],
        "broken": [],
    }
    [bob_copy] = new["bob"]
    received = bob_copy.read_bytes()
    assert received_pattern(b"\n").search(received)
    assert b" with ESMTP id " in received


# ---------------------------------------------------------------------------
# The daemon
# ---------------------------------------------------------------------------


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


@pytest.mark.parametrize("endpoint", ["tcp", "unix"])
def test_daemon_relays_to_dovecot(
    dovecot: Dovecot, daemons: list[Daemon], tmp_path: Path, endpoint: str
) -> None:
    """
    `twistd -n smtpsession --lmtp --handler relay` with the options the
    docs give (endpoint= Dovecot's TCP listener or its Unix socket,
    lmtp=yes, starttls=never): an LMTP client gets Dovecot's per-recipient
    answers, and alice and bob have the message.
    """
    where = f"tcp:127.0.0.1:{dovecot.port}" if endpoint == "tcp" else f"unix:{dovecot.socket_path}"
    d = Daemon(tmp_path, [
        twistd(), "-n", "--pidfile=", "smtpsession", "--lmtp",
        "--port", "tcp:0:interface=127.0.0.1", "--hostname", "mx.test", "--no-reverse-lookup",
        "--handler", "relay", "--handler-option", f"endpoint={where}",
        "--handler-option", "lmtp=yes", "--handler-option", "starttls=never",
    ])  # fmt: skip
    daemons.append(d)
    port = d.port()
    before = snapshot(dovecot, ALL)
    marker = f"daemon via {endpoint}"
    client = RawClient("127.0.0.1", port, timeout=20)
    try:
        assert client.command("LHLO client.test")[0] == 250
        rcpt, after_body = lmtp_transaction(
            client,
            ["alice@example.com", "nobody@example.com", "bob@example.com", "full@example.com"],
            f"Subject: {marker}\r\n\r\nhi\r\n".encode(),
        )
    finally:
        client.close()
    assert [c for c, _ in rcpt] == [250, 550, 250, 250]
    assert [c for c, _ in after_body] == [250, 250, 552]
    new = new_files(dovecot, ALL, before)
    assert {u: len(f) for u, f in new.items()} == {"alice": 1, "bob": 1, "full": 0, "broken": 0}
    assert marker.encode() in new["bob"][0].read_bytes()
    d.signal(signal.SIGTERM)
    assert d.wait() in (0, -signal.SIGTERM)
    assert "Traceback" not in d.output, d.output


# ---------------------------------------------------------------------------
# Dovecot down, stopped or crashed
# ---------------------------------------------------------------------------

BIG = b"Subject: in flight\r\n\r\n" + b"0123456789abcdef" * 4096 + b"\r\nend\r\n"


def test_dovecot_not_running() -> None:
    """Nothing on Dovecot's port: MAIL gets 451 4.4.1, for an LMTP client
    and for an SMTP client; then Dovecot starts and the same message is
    delivered."""
    d = Dovecot()
    try:
        handler = relay(d)
        with serve(
            handler, SMTPServerOptions(name="mx.test", lmtp=True, disable_reverse_lookup=True)
        ) as server:
            client = RawClient(*server.address)
            try:
                client.command("LHLO client.test")
                code, text = client.command(f"MAIL FROM:<{SENDER}>")
                assert (code, text) == (451, "4.4.1 Upstream server unavailable, try again later")
            finally:
                client.close()
            d.start()
            client = RawClient(*server.address)
            try:
                client.command("LHLO client.test")
                rcpt, after_body = lmtp_transaction(
                    client, ["alice@example.com"], b"Subject: retry\r\n\r\nx\r\n"
                )
            finally:
                client.close()
            assert [c for c, _ in rcpt + after_body] == [250, 250]
        with serve(
            handler, SMTPServerOptions(name="mx.test", disable_reverse_lookup=True)
        ) as server:
            d.stop()
            with smtplib.SMTP(*server.address, timeout=20) as smtp:
                with pytest.raises(smtplib.SMTPSenderRefused) as info:
                    smtp.sendmail(SENDER, ["alice@example.com"], b"Subject: down\r\n\r\nx\r\n")
                assert info.value.smtp_code == 451
                assert (
                    info.value.smtp_error == b"4.4.1 Upstream server unavailable, try again later"
                )
        assert len(d.stored("alice")) == 1
    finally:
        d.cleanup()


@pytest.mark.parametrize("how", ["stopped", "crashed"])
@pytest.mark.parametrize("client_protocol", ["LMTP", "SMTP"])
def test_dovecot_goes_away_mid_body(how: str, client_protocol: str) -> None:
    """
    Dovecot is stopped (SIGTERM to its master) or its LMTP process is
    killed (SIGKILL: a crash) while the client is half-way through the
    body: the client finishes its body and gets 451 4.4.2 (one per
    recipient over LMTP, one over SMTP), never 250; no Maildir has a
    message (Dovecot writes into tmp/ and moves into new/ only at the end);
    and the client's retry, once Dovecot is back, is delivered once.
    """
    lmtp = client_protocol == "LMTP"
    d = Dovecot()
    try:
        d.start()
        options = SMTPServerOptions(name="mx.test", lmtp=lmtp, disable_reverse_lookup=True)
        with serve(relay(d), options) as server:
            client = RawClient(*server.address)
            try:
                client.command("LHLO client.test" if lmtp else "EHLO client.test")
                assert client.command(f"MAIL FROM:<{SENDER}>")[0] == 250
                for r in ["alice@example.com", "bob@example.com"]:
                    assert client.command(f"RCPT TO:<{r}>")[0] == 250
                assert client.command("DATA")[0] == 354
                client.send(BIG[: len(BIG) // 2])
                wait_until(lambda: "DATA" in d.lmtp_states(), timeout=10)
                if how == "stopped":
                    d.stop()
                else:
                    assert d.kill_lmtp_processes() >= 1
                client.send(BIG[len(BIG) // 2 :] + b".\r\n")
                answers = [client.reply() for _ in range(2 if lmtp else 1)]
                assert answers == [
                    (451, "4.4.2 Connection to the upstream server lost, try again later")
                ] * len(answers)
                assert client.command("NOOP")[0] == 250  # the client's session goes on
                for user in ("alice", "bob"):
                    assert d.stored(user) == []
                # The client retries, on the same connection, when Dovecot is back.
                if how == "stopped":
                    d.start()
                rcpt, after_body = (
                    lmtp_transaction(client, ["alice@example.com", "bob@example.com"], BIG)
                    if lmtp
                    else _smtp_transaction(client, ["alice@example.com", "bob@example.com"], BIG)
                )
                assert [c for c, _ in rcpt + after_body] == [250, 250, *([250] * len(after_body))]
            finally:
                client.close()
        for user in ("alice", "bob"):
            [stored] = d.stored(user)
            assert stored.read_bytes().endswith(BIG.replace(b"\r\n", b"\n"))
    finally:
        d.cleanup()


def _smtp_transaction(
    client: RawClient, recipients: list[str], body: bytes
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    assert client.command(f"MAIL FROM:<{SENDER}>")[0] == 250
    rcpt = [client.command(f"RCPT TO:<{r}>") for r in recipients]
    assert client.command("DATA")[0] == 354
    client.send(dot_stuffed(body))
    return rcpt, [client.reply()]


@pytest.mark.parametrize("client_protocol", ["LMTP", "SMTP"])
def test_client_disconnects_mid_body(dovecot: Dovecot, client_protocol: str) -> None:
    """
    The client goes away half-way through the body, once the relay's
    Dovecot session is in DATA: the relay drops that session without the
    final dot, so Dovecot discards what it has (its log says the session
    ended in DATA) and no Maildir gets anything.
    """
    lmtp = client_protocol == "LMTP"
    before = snapshot(dovecot, ["alice", "bob"])
    aborted_before = dovecot.log().count("(state=DATA)")
    options = SMTPServerOptions(name="mx.test", lmtp=lmtp, disable_reverse_lookup=True)
    with serve(relay(dovecot), options) as server:
        client = RawClient(*server.address)
        client.command("LHLO client.test" if lmtp else "EHLO client.test")
        assert client.command(f"MAIL FROM:<{SENDER}>")[0] == 250
        for r in ["alice@example.com", "bob@example.com"]:
            assert client.command(f"RCPT TO:<{r}>")[0] == 250
        assert client.command("DATA")[0] == 354
        wait_until(lambda: "DATA" in dovecot.lmtp_states(), timeout=10)
        client.send(BIG[: len(BIG) // 2])
        client.sock.shutdown(socket.SHUT_WR)  # all of it is read, then the end
        client.close()
        wait_until(lambda: dovecot.log().count("(state=DATA)") > aborted_before, timeout=10)
    assert new_files(dovecot, ["alice", "bob"], before) == {"alice": [], "bob": []}
