"""
Helpers of tests/integration/test_load_faults.py (and of test_daemon.py's
crash test): server processes whose
memory and descriptors are read from /proc, the file-descriptor limit, and
the JSON lines file the measured figures go to (docs/reliability.md quotes
them).

Every process started here is stopped by its PID; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import queue
import re
import resource
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import smtpsession
from tests.conftest import files

HERE = Path(__file__).resolve().parent
SOURCE = Path(smtpsession.__file__).resolve().parent.parent
LOAD_SERVER = HERE / "load_server.py"


def source_env() -> dict[str, str]:
    """The environment of a child process that must import this checkout's smtpsession."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


# ---------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------


def status_kib(pid: int, field: str) -> int:
    """A memory field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def open_fds(pid: int | str = "self") -> int:
    """How many file descriptors a process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def need_proc() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc (Linux)")


def raise_fd_limit(wanted: int, per_connection: int = 1, floor: int = 100) -> int:
    """
    Raise the soft RLIMIT_NOFILE to the hard limit and return how many of
    the C{wanted} connections fit (each costing C{per_connection}
    descriptors here, with room for the rest); skip if fewer than C{floor}.
    Child processes inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    fits = (soft - 200) // per_connection
    if fits < floor:
        pytest.skip(f"file descriptor limit {soft} leaves room for {fits} connections (< {floor})")
    return min(wanted, fits)


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


class Child:
    """A subprocess whose output lines are collected as they come (bounded reads)."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=source_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def next_line(self, timeout: float = 30.0, pattern: str | None = None) -> str:
        """The next output line (matching C{pattern}, if given); fails after C{timeout}."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no output within {timeout} s:\n{self.output}") from None
            if line is None:
                raise AssertionError(f"the process ended (status {self.proc.poll()}):\n{self.output}")
            if pattern is None or re.search(pattern, line):
                return line

    def rss_kib(self) -> int:
        return status_kib(self.pid, "VmRSS")

    def fds(self) -> int:
        return open_fds(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        self.proc.wait(30)
        self._reader.join(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end within 15 s."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


class LoadServer(Child):
    """tests/integration/load_server.py with some options."""

    def __init__(self, **options: Any) -> None:
        super().__init__([sys.executable, str(LOAD_SERVER), json.dumps(options)])
        self.port = int(self.next_line())
        self.address = ("127.0.0.1", self.port)

    def stats(self) -> dict[str, int]:
        """Its connection and message counts (asked with SIGUSR1)."""
        os.kill(self.pid, signal.SIGUSR1)
        return dict(json.loads(self.next_line(pattern=r'^\{"connections"')))

    def wait_connections(self, count: int, timeout: float = 30.0) -> dict[str, int]:
        """Poll until the server holds C{count} connections (the timeout is a bound)."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if stats["connections"] == count:
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"the server holds {stats['connections']}, not {count}")
            time.sleep(0.1)


def twistd() -> str:
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    from tests.conftest import require_program

    return require_program("twistd")


class Daemon(Child):
    """C{twistd -n smtpsession ...} listening on a free port of 127.0.0.1."""

    def __init__(self, cwd: Path, *args: str) -> None:
        super().__init__(
            [
                twistd(), "-n", "--pidfile=", "smtpsession",
                "--port", "tcp:0:interface=127.0.0.1", "--no-reverse-lookup", *args,
            ],
            cwd=cwd,
        )  # fmt: skip
        line = self.next_line(pattern=r"smtpsession listening on 127\.0\.0\.1:\d+")
        match = re.search(r"127\.0\.0\.1:(\d+)", line)
        assert match is not None
        self.port = int(match.group(1))
        self.address = ("127.0.0.1", self.port)


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


class Figures:
    """Append what each test measured, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def record(self, probe: str, **figures: Any) -> None:
        row = {"probe": probe, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
        line = json.dumps(row, sort_keys=False)
        self.lines.append(line)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
        print(line)


# ---------------------------------------------------------------------------
# Crash safety: messages sent until the server is killed, and new/ checked
# ---------------------------------------------------------------------------


def numbered_message(ident: str, size: int) -> bytes:
    """About C{size} bytes whose Message-ID, subject, every line and last
    line name C{ident}: a stored copy shows whose it is and whether it is whole."""
    filler = (b"%s " % ident.encode()) * (size // (len(ident) + 1))
    lines = [filler[i : i + 76] for i in range(0, len(filler), 76)]
    return (
        f"Message-ID: <{ident}@test>\r\nSubject: {ident}\r\n\r\n".encode()
        + b"\r\n".join(lines)
        + f"\r\nEND {ident}\r\n".encode()
    )


class AckedSenders:
    """
    Threads, each on its own connection, sending messages until stopped or
    until the server is gone.  Every body is recorded in C{expected} before
    it is sent and its ident in C{acked} once the server answered 250.
    """

    def __init__(
        self,
        address: tuple[str, int],
        threads: int,
        messages: int,
        make: Callable[[int, int], tuple[str, bytes]],
        expected: dict[str, bytes],
    ) -> None:
        self._make = make
        self._address = address
        self._messages = messages
        self.expected = expected
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(t,), daemon=True) for t in range(threads)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _send(self, t: int) -> None:
        try:
            with smtplib.SMTP(*self._address, timeout=20) as client:
                for n in range(self._messages):
                    if self._stop.is_set():
                        return
                    ident, body = self._make(t, n)
                    with self._lock:
                        self.expected[ident] = body
                    client.sendmail("a@example.org", ["b@example.com"], body)
                    with self._lock:
                        self.acked.append(ident)
        except (OSError, smtplib.SMTPException):
            return  # the server is gone


def stored_whole(new: Path, expected: dict[str, bytes]) -> set[str]:
    """
    The idents of the messages in a Maildir's C{new}, each checked to be
    complete (its bytes from the Message-ID on are what was sent) and none
    of them a half-sent one (C{PARTIAL...}).
    """
    stored: set[str] = set()
    for path in files(new):
        data = path.read_bytes()
        m = re.search(rb"Message-ID: <(\w+)@test>", data)
        assert m is not None, f"{path.name} has no Message-ID: {data[:300]!r}"
        ident = m.group(1).decode()
        assert not ident.startswith("PARTIAL"), f"a half-sent message is in new/: {ident}"
        assert b"Message-ID: " + data.partition(b"Message-ID: ")[2] == expected[ident], (
            f"{path.name} is not complete"
        )
        stored.add(ident)
    return stored
