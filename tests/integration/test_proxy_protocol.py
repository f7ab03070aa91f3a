"""
The PROXY protocol on real sockets: raw headers, HAProxy in front, limits.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpsession import SMTPError, SMTPServerOptions
from smtpsession._core.proxy import V2_SIGNATURE
from smtpsession.testing import RecordingHandler, serve
from tests.conftest import require_program


def options(**kw: object) -> SMTPServerOptions:
    base: dict[str, object] = {
        "name": "mx.test",
        "disable_reverse_lookup": True,
        "use_proxy": True,
    }
    base.update(kw)
    return SMTPServerOptions(**base)  # type: ignore[arg-type]


def read_reply(f) -> bytes:
    """Read one (possibly multi-line) reply; return its last line."""
    while True:
        line = f.readline()
        if not line or line[3:4] != b"-":
            return line


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the socket within a bound (reads until EOF)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
        return True
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_v1_header_rewrites_addresses() -> None:
    """The session and on_connect see the address from the PROXY header."""
    seen = []

    class Handler(RecordingHandler):
        def on_connect(self, session):
            seen.append((session.remote_address, session.remote_port))
            super().on_connect(session)

    handler = Handler()
    with serve(handler, options()) as server:
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\r\n")
        f = sock.makefile("rb")
        assert f.readline() == b"220 mx.test ESMTP\r\n"
        sock.sendall(b"EHLO client\r\n")
        assert read_reply(f).startswith(b"250 ")
        sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        sock.sendall(b"hi\r\n.\r\nQUIT\r\n")
        assert f.readline()[:3] == b"250"
        sock.close()
    assert seen == [("192.0.2.7", 5555)]
    session = handler.messages[0].session
    assert session.local_address == "192.0.2.1"
    assert session.client_hostname == "[192.0.2.7]"
    assert session.proxy.version == 1


def test_v2_header_then_session() -> None:
    """A v2 header (IPv6, with a TLV) is accepted and the session goes on."""
    handler = RecordingHandler()
    body = (
        socket.inet_pton(socket.AF_INET6, "2001:db8::7")
        + socket.inet_pton(socket.AF_INET6, "2001:db8::1")
        + struct.pack("!HH", 4444, 25)
        + b"\x04\x00\x02ab"
    )
    header = V2_SIGNATURE + b"\x21\x21" + struct.pack("!H", len(body)) + body
    with serve(handler, options()) as server:
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(header)
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220 ")
        sock.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"221")
        sock.close()
    [session] = handler.sessions
    assert (session.remote_address, session.remote_port) == ("2001:db8::7", 4444)
    assert session.proxy.tlvs == {4: b"ab"}


def test_blocklist_on_proxied_address() -> None:
    """on_connect can refuse by the real client address behind the proxy."""

    class Block(RecordingHandler):
        def on_connect(self, session):
            if session.remote_address.startswith("203.0.113."):
                raise SMTPError(554, "Your address is blocked")

    with serve(Block(), options()) as server:
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"PROXY TCP4 203.0.113.5 192.0.2.1 1000 25\r\n")
        f = sock.makefile("rb")
        assert f.readline() == b"554 Your address is blocked\r\n"
        assert f.readline() == b""
        sock.close()


@pytest.mark.parametrize(
    "header",
    [
        b"EHLO direct.client\r\n",
        b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n",
        b"PROXY TCP4 " + b"1" * 200,
        b"PROXY TCP4 192.0.2.7 192.0.2.1 1 2" + b" " * 120 + b"\r\n",
    ],
)
def test_invalid_header_refused(header: bytes) -> None:
    """A bad or over-long header gets 421 and the connection is closed; no hooks run."""
    handler = RecordingHandler()
    with serve(handler, options()) as server:
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(header)
        f = sock.makefile("rb")
        assert f.readline() == b"421 mx.test Invalid PROXY header\r\n"
        assert f.readline() == b""
        sock.close()
    assert handler.sessions == []


def test_client_resets_before_header() -> None:
    """A client (a health check) that resets before the header crashes nothing."""
    handler = RecordingHandler()
    with serve(handler, options()) as server:
        for _ in range(3):
            sock = socket.create_connection(server.address, timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        # The server still serves a proper client afterwards.
        sock = socket.create_connection(server.address, timeout=10)
        sock.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 25\r\nQUIT\r\n")
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.close()
    assert len(handler.sessions) == 1


def test_silent_and_trickling_clients_dropped() -> None:
    """Clients that never finish the header are dropped by the idle timeout."""
    with serve(RecordingHandler(), options(socket_timeout=0.5)) as server:
        silent = socket.create_connection(server.address, timeout=10)
        trickle = socket.create_connection(server.address, timeout=10)
        trickle.sendall(b"PROX")
        assert closed_within(silent, 10)
        assert closed_within(trickle, 10)


def test_untrusted_peer_speaks_plain_smtp() -> None:
    """With a trust list, peers outside it are plain SMTP clients."""
    handler = RecordingHandler()
    with serve(handler, options(use_proxy=["192.0.2.0/24"])) as server:
        with smtplib.SMTP(*server.address) as client:
            assert client.noop()[0] == 250
    assert handler.sessions[0].remote_address == "127.0.0.1"
    assert handler.sessions[0].proxy is None


def test_pending_proxy_connections_count_for_max_clients() -> None:
    """Connections still waiting for their header count against max_clients."""
    with serve(RecordingHandler(), options(max_clients=1)) as server:
        first = socket.create_connection(server.address, timeout=10)
        time.sleep(0.2)  # let the server accept the first one
        second = socket.create_connection(server.address, timeout=10)
        assert second.makefile("rb").readline() == (
            b"421 mx.test Too many connected clients, try again in a moment\r\n"
        )
        second.close()
        first.close()


# ---- HAProxy in front ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator:
    """Start HAProxy (ours, by PID) with a given backend port and PROXY version."""
    binary = require_program("haproxy")
    procs: list[subprocess.Popen[bytes]] = []

    def start(backend_port: int, send_proxy: str) -> int:
        port = free_port()
        config = tmp_path / f"haproxy-{port}.cfg"
        config.write_text(
            "global\n  maxconn 100\n"
            "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
            "  timeout server 30s\n"
            f"frontend smtp\n  bind 127.0.0.1:{port}\n  default_backend mta\n"
            f"backend mta\n  server s1 127.0.0.1:{backend_port} {send_proxy}\n"
        )
        proc = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return port
            except OSError as e:
                if proc.poll() is not None:
                    message = proc.stderr.read().decode() if proc.stderr else "haproxy died"
                    raise RuntimeError(message) from e
                time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.external
@pytest.mark.parametrize("send_proxy, version", [("send-proxy", 1), ("send-proxy-v2", 2)])
def test_behind_haproxy(haproxy, send_proxy: str, version: int) -> None:
    """Through HAProxy, the session sees the client's own port, not HAProxy's."""
    handler = RecordingHandler()
    with serve(handler, options()) as server:
        port = haproxy(server.port, send_proxy)
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client_port = client.sock.getsockname()[1]
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: via haproxy\r\n\r\nx\r\n")
    [message] = handler.messages
    session = message.session
    assert session.proxy.version == version
    assert session.remote_address == "127.0.0.1"
    assert session.remote_port == client_port
    assert session.local_port == port
    assert message.data == b"Subject: via haproxy\r\n\r\nx\r\n"


@pytest.mark.external
def test_proxy_then_implicit_tls(tmp_path: Path) -> None:
    """PROXY header first, then a TLS handshake on the same plain TCP port."""
    openssl = require_program("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    handler = RecordingHandler()
    opts = options(secure=True, tls_cert=str(cert), tls_key=str(key))
    with serve(handler, opts) as server:
        raw = socket.create_connection(server.address, timeout=10)
        raw.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 5555 465\r\n")
        context = ssl.create_default_context(cafile=str(cert))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            f = tls.makefile("rb")
            assert f.readline().startswith(b"220 ")
            tls.sendall(b"EHLO c\r\n")
            read_reply(f)
            tls.sendall(b"QUIT\r\n")
            assert f.readline().startswith(b"221")
    [session] = handler.sessions
    assert session.remote_address == "192.0.2.7"
    assert session.secure is True
