# -*- test-case-name: tests.test_architecture,tests.integration.test_maildir,tests.integration.test_relay,tests.integration.test_amqp -*-
"""
The replies smtpsession's own handlers and filters give, as the
L{SMTPError} they raise: decided here, with every other reply of the
server, so that a reply code has one home (C{tests/test_architecture.py}
finds none outside C{smtpsession._core}).

Each is a function: an exception instance is raised afresh every time
(raising one instance twice would chain their tracebacks).
"""

from __future__ import annotations

import re

from smtpsession.errors import SMTPError

__all__ = [
    "message_too_big",
    "storage_full",
    "storage_failed",
    "upstream_unavailable",
    "upstream_lost",
    "upstream_refusal",
    "upstream_success_text",
    "cannot_relay_binarymime",
    "upstream_lacks_smtputf8",
    "upstream_lacks_requiretls",
    "UPSTREAM_NO_ANSWER",
    "queue_unavailable",
    "queue_refused",
]


# -- storing (the Maildir handler) ---------------------------------------------------


def message_too_big() -> SMTPError:
    """The body went over the server's C{size}."""
    return SMTPError(552, "Error: message exceeds fixed maximum message size", "5.3.4")


def storage_full() -> SMTPError:
    """The disk (or the quota) is full: try again later (RFC 3463 X.3.1)."""
    return SMTPError(452, "Insufficient system storage", "4.3.1")


def storage_failed() -> SMTPError:
    """Any other failure to store: try again later, nothing was kept."""
    return SMTPError(451, "Requested action aborted: local error in processing", "4.3.0")


# -- relaying (the relay handler) ----------------------------------------------------


def upstream_unavailable() -> SMTPError:
    return SMTPError(451, "Upstream server unavailable, try again later", "4.4.1")


def upstream_lost() -> SMTPError:
    return SMTPError(451, "Connection to the upstream server lost, try again later", "4.4.2")


#: The per-recipient answer for an LMTP recipient the upstream never answered.
UPSTREAM_NO_ANSWER = (451, b"4.4.2 No answer from the upstream server")

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


def upstream_refusal(code: int, text: bytes) -> SMTPError:
    """
    An upstream server's refusal as the reply our client gets: its code,
    its enhanced code when the text starts with one that fits, its text.
    An upstream 421 is no reason to close on our client (451 4.4.2), and
    a code that is not a refusal is an upstream bug (451 4.4.0).
    """
    message = text.decode("utf-8", "replace")
    enhanced = None
    lines = message.split("\n") if message else [""]
    m = _ENHANCED.match(lines[0])
    if m is not None and m.group(1) == str(code)[0]:
        enhanced = f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
        lines = [_ENHANCED.sub("", line, count=1) for line in lines]
    if code == 421:
        code, enhanced = 451, "4.4.2"
    if not (400 <= code <= 599):
        return SMTPError(451, f"Unexpected upstream reply {code}", "4.4.0")
    text_out = "\n".join(lines).strip() or f"Upstream server said {code}"
    return SMTPError(code, text_out, enhanced)


def upstream_success_text(text: bytes) -> str:
    """The text of an upstream success, for our own 250: its first line, no enhanced code."""
    first = text.decode("utf-8", "replace").split("\n")[0]
    return _ENHANCED.sub("", first, count=1).strip() or "OK"


def cannot_relay_binarymime() -> SMTPError:
    return SMTPError(554, "BINARYMIME messages cannot be relayed", "5.6.1")


def upstream_lacks_smtputf8() -> SMTPError:
    return SMTPError(553, "Upstream server does not support SMTPUTF8", "5.6.7")


def upstream_lacks_requiretls() -> SMTPError:
    return SMTPError(550, "REQUIRETLS cannot be honoured upstream", "5.7.30")


# -- queueing (the AMQP handler) -----------------------------------------------------


def queue_unavailable() -> SMTPError:
    """
    The broker is not connected (down, unreachable, restarting) or the
    connection went while the message was on its way: nothing was
    confirmed, the client keeps the message.
    """
    return SMTPError(451, "Message queue unavailable, try again later", "4.3.0")


def queue_refused() -> SMTPError:
    """The broker answered, but did not take the message (a nack, or no queue for it)."""
    return SMTPError(451, "Message queue did not take the message, try again later", "4.3.0")
