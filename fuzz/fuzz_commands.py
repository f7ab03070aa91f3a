"""
Fuzz the command parser: one command line, in a session that is ready
for it, and the address and parameter parsers under it.

    python fuzz/fuzz_commands.py [libFuzzer flags] [corpus dirs]

Input: byte 0 chooses the verb put before the rest (bits 0-3: MAIL FROM:,
RCPT TO:, EHLO, HELO, VRFY, AUTH, BDAT, XCLIENT, XFORWARD, or nothing)
and the configuration (bit 4: lenient addresses, bit 5: SIZE unlimited),
then the argument: everything up to the first LF.  For each input:

  - MAIL and RCPT have fast paths for their common shapes; the line is
    answered by the core twice, with and without them, and the replies,
    the events the application sees (addresses, parameters, DSN) and the
    envelope must be the same;
  - the session answers every line with exactly one well-formed reply
    (after a 334, one more once the exchange is cancelled), and a probe
    NOOP still gets 250 unless the line closed the session;
  - on the argument as text, the path and parameter parsers give a
    result or their own exception (L{AddressError}, L{ParamError}) and
    nothing else; an accepted mailbox is at most 254 octets, has no
    control characters, and is accepted again unchanged; xtext encoding
    round-trips.
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import re
from typing import Any

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core import envelope, machine
    from smtpsession._core.addresses import AddressError, check_mailbox, split_path
    from smtpsession._core.connection import ServerConnection
    from smtpsession._core.events import (
        CLOSED,
        NEED_DATA,
        PAUSED,
        Auth,
        DataEnd,
        DataStart,
        MailFrom,
        RcptTo,
    )
    from smtpsession._core.params import (
        ParamError,
        is_xtext,
        parse_params,
        xtext_decode,
        xtext_encode,
    )
    from smtpsession._core.settings import CoreConfig
    from smtpsession.options import SMTPServerOptions
    from smtpsession.session import Session

VERBS = [
    b"MAIL FROM:",
    b"RCPT TO:",
    b"EHLO ",
    b"HELO ",
    b"VRFY ",
    b"AUTH ",
    b"BDAT ",
    b"XCLIENT ",
    b"XFORWARD ",
    b"",
]
LENIENT, UNLIMITED = 16, 32
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")

_CONFIGS: dict[tuple[int, bool], CoreConfig] = {}


def config(flags: int, fast: bool) -> CoreConfig:
    key = (flags & (LENIENT | UNLIMITED), fast)
    cfg = _CONFIGS.get(key)
    if cfg is None:
        options = SMTPServerOptions(
            name="mx.example",
            lenient_address_parsing=bool(flags & LENIENT),
            size=0 if flags & UNLIMITED else 5000,
            auth_optional=True,
            allow_insecure_auth=True,
            auth_methods=["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
            max_recipients=3,
            use_xclient=True,
            use_xforward=True,
            disable_reverse_lookup=True,
        )
        cfg = _CONFIGS[key] = machine.configure(options, tls_available=False, auth_enabled=True)
        if not fast:
            # The general parsers only (as tests/unit/test_fast_paths.py does).
            for verb, parser in ((b"MAIL", envelope.slow_mail), (b"RCPT", envelope.slow_rcpt)):
                row = cfg.commands[verb]
                cfg.commands[verb] = machine.Verb(
                    parser,
                    needs_hello=row.needs_hello,
                    needs_auth=row.needs_auth,
                    in_shutdown=row.in_shutdown,
                )
    return cfg


def replies(data: bytes) -> list[bytes]:
    """Whole replies; every line must be well-formed."""
    out: list[bytes] = []
    current: list[bytes] = []
    assert data == b"" or data.endswith(b"\r\n"), data
    for line in data.split(b"\r\n")[:-1]:
        assert re.fullmatch(rb"[2-5][0-9][0-9](?:[ -][^\r\n]*)?", line), line
        assert len(line) + 2 <= 512, line
        current.append(line)
        if line[3:4] != b"-":
            out.append(b"\n".join(current))
            current = []
    assert not current, current
    return out


def send(conn: ServerConnection, data: bytes, seen: list[Any]) -> list[bytes]:
    """Feed C{data}, accept whatever the application is asked; the replies."""
    conn.receive_data(data)
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA or ev is CLOSED:
            break
        assert ev is not PAUSED, "paused with no answer due"
        seen.append(ev)
        if isinstance(ev, MailFrom):
            conn.mail_from_result()
        elif isinstance(ev, RcptTo):
            conn.rcpt_to_result()
        elif isinstance(ev, Auth):
            conn.auth_result(None)
        elif isinstance(ev, DataEnd):
            conn.data_result([None])  # BDAT 0 LAST
        else:
            assert isinstance(ev, DataStart), ev  # BDAT: its octets follow
    return replies(conn.data_to_send())


def session(flags: int, fast: bool, prefix: bytes, line: bytes) -> tuple[Any, ...]:
    s = Session(
        id="fuzz",
        remote_address="192.0.2.1",
        remote_port=40000,
        client_hostname="client.example",
    )
    conn = ServerConnection(config(flags, fast), s)
    conn.set_proxy_trust(True, True)
    conn.greet()
    conn.data_to_send()
    seen: list[Any] = []
    setup = b"EHLO client.example\r\n"
    if prefix in (b"RCPT TO:", b"BDAT "):
        setup += b"MAIL FROM:<sender@example.org>\r\n"
    if prefix == b"BDAT ":
        setup += b"RCPT TO:<rcpt@example.com>\r\n"
    assert all(r.startswith(b"250") for r in send(conn, setup, seen))
    seen.clear()
    got = send(conn, line + b"\r\n", seen)
    if got and got[-1].startswith(b"334"):
        got += send(conn, b"*\r\n", seen)
        assert len(got) == 2, got
    elif not (prefix == b"BDAT " and not conn.closed):
        assert len(got) == 1, (line, got)
    if not conn.closed and prefix != b"BDAT ":
        # What the line left behind: a recipient (a MAIL line's sender is
        # checked by it), and a probe.
        after = b"RCPT TO:<other@example.com>\r\nNOOP\r\n"
        probe = send(conn, after, seen)
        assert probe[-1].startswith(b"250") or conn.closed, probe
        got += probe
    env = s.envelope
    events = [(type(ev).__name__, getattr(ev, "address", None)) for ev in seen]
    return got, events, env.mail_from, env.rcpt_to, env.body_type, env.smtp_utf8, env.dsn


def check_parsers(text: str, lenient: bool) -> None:
    """The path and parameter parsers: a result or their own exception."""
    assert xtext_decode(xtext_encode(text)) == text
    assert is_xtext(xtext_encode(text))
    xtext_decode(text)
    is_xtext(text)
    for arg in (text, text.lstrip(" ")):
        try:
            path, rest = split_path(arg)
        except AddressError:
            continue
        try:
            args, raw = parse_params(rest)
        except ParamError as e:
            assert e.kind in ("syntax", "duplicate", "novalue"), e.kind
        else:
            for key, value in args.items():
                assert key == key.upper() and value is not False, (key, value)
                if isinstance(value, str):
                    assert not _CONTROLS.search(value), value
                    assert raw[key], key
        for lenient_mode in (False, lenient):
            try:
                mailbox = check_mailbox(path, lenient=lenient_mode)
            except AddressError:
                continue
            assert "@" in mailbox, mailbox
            assert not _CONTROLS.search(mailbox), mailbox
            if not lenient_mode:
                assert len(mailbox.encode("utf-8")) <= 254, mailbox
                assert check_mailbox(mailbox) == mailbox, "not accepted again unchanged"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    flags = data[0]
    prefix = VERBS[(flags & 15) % len(VERBS)]
    arg = data[1:].split(b"\n", 1)[0]
    if arg.endswith(b"\r"):
        arg = arg[:-1]
    line = prefix + arg
    fast = session(flags, True, prefix, line)
    if prefix in (b"MAIL FROM:", b"RCPT TO:"):
        slow = session(flags, False, prefix, line)
        assert fast == slow, f"fast path {fast!r}\ngeneral parser {slow!r}"
    try:
        text = arg.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_parsers(text, bool(flags & LENIENT))


def seeds() -> list[bytes]:
    mail = [
        b"<a@example.com>",
        b" <a@example.com> SIZE=1000 BODY=8BITMIME",
        b"<first.last+tag@sub.example.com> BODY=7BIT",
        b'<"quoted local"@example.com> SMTPUTF8',
        b"<> RET=HDRS ENVID=QQ+2B314159",
        b"<@relay.example:a@[IPv6:2001:db8::1]> AUTH=<>",
        b"<a@[192.0.2.1]> BODY=BINARYMIME SIZE=99999999999",
        b"<us\xc3\xa9r@exampl\xc3\xa9.com> SMTPUTF8",
        b"<a@example.com> REQUIRETLS",
    ]
    rcpt = [
        b"<b@example.com>",
        b"<postmaster>",
        b"<b@example.com> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+40example.com",
        b"<b@example.com> NOTIFY=NEVER",
        b"<a@" + b"x" * 63 + b".example>",
    ]
    others = [
        (2, b"client.example"),
        (3, b"[192.0.2.1]"),
        (4, b"someone"),
        (5, b"PLAIN AHVzZXIAcGFzcw=="),
        (5, b"LOGIN"),
        (6, b"5 LAST"),
        (6, b"0"),
        (7, b"ADDR=192.0.2.9 NAME=relay.example PORT=25 LOGIN=u"),
        (7, b"ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE]"),
        (8, b"ADDR=192.0.2.9 HELO=h.example PROTO=ESMTP SOURCE=REMOTE IDENT=x"),
        (9, b"QUIT"),
        (9, b"GET / HTTP/1.1"),
    ]
    out = [bytes([0]) + m for m in mail] + [bytes([1]) + r for r in rcpt]
    out += [bytes([LENIENT | 0]) + b"<user.@example.com>", bytes([UNLIMITED | 1]) + rcpt[0]]
    out += [bytes([verb]) + arg for verb, arg in others]
    return out


DICTIONARY = [
    b"<",
    b">",
    b"@",
    b"[IPv6:",
    b"::ffff:",
    b'"',
    b"\\",
    b"postmaster",
    b" SIZE=",
    b" BODY=",
    b"8BITMIME",
    b"BINARYMIME",
    b" SMTPUTF8",
    b" REQUIRETLS",
    b" RET=",
    b" ENVID=",
    b" NOTIFY=",
    b"SUCCESS,FAILURE,DELAY",
    b" ORCPT=rfc822;",
    b" AUTH=",
    b"+2B",
    b"ADDR=",
    b"NAME=",
    b"PORT=",
    b"[UNAVAILABLE]",
    b" LAST",
]


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
