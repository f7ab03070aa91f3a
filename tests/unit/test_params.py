"""
ESMTP parameter lists and xtext (C{smtpsession._core.params}): upper-case
keys, xtext-decoded values, C{True} for bare keywords, and the three kinds
of error the connection turns into 501 replies.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpsession._core.params import (
    ParamError,
    is_xtext,
    parse_params,
    xtext_decode,
    xtext_encode,
)


@pytest.mark.parametrize(
    ("text", "args"),
    [
        ("", {}),
        ("SIZE=100 BODY=8BITMIME", {"SIZE": "100", "BODY": "8BITMIME"}),
        ("size=100 body=8bitmime", {"SIZE": "100", "BODY": "8bitmime"}),
        ("SMTPUTF8", {"SMTPUTF8": True}),
        ("REQUIRETLS SMTPUTF8", {"REQUIRETLS": True, "SMTPUTF8": True}),
        # Every value is xtext-decoded (as smtp-server does).
        ("X=a+2Bb", {"X": "a+b"}),
        ("ORCPT=rfc822;v+40b.c", {"ORCPT": "rfc822;v@b.c"}),
        ("ENVID=QQ+3D+3D", {"ENVID": "QQ=="}),
        # Unknown parameters pass through to the handler.
        ("FOO=BAR AUTH=<>", {"FOO": "BAR", "AUTH": "<>"}),
        ("  SIZE=1   X-Y=2 ", {"SIZE": "1", "X-Y": "2"}),
        # A "+" not followed by two hex digits is kept as is.
        ("X=+zz", {"X": "+zz"}),
    ],
)
def test_parse(text: str, args: dict[str, object]) -> None:
    """Parameters parse into upper-case keys and decoded values."""
    assert parse_params(text)[0] == args


def test_raw_values_are_kept_for_xtext_checks() -> None:
    """The undecoded value is available for the parameters whose syntax is xtext."""
    args, raw = parse_params("ENVID=a+2Bb ORCPT=rfc822;x+40y SMTPUTF8")
    assert raw == {"ENVID": "a+2Bb", "ORCPT": "rfc822;x+40y"}
    assert args["ENVID"] == "a+b"


@pytest.mark.parametrize(
    ("text", "kind", "key"),
    [
        ("SIZE=1 size=2", "duplicate", "SIZE"),
        ("RET=FULL RET=HDRS", "duplicate", "RET"),
        ("SMTPUTF8 SMTPUTF8", "duplicate", "SMTPUTF8"),
        # Keywords that mean nothing without a value (smtp-server robustness tests).
        ("SIZE", "novalue", "SIZE"),
        ("BODY", "novalue", "BODY"),
        ("BODY=", "novalue", "BODY"),
        ("RET", "novalue", "RET"),
        ("ENVID", "novalue", "ENVID"),
        ("NOTIFY", "novalue", "NOTIFY"),
        ("ORCPT", "novalue", "ORCPT"),
        ("X=", "novalue", "X"),
        ("A=b=c", "syntax", ""),
        ("-X=1", "syntax", ""),
        ("=1", "syntax", ""),
        ("K_K=1", "syntax", ""),
        # Control characters, also when they hide in xtext.
        ("X=a+0Db", "syntax", ""),
        ("X=a+00", "syntax", ""),
        ("X=a\x01", "syntax", ""),
    ],
)
def test_errors(text: str, kind: str, key: str) -> None:
    """Each malformed list raises the kind of error that selects the 501 text."""
    with pytest.raises(ParamError) as info:
        parse_params(text)
    assert (info.value.kind, info.value.key) == (kind, key)


def test_xtext_examples() -> None:
    """RFC 3461 §4: "+" and "=" and non-printables are hex-escaped."""
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"
    assert xtext_decode("plain") == "plain"
    assert xtext_encode("é") == "+C3+A9"
    assert xtext_decode("+C3+A9") == "é"
    # Octets that are not UTF-8 are kept one character each, never lost.
    assert xtext_decode("+E9t+E9") == "\xe9t\xe9"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("", True), ("abc", True), ("a+2B", True), ("a+2b", False), ("a=b", False),
     ("a b", False), ("é", False), ("a+", False), ("<>", True)],
)
def test_is_xtext(value: str, ok: bool) -> None:
    """xtext is printable ASCII without "+"/"=", plus upper-case hex escapes."""
    assert is_xtext(value) is ok


@given(st.text())
def test_xtext_round_trip(value: str) -> None:
    """Any text survives encode → decode, and its encoding is valid xtext."""
    encoded = xtext_encode(value)
    assert is_xtext(encoded)
    assert xtext_decode(encoded) == value
