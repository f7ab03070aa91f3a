"""
Reply formatting and enhanced status codes (C{smtpsession._core.replies}).
"""

from __future__ import annotations

import re

import pytest

from smtpsession._core import replies as R
from smtpsession._core.replies import default_enhanced, format_reply, pair

REPLY_LINE = re.compile(rb"[2-5][0-9]{2}[ -][^\r\n]*\r\n")


def test_single_line() -> None:
    """A reply is CODE SP [ESC SP] text CRLF."""
    assert format_reply(250, "OK") == b"250 OK\r\n"
    assert format_reply(250, "OK", "2.0.0") == b"250 2.0.0 OK\r\n"


def test_multi_line_repeats_the_enhanced_code() -> None:
    """Newlines make a multi-line reply; RFC 2034 wants the ESC on every line."""
    assert format_reply(550, "first\nsecond\r\nthird", "5.7.1") == (
        b"550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n"
    )
    assert format_reply(451, "a\nb") == b"451-a\r\n451 b\r\n"


@pytest.mark.parametrize("text", ["a\rb", "a\x00b", "a\tb", "a\x7fb", "a\x85b", "a\x1bb"])
def test_controls_never_reach_the_wire(text: str) -> None:
    """A handler's message cannot split a reply or smuggle controls (replaced by spaces)."""
    out = format_reply(550, text)
    assert out == b"550 a b\r\n"


def test_empty_text_and_trailing_space() -> None:
    """No trailing space on a reply line; an empty text leaves just the code."""
    assert format_reply(250, "") == b"250\r\n"
    assert format_reply(250, "OK  ") == b"250 OK\r\n"


def test_utf8_text() -> None:
    """Texts are UTF-8 encoded (SMTPUTF8 clients may see non-ASCII mailboxes)."""
    assert format_reply(550, "no such user: üser") == "550 no such user: üser\r\n".encode()


@pytest.mark.parametrize(
    ("code", "context", "esc"),
    [
        (250, None, "2.0.0"),
        (421, None, "4.4.2"),
        (451, None, "4.3.0"),
        (500, None, "5.5.2"),
        (501, None, "5.5.4"),
        (502, None, "5.5.1"),
        (503, None, "5.5.1"),
        (530, None, "5.7.0"),
        (535, None, "5.7.8"),
        (552, None, "5.2.2"),
        (554, None, "5.6.0"),
        # Contextual: a refused sender is a policy matter, not "bad mailbox"
        # (smtp-server sends 5.1.1, its bug 9).
        (550, "MAIL", "5.7.1"),
        (550, "RCPT", "5.1.1"),
        (550, "DATA", "5.7.1"),
        (550, "LMTP", "5.1.1"),
        (452, "RCPT", "4.2.2"),
        (552, "DATA", "5.3.4"),
        (250, "DATA", "2.6.0"),
        (535, "AUTH", "5.7.8"),
        # Unknown codes fall back to their class.
        (299, None, "2.0.0"),
        (459, None, "4.0.0"),
        (599, "MAIL", "5.0.0"),
    ],
)
def test_default_enhanced(code: int, context: str | None, esc: str) -> None:
    """The enhanced code chosen when the handler chose none."""
    assert default_enhanced(code, context) == esc


def test_pair_has_both_forms() -> None:
    """Catalogue pairs are (without, with) enhanced code, in that order."""
    assert pair(503, "Error: x") == (b"503 Error: x\r\n", b"503 5.5.1 Error: x\r\n")
    assert pair(250, "Accepted", "2.1.0")[1] == b"250 2.1.0 Accepted\r\n"


def test_catalogue_is_well_formed() -> None:
    """Every catalogued reply is one valid line, and its ESC matches its class."""
    for name in dir(R):
        value = getattr(R, name)
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bytes)):
            continue
        plain, enhanced = value
        assert REPLY_LINE.fullmatch(plain), name
        assert REPLY_LINE.fullmatch(enhanced), name
        if plain.startswith(b"354"):
            # RFC 2034 gives 3xx no enhanced code.
            assert plain == enhanced, name
            continue
        code = plain[:3]
        assert enhanced.startswith(code + b" " + code[:1] + b"."), name
        assert enhanced.split(b" ", 2)[2] == plain.split(b" ", 1)[1], name
