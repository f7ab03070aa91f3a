"""
Fuzz whole sessions: any bytes, as a client sends them, into a
L{ServerConnection} with most features on (SMTP or LMTP, AUTH with every
mechanism, CHUNKING, XCLIENT/XFORWARD from a trusted peer, DSN, SIZE).

    python fuzz/fuzz_session.py [libFuzzer flags] [corpus dirs]

Input: three bytes of settings, then the client's bytes.

  - byte 0, the configuration: LMTP (bit 0), lenient line endings (1),
    lenient addresses (2), STARTTLS offered (3), TLS from the start (4),
    AUTH required (5), a 300-byte size limit (6), no mail hooks (7);
  - byte 1 seeds the application's answers (accept, refuse 4xx/5xx/421,
    raise, time out, odd on_data values);
  - byte 2: bits 0-6 choose where the client's bytes are cut (0: byte by
    byte, up to 512 bytes); bit 7 reads the rest as tokens, one byte
    each, from a table of commands and body fragments (L{TOKENS}): byte
    mutations then become changes of commands, which takes the fuzzer
    deep into transactions (BDAT chunks between other commands, AUTH
    exchanges, STARTTLS in a transaction) far sooner than raw bytes do.

Each input is played twice, whole and cut into pieces, through an
application that answers at once and checks, on every event:

  - no exception ever escapes the core; only known events come out;
  - replies are well-formed (three digits, one text line each, CRLF, at
    most 512 octets) and nothing follows a closing reply;
  - a body's events are balanced: one L{DataStart}, its chunks, then one
    L{DataEnd} or L{DataAborted}; never a second body inside the first,
    never a chunk outside a body;
  - a DATA body reaches the application only once the client sent its
    CRLF.CRLF, and is exactly the client's bytes up to it, dot-unstuffed
    (RFC 5321 read literally, on the bytes consumed); the core refuses a
    body with a bare CR/LF (554), else one over the size limit (552);
  - whole or in pieces, the replies, the events and the accepted
    messages are the same (unless STARTTLS is on: it drops what was
    pipelined after it, so the cut matters there by design).
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import base64
import random
import re
from typing import Any

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core import machine
    from smtpsession._core.connection import ServerConnection
    from smtpsession._core.events import (
        CLOSED,
        NEED_DATA,
        PAUSED,
        Auth,
        BodyRejected,
        DataAborted,
        DataEnd,
        DataStart,
        MailFrom,
        RcptTo,
        StartTLS,
    )
    from smtpsession._core.settings import CoreConfig
    from smtpsession.errors import AuthUnavailable, HookTimeout, SMTPError
    from smtpsession.options import SMTPServerOptions
    from smtpsession.session import Session

LMTP, LENIENT_ENDINGS, LENIENT_ADDRESSES, STARTTLS, SECURE, AUTH_REQUIRED, SMALL, NO_HOOKS = (
    1 << i for i in range(8)
)
SMALL_SIZE = 300

_CONFIGS: dict[int, CoreConfig] = {}


def config(flags: int) -> CoreConfig:
    """The listener's configuration for C{flags} (made once, shared, as in production)."""
    cfg = _CONFIGS.get(flags)
    if cfg is None:
        options = SMTPServerOptions(
            name="mx.example",
            lmtp=bool(flags & LMTP),
            lenient_line_endings=bool(flags & LENIENT_ENDINGS),
            lenient_address_parsing=bool(flags & LENIENT_ADDRESSES),
            auth_optional=not flags & AUTH_REQUIRED,
            allow_insecure_auth=True,
            auth_methods=["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
            size=SMALL_SIZE if flags & SMALL else 1_000_000,
            max_command_length=512,
            max_recipients=4,
            max_transactions=20,
            max_auth_failures=3,
            max_allowed_unauthenticated_commands=6,
            use_xclient=True,
            use_xforward=True,
            disable_reverse_lookup=True,
        )
        hooks = not flags & NO_HOOKS
        cfg = _CONFIGS[flags] = machine.configure(
            options,
            tls_available=bool(flags & STARTTLS),
            auth_enabled=True,
            mail_hook=hooks,
            rcpt_hook=hooks,
            data_hook=hooks,
        )
    return cfg


# -- the application ---------------------------------------------------------------------

_ENVELOPE_ANSWERS: list[tuple[BaseException | None, Any]] = [
    (SMTPError(550, "No such user"), None),
    (SMTPError(451, "Try later"), None),
    (SMTPError(421, "Going away"), None),
    (SMTPError(message="No"), None),
    (None, False),
    (RuntimeError("handler bug"), None),
    (HookTimeout(), None),
]
_AUTH_ANSWERS: list[tuple[Any, BaseException | None]] = [
    (None, None),
    (None, SMTPError(535, "Bad credentials")),
    (None, SMTPError(454, "Not now")),
    (None, AuthUnavailable()),
    (None, SMTPError(421, "Going away")),
]
_DATA_ANSWERS: list[tuple[Any, BaseException | None]] = [
    ("queued as 1A2B", None),
    (False, None),
    ([None], None),
    ([None, SMTPError(452, "Mailbox full"), "stored"], None),
    ([], None),
    (None, SMTPError(554, "Spam")),
    (None, SMTPError(421, "Going away")),
    (None, RuntimeError("handler bug")),
    (None, HookTimeout()),
]

_CRAM_CHALLENGE = re.compile(rb"334 ([A-Za-z0-9+/=]+)\r\n")


def terminated_body(segment: bytes) -> tuple[bytes, bool] | None:
    """
    The body a DATA segment (the bytes from after the DATA line through
    the terminator) stands for, by RFC 5321 read literally, and whether it
    has a bare CR or LF; None if the segment does not end at the first
    CRLF.CRLF.
    """
    w = b"\r\n" + segment
    i = w.find(b"\r\n.\r\n")
    if i < 0 or i + 5 != len(w):
        return None
    body = w[: i + 2].replace(b"\r\n.", b"\r\n")[2:]
    crlf = body.count(b"\r\n")
    return body, crlf != body.count(b"\n") or crlf != body.count(b"\r")


class Client:
    """One connection and the application around it, checking as it goes."""

    def __init__(self, flags: int, answers: int) -> None:
        self.flags = flags
        self.cfg = config(flags)
        session = Session(
            id="fuzz",
            remote_address="192.0.2.1",
            remote_port=40000,
            local_address="192.0.2.25",
            local_port=25,
            client_hostname="client.example",
        )
        self.session = session
        conn = self.conn = ServerConnection(self.cfg, session)
        conn.set_proxy_trust(True, True)
        if flags & SECURE:
            session.secure = True
            conn.secure_changed()
        self.rng = random.Random(answers)
        self.wire = bytearray()
        self.out = bytearray()
        #: What happened, for comparing two runs: events, accepted messages.
        self.log: list[Any] = []
        self.accepted: list[tuple[str, list[str], bytes, str]] = []
        self.body_open = False
        self.chunking = False
        self.body_start = 0
        self.chunks: list[bytes] = []
        self.rejected: BodyRejected | None = None
        self.closed_at: int | None = None
        conn.greet()
        self.collect()

    # -- input and output ------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self.wire += data
        self.conn.receive_data(data)
        self.pump()
        self.collect()

    def consumed(self) -> int:
        """How many of the client's bytes the core has parsed (or dropped)."""
        return len(self.wire) - self.conn.unparsed

    def collect(self) -> None:
        out = self.conn.data_to_send()
        if out:
            assert self.closed_at is None, f"replies after the closing one: {out!r}"
            self.out += out
        if self.conn.closed and self.closed_at is None:
            self.closed_at = len(self.out)

    def finish(self) -> None:
        """The client goes: a body still open must be aborted."""
        aborted = self.conn.connection_lost()
        if self.body_open:
            assert isinstance(aborted, DataAborted), "body left open at connection loss"
            self.body_open = False
        else:
            assert aborted is None, aborted
        assert self.conn.closed
        assert self.conn.data_to_send() == b""
        check_replies(bytes(self.out))

    # -- events --------------------------------------------------------------------------

    def pump(self) -> None:
        conn = self.conn
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                assert not conn.closed and not conn.waiting
                return
            if ev is CLOSED:
                assert conn.closed
                return
            if ev is PAUSED:
                raise AssertionError(f"paused with no answer due ({conn.phase_name()})")
            if type(ev) is bytes:
                assert self.body_open and self.rejected is None and ev, "chunk outside a body"
                self.chunks.append(ev)
                continue
            self.log.append(type(ev).__name__)
            handler = _HANDLERS.get(type(ev))
            assert handler is not None, f"unknown event {ev!r}"
            handler(self, ev)

    def pick(self, answers: list[Any], accept: float) -> Any:
        """An answer: accept with probability C{accept}, else one of C{answers}."""
        if self.rng.random() < accept:
            return None
        return self.rng.choice(answers)

    def on_mail(self, ev: MailFrom) -> None:
        assert not self.body_open
        self.log.append(ev.address.address)
        answer = self.pick(_ENVELOPE_ANSWERS, 0.8)
        if answer is None:
            self.conn.mail_from_result()
        else:
            self.conn.mail_from_result(answer[0], answer[1])

    def on_rcpt(self, ev: RcptTo) -> None:
        assert not self.body_open
        self.log.append(ev.address.address)
        answer = self.pick(_ENVELOPE_ANSWERS, 0.8)
        if answer is None:
            self.conn.rcpt_to_result()
        else:
            self.conn.rcpt_to_result(answer[0], answer[1])

    def on_auth(self, ev: Auth) -> None:
        request = ev.request
        assert request.username and isinstance(request.username, str)
        self.log.append((request.method, request.username))
        answer = self.pick(_AUTH_ANSWERS, 0.5)
        if answer is None:
            self.conn.auth_result("user")
        else:
            if request.method == "XOAUTH2" and self.rng.random() < 0.5:
                request.error_data = {"status": "400"}
            self.conn.auth_result(*answer)

    def on_start_tls(self, ev: StartTLS) -> None:
        assert self.flags & STARTTLS, "STARTTLS without TLS on offer"
        # The handshake succeeds at once, as the driver would report it.
        self.session.secure = True
        self.conn.secure_changed()
        self.conn.tls_established()

    def on_data_start(self, ev: DataStart) -> None:
        assert not self.body_open, "a body started inside another"
        self.body_open = True
        self.chunking = ev.chunking
        self.body_start = self.consumed()
        self.chunks = []
        self.rejected = None

    def on_rejected(self, ev: BodyRejected) -> None:
        assert self.body_open and self.rejected is None
        assert ev.error.code in (552, 554), ev.error
        self.rejected = ev

    def on_aborted(self, ev: DataAborted) -> None:
        assert self.body_open, "DataAborted with no body"
        self.body_open = False
        self.chunks = []

    def on_data_end(self, ev: DataEnd) -> None:
        assert self.body_open, "DataEnd with no body"
        self.body_open = False
        body = b"".join(self.chunks)
        hooks = not self.flags & NO_HOOKS
        # The final verdict: the BodyRejected sent, or one that replaces it.
        final = ev.rejected
        assert (final is None) == (self.rejected is None), (final, self.rejected)
        if final is None and hooks:
            assert ev.byte_length == len(body), (ev.byte_length, len(body))
        if not self.chunking:
            segment = bytes(self.wire[self.body_start : self.consumed()])
            framed = terminated_body(segment)
            assert framed is not None, f"body ended before its CRLF.CRLF: {segment!r}"
            expected, bare = framed
            assert ev.byte_length == len(expected), (ev.byte_length, len(expected))
            too_big = len(expected) > self.cfg.size_limit
            bare = bare and not self.flags & LENIENT_ENDINGS
            # The verdict is the body's, not the segments': a bare CR/LF
            # decides, then the size.
            if final is None:
                assert not bare, f"bare CR/LF accepted: {expected!r}"
                assert not too_big, "an oversized body was not refused"
                if hooks:
                    assert body == expected, (body, expected)
            elif final.error.code == 554:
                assert bare, f"refused as bare: {expected!r}"
            else:
                assert too_big and not bare, f"refused as too big: {len(expected)} octets"
        envelope = self.session.envelope
        sender = envelope.mail_from.address if envelope.mail_from else None
        assert sender is not None, "a body without a sender"
        rcpts = [r.address for r in envelope.rcpt_to]
        assert rcpts, "a body without recipients"
        # LMTP answers each successful RCPT (RFC 2033 4.2): a recipient given
        # twice is once in the envelope, and the core keeps where each RCPT
        # points in it (before the reply resets the transaction).
        order = self.conn.rcpt_order
        if order is not None:
            assert self.cfg.lmtp and sorted(set(order)) == list(range(len(rcpts))), (order, rcpts)
        value, error = self.rng.choice(_DATA_ANSWERS)
        codes, _ = self.conn.data_outcome(value, error)
        per_rcpt = len(order) if order is not None else len(rcpts)
        expected_replies = per_rcpt if self.cfg.lmtp else 1
        assert len(codes.split(";")) == expected_replies, (codes, rcpts)
        if self.rejected is None:
            self.accepted.append((sender, rcpts, body, codes))


_HANDLERS: dict[type, Any] = {
    MailFrom: Client.on_mail,
    RcptTo: Client.on_rcpt,
    Auth: Client.on_auth,
    StartTLS: Client.on_start_tls,
    DataStart: Client.on_data_start,
    BodyRejected: Client.on_rejected,
    DataAborted: Client.on_aborted,
    DataEnd: Client.on_data_end,
}


def check_replies(data: bytes) -> None:
    """Every reply line: three digits, a space or hyphen, text, CRLF; multi-line consistent."""
    assert data == b"" or data.endswith(b"\r\n"), data[-80:]
    code = None
    for line in data.split(b"\r\n")[:-1]:
        assert len(line) + 2 <= 512, f"reply line too long: {line[:80]!r}"
        assert b"\r" not in line and b"\n" not in line, line
        assert len(line) >= 3 and line[:3].isdigit() and line[:1] in b"2345", line
        assert line[3:4] in (b"", b" ", b"-"), line
        assert code is None or line[:3] == code, f"multi-line reply changes code: {line!r}"
        line.decode("utf-8")
        code = line[:3] if line[3:4] == b"-" else None
    assert code is None, "unterminated multi-line reply"


def normalised(out: bytes) -> bytes:
    """The replies, with CRAM-MD5's random challenge blanked out."""

    def blank(m: re.Match[bytes]) -> bytes:
        try:
            text = base64.b64decode(m.group(1), validate=True)
        except ValueError:
            return m.group(0)
        return b"334 <challenge>\r\n" if text.startswith(b"<") else m.group(0)

    return _CRAM_CHALLENGE.sub(blank, out)


def pieces(data: bytes, key: int) -> list[bytes]:
    """C{data} cut at points C{key} chooses; byte by byte for 0."""
    if key == 0 and len(data) <= 512:
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(key)
    n = min(len(data) - 1, 1 + key % 24) if len(data) > 1 else 0
    cuts = sorted(rng.sample(range(1, len(data)), n)) if n > 0 else []
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


#: The vocabulary of token mode: whole commands (valid and not), BDAT
#: chunks with their octets, and body fragments.
TOKENS = [
    b"EHLO client.example\r\n",
    b"HELO client.example\r\n",
    b"LHLO client.example\r\n",
    b"MAIL FROM:<a@example.org>\r\n",
    b"MAIL FROM:<> BODY=BINARYMIME\r\n",
    b"MAIL FROM:<b@example.org> SIZE=200 BODY=8BITMIME SMTPUTF8\r\n",
    b"MAIL FROM:<c@example.org> RET=HDRS ENVID=x REQUIRETLS\r\n",
    b"RCPT TO:<r1@example.com>\r\n",
    b"RCPT TO:<r2@example.com> NOTIFY=SUCCESS,DELAY\r\n",
    b"RCPT TO:<R1@EXAMPLE.COM>\r\n",
    b"RCPT TO:<postmaster>\r\n",
    b"DATA\r\n",
    b"BDAT 0\r\n",
    b"BDAT 3\r\nabc",
    b"BDAT 4\r\na\r\n.",
    b"BDAT 2\r\n\r",
    b"BDAT 1\r\n\n",
    b"BDAT 0 LAST\r\n",
    b"BDAT 3 LAST\r\nxyz",
    b"BDAT 400 LAST\r\n",
    b"BDAT x\r\n",
    b"text",
    b"\r\n",
    b"\r\n.",
    b"\r\n..",
    b".\r\n",
    b"\r\n.\r\n",
    b"\r",
    b"\n",
    b"x" * 200,
    b"RSET\r\n",
    b"NOOP\r\n",
    b"HELP\r\n",
    b"VRFY someone\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n",
    b"AUTH PLAIN\r\n",
    b"AHVzZXIAcGFzcw==\r\n",
    b"AUTH LOGIN\r\n",
    b"dXNlcg==\r\n",
    b"AUTH CRAM-MD5\r\n",
    b"dXNlciAwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZg==\r\n",
    b"AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\r\n",
    b"*\r\n",
    b"XCLIENT ADDR=192.0.2.9 NAME=relay.example\r\n",
    b"XCLIENT LOGIN=someone\r\n",
    b"XFORWARD ADDR=192.0.2.9 HELO=h.example\r\n",
    b"EXPN list\r\n",
    b"GARBAGE\r\n",
    b"MAIL FROM:<a@example.org>\n",
    b"A" * 600,
]


def play(flags: int, answers: int, chunks: list[bytes]) -> Client:
    client = Client(flags, answers)
    for chunk in chunks:
        client.feed(chunk)
    client.finish()
    return client


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    flags, answers, key = data[0], data[1], data[2] & 0x7F
    wire = data[3:]
    if data[2] & 0x80:
        wire = b"".join(TOKENS[b % len(TOKENS)] for b in wire)
    whole = play(flags, answers, [wire])
    split = play(flags, answers, pieces(wire, key))
    if flags & STARTTLS:
        return  # the cut decides what STARTTLS drops
    assert normalised(bytes(split.out)) == normalised(bytes(whole.out)), (
        "replies differ whole and in pieces"
    )
    assert split.log == whole.log, "events differ whole and in pieces"
    assert split.accepted == whole.accepted, "accepted messages differ whole and in pieces"


# -- seeds -----------------------------------------------------------------------------------


def _plain(user: bytes, password: bytes) -> bytes:
    return base64.b64encode(b"\0" + user + b"\0" + password)


def seeds() -> list[bytes]:
    hello = b"EHLO client.example\r\n"
    mail = b"MAIL FROM:<sender@example.org>\r\nRCPT TO:<rcpt@example.com>\r\n"
    sessions = [
        hello + mail + b"DATA\r\nSubject: hi\r\n\r\nhello\r\n..dot\r\n.\r\nQUIT\r\n",
        hello + mail + b"BDAT 5\r\nhelloBDAT 7 LAST\r\n world\r\nQUIT\r\n",
        hello + b"MAIL FROM:<> BODY=BINARYMIME\r\nRCPT TO:<a@b.example>\r\nBDAT 3 LAST\r\na\rb",
        hello + mail + b"DATA\r\nbare\nLF\r\n.\r\nRSET\r\n",
        hello + mail + b"RCPT TO:<b@example.com> NOTIFY=SUCCESS ORCPT=rfc822;b@example.com\r\n"
        b"DATA\r\n.\r\n",
        b"LHLO client.example\r\n" + mail + b"RCPT TO:<c@example.com>\r\nDATA\r\nx\r\n.\r\n",
        hello + b"AUTH PLAIN " + _plain(b"user", b"pass") + b"\r\n" + mail,
        hello + b"AUTH LOGIN\r\ndXNlcg==\r\ncGFzcw==\r\n",
        hello + b"AUTH CRAM-MD5\r\n" + base64.b64encode(b"user " + b"0" * 32) + b"\r\n",
        hello
        + b"AUTH XOAUTH2 "
        + base64.b64encode(b"user=u@example.com\x01auth=Bearer tok\x01\x01")
        + b"\r\n\r\n",
        hello + b"STARTTLS\r\n" + hello,
        hello + b"XCLIENT ADDR=192.0.2.9 NAME=relay.example LOGIN=someone\r\n" + hello,
        hello + b"XFORWARD ADDR=192.0.2.9 HELO=h.example PROTO=ESMTP\r\n",
        b"HELO client.example\r\nMAIL FROM:<a@[IPv6:2001:db8::1]> SIZE=10 RET=HDRS ENVID=x+2B\r\n"
        b"VRFY x\r\nHELP\r\nNOOP\r\nEXPN x\r\nGET / HTTP/1.1\r\n",
        hello + b'MAIL FROM:<"quoted local"@example.com> SMTPUTF8 AUTH=<>\r\n'
        b"RCPT TO:<postmaster>\r\nDATA\r\n" + b"x" * 400 + b"\r\n.\r\n",
    ]
    out = []
    for i, wire in enumerate(sessions):
        out.append(bytes([0, i, i + 1]) + wire)
        out.append(bytes([LMTP | LENIENT_ENDINGS, i, 0]) + wire)
        out.append(bytes([STARTTLS | AUTH_REQUIRED | SMALL, i, 7]) + wire)
    t = {token: i for i, token in enumerate(TOKENS)}
    dialogues = [
        [0, 3, 7, 8, 11, 21, 22, 23, 26, 30],  # DATA with a dot line
        [0, 3, 7, 13, 12, 14, 18, 31],  # BDAT chunks, then LAST
        [0, 3, 7, 13, 0, 3, 7, 17],  # EHLO between BDAT chunks
        [0, 3, 7, 13, 35, 0],  # STARTTLS between BDAT chunks
        [0, 36, 3, 7, 11, 21, 26],  # AUTH, then a message
        [2, 3, 7, 8, 9, 11, 21, 26],  # LMTP
    ]
    assert t[b"EHLO client.example\r\n"] == 0
    for i, tokens in enumerate(dialogues):
        out.append(bytes([0, i, 0x80 | (i + 1)]) + bytes(tokens))
        out.append(bytes([LMTP | STARTTLS, i, 0x80]) + bytes(tokens))
    # Findings (tests/regressions/test_fuzz_findings.py): a hello, and
    # STARTTLS, between BDAT chunks; a body over the size with a bare LF
    # past the limit, cut between the two.
    out.append(bytes([0, 4, 0x80 | 5]) + bytes([0, 3, 7, 13, 0]))
    out.append(bytes([STARTTLS, 4, 0x80 | 5]) + bytes([0, 3, 7, 13, 35]))
    out.append(bytes([SMALL, 4, 2]) + hello + mail + b"DATA\r\n" + b"x" * 400 + b"\nbare\r\n.\r\n")
    return out


DICTIONARY = [
    b"EHLO ",
    b"HELO ",
    b"LHLO ",
    b"MAIL FROM:<",
    b"RCPT TO:<",
    b"DATA\r\n",
    b"BDAT ",
    b" LAST\r\n",
    b"\r\n.\r\n",
    b"\r\n..",
    b"RSET\r\n",
    b"NOOP\r\n",
    b"QUIT\r\n",
    b"STARTTLS\r\n",
    b"AUTH PLAIN ",
    b"AUTH LOGIN",
    b"AUTH CRAM-MD5",
    b"AUTH XOAUTH2 ",
    b"XCLIENT ",
    b"XFORWARD ",
    b"ADDR=",
    b"NAME=",
    b"LOGIN=",
    b" BODY=8BITMIME",
    b" BODY=BINARYMIME",
    b" SIZE=",
    b" SMTPUTF8",
    b" REQUIRETLS",
    b" RET=FULL",
    b" ENVID=",
    b" NOTIFY=",
    b" ORCPT=rfc822;",
    b" AUTH=",
    b"postmaster",
    b"[IPv6:",
    b"@example.com>",
]


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
