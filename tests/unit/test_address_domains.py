"""
Address.domain_ascii / domain_unicode: internationalised domains normalised
with the idna package (issue: "U-labels and A-labels both accepted",
"validated and normalised"), so that a handler compares one form.
"""

from __future__ import annotations

import pytest

from smtpsession.session import Address
from tests.unit.coreclient import CoreClient


@pytest.mark.parametrize(
    "address, ascii_form, unicode_form",
    [
        ("user@Bücher.Example", "xn--bcher-kva.example", "bücher.example"),
        ("user@xn--bcher-kva.example", "xn--bcher-kva.example", "bücher.example"),
        ("user@XN--BCHER-KVA.example", "xn--bcher-kva.example", "bücher.example"),
        ("User@Example.COM", "example.com", "example.com"),
        ("user@[192.0.2.1]", "[192.0.2.1]", "[192.0.2.1]"),
        ("", "", ""),
        ("postmaster", "", ""),
        # An A-label that is not valid IDNA (the core takes any LDH label in
        # an ASCII domain): lower-cased, never an exception.
        ("user@xn--zz.example", "xn--zz.example", "xn--zz.example"),
    ],
)
def test_domain_forms(address: str, ascii_form: str, unicode_form: str) -> None:
    a = Address(address)
    assert a.domain_ascii == ascii_form
    assert a.domain_unicode == unicode_form


def test_u_labels_and_a_labels_of_one_domain_compare_equal_after_smtp() -> None:
    """Both forms accepted on the wire (U-labels with SMTPUTF8), one normal form."""
    c = CoreClient()
    c.ehlo()
    c.lines(
        "MAIL FROM:<a@example.org> SMTPUTF8",
        "RCPT TO:<anna@Bücher.example>",
        "RCPT TO:<bob@xn--bcher-kva.example>",
    )
    domains = {r.domain_ascii for r in c.session.envelope.rcpt_to}
    assert domains == {"xn--bcher-kva.example"}
    assert [r.domain for r in c.session.envelope.rcpt_to] == ["Bücher.example", "xn--bcher-kva.example"]
