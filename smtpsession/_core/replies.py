# -*- test-case-name: tests.unit.test_replies -*-
"""
Reply formatting and the catalogue of fixed replies.

Replies the server sends often are pre-encoded here as pairs
C{(without_enhanced_code, with_enhanced_code)}; the connection indexes the
pair with a 0/1 flag that is 1 only after EHLO/LHLO (RFC 2034 §3: enhanced
codes are for clients that asked for the extension, not for HELO clients).
Texts follow nodemailer's smtp-server so that clients and tests that match
on them keep working.
"""

from __future__ import annotations

import re

__all__ = ["format_reply", "default_enhanced", "Pair", "pair"]

Pair = tuple[bytes, bytes]

#: RFC 3463 code by reply code, used when neither the caller nor the
#: context chose one.
_ENHANCED_BY_CODE = {
    200: "2.0.0",
    211: "2.0.0",
    214: "2.0.0",
    220: "2.0.0",
    221: "2.0.0",
    235: "2.7.0",
    250: "2.0.0",
    251: "2.1.5",
    252: "2.1.5",
    420: "4.4.2",
    421: "4.4.2",
    450: "4.2.1",
    451: "4.3.0",
    452: "4.2.2",
    454: "4.7.0",
    455: "4.5.4",
    500: "5.5.2",
    501: "5.5.4",
    502: "5.5.1",
    503: "5.5.1",
    504: "5.5.4",
    521: "5.3.2",
    523: "5.3.4",
    530: "5.7.0",
    534: "5.7.9",
    535: "5.7.8",
    538: "5.7.11",
    550: "5.1.1",
    551: "5.1.6",
    552: "5.2.2",
    553: "5.1.3",
    554: "5.6.0",
    555: "5.5.4",
    556: "5.1.10",
    557: "5.7.1",
    558: "5.2.3",
}

#: Overrides by command context: the same reply code means different things
#: after MAIL (a sender problem or policy) than after RCPT (a mailbox
#: problem).  smtp-server sends 5.1.1 "bad destination mailbox" for a
#: rejected *sender*; that is wrong (its bug list, item 9).
_ENHANCED_BY_CONTEXT = {
    ("MAIL", 550): "5.7.1",
    ("MAIL", 553): "5.1.7",
    ("MAIL", 450): "4.7.1",
    ("MAIL", 451): "4.3.0",
    ("RCPT", 450): "4.2.1",
    ("RCPT", 452): "4.2.2",
    ("RCPT", 550): "5.1.1",
    ("DATA", 250): "2.6.0",
    ("DATA", 450): "4.2.1",
    ("DATA", 550): "5.7.1",
    ("DATA", 552): "5.3.4",
    ("DATA", 554): "5.6.0",
    # LMTP's DATA replies are per recipient: mailbox problems, not content.
    ("LMTP", 450): "4.2.1",
    ("LMTP", 452): "4.2.2",
    ("LMTP", 550): "5.1.1",
    ("LMTP", 552): "5.2.2",
    ("LMTP", 554): "5.6.0",
    ("AUTH", 454): "4.7.0",
    ("AUTH", 535): "5.7.8",
    # A refused hello is a policy decision about the client (on_helo).
    ("HELO", 450): "4.7.1",
    ("HELO", 550): "5.7.1",
    ("HELO", 554): "5.7.1",
    # A VRFY or EXPN that shows addresses: "destination address valid".
    ("VRFY", 250): "2.1.5",
    ("EXPN", 250): "2.1.5",
}


def default_enhanced(code: int, context: str | None = None) -> str:
    """The enhanced status code to send with C{code} after command C{context}."""
    if context is not None:
        esc = _ENHANCED_BY_CONTEXT.get((context, code))
        if esc is not None:
            return esc
    esc = _ENHANCED_BY_CODE.get(code)
    if esc is not None:
        return esc
    return f"{code // 100}.0.0"


# C0 controls, DEL and C1 controls: a reply must never carry a line break or
# a NUL that a handler put in its message (response splitting).
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def format_reply(
    code: int,
    text: str,
    enhanced: str | None = None,
) -> bytes:
    """
    Encode one reply.  C{text} may hold several lines separated by ``\\n``;
    C{enhanced} (when not C{None}) is repeated on every line as RFC 2034
    requires.  Control characters are replaced by spaces.
    """
    text = _CONTROLS.sub(" ", text.replace("\r\n", "\n"))
    lines = text.split("\n") if "\n" in text else [text]
    prefix = f"{code} " if enhanced is None else f"{code} {enhanced} "
    if len(lines) == 1:
        return (prefix + lines[0]).rstrip(" ").encode("utf-8") + b"\r\n"
    cont = prefix[:3] + "-" + prefix[4:]
    out = [(cont + line).rstrip(" ") for line in lines[:-1]]
    out.append((prefix + lines[-1]).rstrip(" "))
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


def pair(code: int, text: str, enhanced: str | None = None) -> Pair:
    """Pre-encode a fixed reply with and without its enhanced code."""
    esc = enhanced if enhanced is not None else default_enhanced(code)
    return format_reply(code, text), format_reply(code, text, esc)


# ---- the catalogue ----------------------------------------------------------
# Connection-level
BYE = pair(221, "Bye")
TALK_TOO_SOON = "You talk too soon"
SHUTTING_DOWN = pair(421, "Server shutting down")
HTTP_REFUSED = pair(421, "HTTP requests not allowed")
TIMEOUT = pair(421, "Timeout - closing connection")
LINE_TOO_LONG = pair(421, "Error: Command line too long")
TOO_MUCH_INPUT = pair(421, "Error: too much pipelined input")
TOO_MANY_UNRECOGNIZED = pair(421, "Error: too many unrecognized commands")
TOO_MANY_UNAUTHENTICATED = pair(421, "Error: too many unauthenticated commands")
TOO_MANY_AUTH_FAILURES = pair(421, "Error: too many failed authentications", "4.7.0")
TOO_MANY_TRANSACTIONS = pair(421, "Error: too many messages in one session", "4.7.0")
#: Before any EHLO, but with its enhanced code: the reply operators look for
#: (Postfix's postscreen words it the same way).  Not a pair: one form only.
PREGREET = format_reply(554, "Error: talking before the greeting", "5.5.1")
SESSION_TOO_LONG = pair(421, "Error: session too long - closing connection")
BODY_TOO_SLOW = pair(421, "Error: message took too long - closing connection")
UNRECOGNIZED = pair(500, "Error: command not recognized")
NOT_IMPLEMENTED = pair(502, "Error: command not implemented")
BARE_LF_COMMAND = pair(
    500, "Error: bare <CR> or <LF> in command; lines must end with <CR><LF>"
)
SEND_HELO_FIRST = pair(503, "Error: send HELO/EHLO first")
HELO_IN_LMTP = pair(500, "Error: HELO not allowed in LMTP server")
EHLO_IN_LMTP = pair(500, "Error: EHLO not allowed in LMTP server")
SEND_LHLO_FIRST = pair(503, "Error: send LHLO first")
INTERNAL_ERROR = pair(451, "Error: internal server error")

# Simple commands
OK = pair(250, "OK")
FLUSHED = pair(250, "Flushed")
HELP = pair(214, "See https://www.rfc-editor.org/rfc/rfc5321 for details")
VRFY = pair(252, "Try to send something. No promises though")
VRFY_SYNTAX = pair(501, "Error: Syntax: VRFY address")
EXPN_SYNTAX = pair(501, "Error: Syntax: EXPN name")
EHLO_SYNTAX = pair(501, "Error: syntax: EHLO hostname")
LHLO_SYNTAX = pair(501, "Error: syntax: LHLO hostname")
HELO_SYNTAX = pair(501, "Error: Syntax: HELO hostname")
BAD_HOSTNAME = pair(501, "Error: Bad hostname syntax")

# MAIL / RCPT
MAIL_OK = pair(250, "Accepted", "2.1.0")
RCPT_OK = pair(250, "Accepted", "2.1.5")
BAD_SENDER = pair(501, "Error: Bad sender address syntax", "5.1.7")
BAD_RECIPIENT = pair(501, "Error: Bad recipient address syntax", "5.1.3")
NESTED_MAIL = pair(503, "Error: nested MAIL command")
NEED_MAIL = pair(503, "Error: need MAIL command")
NEED_RCPT = pair(503, "Error: need RCPT command")
RCPT_AFTER_BDAT = pair(503, "Error: RCPT not allowed after BDAT")
TOO_MANY_RECIPIENTS = pair(452, "Error: too many recipients", "4.5.3")
BAD_SIZE = pair(501, "Error: Bad message size syntax")
BAD_BODY = pair(
    501, "Invalid BODY parameter value. Must be 7BIT, 8BITMIME or BINARYMIME"
)
BAD_BODY_NO_CHUNKING = pair(
    501, "Invalid BODY parameter value. Must be 7BIT or 8BITMIME"
)
BAD_SMTPUTF8 = pair(
    501, "Invalid SMTPUTF8 parameter. This flag does not accept a value"
)
REQUIRETLS_CLEARTEXT = pair(
    530, "REQUIRETLS not permitted on non-TLS connections", "5.7.10"
)
BAD_REQUIRETLS = pair(
    501, "Invalid REQUIRETLS parameter. This flag does not accept a value"
)
BAD_RET = pair(501, "Invalid RET parameter value. Must be FULL or HDRS")
BAD_ENVID = pair(501, "Error: Bad ENVID parameter syntax")
BAD_AUTH_PARAM = pair(501, "Error: Bad AUTH parameter syntax")
BAD_NOTIFY = pair(
    501, "Error: NOTIFY parameter must be NEVER, SUCCESS, FAILURE, or DELAY"
)
NOTIFY_NEVER = pair(501, "Error: NOTIFY=NEVER cannot be combined with other values")
BAD_ORCPT = pair(501, "Error: Bad ORCPT parameter syntax")
BAD_PARAMETER = pair(501, "Error: Bad command parameter syntax")
NOT_ASCII_WITHOUT_SMTPUTF8 = pair(
    553, "Error: non-ASCII address requires SMTPUTF8", "5.6.7"
)
# The extensions of SMTPServerOptions.enable: a bad value, or the parameter
# of one that is off (RFC 5321 §4.1.1.11: 555, parameter not recognised).
BAD_BY = pair(501, "Error: Bad BY parameter syntax. Must be <seconds>;R or N, then T")
BY_NOT_POSITIVE = pair(501, "Error: BY time must be positive with mode R")
BAD_MT_PRIORITY = pair(501, "Error: Bad MT-PRIORITY parameter. Must be -9 to 9")
BAD_RRVS = pair(501, "Error: Bad RRVS parameter syntax. Must be <date-time>[;C or R]")
BY_NOT_ENABLED = pair(555, "Error: BY parameter not supported (DELIVERBY is off)")
MT_PRIORITY_NOT_ENABLED = pair(555, "Error: MT-PRIORITY parameter not supported")
RRVS_NOT_ENABLED = pair(555, "Error: RRVS parameter not supported")

# DATA / BDAT
TOO_BIG_TEXT = "Error: message exceeds fixed maximum message size {limit}"


def too_big(limit: int) -> Pair:
    """552 for a message over the size limit (MAIL's SIZE, DATA, BDAT)."""
    return pair(552, TOO_BIG_TEXT.format(limit=limit), "5.3.4")


START_DATA = (
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
    b"354 End data with <CR><LF>.<CR><LF>\r\n",
)
MESSAGE_QUEUED = pair(250, "OK: message queued", "2.6.0")
MESSAGE_ACCEPTED = pair(250, "OK: message accepted", "2.6.0")
BARE_LINE_ENDING = pair(
    554,
    "Error: message contains a bare <CR> or <LF>; lines must end with <CR><LF>",
    "5.6.0",
)
BDAT_SYNTAX = pair(501, "Error: syntax: BDAT size [LAST]")
BDAT_AFTER_DATA_FAILED = pair(503, "Error: BDAT sequence aborted, send RSET")
DATA_AFTER_BDAT = pair(503, "Error: DATA not allowed after BDAT")
BINARYMIME_NEEDS_BDAT = pair(503, "Error: BODY=BINARYMIME requires BDAT", "5.5.1")

# XCLIENT / XFORWARD
NOT_ALLOWED = pair(550, "Error: Not allowed", "5.7.0")
TRANSACTION_IN_PROGRESS = pair(503, "Error: Mail transaction in progress")
INVALID_ADDRESS = pair(501, "Error: Bad command parameter syntax. Invalid address")
INVALID_HOSTNAME = pair(501, "Error: Bad command parameter syntax. Invalid hostname")
INVALID_PORT = pair(501, "Error: Bad command parameter syntax. Invalid port")

# STARTTLS
READY_TLS = pair(220, "Ready to start TLS")
STARTTLS_SYNTAX = pair(501, "Error: syntax: STARTTLS")
TLS_ACTIVE = pair(503, "Error: TLS already active")
TLS_UNAVAILABLE = pair(454, "Error: TLS not available", "4.7.0")

# AUTH
AUTH_OK = pair(235, "Authentication successful", "2.7.0")
AUTH_FAILED = pair(535, "Error: Authentication credentials invalid", "5.7.8")
AUTH_XOAUTH2_FAILED = pair(
    535, "Error: Username and Password not accepted", "5.7.8"
)
AUTH_ABORTED = pair(501, "Authentication aborted", "5.7.0")
AUTH_NEED_TLS = pair(538, "Error: Must issue a STARTTLS command first", "5.7.11")
AUTH_ALREADY = pair(503, "Error: No identity changes permitted")
AUTH_IN_TRANSACTION = pair(503, "Error: AUTH not permitted during a mail transaction")
AUTH_SYNTAX = pair(501, "Error: syntax: AUTH mechanism [initial-response]")
AUTH_UNKNOWN = pair(504, "Error: Unrecognized authentication type")
AUTH_BAD_BASE64 = pair(501, "Error: Cannot decode response", "5.5.2")
AUTH_INVALID_USERDATA = pair(501, "Error: invalid userdata")
AUTH_MISSING_USERNAME = pair(501, "Error: missing username")
AUTH_UNAVAILABLE = pair(454, "Error: Temporary authentication failure", "4.7.0")
