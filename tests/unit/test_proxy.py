"""
The PROXY protocol header parser (v1 text, v2 binary), without sockets.
"""

from __future__ import annotations

import socket
import struct

import pytest

from smtpsession._core.proxy import V2_SIGNATURE, ProxyError, ProxyHeaderParser


def v2(command: int, family: int, body: bytes) -> bytes:
    """A v2 header: signature, version/command, family/protocol, length, body."""
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


def ipv4_block(src: str, dst: str, sport: int, dport: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)


def feed_all(data: bytes, step: int | None = None):
    """Feed whole, or in pieces of C{step} bytes; return the first result."""
    parser = ProxyHeaderParser()
    if step is None:
        return parser.feed(data)
    result = None
    for i in range(0, len(data), step):
        result = parser.feed(data[i : i + step])
        if result is not None:
            return result
    return result


@pytest.mark.parametrize("step", [None, 1, 7])
def test_v1_tcp4(step: int | None) -> None:
    """A v1 TCP4 header gives both addresses; what follows is returned."""
    info, rest = feed_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\r\nEHLO x\r\n", step)
    assert info.version == 1
    assert info.source == ("192.0.2.7", 5555)
    assert info.destination == ("192.0.2.1", 25)
    if step is None:
        assert rest == b"EHLO x\r\n"


def test_v1_tcp6_and_unknown() -> None:
    """TCP6 addresses are parsed; UNKNOWN keeps the socket's addresses."""
    info, _ = feed_all(b"PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n")
    assert info.source == ("2001:db8::7", 1)
    info, rest = feed_all(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\nX")
    assert info.source is None and info.destination is None
    assert rest == b"X"


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.7 192.0.2.1 5555\r\n",  # missing field
        b"PROXY TCP4 2001:db8::1 192.0.2.1 1 2\r\n",  # family mismatch
        b"PROXY TCP6 192.0.2.7 192.0.2.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 host.example 192.0.2.1 1 2\r\n",  # not an address
        b"PROXY TCP4 192.0.2.7 192.0.2.1 65536 2\r\n",  # port range
        b"PROXY TCP4 192.0.2.7 192.0.2.1 01 2\r\n",  # leading zero
        b"PROXY UDP4 192.0.2.7 192.0.2.1 1 2\r\n",  # unknown family
        b"PROXY TCP4 192.0.2.7 192.0.2.1 1 2\n",  # bare LF
        b"EHLO x\r\n",  # not a header at all
        b"GET / HTTP/1.1\r\n",
    ],
)
def test_v1_invalid(header: bytes) -> None:
    """Malformed v1 headers are refused, never guessed."""
    with pytest.raises(ProxyError):
        feed_all(header)


def test_v1_length_cap_without_newline() -> None:
    """A v1 header that goes past 107 bytes without CRLF is refused at once."""
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 " + b"1" * 80) is None
    with pytest.raises(ProxyError):
        parser.feed(b"1" * 30)


def test_v1_overlong_terminated_line() -> None:
    """A CRLF-terminated line longer than the v1 maximum is refused."""
    with pytest.raises(ProxyError):
        feed_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 1 2" + b" " * 100 + b"\r\n")


@pytest.mark.parametrize("step", [None, 1, 5])
def test_v2_ipv4_with_tlv(step: int | None) -> None:
    """v2 PROXY over IPv4 with a TLV; bytes after the header are returned."""
    block = ipv4_block("198.51.100.9", "198.51.100.1", 40000, 587)
    tlv = b"\x02" + struct.pack("!H", 11) + b"example.com"
    info, rest = feed_all(v2(1, 0x11, block + tlv) + b"\x16\x03\x01", step)
    assert info.version == 2
    assert info.source == ("198.51.100.9", 40000)
    assert info.destination == ("198.51.100.1", 587)
    assert info.tlvs == {2: b"example.com"}
    if step is None:
        assert rest == b"\x16\x03\x01"


def test_v2_ipv6_and_mapped() -> None:
    """v2 IPv6 addresses are reported; IPv4-mapped ones as IPv4."""
    body = (
        socket.inet_pton(socket.AF_INET6, "::ffff:192.0.2.5")
        + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + struct.pack("!HH", 1000, 25)
    )
    info, _ = feed_all(v2(1, 0x21, body))
    assert info.source == ("192.0.2.5", 1000)
    assert info.destination == ("2001:db8::1", 25)


def test_v2_local_command() -> None:
    """LOCAL (a health check from the proxy itself) keeps the socket addresses."""
    info, rest = feed_all(v2(0, 0x00, b"") + b"rest")
    assert info.source is None
    assert rest == b"rest"


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + bytes([0x11, 0x11]) + struct.pack("!H", 0),  # version 1 in v2 form
        v2(2, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2)),  # unknown command
        v2(1, 0x13, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2)),  # unknown protocol
        v2(1, 0x41, b""),  # unknown family
        v2(1, 0x11, b"\x01\x02\x03"),  # short address block
        v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2) + b"\x01\x00\x09ab"),  # bad TLV
        b"\r\n\r\n\x00\r\nQUIX\n" + b"\x21\x11\x00\x00",  # bad signature
    ],
)
def test_v2_invalid(data: bytes) -> None:
    """Malformed v2 headers are refused."""
    with pytest.raises(ProxyError):
        feed_all(data)


def test_v2_waits_for_declared_length() -> None:
    """A v2 header is not complete until all its declared bytes arrived."""
    data = v2(1, 0x11, ipv4_block("1.2.3.4", "5.6.7.8", 1, 2))
    parser = ProxyHeaderParser()
    assert parser.feed(data[:-1]) is None
    result = parser.feed(data[-1:])
    assert result is not None and result[0].source == ("1.2.3.4", 1)
