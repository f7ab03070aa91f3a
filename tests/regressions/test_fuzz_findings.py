"""
What fuzzing found (docs/fuzzing.md, "Crashes found and fixed"): each
test here replays the input of a finding (and smaller ones like it), and
fails without its fix.
"""

from __future__ import annotations

import pytest

from smtpsession._core.proxy import ProxyError, ProxyHeaderParser

# -- PROXY v1: a bare LF inside the header ----------------------------------------------
#
# Found by fuzz/fuzz_proxy.py (its first input below, after 194,807
# executions): a v1 header with a bare LF before its CRLF was accepted
# when it arrived whole ("PROXY UNKNOWN" takes any text up to the CRLF)
# and refused when the proxy's segment ended between the LF and the CRLF,
# so the same bytes meant two things.  A v1 header ends at its first LF,
# which must follow a CR.

LF_INSIDE = [
    b"PROXY UNKNOWN 001:192.0.2.7 192.0.2.1 5Tz\n\t& 25\r\nie!\x11le\r\n",
    b"PROXY UNKNOWN x\ny\r\nEHLO x\r\n",
    b"PROXY UNKNOWN\n\r\n",
    b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\n\r\n",
]


@pytest.mark.parametrize("header", LF_INSIDE)
@pytest.mark.parametrize("step", [None, 1, 16])
def test_proxy_v1_header_with_a_bare_lf_is_refused(header: bytes, step: int | None) -> None:
    """Refused, whole or in pieces (it was accepted whole)."""
    parser = ProxyHeaderParser()
    pieces = [header] if step is None else [header[i : i + step] for i in range(0, len(header), step)]
    with pytest.raises(ProxyError):
        for piece in pieces:
            assert parser.feed(piece) is None
