"""
Path syntax of MAIL FROM and RCPT TO (C{smtpsession._core.addresses}): the
cases of smtp-server's C{#_parseAddressCommand} unit tests, plus the quoted
local parts smtp-server gets wrong (its bug 5).
"""

from __future__ import annotations

import pytest

from smtpsession._core.addresses import (
    MAX_ADDRESS_OCTETS,
    AddressError,
    check_mailbox,
    split_path,
)

VALID = [
    ("andris@example.com", "andris@example.com"),
    ("Andris.Reinman+tag@Sub.Example.COM", "Andris.Reinman+tag@Sub.Example.COM"),
    # IP literals (smtp-server issue #244: must be accepted).
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),
    ("user@[IPv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"),
    ("user@[ipv6:2001:db8::1]", "user@[IPv6:2001:db8::1]"),
    # Full-form IPv6 is normalised (RFC 5952).
    ("user@[IPv6:2001:0db8:0000:0000:0000:0000:0000:0001]", "user@[IPv6:2001:db8::1]"),
    # IPv4-mapped IPv6 keeps its dotted quad (RFC 5952 §5).
    ("user@[IPv6:::ffff:192.0.2.1]", "user@[IPv6:::ffff:192.0.2.1]"),
    # An obsolete source route is dropped.
    ("@relay1.example,@relay2.example:user@example.com", "user@example.com"),
    # Quoted local parts, with spaces and escaped quotes (smtp-server bug 5).
    ('"john doe"@example.com', '"john doe"@example.com'),
    ('"sender"@example.com', '"sender"@example.com'),
    ('"a\\"b"@example.org', '"a\\"b"@example.org'),
    ('"x@y"@example.org', '"x@y"@example.org'),
    # UTF-8 (RFC 6531), kept as sent: no punycode conversion either way.
    ("üser@exämple.com", "üser@exämple.com"),
    ("user@xn--bcher-kva.example", "user@xn--bcher-kva.example"),
    ("user@XN--BCHER-KVA.example", "user@XN--BCHER-KVA.example"),
    ("a@b", "a@b"),
]

MALFORMED = [
    "user.@host.example",
    ".user@host.example",
    "us..er@host.example",
    "user@host.example.",
    "user@.host.example",
    "user@ho..st.example",
    "user@-host.example",
    "user@host-.example",
    "a@b@c.example",
    "user@",
    "@host.example",
    "userhost.example",
    "user@[300.1.1.1]",
    "user@[1.2.3]",
    "user@[IPv6:zz::1]",
    "user@[IPv6:1::2::3]",
    "user@[192.0.2.1",
    "user@exa mple.com",
    '"unterminated@example.com',
    '"quoted"x@example.com',
    "@relay.example:",
    "@:user@example.com",
]

FORBIDDEN = [
    "us\x00er@example.com",
    "user@exam\rple.com",
    "user\n@example.com",
    "user\x7f@example.com",
    "user\x85@example.com",
    "us\u200ber@example.com",
    "user@exa\u2060mple.com",
    "\ufeffuser@example.com",
]


@pytest.mark.parametrize(("path", "mailbox"), VALID)
def test_valid(path: str, mailbox: str) -> None:
    """Valid mailboxes are accepted and shown to handlers normalised as listed."""
    assert check_mailbox(path) == mailbox


@pytest.mark.parametrize("path", MALFORMED)
def test_malformed_rejected_by_default(path: str) -> None:
    """RFC 5321-breaking mailboxes are refused in strict mode."""
    with pytest.raises(AddressError):
        check_mailbox(path)


@pytest.mark.parametrize(
    "path", ["user.@host.example", ".user@host.example", "us..er@host.example", "user@host-.example"]
)
def test_malformed_accepted_when_lenient(path: str) -> None:
    """lenient_address_parsing takes local@domain as is (HPE iLO's user.@host)."""
    assert check_mailbox(path, lenient=True) == path


@pytest.mark.parametrize("path", ["userhost.example", "user@", "@host.example", "a@b@c"])
def test_lenient_still_needs_local_at_domain(path: str) -> None:
    """Even lenient parsing needs a non-empty local part, one @ and a domain."""
    with pytest.raises(AddressError):
        check_mailbox(path, lenient=True)


@pytest.mark.parametrize("path", FORBIDDEN)
@pytest.mark.parametrize("lenient", [False, True])
def test_controls_and_invisible_characters_always_rejected(path: str, lenient: bool) -> None:
    """Control and invisible characters are refused, even in lenient mode."""
    with pytest.raises(AddressError):
        check_mailbox(path, lenient=lenient)


def test_length_limit() -> None:
    """RFC 5321 §4.5.3.1.3: a path is at most 256 octets with its brackets."""
    domain = "@" + ".".join(["d" * 60] * 3) + ".example"
    fits = "l" * (MAX_ADDRESS_OCTETS - len(domain)) + domain
    assert check_mailbox(fits) == fits
    with pytest.raises(AddressError):
        check_mailbox("l" + fits)
    # Octets, not characters: a UTF-8 local part counts its bytes.
    with pytest.raises(AddressError):
        check_mailbox("ü" * (MAX_ADDRESS_OCTETS - len(domain) - 1) + domain)


def test_label_length_limit() -> None:
    """RFC 1035 §2.3.4: a domain label is at most 63 octets, a U-label as its A-label."""
    assert check_mailbox("a@" + "x" * 63 + ".example") == "a@" + "x" * 63 + ".example"
    with pytest.raises(AddressError, match="63"):
        check_mailbox("a@" + "x" * 64 + ".example")
    with pytest.raises(AddressError, match="63"):
        check_mailbox("a@example." + "x" * 64)
    # "xn--" + Punycode: 20 ü and 36 x make a 63-octet A-label, one more x 64.
    fits = "ü" * 20 + "x" * 36
    assert 4 + len(fits.encode("punycode")) == 63
    assert check_mailbox(f"a@{fits}.example") == f"a@{fits}.example"
    with pytest.raises(AddressError, match="63"):
        check_mailbox(f"a@{fits}x.example")


@pytest.mark.parametrize(
    ("text", "path", "rest"),
    [
        ("<a@b.example>", "a@b.example", ""),
        ("<a@b.example> SIZE=100 BODY=8BITMIME", "a@b.example", "SIZE=100 BODY=8BITMIME"),
        ("<>", "", ""),
        ("<> RET=HDRS", "", "RET=HDRS"),
        ('<"x>y z"@b.example> X=1', '"x>y z"@b.example', "X=1"),
        ('<"a\\">"@b.example>', '"a\\">"@b.example', ""),
        ("<a@b.example>   ", "a@b.example", ""),
    ],
)
def test_split_path(text: str, path: str, rest: str) -> None:
    """The path ends at the first > outside quotes; the rest is the parameter list."""
    assert split_path(text) == (path, rest)


@pytest.mark.parametrize(
    "text",
    ["a@b.example", "<a@b.example", "<a@b.example>x", "<<a@b.example>>", '<"a@b.example>', ""],
)
def test_split_path_rejects(text: str) -> None:
    """Missing brackets, nesting, junk glued to > and open quotes are syntax errors."""
    with pytest.raises(AddressError):
        split_path(text)
