# -*- test-case-name: tests.unit.test_addresses -*-
"""
RFC 5321 §4.1.2 paths (with RFC 6531 UTF-8), parsed from MAIL and RCPT.

The parser walks the path character by character because a quoted local
part may contain spaces, ``>`` and ``@`` (smtp-server splits on whitespace
and so rejects ``<"john doe"@example.com>``, its bug list item 5).  It
returns text exactly as the client sent it, apart from removing a source
route and normalising IPv6 literals; domain names are not converted between
A-labels and U-labels.

A domain with non-ASCII characters (U-labels, RFC 6531) is validated by
the C{idna} package (IDNA 2008 with the UTS #46 mapping), imported only
then: an ASCII address never loads it.  A-labels (C{xn--...}) in an ASCII
domain are taken as any letter-digit-hyphen label, as before.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["AddressError", "split_path", "check_mailbox", "canonical_ip", "valid_hostname"]


class AddressError(ValueError):
    """The path is not syntactically valid."""


# Characters never allowed anywhere in an address, even in lenient mode:
# controls and the invisible characters used to disguise addresses.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b\u2060\ufeff]")

# RFC 5322 atext plus UTF-8 (RFC 6531 extends atext with UTF8-non-ascii).
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\u0080-\U0010ffff]+\Z")
# A domain label: letters, digits, hyphens, or UTF-8 (U-labels).
_LABEL = re.compile(r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*"
                    r"[A-Za-z0-9\u0080-\U0010ffff])?\Z")

#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the brackets.
MAX_ADDRESS_OCTETS = 254
#: RFC 1035 §2.3.4, which RFC 5321 §2.3.5 defers to: a label is at most 63
#: octets, a U-label counted as its A-label (C{xn--} and Punycode).  A longer
#: one names nothing that could ever receive mail or a bounce.
MAX_LABEL_OCTETS = 63


def split_path(text: str) -> tuple[str, str]:
    """
    Split ``<path> params`` into the text between the brackets and the
    parameter string.  A quoted local part may contain ``>``.

    @raise AddressError: no brackets, unbalanced quotes, or junk glued to
        the closing bracket.
    """
    if not text.startswith("<"):
        raise AddressError("path must be enclosed in <>")
    i = 1
    n = len(text)
    quoted = False
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ">":
            break
        elif c == "<":
            raise AddressError("nested <")
        i += 1
    else:
        raise AddressError("missing >")
    path = text[1:i]
    rest = text[i + 1 :]
    if rest and rest[0] != " ":
        raise AddressError("junk after >")
    return path, rest.strip(" ")


def _strip_source_route(path: str) -> str:
    """Drop an obsolete ``@a,@b:`` source route (RFC 5321 §4.1.2, C.)."""
    if path.startswith("@"):
        colon = path.find(":")
        if colon < 0:
            raise AddressError("bad source route")
        for hop in path[:colon].split(","):
            if not hop.startswith("@") or len(hop) < 2:
                raise AddressError("bad source route")
        return path[colon + 1 :]
    return path


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    """Split at the ``@`` that follows the local part (which may be quoted)."""
    if mailbox.startswith('"'):
        i = 1
        n = len(mailbox)
        while i < n:
            c = mailbox[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                break
            i += 1
        else:
            raise AddressError("unterminated quoted string")
        if i + 1 >= n or mailbox[i + 1] != "@":
            raise AddressError("quoted local part must be followed by @")
        return mailbox[: i + 1], mailbox[i + 2 :]
    at = mailbox.find("@")
    if at < 0:
        raise AddressError("missing @")
    return mailbox[:at], mailbox[at + 1 :]


def _check_local(local: str) -> None:
    if not local:
        raise AddressError("empty local part")
    if local[0] == '"':
        body = local[1:-1]
        i = 0
        while i < len(body):
            c = body[i]
            if c == "\\":
                if i + 1 >= len(body) or not (" " <= body[i + 1] <= "~"):
                    raise AddressError("bad quoted pair")
                i += 2
                continue
            if c == '"' or (c < " "):
                raise AddressError("bad character in quoted string")
            i += 1
        return
    for atom in local.split("."):
        if not atom or _ATOM.match(atom) is None:
            raise AddressError("bad local part")


def _normalise_domain(domain: str) -> str:
    if not domain:
        raise AddressError("empty domain")
    if domain[0] == "[":
        if domain[-1] != "]":
            raise AddressError("bad address literal")
        lit = domain[1:-1]
        if lit[:5].upper() == "IPV6:":
            try:
                ip6 = ipaddress.IPv6Address(lit[5:])
            except ValueError:
                raise AddressError("bad IPv6 literal") from None
            if ip6.ipv4_mapped is not None:
                # RFC 5952 §5: mapped addresses keep their dotted quad.
                return f"[IPv6:::ffff:{ip6.ipv4_mapped}]"
            return f"[IPv6:{ip6.compressed}]"
        try:
            ip4 = ipaddress.IPv4Address(lit)
        except ValueError:
            raise AddressError("bad address literal") from None
        return f"[{ip4}]"
    if domain.endswith("."):
        raise AddressError("trailing dot in domain")
    for label in domain.split("."):
        if _LABEL.match(label) is None:
            raise AddressError("bad domain")
        if len(label) > MAX_LABEL_OCTETS or (
            not label.isascii() and 4 + len(label.encode("punycode")) > MAX_LABEL_OCTETS
        ):
            raise AddressError("domain label longer than 63 octets")
    if not domain.isascii():
        _check_idn(domain)
    return domain


def _check_idn(domain: str) -> None:
    """
    An internationalised domain must be valid IDNA (RFC 5890-5893, with the
    UTS #46 mapping, so upper-case U-labels are taken): U-labels and
    A-labels alike, since C{idna} decodes and checks every A-label too.
    """
    import idna  # only for non-ASCII domains: the ASCII path never loads it

    try:
        idna.encode(domain, uts46=True, std3_rules=True)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise AddressError("invalid internationalised domain name") from None


def check_mailbox(path: str, *, lenient: bool = False) -> str:
    """
    Validate the inside of the brackets and return the mailbox to show
    handlers (source route dropped, IPv6 literal normalised).

    @param lenient: only require C{local@domain} with both parts non-empty,
        for devices that send e.g. C{user.@host} (smtp-server's
        C{lenientAddressParsing}).
    @raise AddressError: if the path is not a valid mailbox.
    """
    if _FORBIDDEN.search(path):
        raise AddressError("control or invisible character")
    path = _strip_source_route(path)
    local, domain = _split_mailbox(path)
    if lenient:
        if not local or not domain or "@" in domain:
            raise AddressError("not local@domain")
        return path
    if "@" in domain and not domain.startswith("["):
        raise AddressError("more than one @")
    _check_local(local)
    domain = _normalise_domain(domain)
    address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise AddressError("address too long")
    return address


_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")


def valid_hostname(name: str) -> bool:
    """
    Whether a lower-case C{name} is usable as a client's host name (RFC
    1123 labels, plus ``_``): for PTR answers and XCLIENT/XFORWARD NAME,
    which end up in headers and logs.
    """
    if not name or len(name) > 253:
        return False
    return all(_HOST_LABEL.match(label) for label in name.split("."))


def canonical_ip(text: str) -> str:
    """
    An IP address in its canonical text form, an IPv4-mapped IPv6 address
    as the IPv4 address (C{::ffff:192.0.2.1} → C{192.0.2.1}).

    @raise ValueError: C{text} is not an IP address.
    """
    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)
