"""
Acceptance 4: a 100 MB message passes through a handler that reads it with
C{async for} while the server's resident memory grows by less than 20 MB.

The server runs in its own process (tests/integration/memory_server.py) so
its memory is measured alone, from /proc/PID/status: the resident size
after a warm-up message, and the peak (VmHWM) after the big one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import smtpsession

MESSAGE_BYTES = 100 * 1024 * 1024
LIMIT = 20 * 1024 * 1024
SERVER = Path(__file__).with_name("memory_server.py")


def status_kib(pid: int, field: str) -> int:
    """A memory field of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def reply(f) -> bytes:  # type: ignore[no-untyped-def]
    """One whole reply; its last line."""
    while True:
        line = f.readline()
        if line[3:4] != b"-":
            return line


def send_message(port: int, size: int) -> tuple[bytes, str]:
    """Send one message of C{size} body bytes; return the final reply and the body's digest."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 27 + b"..\r\n"  # 976 bytes, stuffed dots
    wire_line = b"." + line  # a leading dot on the wire, removed by the server
    digest = hashlib.sha256()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        f = sock.makefile("rb")
        assert reply(f).startswith(b"220")
        sock.sendall(b"EHLO mem.client\r\n")
        assert reply(f).startswith(b"250")
        sock.sendall(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
        assert [reply(f)[:3] for _ in range(3)] == [b"250", b"250", b"354"]
        batch = 256
        sent = 0
        while sent + len(line) * batch <= size:
            sock.sendall(wire_line * batch)
            digest.update(line * batch)
            sent += len(line) * batch
        while sent + len(line) <= size:
            sock.sendall(wire_line)
            digest.update(line)
            sent += len(line)
        sock.sendall(b".\r\nQUIT\r\n")
        final = reply(f)
        assert reply(f).startswith(b"221")
    return final, digest.hexdigest()


def measure(mode: list[str]) -> int:
    """Run the server, warm it up, send 100 MB; return its memory growth in bytes."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    env = dict(os.environ)
    source = str(Path(smtpsession.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([source, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), *mode], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        # Warm up: imports, first connection, first message.
        final, _ = send_message(port, 1024 * 1024)
        assert final.startswith(b"250 2.6.0 received")
        before = status_kib(proc.pid, "VmRSS")
        final, digest = send_message(port, MESSAGE_BYTES)
        peak = status_kib(proc.pid, "VmHWM")
        expected_size = MESSAGE_BYTES - MESSAGE_BYTES % 976
        assert final == b"250 2.6.0 received %d bytes sha256=%s\r\n" % (
            expected_size,
            digest.encode(),
        )
        return (peak - before) * 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.slow
def test_100_mb_message_in_bounded_memory() -> None:
    """Resident memory grows < 20 MB while a 100 MB body streams through async for."""
    growth = measure([])
    assert growth < LIMIT, f"server grew by {growth / 1e6:.1f} MB"


@pytest.mark.slow
def test_measurement_sees_a_handler_that_holds_the_body() -> None:
    """Control: a handler keeping the body whole (read()) shows the 100 MB growth."""
    growth = measure(["hold"])
    assert growth > 90 * 1024 * 1024, f"server grew by only {growth / 1e6:.1f} MB"
