"""
Trace headers (RFC 5321 §4.4): C{Received} and C{Return-Path}.

Every SMTP server that accepts a message for delivery or relaying prepends a
C{Received} line; the final delivery adds C{Return-Path}.  Both carry text
the client chose (its HELO name, its addresses), so everything is reduced
to characters that cannot end a header, open a comment or fold a line.
"""

from __future__ import annotations

import re
import socket
from datetime import datetime
from email.utils import format_datetime
from typing import Any

__all__ = ["default_hostname", "received_header", "return_path_header"]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9.:\[\]_-]")
_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f()\\]")


def default_hostname() -> str:
    """This machine's name, as the C{by} clause shows it."""
    return _name(socket.getfqdn() or socket.gethostname() or "localhost")


def _name(text: str | None) -> str:
    """A host name or address literal, with anything else replaced."""
    if not text:
        return "unknown"
    return _UNSAFE_NAME.sub("_", text)[:255]


def _literal(address: str) -> str:
    """An address literal (RFC 5321 §4.1.3): C{[192.0.2.1]}, C{[IPv6:...]}."""
    if ":" in address:
        return f"[IPv6:{address}]"
    return f"[{address}]"


def _addr(address: str) -> str:
    """A path for a header: no control characters, no angle brackets."""
    return "".join(c for c in address if c >= " " and c not in "<>\x7f")


def received_header(
    session: Any,
    envelope: Any,
    by: str,
    *,
    now: datetime | None = None,
) -> bytes:
    """
    The C{Received} line for one transaction, ending in CRLF.

    C{from} is the HELO name, then the client's PTR name (when it has one)
    and address literal; C{with} is the session's C{transmission_type}
    (ESMTPSA and friends, RFC 3848); C{id} is the session id and the
    transaction number, the same pair the transaction log line shows; the
    C{for} clause is given only for a single recipient, so a copy does not
    reveal the other (possibly blind) recipients.
    """
    helo = _name(session.host_name_appears_as)
    address = session.remote_address or "unknown"
    literal = _literal(address)
    ptr = session.client_hostname
    tcp_info = literal if not ptr or ptr.startswith("[") else f"{_name(ptr)} {literal}"
    lines = [f"Received: from {helo} ({tcp_info})"]
    tls = session.tls_options
    if tls:
        version = _UNSAFE_TEXT.sub("_", str(tls.get("version", "")))
        cipher = _UNSAFE_TEXT.sub("_", str(tls.get("name", "")))
        lines.append(f"\t(using {version} with cipher {cipher})")
    transaction = getattr(session, "transaction", 1)
    lines.append(
        f"\tby {_name(by)} (smtpsession) with {session.transmission_type} "
        f"id {session.id}.{transaction}"
    )
    when = format_datetime(now or datetime.now().astimezone())
    rcpts = envelope.rcpt_to
    if len(rcpts) == 1:
        lines.append(f"\tfor <{_addr(rcpts[0].address)}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")


def return_path_header(envelope: Any) -> bytes:
    """C{Return-Path: <sender>} (C{<>} for the null sender), ending in CRLF."""
    sender = envelope.mail_from.address if envelope.mail_from is not None else ""
    return f"Return-Path: <{_addr(sender)}>\r\n".encode("utf-8", "replace")
