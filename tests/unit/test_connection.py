"""
The sans-IO SMTP/LMTP engine (C{smtpsession._core.connection}) without
sockets: command sequencing, every reply of reference §4.3 that the core
decides, parameters, enhanced status codes, limits, LMTP, pipelining and
the deviations from smtp-server listed in docs/conformance.rst.

The table-driven part mirrors smtp-server's C{test/protocol-test.js}:
(description, options, command lines, expected reply codes).
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import pytest

from smtpsession._core.connection import MAX_PENDING
from smtpsession._core.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    DataAborted,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
)
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Address, EnvelopeDSN, RecipientDSN
from tests.unit.coreclient import CoreClient, codes, split_replies

ESC = re.compile(r"\d{3}[ -][245]\.\d{1,3}\.\d{1,3} ")

# --------------------------------------------------------------------------
# Table-driven scenarios (smtp-server protocol-test.js, adapted)

ENHANCED: dict[str, Any] = {}
PLAIN: dict[str, Any] = {"hide_enhancedstatuscodes": True}

SCENARIOS: list[tuple[str, dict[str, Any], list[str], list[int]]] = [
    # Command sequencing
    ("MAIL before EHLO", {}, ["MAIL FROM:<a@example.com>"], [503]),
    ("RCPT before EHLO", {}, ["RCPT TO:<a@example.com>"], [503]),
    ("DATA before EHLO", {}, ["DATA"], [503]),
    ("RCPT before MAIL", {}, ["EHLO c", "RCPT TO:<a@example.com>"], [250, 503]),
    ("DATA before MAIL", {}, ["EHLO c", "DATA"], [250, 503]),
    ("DATA before RCPT", {}, ["EHLO c", "MAIL FROM:<a@example.com>", "DATA"], [250, 250, 503]),
    ("nested MAIL", {}, ["EHLO c", "MAIL FROM:<a@example.com>", "MAIL FROM:<b@example.com>"],
     [250, 250, 503]),
    ("RSET ends the transaction", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RSET", "RCPT TO:<b@example.com>"], [250, 250, 250, 503]),
    ("EHLO ends the transaction", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "EHLO c", "RCPT TO:<b@example.com>"], [250, 250, 250, 503]),
    ("HELO ends the transaction", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "HELO c", "RCPT TO:<b@example.com>"], [250, 250, 250, 503]),
    ("RSET keeps the client identity", {},
     ["EHLO c", "RSET", "MAIL FROM:<a@example.com>"], [250, 250, 250]),
    ("commands are case-insensitive", {},
     ["ehlo c", "mail from:<a@example.com>", "rcpt to:<b@example.com>", "rset", "noop"],
     [250, 250, 250, 250, 250]),
    # Basic commands
    ("HELO with hostname", {}, ["HELO c.example"], [250]),
    ("HELO without hostname", {}, ["HELO"], [501]),
    ("HELO with extra arguments", {}, ["HELO a b"], [501]),
    ("EHLO without hostname", {}, ["EHLO"], [501]),
    ("EHLO with extra arguments", {}, ["EHLO a b"], [501]),
    ("EHLO with an over-long argument", {}, ["EHLO " + "a" * 301], [501]),
    ("EHLO with a control character", {}, ["EHLO a\x01b"], [501]),
    ("NOOP before EHLO", {}, ["NOOP"], [250]),
    ("NOOP with arguments", {}, ["NOOP anything at all"], [250]),
    ("HELP", {}, ["HELP"], [214]),
    ("VRFY", {}, ["VRFY someone"], [252]),
    ("VRFY without argument", {}, ["VRFY"], [501]),
    ("EXPN is not implemented", {}, ["EXPN list"], [502]),
    ("TURN, ETRN, ... are not implemented", {}, ["TURN", "ETRN x", "ATRN", "BURL x", "SAML"],
     [502] * 5),
    ("unknown command", {}, ["FOO"], [500]),
    ("empty line", {}, [""], [500]),
    ("blank line", {}, ["   "], [500]),
    ("disabled VRFY", {"disabled_commands": ["VRFY"]}, ["VRFY x"], [500]),
    ("disabled EXPN stays 500", {"disabled_commands": ["EXPN"]}, ["EXPN x"], [500]),
    ("LHLO in SMTP mode", {}, ["LHLO c"], [500]),
    ("no easter eggs", {}, ["WIZ x", "SHELL", "KILL"], [500, 500, 500]),
    ("NUL in a command", {}, ["NO\x00OP"], [500]),
    ("STARTTLS with parameters", {"tls_available": True}, ["EHLO c", "STARTTLS now"], [250, 501]),
    ("STARTTLS without a certificate", {}, ["EHLO c", "STARTTLS"], [250, 500]),
    ("QUIT", {}, ["QUIT"], [221]),
    ("QUIT stops processing", {}, ["QUIT", "NOOP"], [221]),
    # Addresses
    ("null sender", {}, ["EHLO c", "MAIL FROM:<>"], [250, 250]),
    ("postmaster recipient", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<postmaster>", "RCPT TO:<PostMaster>"],
     [250, 250, 250, 250]),
    ("postmaster sender needs a domain", {}, ["EHLO c", "MAIL FROM:<postmaster>"], [250, 501]),
    ("domainless sender", {}, ["EHLO c", "MAIL FROM:<user>"], [250, 501]),
    ("domainless recipient", {}, ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<user>"],
     [250, 250, 501]),
    ("null recipient", {}, ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<>"], [250, 250, 501]),
    ("source route", {}, ["EHLO c", "MAIL FROM:<@relay.example:a@example.com>"], [250, 250]),
    ("quoted local part", {}, ["EHLO c", 'MAIL FROM:<"sender"@example.com>'], [250, 250]),
    ("quoted local part with a space", {}, ["EHLO c", 'MAIL FROM:<"john doe"@example.com>'],
     [250, 250]),
    ("missing brackets", {}, ["EHLO c", "MAIL FROM:a@example.com"], [250, 501]),
    ("space after the colon", {}, ["EHLO c", "MAIL FROM: <a@example.com>"], [250, 250]),
    ("MAIL without FROM:", {}, ["EHLO c", "MAIL <a@example.com>"], [250, 501]),
    ("RCPT without TO:", {}, ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT <b@example.com>"],
     [250, 250, 501]),
    ("IP literal recipient", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<test@[192.168.1.123]>"], [250, 250, 250]),
    ("UTF-8 addresses with SMTPUTF8", {},
     ["EHLO c", "MAIL FROM:<üser@exämple.com> SMTPUTF8", "RCPT TO:<δ@example.com>",
      "RCPT TO:<a@EXÄMPLE.com>", "RCPT TO:<b@xn--exmple-cua.com>", "RCPT TO:<c@xn--exmple-cua.ü.de>"],
     [250, 250, 250, 250, 250, 250]),
    ("UTF-8 sender without SMTPUTF8: 553 (RFC 6531)", {}, ["EHLO c", "MAIL FROM:<üser@example.com>"],
     [250, 553]),
    ("UTF-8 domain without SMTPUTF8: 553", {}, ["EHLO c", "MAIL FROM:<user@exämple.com>"],
     [250, 553]),
    ("UTF-8 recipient in a transaction without SMTPUTF8: 553", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<δ@example.com>", "RCPT TO:<b@example.com>"],
     [250, 250, 553, 250]),
    ("UTF-8 recipient before MAIL is still out of order", {}, ["EHLO c", "RCPT TO:<δ@example.com>"],
     [250, 503]),
    ("A-label domains need no SMTPUTF8", {},
     ["EHLO c", "MAIL FROM:<a@xn--exmple-cua.com>", "RCPT TO:<b@xn--mnchen-3ya.de>"], [250, 250, 250]),
    ("invalid IDNA domains are bad addresses", {},
     ["EHLO c", "MAIL FROM:<a@☃.net> SMTPUTF8", "MAIL FROM:<a@\u0301b.example> SMTPUTF8",
      "MAIL FROM:<a@example.com> SMTPUTF8", "RCPT TO:<b@xn--zz.ü.de>", "RCPT TO:<b@ü.de>"],
     [250, 501, 501, 250, 501, 250]),
    ("non-compliant sender refused by default", {}, ["EHLO c", "MAIL FROM:<user.@example.com>"],
     [250, 501]),
    ("non-compliant sender accepted when lenient", {"lenient_address_parsing": True},
     ["EHLO c", "MAIL FROM:<user.@example.com>"], [250, 250]),
    # Parameters
    ("SIZE=100", {}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE=100"], [250, 250]),
    ("SIZE=abc", {}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE=abc"], [250, 501]),
    ("SIZE=-1", {}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE=-1"], [250, 501]),
    ("SIZE over the limit", {"size": 1024}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE=1025"],
     [250, 552]),
    ("SIZE at the limit", {"size": 1024}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE=1024"],
     [250, 250]),
    ("SIZE over a hidden limit is not checked", {"size": 1024, "hide_size": True},
     ["EHLO c", "MAIL FROM:<a@example.com> SIZE=999999"], [250, 250]),
    ("duplicate RET", {}, ["EHLO c", "MAIL FROM:<a@example.com> RET=FULL RET=HDRS"], [250, 501]),
    ("duplicate NOTIFY", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY=SUCCESS NOTIFY=DELAY"],
     [250, 250, 501]),
    ("valid ORCPT", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> ORCPT=rfc822;b@example.com"],
     [250, 250, 250]),
    ("ORCPT without type", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> ORCPT=b@example.com"],
     [250, 250, 501]),
    ("valueless BODY", {}, ["EHLO c", "MAIL FROM:<a@example.com> BODY"], [250, 501]),
    ("empty BODY", {}, ["EHLO c", "MAIL FROM:<a@example.com> BODY="], [250, 501]),
    ("valueless RET", {}, ["EHLO c", "MAIL FROM:<a@example.com> RET"], [250, 501]),
    ("valueless ENVID", {}, ["EHLO c", "MAIL FROM:<a@example.com> ENVID"], [250, 501]),
    ("valueless SIZE", {}, ["EHLO c", "MAIL FROM:<a@example.com> SIZE"], [250, 501]),
    ("valueless NOTIFY", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY"], [250, 250, 501]),
    ("valueless ORCPT", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> ORCPT"], [250, 250, 501]),
    ("valueless SMTPUTF8 is the only form", {},
     ["EHLO c", "MAIL FROM:<a@example.com> SMTPUTF8", "RSET", "MAIL FROM:<a@example.com> SMTPUTF8=x"],
     [250, 250, 250, 501]),
    ("session continues after parameter errors", {},
     ["EHLO c", "MAIL FROM:<a@example.com> BODY", "MAIL FROM:<a@example.com>",
      "RCPT TO:<b@example.com> ORCPT", "RCPT TO:<b@example.com>"], [250, 501, 250, 501, 250]),
    ("BODY=8BITMIME, 7BIT, BINARYMIME", {},
     ["EHLO c", "MAIL FROM:<a@example.com> BODY=8BITMIME", "RSET", "MAIL FROM:<a@example.com> BODY=7bit",
      "RSET", "MAIL FROM:<a@example.com> BODY=BINARYMIME"], [250, 250, 250, 250, 250, 250]),
    ("invalid BODY", {}, ["EHLO c", "MAIL FROM:<a@example.com> BODY=9BIT"], [250, 501]),
    ("BINARYMIME refused without CHUNKING", {"hide_chunking": True},
     ["EHLO c", "MAIL FROM:<a@example.com> BODY=BINARYMIME"], [250, 501]),
    ("REQUIRETLS on cleartext", {}, ["EHLO c", "MAIL FROM:<a@example.com> REQUIRETLS"], [250, 530]),
    ("unknown parameters pass through", {},
     ["EHLO c", "MAIL FROM:<a@example.com> FOO=BAR AUTH=<>", "RCPT TO:<b@example.com> X-Y=z"],
     [250, 250, 250]),
    ("malformed AUTH= parameter", {}, ["EHLO c", "MAIL FROM:<a@example.com> AUTH=a=b"], [250, 501]),
    ("control character hidden in xtext", {}, ["EHLO c", "MAIL FROM:<a@example.com> X=a+0Db"],
     [250, 501]),
    # DSN
    ("RET=FULL", {}, ["EHLO c", "MAIL FROM:<a@example.com> RET=FULL"], [250, 250]),
    ("invalid RET", {}, ["EHLO c", "MAIL FROM:<a@example.com> RET=SOME"], [250, 501]),
    ("invalid RET not checked when DSN is hidden", {"hide_dsn": True},
     ["EHLO c", "MAIL FROM:<a@example.com> RET=SOME"], [250, 250]),
    ("ENVID", {}, ["EHLO c", "MAIL FROM:<a@example.com> ENVID=QQ314159"], [250, 250]),
    ("ENVID not xtext", {}, ["EHLO c", "MAIL FROM:<a@example.com> ENVID=a+2b"], [250, 501]),
    ("NOTIFY=SUCCESS", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY=SUCCESS"],
     [250, 250, 250]),
    ("invalid NOTIFY", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY=SOMETIMES"],
     [250, 250, 501]),
    ("NOTIFY=NEVER combined", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> NOTIFY=NEVER,DELAY"],
     [250, 250, 501]),
    ("LMTP: EHLO refused", {"lmtp": True}, ["EHLO c"], [500]),
    ("LMTP: HELO refused", {"lmtp": True}, ["HELO c"], [500]),
    ("LMTP: LHLO opens the session", {"lmtp": True}, ["LHLO c", "MAIL FROM:<a@example.com>"],
     [250, 250]),
    ("LMTP: MAIL before LHLO", {"lmtp": True}, ["MAIL FROM:<a@example.com>"], [503]),
    ("LMTP: LHLO without argument", {"lmtp": True}, ["LHLO"], [501]),
    # RRVS, DELIVERBY, MT-PRIORITY: off unless enabled (555), then validated (501)
    ("BY while DELIVERBY is off", {}, ["EHLO c", "MAIL FROM:<a@example.com> BY=120;R"], [250, 555]),
    ("MT-PRIORITY while off", {}, ["EHLO c", "MAIL FROM:<a@example.com> MT-PRIORITY=3"], [250, 555]),
    ("RRVS while off", {},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00Z"],
     [250, 250, 555]),
    ("valid BY values", {"enable": ["DELIVERBY"]},
     ["EHLO c", "MAIL FROM:<a@example.com> BY=120;R", "RSET", "MAIL FROM:<a@example.com> BY=-60;N",
      "RSET", "MAIL FROM:<a@example.com> BY=+999999999;rt", "RSET", "MAIL FROM:<a@example.com> BY=0;NT"],
     [250, 250, 250, 250, 250, 250, 250, 250]),
    ("bad BY values", {"enable": ["DELIVERBY"]},
     ["EHLO c", "MAIL FROM:<a@example.com> BY=120", "MAIL FROM:<a@example.com> BY=120;X",
      "MAIL FROM:<a@example.com> BY=1000000000;R", "MAIL FROM:<a@example.com> BY",
      "MAIL FROM:<a@example.com> BY=;R", "MAIL FROM:<a@example.com> BY=12;RTT",
      "MAIL FROM:<a@example.com> BY=0;R", "MAIL FROM:<a@example.com> BY=-5;R",
      "MAIL FROM:<a@example.com> BY=5;R BY=6;R"],
     [250, 501, 501, 501, 501, 501, 501, 501, 501, 501]),
    ("valid MT-PRIORITY values", {"enable": ["MT-PRIORITY"]},
     ["EHLO c", "MAIL FROM:<a@example.com> MT-PRIORITY=-9", "RSET", "MAIL FROM:<a@example.com> mt-priority=+9",
      "RSET", "MAIL FROM:<a@example.com> MT-PRIORITY=0"], [250, 250, 250, 250, 250, 250]),
    ("bad MT-PRIORITY values", {"enable": ["MT-PRIORITY"]},
     ["EHLO c", "MAIL FROM:<a@example.com> MT-PRIORITY=10", "MAIL FROM:<a@example.com> MT-PRIORITY=-10",
      "MAIL FROM:<a@example.com> MT-PRIORITY=high", "MAIL FROM:<a@example.com> MT-PRIORITY",
      "MAIL FROM:<a@example.com> MT-PRIORITY=1.5"], [250, 501, 501, 501, 501, 501]),
    ("valid RRVS values", {"enable": ["RRVS"]},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00Z",
      "RCPT TO:<c@example.com> RRVS=2014-04-03T23:01:00.25+02:00;C",
      "RCPT TO:<d@example.com> rrvs=2016-12-31t23:59:60-08:00;r"], [250, 250, 250, 250, 250]),
    ("bad RRVS values", {"enable": ["RRVS"]},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> RRVS=2014-04-03",
      "RCPT TO:<b@example.com> RRVS=2014-02-30T00:00:00Z", "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00",
      "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00Z;X", "RCPT TO:<b@example.com> RRVS",
      "RCPT TO:<b@example.com> RRVS=2014-04-03T25:01:00Z", "RCPT TO:<b@example.com> RRVS=yesterday"],
     [250, 250, 501, 501, 501, 501, 501, 501, 501]),
    # Limits
    ("maxRecipients", {"max_recipients": 2},
     ["EHLO c", "MAIL FROM:<a@example.com>", "RCPT TO:<1@example.com>", "RCPT TO:<2@example.com>",
      "RCPT TO:<3@example.com>", "RCPT TO:<2@EXAMPLE.com>"], [250, 250, 250, 250, 452, 250]),
]


@pytest.mark.parametrize(
    ("options", "lines", "expected"),
    [pytest.param(o, li, e, id=d) for d, o, li, e in SCENARIOS],
)
def test_scenario(options: dict[str, Any], lines: list[str], expected: list[int]) -> None:
    """Each line (sent one at a time) gets exactly the listed replies."""
    c = CoreClient(**options)
    got: list[str] = []
    for line in lines:
        got += c.lines(line)
    assert codes(got) == expected, got


@pytest.mark.parametrize(
    ("options", "lines", "expected"),
    [pytest.param(o, li, e, id=d) for d, o, li, e in SCENARIOS],
)
def test_scenario_pipelined(options: dict[str, Any], lines: list[str], expected: list[int]) -> None:
    """The same lines in one write get the same replies, in order (PIPELINING)."""
    c = CoreClient(**options)
    assert codes(c.lines(*lines)) == expected


@pytest.mark.parametrize(
    ("options", "lines"),
    [
        pytest.param(o, li, id=d)
        for d, o, li, e in SCENARIOS
        if "EHLO c" in li and not o and not any(x.startswith("HELO") for x in li)
    ],
)
def test_scenario_enhanced_codes(options: dict[str, Any], lines: list[str]) -> None:
    """After EHLO, every reply but EHLO's and 354 carries an RFC 3463 code."""
    c = CoreClient(**options)
    replies = c.lines(*lines)
    for reply in replies:
        if reply.startswith("250-") or reply.startswith("354"):
            continue
        for line in reply.split("\n"):
            assert ESC.match(line), reply


# --------------------------------------------------------------------------
# Greeting, connection-level replies


def test_greeting() -> None:
    """220 NAME ESMTP [banner], never with an enhanced code; LMTP says LMTP."""
    assert CoreClient().greeting == "220 mx.example ESMTP\r\n"
    assert CoreClient(banner="ready").greeting == "220 mx.example ESMTP ready\r\n"
    assert CoreClient(lmtp=True).greeting == "220 mx.example LMTP\r\n"


def test_early_talker() -> None:
    """Input before the greeting: 421 NAME You talk too soon, then close."""
    c = CoreClient(greet=False)
    c.conn.receive_data(b"EHLO c\r\n")
    assert c.conn.next_event() is CLOSED
    assert c.conn.data_to_send() == b"421 mx.example You talk too soon\r\n"
    c.conn.greet()
    assert c.conn.data_to_send() == b""


def test_refuse() -> None:
    """refuse() replaces the greeting, records the error and closes."""
    c = CoreClient(greet=False)
    c.conn.refuse(554, "Go away")
    assert c.conn.data_to_send() == b"554 Go away\r\n"
    assert c.closed and c.session.error == "554 Go away"
    assert c.conn.next_event() is CLOSED


def test_http_request_refused() -> None:
    """An HTTP request line gets 421 and the connection closes."""
    c = CoreClient()
    assert c.lines("GET / HTTP/1.1", "Host: x") == ["421 HTTP requests not allowed"]
    assert c.closed


def test_quit_closes_and_ignores_the_rest() -> None:
    """After QUIT's 221 nothing else is parsed, and the core reports CLOSED."""
    c = CoreClient()
    c.ehlo()
    assert c.lines("QUIT", "NOOP", "MAIL FROM:<a@example.com>") == ["221 2.0.0 Bye"]
    assert c.closed
    assert c.conn.next_event() is CLOSED
    c.conn.receive_data(b"NOOP\r\n")
    assert c.conn.next_event() is CLOSED
    assert c.conn.data_to_send() == b""


def test_timeout() -> None:
    """timeout(): 421 Timeout, then close; nothing after."""
    c = CoreClient()
    c.ehlo()
    c.conn.timeout()
    assert split_replies(c.conn.data_to_send()) == ["421 4.4.2 Timeout - closing connection"]
    assert c.closed
    c.conn.timeout()
    assert c.conn.data_to_send() == b""


def test_session_error_is_the_last_error_reply() -> None:
    """session.error holds the last 4xx/5xx reply line sent; successes leave it."""
    c = CoreClient()
    c.ehlo()
    c.lines("FOO")
    assert c.session.error == "500 5.5.2 Error: command not recognized"
    c.lines("NOOP")
    assert c.session.error == "500 5.5.2 Error: command not recognized"
    c.lines("MAIL FROM:<bad>")
    assert c.session.error == "501 5.1.7 Error: Bad sender address syntax"


# --------------------------------------------------------------------------
# HELO/EHLO


def test_ehlo_reply_and_default_capabilities() -> None:
    """EHLO: greeting line then the capabilities in smtp-server's order, ours added."""
    c = CoreClient()
    [reply] = c.lines("EHLO Client.Example")
    lines = reply.split("\n")
    assert lines[0] == "250-mx.example Nice to meet you, [192.0.2.1]"
    assert [line[4:] for line in lines[1:]] == [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "SIZE 10485760",  # 10 MiB by default, as Postfix
        "CHUNKING",
        "BINARYMIME",
        "LIMITS RCPTMAX=1000",  # RFC 9422, from max_recipients (1000 by default)
    ]
    assert c.session.host_name_appears_as == "client.example"
    assert c.session.opening_command == "EHLO"


def test_capabilities_with_everything_on() -> None:
    """All opt-in capabilities appear, in order: ..., AUTH, STARTTLS, SIZE, CHUNKING, LIMITS, XCLIENT, XFORWARD."""
    c = CoreClient(
        tls_available=True,
        auth_enabled=True,
        allow_insecure_auth=True,
        size=1024,
        use_xclient=True,
        use_xforward=True,
        auth_methods=["PLAIN", "LOGIN", "CRAM-MD5"],
        max_transactions=20,
    )
    c.conn.set_proxy_trust(True, True)
    assert c.ehlo() == [
        "PIPELINING",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "DSN",
        "AUTH PLAIN LOGIN CRAM-MD5",
        "STARTTLS",
        "SIZE 1024",
        "CHUNKING",
        "BINARYMIME",
        "LIMITS RCPTMAX=1000 MAILMAX=20",
        "XCLIENT NAME ADDR PORT PROTO HELO LOGIN",
        "XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE",
    ]


@pytest.mark.parametrize(
    ("options", "gone"),
    [
        ({"hide_pipelining": True}, {"PIPELINING"}),
        ({"hide_8bitmime": True}, {"8BITMIME", "BINARYMIME"}),
        ({"hide_smtputf8": True}, {"SMTPUTF8"}),
        ({"hide_enhancedstatuscodes": True}, {"ENHANCEDSTATUSCODES"}),
        ({"hide_dsn": True}, {"DSN"}),
        ({"hide_chunking": True}, {"CHUNKING", "BINARYMIME"}),
        ({"disabled_commands": ["BDAT"]}, {"CHUNKING", "BINARYMIME"}),
        ({"hide_limits": True}, {"LIMITS RCPTMAX=1000"}),
    ],
)
def test_hidden_capabilities(options: dict[str, Any], gone: set[str]) -> None:
    """Each hide_* option removes its keyword and nothing else."""
    default = set(CoreClient().ehlo())
    assert set(CoreClient(**options).ehlo()) == default - gone


@pytest.mark.parametrize(
    ("options", "limits"),
    [
        ({}, ["LIMITS RCPTMAX=1000"]),
        ({"max_recipients": 50, "max_transactions": 3}, ["LIMITS RCPTMAX=50 MAILMAX=3"]),
        ({"max_recipients": 0, "max_transactions": 7}, ["LIMITS MAILMAX=7"]),
        ({"max_recipients": 0}, []),  # no limit set: nothing to advertise
        ({"max_transactions": 3, "hide_limits": True}, []),
        ({"lmtp": True, "max_recipients": 10}, ["LIMITS RCPTMAX=10"]),
    ],
)
def test_limits_advertised_from_the_options(options: dict[str, Any], limits: list[str]) -> None:
    """RFC 9422: LIMITS with RCPTMAX (max_recipients) and MAILMAX (max_transactions) when set."""
    c = CoreClient(**options)
    [reply] = c.lines("LHLO c" if options.get("lmtp") else "EHLO c")
    assert [k[4:] for k in reply.split("\n")[1:] if k[4:].startswith("LIMITS")] == limits


def test_advertised_limits_are_the_enforced_ones() -> None:
    """RCPTMAX=2 means a third recipient gets 452; MAILMAX=1, a second MAIL gets 421."""
    c = CoreClient(max_recipients=2, max_transactions=1)
    assert "LIMITS RCPTMAX=2 MAILMAX=1" in c.ehlo()
    replies = c.transaction(rcpts=("1@example.com", "2@example.com", "3@example.com"))
    assert codes(replies) == [250, 250, 250, 452, 354, 250]
    assert codes(c.lines("MAIL FROM:<a@example.com>")) == [421]


def test_size_advertised_bare_when_hidden() -> None:
    """hide_size advertises SIZE without a number."""
    assert "SIZE" in CoreClient(size=5000, hide_size=True).ehlo()
    assert "SIZE 5000" in CoreClient(size=5000).ehlo()
    assert not any(k.startswith("SIZE") for k in CoreClient(size=0).ehlo())


def test_requiretls_advertised_only_on_tls_when_not_hidden() -> None:
    """REQUIRETLS: hidden by default, and only ever on secure sessions."""
    assert "REQUIRETLS" not in CoreClient(secure=True).ehlo()
    assert "REQUIRETLS" in CoreClient(secure=True, hide_requiretls=False).ehlo()
    assert "REQUIRETLS" not in CoreClient(hide_requiretls=False).ehlo()


def test_starttls_advertised_only_when_available() -> None:
    """STARTTLS needs a certificate and a transport that can start TLS; not once secure."""
    assert "STARTTLS" not in CoreClient().ehlo()
    assert "STARTTLS" in CoreClient(tls_available=True).ehlo()
    assert "STARTTLS" not in CoreClient(tls_available=True, hide_starttls=True).ehlo()
    assert "STARTTLS" not in CoreClient(tls_available=True, secure=True).ehlo()


def test_auth_advertised_only_where_allowed() -> None:
    """AUTH needs a checker, TLS (or allow_insecure_auth), and no user yet."""
    assert not any(k.startswith("AUTH") for k in CoreClient(auth_enabled=True).ehlo())
    assert "AUTH PLAIN LOGIN" in CoreClient(auth_enabled=True, secure=True).ehlo()
    assert "AUTH PLAIN LOGIN" in CoreClient(auth_enabled=True, allow_insecure_auth=True).ehlo()
    assert not any(
        k.startswith("AUTH")
        for k in CoreClient(auth_enabled=True, secure=True, disabled_commands=["AUTH"]).ehlo()
    )
    c = CoreClient(auth_enabled=True, secure=True)
    c.auth = lambda request: "alice"
    c.ehlo()
    assert codes(c.lines("AUTH PLAIN AGFsaWNlAHNlY3JldA==")) == [235]
    assert not any(k.startswith("AUTH") for k in c.ehlo())


def test_helo_response_template() -> None:
    """helo_response takes {name} and {client_hostname} (or smtp-server's %s)."""
    c = CoreClient(helo_response="{name} hi {client_hostname}")
    assert c.lines("HELO x") == ["250 mx.example hi [192.0.2.1]"]
    c = CoreClient(helo_response="%s greets %s%s")
    assert c.lines("HELO x") == ["250 mx.example greets [192.0.2.1]"]
    c = CoreClient(helo_response="{bogus}")
    assert c.lines("HELO x") == ["250 mx.example Nice to meet you, [192.0.2.1]"]


def test_opening_command_set_only_on_success() -> None:
    """A rejected HELO/EHLO does not record itself (smtp-server bug 14)."""
    c = CoreClient()
    c.lines("EHLO")
    assert c.session.opening_command is None
    c.lines("HELO a.example")
    c.lines("EHLO")
    assert c.session.opening_command == "HELO"
    assert c.session.host_name_appears_as == "a.example"


# --------------------------------------------------------------------------
# Enhanced status codes (deviation 1)


def test_no_enhanced_codes_before_ehlo_or_after_helo() -> None:
    """RFC 2034: enhanced codes only for clients that said EHLO/LHLO."""
    c = CoreClient()
    assert c.lines("NOOP", "MAIL FROM:<a@example.com>", "FOO") == [
        "250 OK",
        "503 Error: send HELO/EHLO first",
        "500 Error: command not recognized",
    ]
    c.lines("HELO c")
    assert c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<x>") == [
        "250 Accepted",
        "501 Error: Bad recipient address syntax",
    ]
    c.lines("EHLO c")
    assert c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<x>") == [
        "250 2.1.0 Accepted",
        "501 5.1.3 Error: Bad recipient address syntax",
    ]
    c.lines("HELO c")
    assert c.lines("NOOP") == ["250 OK"]


def test_enhanced_codes_can_be_turned_off() -> None:
    """hide_enhancedstatuscodes: neither advertised nor sent."""
    c = CoreClient(hide_enhancedstatuscodes=True)
    c.ehlo()
    assert c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "FOO") == [
        "250 Accepted",
        "250 Accepted",
        "500 Error: command not recognized",
    ]


def test_enhanced_code_values() -> None:
    """The codes smtp-server's tests check: 5.1.7, 2.1.0, 5.1.3, 2.1.5, 5.3.4, 2.6.0, 2.0.0."""
    c = CoreClient(size=100)
    c.ehlo()
    assert c.lines("MAIL FROM:<bad>", "MAIL FROM:<a@example.com> SIZE=101") == [
        "501 5.1.7 Error: Bad sender address syntax",
        "552 5.3.4 Error: message exceeds fixed maximum message size 100",
    ]
    assert c.transaction(rcpts=["bad", "b@example.com"]) == [
        "250 2.1.0 Accepted",
        "501 5.1.3 Error: Bad recipient address syntax",
        "250 2.1.5 Accepted",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.6.0 OK: message queued",
    ]
    assert c.lines("QUIT") == ["221 2.0.0 Bye"]


@pytest.mark.parametrize(
    ("error", "context", "reply"),
    [
        (SMTPError(550, "No"), "MAIL", "550 5.7.1 No"),
        (SMTPError(550, "No"), "RCPT", "550 5.1.1 No"),
        (SMTPError(550, "No", "5.7.26"), "MAIL", "550 5.7.26 No"),
        (SMTPError(message="Nope"), "MAIL", "550 5.7.1 Nope"),
        (SMTPError(message="Nope"), "RCPT", "550 5.1.1 Nope"),
        (SMTPError(), "RCPT", "550 5.1.1 Error: recipient rejected"),
        (SMTPError(), "MAIL", "550 5.7.1 Error: sender rejected"),
        (SMTPError(451, "Later"), "RCPT", "451 4.3.0 Later"),
        (SMTPError(452, "Full", "4.2.2"), "RCPT", "452 4.2.2 Full"),
        (SMTPError(553, "Line one\nLine two", "5.1.8"), "MAIL",
         "553-5.1.8 Line one\n553 5.1.8 Line two"),
    ],
)
def test_handler_errors_for_mail_and_rcpt(error: SMTPError, context: str, reply: str) -> None:
    """SMTPError from on_mail_from/on_rcpt_to: its code, its ESC or a contextual default."""
    c = CoreClient()
    c.ehlo()
    if context == "MAIL":
        c.mail = lambda a: error
        assert c.lines("MAIL FROM:<a@example.com>") == [reply]
    else:
        c.rcpt = lambda a: error
        assert c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")[1:] == [reply]


def test_handler_error_without_ehlo_has_no_enhanced_code() -> None:
    """A handler's enhanced code is dropped for HELO clients (RFC 2034)."""
    c = CoreClient()
    c.lines("HELO c")
    c.mail = lambda a: SMTPError(550, "No", "5.7.26")
    assert c.lines("MAIL FROM:<a@example.com>") == ["550 No"]


def test_421_from_a_handler_closes() -> None:
    """A handler that answers 421 ends the session, as RFC 5321 §3.8 says 421 does."""
    c = CoreClient()
    c.ehlo()
    c.rcpt = lambda a: SMTPError(421, "Going down")
    assert c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "NOOP")[1:] == [
        "421 4.4.2 Going down"
    ]
    assert c.closed


# --------------------------------------------------------------------------
# Envelope contents


def test_envelope_parameters_recorded() -> None:
    """MAIL/RCPT parameters land in the envelope and addresses, decoded."""
    c = CoreClient(secure=True)
    c.ehlo()
    c.lines(
        "MAIL FROM:<a@example.com> BODY=8bitmime SMTPUTF8 REQUIRETLS RET=hdrs ENVID=a+2Bb X-FOO=bar",
        "RCPT TO:<b@example.com> NOTIFY=success,DELAY ORCPT=rfc822;b+40example.com",
        "RCPT TO:<c@example.com>",
    )
    env = c.session.envelope
    assert env.body_type == "8bitmime"
    assert env.smtp_utf8 is True
    assert env.require_tls is True
    assert env.dsn == EnvelopeDSN("HDRS", "a+b")
    assert env.mail_from == Address(
        "a@example.com",
        {"BODY": "8bitmime", "SMTPUTF8": True, "REQUIRETLS": True, "RET": "HDRS",
         "ENVID": "a+b", "X-FOO": "bar"},
    )
    b, cc = env.rcpt_to
    assert b.dsn == RecipientDSN(("SUCCESS", "DELAY"), "rfc822;b@example.com")
    assert b.args["ORCPT"] == "rfc822;b@example.com"
    assert cc.dsn is None and cc.args == {}


def test_dsn_hidden_means_no_dsn_records() -> None:
    """With hide_dsn, RET/NOTIFY are plain parameters: no DSN objects."""
    c = CoreClient(hide_dsn=True)
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com> RET=FULL", "RCPT TO:<b@example.com> NOTIFY=SUCCESS")
    assert c.session.envelope.dsn == EnvelopeDSN()
    assert c.session.envelope.rcpt_to[0].dsn is None
    assert c.session.envelope.rcpt_to[0].args == {"NOTIFY": "SUCCESS"}


@pytest.mark.parametrize(
    ("options", "hello", "before", "during"),
    [
        ({}, "EHLO c", "ESMTP", "UTF8SMTP"),
        ({"secure": True}, "EHLO c", "ESMTPS", "UTF8SMTPS"),
        ({"lmtp": True}, "LHLO c", "LMTP", "UTF8LMTP"),
        ({"lmtp": True, "secure": True}, "LHLO c", "LMTPS", "UTF8LMTPS"),
    ],
)
def test_smtputf8_transmission_type(
    options: dict[str, Any], hello: str, before: str, during: str
) -> None:
    """RFC 6531 §3.7.3: UTF8SMTP... from an accepted MAIL with SMTPUTF8 to the end of its transaction."""
    c = CoreClient(**options)
    c.lines(hello)
    assert c.session.transmission_type == before
    c.mail = lambda a: SMTPError(550, "No")
    c.lines("MAIL FROM:<ü@example.com> SMTPUTF8")
    assert c.session.transmission_type == before  # a refused MAIL changes nothing
    c.mail = lambda a: None
    c.lines("MAIL FROM:<ü@example.com> SMTPUTF8")
    assert c.session.transmission_type == during
    c.lines("RSET")
    assert c.session.transmission_type == before
    c.lines("MAIL FROM:<ü@example.com> SMTPUTF8", "RCPT TO:<δ@example.com>")
    assert codes(c.send("DATA\r\n.\r\n"))[-1] == 250
    assert c.session.transmission_type == before
    c.lines("MAIL FROM:<a@example.com>")
    assert c.session.transmission_type == before


def test_optional_extensions_advertised_only_when_enabled() -> None:
    """RRVS, DELIVERBY, MT-PRIORITY: absent by default, listed when enabled."""
    default = CoreClient().ehlo()
    assert not {"RRVS", "DELIVERBY", "MT-PRIORITY"} & set(default)
    enabled = CoreClient(enable=["RRVS", "DELIVERBY", "MT-PRIORITY"]).ehlo()
    assert enabled == [*default, "DELIVERBY", "MT-PRIORITY", "RRVS"]
    assert CoreClient(enable="mt-priority").ehlo() == [*default, "MT-PRIORITY"]


def test_optional_extensions_on_the_envelope() -> None:
    """BY → envelope.deliver_by, MT-PRIORITY → envelope.priority, RRVS → Address.rrvs and envelope.rrvs."""
    from datetime import datetime, timedelta, timezone

    from smtpsession.session import RRVS, DeliverBy

    c = CoreClient(enable=["RRVS", "DELIVERBY", "MT-PRIORITY"])
    c.ehlo()
    seen: list[Address] = []
    c.rcpt = lambda a: seen.append(a)  # type: ignore[func-returns-value]
    c.lines(
        "MAIL FROM:<a@example.com> BY=+3600;rT MT-PRIORITY=-4",
        "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00.5+02:00;C",
        "RCPT TO:<c@example.com>",
        "RCPT TO:<d@example.com> RRVS=2015-01-01T00:00:00Z",
    )
    env = c.session.envelope
    assert env.deliver_by == DeliverBy(3600, "R", True)
    assert env.priority == -4
    since = datetime(2014, 4, 3, 23, 1, 0, 500000, timezone(timedelta(hours=2)))
    # The hook already sees the parsed value (to answer 550 5.7.17).
    assert seen[0].rrvs == RRVS(since, "C")
    assert seen[1].rrvs is None
    assert env.rrvs == {
        "b@example.com": RRVS(since, "C"),
        "d@example.com": RRVS(datetime(2015, 1, 1, tzinfo=UTC), None),
    }
    # Raw values stay in args, not xtext-decoded ("+02" is not an escape).
    assert env.rcpt_to[0].args == {"RRVS": "2014-04-03T23:01:00.5+02:00;C"}
    assert env.mail_from is not None
    assert env.mail_from.args == {"BY": "+3600;rT", "MT-PRIORITY": "-4"}
    # Per transaction: the next one starts without them.
    c.lines("RSET", "MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    env = c.session.envelope
    assert (env.deliver_by, env.priority, env.rrvs) == (None, None, {})


def test_refused_mail_or_rcpt_leaves_no_extension_values() -> None:
    """A MAIL or RCPT the handler refuses leaves nothing of BY, MT-PRIORITY or RRVS behind."""
    c = CoreClient(enable=["RRVS", "DELIVERBY", "MT-PRIORITY"])
    c.ehlo()
    c.mail = lambda a: SMTPError(550, "No")
    c.lines("MAIL FROM:<a@example.com> BY=60;N MT-PRIORITY=2")
    assert (c.session.envelope.deliver_by, c.session.envelope.priority) == (None, None)
    c.mail = lambda a: None
    c.rcpt = lambda a: SMTPError(550, "Mailbox owner has changed", "5.7.17")
    replies = c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com> RRVS=2014-04-03T23:01:00Z")
    assert replies[-1].startswith("550 5.7.17")
    assert c.session.envelope.rrvs == {}


def test_rejected_mail_leaves_no_envelope_fields() -> None:
    """A MAIL the handler refuses changes nothing (smtp-server bug 13)."""
    c = CoreClient()
    c.ehlo()
    c.mail = lambda a: SMTPError(550, "No")
    c.lines("MAIL FROM:<a@example.com> BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x")
    env = c.session.envelope
    assert env.mail_from is None
    assert (env.body_type, env.smtp_utf8, env.dsn) == ("7bit", False, EnvelopeDSN())
    # And a refused MAIL opens no transaction: a new MAIL is not "nested".
    c.mail = lambda a: None
    assert codes(c.lines("MAIL FROM:<a@example.com>")) == [250]


def test_false_from_a_hook_refuses() -> None:
    """The core's side of deviation 10: an error answer leaves no recipient behind."""
    c = CoreClient()
    c.ehlo()
    c.rcpt = lambda a: SMTPError()
    c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>")
    assert c.session.envelope.rcpt_to == []


def test_duplicate_recipients_collapse() -> None:
    """The same recipient twice (any case) is kept once, the later one replacing it."""
    c = CoreClient()
    c.ehlo()
    c.lines(
        "MAIL FROM:<a@example.com>",
        "RCPT TO:<b@example.com>",
        "RCPT TO:<c@example.com>",
        "RCPT TO:<B@Example.com> NOTIFY=NEVER",
    )
    assert [(a.address, a.args) for a in c.session.envelope.rcpt_to] == [
        ("B@Example.com", {"NOTIFY": "NEVER"}),
        ("c@example.com", {}),
    ]


def test_source_route_dropped_from_handler_address() -> None:
    """Handlers see the mailbox without its source route."""
    c = CoreClient()
    c.ehlo()
    c.lines("MAIL FROM:<@a.example,@b.example:x@example.com>")
    [ev] = c.events
    assert isinstance(ev, MailFrom) and ev.address.address == "x@example.com"


def test_transaction_counter() -> None:
    """session.transaction is 1-based and advances after each completed message only."""
    c = CoreClient()
    c.ehlo()
    assert c.session.transaction == 1
    c.lines("MAIL FROM:<a@example.com>", "RSET")
    assert c.session.transaction == 1
    c.transaction()
    assert c.session.transaction == 2
    c.data = lambda body, session: [SMTPError(554, "No")]
    c.transaction()
    assert c.session.transaction == 3


# --------------------------------------------------------------------------
# DATA and its results


def test_data_delivers_unstuffed_body() -> None:
    """The handler gets the body dot-unstuffed, with every line ending as sent."""
    c = CoreClient()
    c.ehlo()
    replies = c.transaction(body=b"Subject: x\r\n\r\n..dot\r\n.single\r\nend\r\n")
    assert replies[-1] == "250 2.6.0 OK: message queued"
    assert c.bodies == [b"Subject: x\r\n\r\n.dot\r\nsingle\r\nend\r\n"]
    assert [type(e) for e in c.events] == [MailFrom, RcptTo, DataStart, DataEnd]


def test_data_arguments_ignored() -> None:
    """DATA with arguments still starts the body (as smtp-server does)."""
    c = CoreClient()
    c.ehlo()
    assert codes(c.lines("MAIL FROM:<a@example.com>", "RCPT TO:<b@example.com>", "DATA now")) == [
        250, 250, 354,
    ]


def test_data_with_string_result() -> None:
    """A string result becomes the 250 text."""
    c = CoreClient()
    c.ehlo()
    c.data = lambda body, session: ["Queued as 42"]
    assert c.transaction()[-1] == "250 2.6.0 Queued as 42"


@pytest.mark.parametrize(
    ("results", "reply"),
    [
        ([SMTPError(554, "Rejected")], "554 5.6.0 Rejected"),
        ([SMTPError(message="Later")], "450 4.2.1 Later"),
        ([SMTPError(552, "Too big")], "552 5.3.4 Too big"),
        # A list in SMTP mode is one reply: the first error, else the first success.
        (["ok 1", SMTPError(451, "bad"), SMTPError(452, "worse")], "451 4.3.0 bad"),
        (["first", "second"], "250 2.6.0 first"),
        ([None, None], "250 2.6.0 OK: message queued"),
        # An empty list is a handler bug: a temporary failure, never "accepted".
        ([], "451 4.3.0 Error: internal server error"),
    ],
)
def test_data_results_in_smtp_mode(results: list[Any], reply: str) -> None:
    """SMTP DATA gets exactly one reply whatever the handler returned (smtp-server bug 6)."""
    c = CoreClient()
    c.ehlo()
    c.data = lambda body, session: results
    replies = c.transaction(rcpts=["a@example.com", "b@example.com"])
    assert replies[-1] == reply
    assert len(replies) == 5
    assert codes(c.lines("NOOP")) == [250]


def test_unrecognized_counter_reset_after_data() -> None:
    """A completed message resets the unrecognized-command count."""
    c = CoreClient()
    c.ehlo()
    for _ in range(9):
        c.lines("FOO")
    c.transaction()
    for _ in range(9):
        assert codes(c.lines("FOO")) == [500]
    assert codes(c.lines("FOO")) == [421]


def test_reject_oversized() -> None:
    """reject_oversized: 552 after the end of data, whatever the handler said; no chunk past the limit."""
    c = CoreClient(size=10, reject_oversized=True)
    c.ehlo()
    c.data = lambda body, session: ["ok"]
    replies = c.transaction(body=b"0123456789\r\n")
    assert replies[-1] == "552 5.3.4 Error: message exceeds fixed maximum message size 10"
    assert c.bodies == []
    assert len(c.rejections) == 1
    # At the limit it is fine (10 bytes of body).
    assert c.transaction(body=b"01234567\r\n")[-1] == "250 2.6.0 ok"


def test_oversized_without_reject_is_delivered() -> None:
    """Without reject_oversized the handler decides (it sees size_exceeded)."""
    c = CoreClient(size=10, reject_oversized=False)
    c.ehlo()
    assert codes(c.transaction(body=b"0123456789abcdef\r\n")) == [250, 250, 354, 250]
    assert c.bodies == [b"0123456789abcdef\r\n"]
    [end] = [e for e in c.events if isinstance(e, DataEnd)]
    assert end.byte_length == 18


def test_binarymime_requires_bdat() -> None:
    """DATA after BODY=BINARYMIME is refused (RFC 3030 §3)."""
    c = CoreClient()
    c.ehlo()
    assert c.lines(
        "MAIL FROM:<a@example.com> BODY=BINARYMIME", "RCPT TO:<b@example.com>", "DATA"
    )[-1] == "503 5.5.1 Error: BODY=BINARYMIME requires BDAT"


def test_rset_and_quit_during_data_are_body() -> None:
    """Inside DATA, RSET and QUIT lines are message text, not commands."""
    c = CoreClient()
    c.ehlo()
    replies = c.transaction(body=b"RSET\r\nQUIT\r\nMAIL FROM:<x@example.com>\r\n")
    assert codes(replies) == [250, 250, 354, 250]
    assert c.bodies == [b"RSET\r\nQUIT\r\nMAIL FROM:<x@example.com>\r\n"]


# --------------------------------------------------------------------------
# LMTP


def test_lmtp_one_reply_per_recipient() -> None:
    """LMTP DATA: one reply per accepted recipient, in order."""
    c = CoreClient(lmtp=True)
    c.lines("LHLO c")
    c.rcpt = lambda a: SMTPError(550, "No such user") if a.address.startswith("x") else None
    c.data = lambda body, session: [None, "Delivered to b", SMTPError(452, "Mailbox full")]
    replies = c.transaction(rcpts=["a@example.com", "x@example.com", "b@example.com", "c@example.com"])
    assert replies == [
        "250 2.1.0 Accepted",
        "250 2.1.5 Accepted",
        "550 5.1.1 No such user",
        "250 2.1.5 Accepted",
        "250 2.1.5 Accepted",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.6.0 OK: message accepted",
        "250 2.6.0 Delivered to b",
        "452 4.2.2 Mailbox full",
    ]
    assert codes(c.lines("NOOP")) == [250]


def test_lmtp_single_result_for_all() -> None:
    """A single result (success or error) is repeated for each recipient."""
    c = CoreClient(lmtp=True)
    c.lines("LHLO c")
    c.data = lambda body, session: [SMTPError(452, "Mailbox full")]
    assert c.transaction(rcpts=["a@example.com", "b@example.com"])[-2:] == [
        "452 4.2.2 Mailbox full"
    ] * 2
    c.data = lambda body, session: [None]
    assert c.transaction(rcpts=["a@example.com", "b@example.com"])[-2:] == [
        "250 2.6.0 OK: message accepted"
    ] * 2


def test_lmtp_wrong_number_of_results() -> None:
    """A result list of the wrong length: 451 4.3.0 for every recipient, never a guess."""
    c = CoreClient(lmtp=True)
    c.lines("LHLO c")
    c.data = lambda body, session: [None, None, None]
    assert c.transaction(rcpts=["a@example.com", "b@example.com"])[-2:] == [
        "451 4.3.0 Error: internal server error"
    ] * 2


def test_lmtp_duplicate_recipients_get_a_reply_per_rcpt() -> None:
    """RFC 2033 4.2: "Even if there were multiple successful RCPT commands
    giving the same forward-path, there must be one reply for each
    successful RCPT command."  The envelope (what the handler delivers to)
    holds each address once; the replies repeat its result, in RCPT order.
    (smtpsession once answered once, as smtp-server does:
    smtpsession.conformance found it.)"""
    c = CoreClient(lmtp=True)
    c.lines("LHLO c")
    c.data = lambda body, session: [None, SMTPError(452, "Mailbox full")]
    replies = c.transaction(rcpts=["a@example.com", "b@example.com", "A@example.com"])
    assert replies[-3:] == [
        "250 2.6.0 OK: message accepted",
        "452 4.2.2 Mailbox full",
        "250 2.6.0 OK: message accepted",
    ]
    # The next transaction starts without the repeat.
    c.data = lambda body, session: [None]
    assert codes(c.transaction(rcpts=["a@example.com", "b@example.com"])) == [250, 250, 250, 354, 250, 250]


def test_lmtp_duplicate_recipient_refused_for_all_when_the_body_is() -> None:
    """A body refused by the core (too big) gets its refusal once per RCPT too."""
    c = CoreClient(lmtp=True, size=5, reject_oversized=True)
    c.lines("LHLO c")
    replies = c.transaction(rcpts=["a@example.com", "a@example.com"], body=b"123456\r\n")
    assert codes(replies)[-2:] == [552, 552]


def test_lmtp_oversized_rejected_per_recipient() -> None:
    """reject_oversized in LMTP: one 552 per recipient."""
    c = CoreClient(lmtp=True, size=5, reject_oversized=True)
    c.lines("LHLO c")
    assert c.transaction(rcpts=["a@example.com", "b@example.com"], body=b"123456\r\n")[-2:] == [
        "552 5.3.4 Error: message exceeds fixed maximum message size 5"
    ] * 2


def test_lmtp_transmission_type_and_sequence_text() -> None:
    """LMTP sessions are LMTP, and the sequence error names LHLO."""
    c = CoreClient(lmtp=True)
    assert c.lines("RCPT TO:<a@example.com>") == ["503 Error: send LHLO first"]
    c.lines("LHLO c")
    assert c.session.opening_command == "LHLO"
    assert c.session.transmission_type == "LMTP"


# --------------------------------------------------------------------------
# Limits


def test_ten_unrecognized_commands_close() -> None:
    """Nine unknown commands get 500; the tenth gets 421 and the session ends."""
    c = CoreClient()
    c.ehlo()
    replies = c.lines(*["FOO"] * 9, "BAR", "NOOP")
    assert codes(replies) == [500] * 9 + [421]
    assert replies[-1] == "421 4.4.2 Error: too many unrecognized commands"
    assert c.closed


def test_unrecognized_limit_is_configurable() -> None:
    """max_unrecognized_commands sets the limit."""
    c = CoreClient(max_unrecognized_commands=2)
    assert codes(c.lines("FOO", "FOO")) == [500, 421]


def test_disabled_commands_count_as_unrecognized() -> None:
    """A disabled command is unknown, and counts towards the limit."""
    c = CoreClient(disabled_commands=["VRFY", "HELP"], max_unrecognized_commands=3)
    assert codes(c.lines("VRFY x", "HELP", "NOOP", "VRFY y")) == [500, 500, 250, 421]


def test_line_too_long_closes() -> None:
    """A command line over max_command_length: 421 and close."""
    c = CoreClient(max_command_length=1000)
    c.ehlo()
    assert c.send(b"NOOP " + b"x" * 996 + b"\r\n") == ["421 4.4.2 Error: Command line too long"]
    assert c.closed


def test_line_too_long_detected_before_its_end() -> None:
    """An unterminated line is refused as soon as it is too long (bounded buffer)."""
    c = CoreClient(max_command_length=1000)
    c.ehlo()
    assert c.send(b"NOOP " + b"x" * 995) == []
    assert not c.closed
    # 1001 octets without a line end, and the last is not a CR: too long.
    assert c.send(b"x") == ["421 4.4.2 Error: Command line too long"]
    assert c.closed


def test_line_at_the_limit_accepted_even_split_before_lf() -> None:
    """A line of exactly max_command_length is fine, even when its LF comes later."""
    c = CoreClient(max_command_length=1000)
    c.ehlo()
    line = b"NOOP " + b"x" * 995
    assert c.send(line + b"\r") == []
    assert c.send(b"\n") == ["250 2.0.0 OK"]
    assert c.send(line + b"\r\n") == ["250 2.0.0 OK"]
    # smtp-server's robustness test: a 16000-character line is fine by default.
    assert codes(CoreClient().lines("NOOP " + "x" * 16000)) == [250]


def test_unauthenticated_command_limit() -> None:
    """With AUTH required, the Nth command before AUTH gets 421."""
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True,
                   max_allowed_unauthenticated_commands=3)
    replies = c.lines("EHLO c", "NOOP", "NOOP")
    assert codes(replies) == [250, 250, 421]
    assert replies[-1] == "421 4.4.2 Error: too many unauthenticated commands"


@pytest.mark.parametrize("value", [None, 0, False])
def test_unauthenticated_limit_off(value: Any) -> None:
    """None, 0 or False mean no limit (smtp-server coerces false to 10, its bug 1)."""
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True,
                   max_allowed_unauthenticated_commands=value)
    assert codes(c.lines("EHLO c", *["NOOP"] * 30)) == [250] * 31


def test_sasl_lines_do_not_count_as_unauthenticated_commands() -> None:
    """Lines of a SASL exchange are not commands (smtp-server bug 7)."""
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True,
                   max_allowed_unauthenticated_commands=3)
    c.auth = lambda request: "user" if request.password == "pass" else None
    # EHLO counts 1; AUTH itself and its continuation lines count nothing.
    replies = c.lines("EHLO c", "AUTH LOGIN", "dXNlcg==", "d3Jvbmc=", "AUTH LOGIN", "dXNlcg==",
                      "cGFzcw==")
    assert codes(replies) == [250, 334, 334, 535, 334, 334, 235]
    assert c.session.user == "user"
    assert codes(c.lines(*["NOOP"] * 20)) == [250] * 20


def test_auth_required_before_mail() -> None:
    """With AUTH offered and not optional, mail commands get 530 until AUTH."""
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True)
    assert c.lines("EHLO c", "MAIL FROM:<a@example.com>")[1] == (
        "530 5.7.0 Error: authentication Required"
    )
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True, auth_optional=True)
    assert codes(c.lines("EHLO c", "MAIL FROM:<a@example.com>")) == [250, 250]
    c = CoreClient(auth_enabled=True, allow_insecure_auth=True,
                   auth_required_message="Log in first")
    assert c.lines("EHLO c", "RCPT TO:<a@example.com>")[1] == "530 5.7.0 Log in first"


def test_auth_unavailable_means_unknown_command() -> None:
    """Without on_auth (or with AUTH disabled) AUTH is an unknown command, never 530."""
    c = CoreClient()
    assert codes(c.lines("EHLO c", "AUTH PLAIN", "MAIL FROM:<a@example.com>")) == [250, 500, 250]


# --------------------------------------------------------------------------
# Bare line endings in commands (deviation 3)


def test_bare_lf_command_rejected() -> None:
    """A command ending in a bare LF is answered 500 5.5.2 and not executed."""
    c = CoreClient()
    c.ehlo()
    replies = c.send(b"MAIL FROM:<a@example.com>\nNOOP\r\n")
    assert replies == [
        "500 5.5.2 Error: bare <CR> or <LF> in command; lines must end with <CR><LF>",
        "250 2.0.0 OK",
    ]
    assert c.session.envelope.mail_from is None
    assert c.events == []


def test_bare_lf_commands_count_as_unrecognized() -> None:
    """Bare-LF commands count towards the unrecognized limit."""
    c = CoreClient(max_unrecognized_commands=3)
    assert codes(c.send(b"NOOP\nNOOP\nNOOP\n")) == [500, 500, 421]


def test_bare_lf_commands_accepted_when_lenient() -> None:
    """lenient_line_endings accepts LF-terminated commands (smtp-server's behaviour)."""
    c = CoreClient(lenient_line_endings=True)
    assert codes(c.send(b"EHLO c\nMAIL FROM:<a@example.com>\n")) == [250, 250]


def test_bare_cr_does_not_end_a_command() -> None:
    """A bare CR is not a line end: NOOP<CR>NOOP is one (unknown) command."""
    c = CoreClient()
    assert codes(c.send(b"NOOP\rNOOP\r\n")) == [500]


# --------------------------------------------------------------------------
# Pipelining and answers from the application


def test_paused_until_answered_and_input_stays_unparsed() -> None:
    """After MailFrom the core is PAUSED; pipelined input waits, replies stay in order."""
    c = CoreClient()
    c.ehlo()
    c.hold = True
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nNOOP\r\n")
    assert isinstance(c.pending, MailFrom)
    assert c.conn.waiting
    assert c.conn.next_event() is PAUSED
    assert c.conn.data_to_send() == b""
    c.conn.mail_from_result(None)
    c.run()
    assert isinstance(c.pending, RcptTo)
    assert split_replies(c.conn.data_to_send()) == ["250 2.1.0 Accepted"]
    c.conn.rcpt_to_result(SMTPError(450, "Greylisted", "4.7.1"))
    c.hold = False
    c.run()
    assert split_replies(c.conn.data_to_send()) == ["450 4.7.1 Greylisted", "250 2.0.0 OK"]


def test_answer_out_of_turn_is_a_programming_error() -> None:
    """Answering an event that was not asked raises instead of corrupting the session."""
    c = CoreClient()
    c.ehlo()
    with pytest.raises(RuntimeError):
        c.conn.rcpt_to_result(None)
    with pytest.raises(RuntimeError):
        c.conn.data_result([None])
    with pytest.raises(RuntimeError):
        c.conn.tls_established()


def test_pipelined_transaction_with_a_bad_recipient() -> None:
    """smtp-server fuzz test: MAIL/RCPT/bad RCPT/RCPT/DATA in one write → 250,250,501,250,354,250,221."""
    c = CoreClient()
    c.ehlo()
    replies = c.send(
        b"MAIL FROM:<sender@example.com>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<bad\r\n"
        b"RCPT TO:<b@example.com>\r\nDATA\r\n"
    )
    replies += c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\nQUIT\r\n")
    assert codes(replies) == [250, 250, 501, 250, 354, 250, 221]
    assert c.bodies == [b"Subject: pipelined\r\n\r\nbody\r\n"]
    assert [a.address for a in c.envelopes[0].rcpt_to] == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("size", [1, 3, 17])
def test_fragmented_session(size: int) -> None:
    """A whole session in chunks of 1, 3 or 17 bytes gives the same envelope and body."""
    wire = (
        b"EHLO client.example\r\nMAIL FROM:<s@example.com>\r\nRCPT TO:<r@example.com>\r\n"
        b"DATA\r\nSubject: frag\r\n\r\n..stuffed\r\n..\r\nlast\r\n.\r\nQUIT\r\n"
    )
    c = CoreClient()
    replies: list[str] = []
    for i in range(0, len(wire), size):
        replies += c.send(wire[i : i + size])
    assert codes(replies) == [250, 250, 250, 354, 250, 221]
    assert c.bodies == [b"Subject: frag\r\n\r\n.stuffed\r\n.\r\nlast\r\n"]
    assert c.envelopes[0].mail_from.address == "s@example.com"


def test_unparsed_input_while_waiting_is_bounded() -> None:
    """A client piling up input while a hook is pending is cut off at MAX_PENDING."""
    c = CoreClient()
    c.ehlo()
    c.hold = True
    c.lines("MAIL FROM:<a@example.com>")
    chunk = b"NOOP\r\n" * 10000
    for _ in range(MAX_PENDING // len(chunk) + 2):
        c.conn.receive_data(chunk)
        if c.closed:
            break
    assert c.closed
    assert split_replies(c.conn.data_to_send()) == ["421 4.4.2 Error: too much pipelined input"]


# --------------------------------------------------------------------------
# Aborted bodies


def test_rset_during_bdat_aborts_the_body() -> None:
    """RSET between BDAT chunks ends the body unfinished: DataAborted, no DataEnd."""
    c = CoreClient()
    c.ehlo()
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nBDAT 5\r\nhello")
    assert codes(c.lines("RSET")) == [250]
    assert [type(e) for e in c.events][-2:] == [DataStart, DataAborted]
    assert not any(isinstance(e, DataEnd) for e in c.events)


def test_connection_lost_mid_data() -> None:
    """A connection lost in the middle of DATA reports the body as aborted."""
    c = CoreClient()
    c.ehlo()
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\npartial")
    aborted = c.conn.connection_lost()
    assert isinstance(aborted, DataAborted)
    assert c.closed
    assert c.conn.connection_lost() is None


# --------------------------------------------------------------------------
# Shutdown (deviation 9)


def test_shutdown_idle_session_told_at_once() -> None:
    """begin_shutdown: a session with no transaction gets 421 now."""
    c = CoreClient()
    c.ehlo()
    c.conn.begin_shutdown()
    assert split_replies(c.conn.data_to_send()) == ["421 4.4.2 Server shutting down"]
    assert c.closed


def test_shutdown_lets_a_transaction_finish() -> None:
    """A transaction in progress may finish (RCPT, DATA, NOOP); then 421."""
    c = CoreClient()
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>")
    c.conn.begin_shutdown()
    assert c.conn.data_to_send() == b""
    replies = c.send(b"RCPT TO:<b@example.com>\r\nNOOP\r\nDATA\r\nhi\r\n.\r\n")
    assert replies == [
        "250 2.1.5 Accepted",
        "250 2.0.0 OK",
        "354 End data with <CR><LF>.<CR><LF>",
        "250 2.6.0 OK: message queued",
        "421 4.4.2 Server shutting down",
    ]
    assert c.bodies == [b"hi\r\n"]
    assert c.closed


def test_shutdown_refuses_new_work() -> None:
    """During shutdown, commands that start or abandon work get 421; QUIT still gets 221."""
    c = CoreClient()
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>")
    c.conn.begin_shutdown()
    assert c.lines("RSET") == ["421 4.4.2 Server shutting down"]
    c = CoreClient()
    c.ehlo()
    c.lines("MAIL FROM:<a@example.com>")
    c.conn.begin_shutdown()
    assert c.lines("QUIT") == ["221 2.0.0 Bye"]


def test_shutdown_while_waiting_for_a_refused_sender() -> None:
    """Shutdown during a pending MAIL that is then refused: 421 after the refusal."""
    c = CoreClient()
    c.ehlo()
    c.hold = True
    c.lines("MAIL FROM:<a@example.com>")
    c.conn.begin_shutdown()
    c.conn.mail_from_result(SMTPError(550, "No"))
    assert split_replies(c.conn.data_to_send()) == [
        "550 5.7.1 No",
        "421 4.4.2 Server shutting down",
    ]


def test_force_close() -> None:
    """force_close: 421 whatever the state, even in the middle of a body."""
    c = CoreClient()
    c.ehlo()
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\npartial\r\n")
    c.conn.force_close()
    assert split_replies(c.conn.data_to_send())[-1] == "421 4.4.2 Server shutting down"
    assert c.closed


# --------------------------------------------------------------------------
# Miscellany


def test_options_are_validated() -> None:
    """Bad option values fail at construction, not at the first connection."""
    with pytest.raises(ValueError):
        SMTPServerOptions(max_command_length=100)
    with pytest.raises(ValueError):
        SMTPServerOptions(name="two words")
    with pytest.raises(ValueError):
        SMTPServerOptions(auth_methods=["XCLIENT"])
    assert SMTPServerOptions(max_allowed_unauthenticated_commands=False).max_allowed_unauthenticated_commands is None


def test_need_data_when_idle() -> None:
    """With nothing to parse the core asks for data; an empty receive changes nothing."""
    c = CoreClient()
    assert c.conn.next_event() is NEED_DATA
    c.conn.receive_data(b"")
    assert c.conn.next_event() is NEED_DATA
