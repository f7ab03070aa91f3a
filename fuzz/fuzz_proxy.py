"""
Fuzz the PROXY protocol header parser (v1 text and v2 binary).

    python fuzz/fuzz_proxy.py [libFuzzer flags] [corpus dirs]

Input: one byte that chooses where the bytes are cut, then the bytes a
proxy (or anyone) sends first on the connection.  For each input:

  - the parser answers "more", a header, or L{ProxyError}; nothing else
    ever escapes;
  - cut into pieces, the bytes give the same answer as whole: the same
    header and the same bytes after it, or an error (a header that is
    complete is complete whatever follows; an error stays an error);
  - a header that parses is well-formed (v1 at most 107 bytes, ports in
    range, addresses of the family named) and survives a round trip:
    written out again and parsed, it says the same.
"""

# The checkout first on sys.path, so that "fuzz" and "smtpsession" are its own.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ipaddress
import random
import struct
from typing import Any

from fuzz import _harness

with _harness.instrumented():
    from smtpsession._core.proxy import V2_SIGNATURE, ProxyError, ProxyHeaderParser, ProxyInfo

Outcome = tuple[str, Any, bytes]


def v2(command: int, family: int, body: bytes) -> bytes:
    """A v2 header: signature, version and command, family, length, body."""
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def seeds() -> list[bytes]:
    ipv4 = bytes([192, 0, 2, 7, 192, 0, 2, 1]) + struct.pack("!HH", 5555, 25)
    ipv6 = (
        ipaddress.IPv6Address("2001:db8::7").packed
        + ipaddress.IPv6Address("::ffff:192.0.2.1").packed
        + struct.pack("!HH", 1, 65535)
    )
    tlv = bytes([0x02]) + struct.pack("!H", 11) + b"example.com"
    headers = [
        b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\r\n",
        b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n",
        b"PROXY UNKNOWN\r\n",
        b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        v2(0, 0x00, b""),
        v2(1, 0x11, ipv4),
        v2(1, 0x11, ipv4 + tlv),
        v2(1, 0x21, ipv6),
        v2(1, 0x12, ipv4),
        v2(1, 0x31, b"\0" * 216),
    ]
    out = []
    for i, header in enumerate(headers):
        out.append(bytes([i]) + header + b"EHLO client.example\r\n")
        out.append(bytes([i]) + header[: len(header) // 2])
    # A finding (tests/regressions/test_fuzz_findings.py): a bare LF in v1.
    out.append(b"\x00PROXY UNKNOWN 001:192.0.2.7 192.0.2.1 5Tz\n\t& 25\r\nie!\x11le\r\n")
    return out


DICTIONARY = [
    b"PROXY ",
    b"TCP4 ",
    b"TCP6 ",
    b"UNKNOWN",
    b"\r\n",
    b" 65535",
    b"::ffff:",
    V2_SIGNATURE,
    b"\x20\x00",
    b"\x21\x11",
    b"\x21\x12",
    b"\x21\x21",
    b"\x21\x31",
]


def outcome(parser: ProxyHeaderParser, data: bytes) -> Outcome:
    """("more", None, b""), ("header", info, rest) or ("error", None, b"")."""
    try:
        result = parser.feed(data)
    except ProxyError:
        return ("error", None, b"")
    if result is None:
        return ("more", None, b"")
    info, rest = result
    assert isinstance(info, ProxyInfo) and isinstance(rest, bytes), result
    assert parser.info is info
    return ("header", info, rest)


def same(a: ProxyInfo, b: ProxyInfo) -> bool:
    return (a.version, a.source, a.destination, a.tlvs) == (
        b.version,
        b.source,
        b.destination,
        b.tlvs,
    )


def pieces(data: bytes, key: int) -> list[bytes]:
    """C{data} cut at a few points that C{key} chooses (byte by byte for 0)."""
    if key == 0:
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(key)
    cuts = sorted(rng.sample(range(1, len(data)), min(key % 8, max(len(data) - 1, 0))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def check_header(info: ProxyInfo, wire: bytes, rest: bytes) -> None:
    """A parsed header is well-formed, and writing it out again gives it back."""
    header = wire[: len(wire) - len(rest)]
    assert wire.endswith(rest)
    assert info.version in (1, 2), info
    if info.version == 1:
        assert header.startswith(b"PROXY ") and header.endswith(b"\r\n"), header
        assert len(header) <= 107, header
        assert b"\n" not in header[:-1], f"LF inside a v1 header: {header!r}"
    else:
        assert header.startswith(V2_SIGNATURE), header
    if info.source is None:
        assert info.destination is None and not info.tlvs, info
        return
    assert info.destination is not None
    src = ipaddress.ip_address(info.source[0])
    dst = ipaddress.ip_address(info.destination[0])
    assert str(src) == info.source[0] and str(dst) == info.destination[0], info
    assert 0 <= info.source[1] <= 65535 and 0 <= info.destination[1] <= 65535, info
    if info.version == 1:
        assert src.version == dst.version, info
        family = b"TCP4" if src.version == 4 else b"TCP6"
        again = b"PROXY %s %s %s %d %d\r\n" % (
            family,
            info.source[0].encode(),
            info.destination[0].encode(),
            info.source[1],
            info.destination[1],
        )
    else:
        if src.version == 4 and dst.version == 4:
            fam = 0x11
            block = src.packed + dst.packed
        else:
            # An IPv4-mapped IPv6 address is reported as IPv4: write it back mapped.
            fam = 0x21
            block = b"".join(
                ipaddress.IPv6Address(f"::ffff:{a}" if a.version == 4 else a).packed
                for a in (src, dst)
            )
        block += struct.pack("!HH", info.source[1], info.destination[1])
        for tlv_type, value in info.tlvs.items():
            block += bytes([tlv_type]) + struct.pack("!H", len(value)) + value
        again = v2(1, fam, block)
    kind, info2, rest2 = outcome(ProxyHeaderParser(), again)
    assert kind == "header" and rest2 == b"", (again, kind)
    assert same(info, info2), (info, info2)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    key, wire = data[0], data[1:]
    whole = outcome(ProxyHeaderParser(), wire)
    if whole[0] == "header":
        check_header(whole[1], wire, whole[2])
    parser = ProxyHeaderParser()
    fed = b""
    for piece in pieces(wire, key):
        fed += piece
        kind, info, rest = outcome(parser, piece)
        if kind == "more":
            continue
        assert kind == whole[0], f"cut at {len(fed)}: {kind}, whole: {whole[0]} ({wire!r})"
        if kind == "header":
            assert same(info, whole[1]), (info, whole[1])
            assert rest + wire[len(fed) :] == whole[2], (rest, whole[2])
        return
    assert whole[0] == "more", f"whole: {whole[0]}, in pieces: more ({wire!r})"


if __name__ == "__main__":
    _harness.main(test_one_input, seeds, DICTIONARY)
