# -*- test-case-name: tests.unit.test_proxy -*-
"""
The HAProxy PROXY protocol header, versions 1 (text) and 2 (binary).

A load balancer that terminates the client's TCP connection puts this
header first on the connection to the server, so the server learns the real
client address.  The parser is fed bytes until it has a complete header
(or decides the input is not one) and never reads past the header: the
rest belongs to the session (or to a TLS handshake).

Limits: a v1 header is at most 107 bytes (the spec's own maximum); a v2
header at most 16 bytes plus its 16-bit length.  Anything malformed,
truncated by the peer, or using an unknown version, command, family or
protocol is an error; nothing is guessed.

Twisted has a PROXY implementation (C{twisted.protocols.haproxy}) but it is
private below the endpoint wrapper and cannot be limited to trusted peers
or combined with our own implicit TLS, so this small parser exists.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["ProxyInfo", "ProxyError", "ProxyHeaderParser", "V2_SIGNATURE"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_MAX = 107


class ProxyError(ValueError):
    """The bytes are not a valid PROXY header."""


class ProxyInfo:
    """
    What the header said.  C{source}/C{destination} are C{(address, port)}
    or C{None} for a LOCAL (v2) or UNKNOWN (v1) connection, in which case the
    socket's own addresses stand.  C{tlvs} holds v2 type-length-value
    extensions as a dict of type number to raw bytes.
    """

    __slots__ = ("version", "source", "destination", "tlvs")

    def __init__(
        self,
        version: int,
        source: tuple[str, int] | None,
        destination: tuple[str, int] | None,
        tlvs: dict[int, bytes] | None = None,
    ) -> None:
        self.version = version
        self.source = source
        self.destination = destination
        self.tlvs = tlvs or {}

    def __repr__(self) -> str:
        return (
            f"ProxyInfo(version={self.version}, source={self.source!r}, "
            f"destination={self.destination!r})"
        )


def _port(text: bytes) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[:1] == b"0"):
        raise ProxyError("bad port")
    port = int(text)
    if port > 65535:
        raise ProxyError("bad port")
    return port


def _parse_v1(line: bytes) -> ProxyInfo:
    parts = line.split(b" ")
    if parts[0] != b"PROXY" or len(parts) < 2:
        raise ProxyError("not a PROXY v1 header")
    family = parts[1]
    if family == b"UNKNOWN":
        return ProxyInfo(1, None, None)
    if len(parts) != 6:
        raise ProxyError("wrong number of fields")
    try:
        src = ipaddress.ip_address(parts[2].decode("ascii"))
        dst = ipaddress.ip_address(parts[3].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyError("bad address") from None
    want = 4 if family == b"TCP4" else 6 if family == b"TCP6" else 0
    if want == 0:
        raise ProxyError("unknown family")
    if src.version != want or dst.version != want:
        raise ProxyError("address does not match family")
    return ProxyInfo(
        1, (str(src), _port(parts[4])), (str(dst), _port(parts[5]))
    )


def _parse_v2(header: bytes, body: bytes) -> ProxyInfo:
    ver_cmd = header[12]
    fam = header[13]
    if ver_cmd >> 4 != 2:
        raise ProxyError("unknown version")
    command = ver_cmd & 0x0F
    if command == 0:  # LOCAL: health check from the proxy itself
        return ProxyInfo(2, None, None)
    if command != 1:
        raise ProxyError("unknown command")
    family, proto = fam >> 4, fam & 0x0F
    if family == 0:  # AF_UNSPEC
        return ProxyInfo(2, None, None)
    if proto not in (1, 2):  # STREAM or DGRAM
        raise ProxyError("unknown transport protocol")
    if family == 1:
        size = 12
        if len(body) < size:
            raise ProxyError("short IPv4 block")
        src4 = ipaddress.IPv4Address(body[0:4])
        dst4 = ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
        src, dst = str(src4), str(dst4)
    elif family == 2:
        size = 36
        if len(body) < size:
            raise ProxyError("short IPv6 block")
        src6 = ipaddress.IPv6Address(body[0:16])
        dst6 = ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
        src = str(src6.ipv4_mapped or src6)
        dst = str(dst6.ipv4_mapped or dst6)
    elif family == 3:  # AF_UNIX: no IP address to report
        return ProxyInfo(2, None, None)
    else:
        raise ProxyError("unknown family")
    tlvs: dict[int, bytes] = {}
    rest = body[size:]
    while rest:
        if len(rest) < 3:
            raise ProxyError("truncated TLV")
        kind = rest[0]
        (length,) = struct.unpack("!H", rest[1:3])
        if len(rest) < 3 + length:
            raise ProxyError("truncated TLV")
        tlvs[kind] = rest[3 : 3 + length]
        rest = rest[3 + length :]
    return ProxyInfo(2, (src, sport), (dst, dport), tlvs)


class ProxyHeaderParser:
    """
    Feed bytes with L{feed} until it returns a result.

    @ivar info: the parsed header once complete.
    """

    def __init__(self) -> None:
        self._buf = b""
        self.info: ProxyInfo | None = None

    def feed(self, data: bytes) -> tuple[ProxyInfo, bytes] | None:
        """
        Add bytes.

        @return: C{(info, rest)} once the header is complete (C{rest} is what
            followed it), or C{None} if more bytes are needed.
        @raise ProxyError: the input is not a valid header.
        """
        buf = self._buf + data
        self._buf = buf
        if not buf:
            return None
        if buf[:1] == b"P":
            head = buf[:6]
            if b"PROXY "[: len(head)] != head:
                raise ProxyError("not a PROXY header")
            # The header ends at its first LF, which must follow a CR: a
            # bare LF before a CRLF is refused whether or not the CRLF has
            # arrived yet, so the verdict does not depend on the segments.
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) >= _V1_MAX:
                    raise ProxyError("v1 header too long")
                return None
            end -= 1
            if buf[end] != 13:
                raise ProxyError("v1 header must end with CRLF")
            if end + 2 > _V1_MAX:
                raise ProxyError("v1 header too long")
            try:
                text = buf[:end]
                text.decode("ascii")
            except UnicodeDecodeError:
                raise ProxyError("non-ASCII v1 header") from None
            self.info = _parse_v1(text)
            return self.info, buf[end + 2 :]
        if buf[:1] == b"\r":
            n = min(len(buf), 12)
            if buf[:n] != V2_SIGNATURE[:n]:
                raise ProxyError("not a PROXY header")
            if len(buf) < 16:
                return None
            (length,) = struct.unpack("!H", buf[14:16])
            if len(buf) < 16 + length:
                return None
            self.info = _parse_v2(buf[:16], buf[16 : 16 + length])
            return self.info, buf[16 + length :]
        raise ProxyError("not a PROXY header")
