# -*- test-case-name: tests.unit.test_params -*-
"""
ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 ``Mail-parameters``)
and the xtext encoding of RFC 3461 §4.

Values are xtext-decoded for every keyword, as smtp-server does, so handlers
never see ``+40`` where they expect ``@``; but for C{RAW_VALUES}, whose
syntax is not xtext and may hold a ``+`` (``RRVS=...T10:00:00+02:00``).
The values of the optional extensions (RRVS, DELIVERBY's BY, MT-PRIORITY)
are parsed here too (L{parse_rrvs}, L{parse_by}, L{parse_priority}).  Validation of what each keyword
means (SIZE, BODY, NOTIFY, ...) is in C{smtpsession._core.connection},
because it depends on the session (TLS, DSN advertised, the size limit).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = [
    "ParamError",
    "parse_params",
    "xtext_decode",
    "xtext_encode",
    "is_xtext",
    "parse_by",
    "parse_priority",
    "parse_rrvs",
]


class ParamError(ValueError):
    """
    A parameter list is malformed.  C{kind} says which reply fits:
    ``"syntax"``, ``"duplicate"`` or ``"novalue"``; C{key} names the
    parameter for the latter two.
    """

    def __init__(self, kind: str, key: str = "") -> None:
        super().__init__(kind, key)
        self.kind = kind
        self.key = key


_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
_XTEXT_HEX = re.compile(r"\+([0-9A-Fa-f]{2})")
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
# RFC 3461 xtext: "+" HEXCHAR HEXCHAR, or any printable ASCII but "+" and "=".
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*\Z")

#: Keywords that are meaningless without a value.
NEED_VALUE = frozenset({"SIZE", "BODY", "RET", "ENVID", "NOTIFY", "ORCPT", "AUTH"})
#: Keywords whose values are not xtext: kept as sent.
RAW_VALUES = frozenset({"RRVS", "BY", "MT-PRIORITY"})

# RFC 2852 §4: by-value = by-time ";" by-mode [by-trace], by-time a signed
# integer of at most 9 digits, by-mode N or R, by-trace T.
_BY = re.compile(r"([+-]?[0-9]{1,9});([NnRr])([Tt]?)\Z")
# RFC 6710 §3: priority-value = ["+" / "-"] DIGIT (-9 to 9).
_PRIORITY = re.compile(r"[+-]?[0-9]\Z")
# RFC 7293 §3.1: an RFC 3339 date-time, then optionally ";C" or ";R".
_RRVS = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})(?:;([CcRr]))?\Z"
)


def xtext_decode(value: str) -> str:
    """
    Decode RFC 3461 xtext (``+XX`` hex escapes); other text is kept.  The
    escaped octets are UTF-8 (what L{xtext_encode} and RFC 6533 produce);
    octets that are not fall back to one character each.
    """
    if "+" not in value:
        return value
    out = bytearray()
    pos = 0
    for m in _XTEXT_HEX.finditer(value):
        out += value[pos : m.start()].encode("utf-8")
        out.append(int(m.group(1), 16))
        pos = m.end()
    out += value[pos:].encode("utf-8")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)


def xtext_encode(value: str) -> str:
    """Encode text as RFC 3461 xtext (for handlers that relay parameters)."""
    out = []
    for ch in value:
        o = ord(ch)
        if 33 <= o <= 126 and ch not in "+=":
            out.append(ch)
        else:
            out.extend(f"+{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def is_xtext(value: str) -> bool:
    """Whether C{value} is well-formed xtext (before decoding)."""
    return _XTEXT.match(value) is not None


def parse_params(text: str) -> tuple[dict[str, str | bool], dict[str, str]]:
    """
    Parse ``KEY=VALUE KEY ...`` into a dict of upper-case keys to decoded
    values (C{True} for bare keywords), and a dict of the raw (undecoded)
    values for the keywords whose syntax is xtext.

    @raise ParamError: duplicate key, missing value, bad keyword or a
        control character in a decoded value.
    """
    args: dict[str, str | bool] = {}
    raw: dict[str, str] = {}
    if not text:
        return args, raw
    for token in text.split(" "):
        if not token:
            continue
        eq = token.find("=")
        if eq < 0:
            key = token.upper()
            if _KEYWORD.match(key) is None:
                raise ParamError("syntax")
            if key in args:
                raise ParamError("duplicate", key)
            if key in NEED_VALUE:
                raise ParamError("novalue", key)
            args[key] = True
            continue
        key = token[:eq].upper()
        value = token[eq + 1 :]
        if _KEYWORD.match(key) is None or "=" in value:
            raise ParamError("syntax")
        if key in args:
            raise ParamError("duplicate", key)
        if not value:
            raise ParamError("novalue", key)
        decoded = value if key in RAW_VALUES else xtext_decode(value)
        if _CONTROLS.search(decoded):
            raise ParamError("syntax")
        args[key] = decoded
        raw[key] = value
    return args, raw


def parse_by(value: str) -> tuple[int, str, bool] | None:
    """
    DELIVERBY's C{BY=} value (RFC 2852 §4): (seconds, ``"R"`` or ``"N"``,
    trace), or C{None} if it is malformed.
    """
    m = _BY.match(value)
    if m is None:
        return None
    return int(m.group(1)), m.group(2).upper(), bool(m.group(3))


def parse_priority(value: str) -> int | None:
    """MT-PRIORITY's value (RFC 6710 §3): -9 to 9, or C{None} if malformed."""
    if _PRIORITY.match(value) is None:
        return None
    return int(value)


def parse_rrvs(value: str) -> tuple[datetime, str | None] | None:
    """
    RRVS's value (RFC 7293 §3.1): the RFC 3339 date-time as an aware
    datetime (a leap second taken as :59, fractions past microseconds
    dropped) and the action, ``"C"``, ``"R"`` or C{None} when not given;
    C{None} if it is malformed or names no real time.
    """
    m = _RRVS.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = [int(m.group(i)) for i in range(1, 7)]
    fraction = m.group(7)
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    offset = m.group(8)
    try:
        if offset in ("Z", "z"):
            tz = UTC
        else:
            hours, minutes = int(offset[1:3]), int(offset[4:6])
            if hours > 23 or minutes > 59:
                return None
            delta = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-delta if offset[0] == "-" else delta)
        when = datetime(year, month, day, hour, minute, min(second, 59), micro, tz)
    except ValueError:
        return None
    if second > 60:
        return None
    action = m.group(9)
    return when, action.upper() if action else None
