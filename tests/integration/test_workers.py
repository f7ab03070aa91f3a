"""
``twistd smtpsession --workers N``: a supervisor and N worker processes
sharing its listening sockets, as operators run it (real twistd, real
signals, real clients).

- connections are served by both workers (the pid in each Maildir file
  name says which), and their log lines say which worker wrote them;
- SIGKILL of a worker: it is replaced, no client is refused, and only the
  connection it was serving is cut; every message that got 250 is stored;
- SIGTERM to the supervisor: new connections are refused, the transactions
  in progress on every worker finish, and no process is left behind;
- a supervisor killed with SIGKILL: its workers notice and stop;
- a unix socket is shared too; an ``ssl:`` endpoint is a one-line error.

Every process is killed by its PID when its test ends (the supervisor's
workers too, by the PIDs its log gives).
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import files, wait_until
from tests.integration.test_daemon import Daemon, assert_clean_exit, run_daemon, twistd
from tests.rawsmtp import RawClient, connect_refused

LOCAL = "tcp:0:interface=127.0.0.1"
STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")
#: The pid in a Maildir file name (time.M<usec>P<pid>Q<n>R<rand>.host).
MAILDIR_PID = re.compile(r"P(\d+)Q")


class Supervisor(Daemon):
    """The supervisor's twistd, and its workers as its log names them."""

    def workers(self) -> dict[int, int]:
        """Worker number → pid of its latest start."""
        found: dict[int, int] = {}
        for number, pid in STARTED.findall(self.output):
            found[int(number)] = int(pid)
        return found

    def all_worker_pids(self) -> set[int]:
        return {int(pid) for _, pid in STARTED.findall(self.output)}

    def kill(self) -> None:
        super().kill()
        for pid in self.all_worker_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    started: list[Supervisor] = []
    yield started
    for s in started:
        s.kill()


def start(supervisors: list[Supervisor], cwd: Path, *args: str) -> Supervisor:
    argv = [twistd(), "-n", "--pidfile=", "smtpsession", "--no-reverse-lookup", *args]
    s = Supervisor(cwd, argv)
    supervisors.append(s)
    return s


def alive(pid: int) -> bool:
    """Whether process C{pid} exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(pid: int) -> set[int]:
    """The live child processes of C{pid} (from /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def send(port: int, ident: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("a@example.org", ["b@example.com"], message(ident))


def message(ident: str) -> bytes:
    return f"Message-ID: <{ident}@test>\r\nSubject: {ident}\r\n\r\nbody of {ident}\r\n".encode()


def stored_pids(maildir: Path) -> list[int]:
    pids = []
    for path in files(maildir / "new"):
        m = MAILDIR_PID.search(path.name)
        assert m is not None, path.name
        pids.append(int(m.group(1)))
    return pids


def stored_idents(maildir: Path) -> set[str]:
    idents = set()
    for path in files(maildir / "new"):
        m = re.search(rb"Message-ID: <(\w+)@test>", path.read_bytes())
        assert m is not None
        idents.add(m.group(1).decode())
    return idents


def test_connections_are_served_by_both_workers(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """Two workers, both children of the supervisor, both take connections
    from the one socket; each log line names its worker."""
    s = start(supervisors, tmp_path, "--port", LOCAL, "--workers", "2")
    port = s.port()
    s.wait_for(re.compile(r"worker 1 ready"))
    s.wait_for(re.compile(r"worker 2 ready"))
    workers = s.workers()
    assert set(workers) == {1, 2}
    assert children(s.proc.pid) == set(workers.values())

    maildir = tmp_path / "Maildir"
    deadline = time.monotonic() + 60
    for n in range(300):
        send(port, f"M{n}")
        if set(stored_pids(maildir)) == set(workers.values()) or time.monotonic() > deadline:
            break
    assert set(stored_pids(maildir)) == set(workers.values())
    for number in (1, 2):
        s.wait_for(re.compile(rf"\[smtpsession\.connection#info worker={number}\] \[\w+\] from=<a@"))
    assert "Traceback" not in s.output


def test_a_killed_worker_is_replaced_and_nobody_else_is_refused(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """SIGKILL of a worker while a client sends one message after another:
    the other worker goes on taking connections from the shared socket, no
    connection is refused, at most the one connection the dead worker was
    serving fails, a replacement starts, and it serves mail."""
    s = start(supervisors, tmp_path, "--port", LOCAL, "--workers", "2")
    port = s.port()
    s.wait_for(re.compile(r"worker 2 ready"))
    s.wait_for(re.compile(r"worker 1 ready"))
    victim = s.workers()[1]
    maildir = tmp_path / "Maildir"

    acked: list[str] = []
    refused: list[str] = []
    failed: list[str] = []

    def one(ident: str) -> None:
        try:
            send(port, ident)
            acked.append(ident)
        except ConnectionRefusedError:
            refused.append(ident)
        except (OSError, smtplib.SMTPException):
            failed.append(ident)

    for n in range(20):
        one(f"BEFORE{n}")
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    n = 0
    replacement = None
    while time.monotonic() < deadline and n < 2000:
        one(f"AFTER{n}")
        n += 1
        replacement = s.workers()[1]
        if replacement != victim and replacement in stored_pids(maildir):
            break
    assert replacement != victim, s.output
    assert replacement in stored_pids(maildir), "the new worker 1 served nothing"
    s.wait_for(re.compile(rf"worker 1 \(pid {victim}\) killed by SIGKILL .*starting it again"))
    assert not alive(victim)
    assert refused == []
    assert len(failed) <= 1, failed
    assert stored_idents(maildir) >= set(acked)
    assert children(s.proc.pid) == set(s.workers().values())


def test_sigterm_drains_every_worker_and_leaves_no_process(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """A transaction in progress on each worker when the supervisor gets
    SIGTERM: new connections are refused, both transactions finish with
    250 (then 421), both messages are stored, and the supervisor and its
    workers are all gone."""
    s = start(supervisors, tmp_path, "--port", LOCAL, "--workers", "2", "--close-timeout", "30")
    port = s.port()
    s.wait_for(re.compile(r"worker 1 ready"))
    s.wait_for(re.compile(r"worker 2 ready"))
    workers = set(s.workers().values())
    tmp = tmp_path / "Maildir" / "tmp"

    # Connections opened one at a time tend to go to the same worker (the
    # kernel wakes both, the same one tends to win); a burst is shared.
    busy: dict[int, RawClient] = {}
    others: list[RawClient] = []
    idle: list[RawClient] = []
    for _burst in range(3):
        burst = [RawClient("127.0.0.1", port) for _ in range(20)]
        for n, client in enumerate(burst):
            if set(busy) == workers:
                idle.append(client)
                continue
            client.start_message("a@example.org", ["b@example.com"])
            client.send(message(f"DRAIN{_burst}x{n}")[:-2])  # all but the last line end
            wait_until(lambda: len(files(tmp)) == len(busy) + len(others) + 1, timeout=15)
            newest = max(files(tmp), key=lambda p: p.stat().st_mtime_ns)
            pid = int(MAILDIR_PID.search(newest.name).group(1))  # type: ignore[union-attr]
            if pid in busy:
                others.append(client)
            else:
                busy[pid] = client
        if set(busy) == workers:
            break
    assert set(busy) == workers

    s.signal(signal.SIGTERM)
    wait_until(lambda: connect_refused("127.0.0.1", port), timeout=15)
    for client in [*busy.values(), *others]:
        client.send(b"\r\n.\r\n")
        assert client.reply()[0] == 250
        assert client.reply()[0] == 421
        client.close()
    for client in idle:  # between transactions: 421 at once
        assert client.reply()[0] == 421
        client.close()
    assert_clean_exit(s)
    assert len(files(tmp_path / "Maildir" / "new")) == len(busy) + len(others)
    wait_until(lambda: not any(alive(pid) for pid in s.all_worker_pids()), timeout=10)
    for number in (1, 2):
        assert re.search(rf"worker {number} \(pid \d+\) exited with status 0", s.output)


def test_workers_stop_when_their_supervisor_is_killed(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    """SIGKILL of the supervisor (which cannot pass it on): each worker
    notices its parent is gone, drains and exits, and the port is free."""
    s = start(supervisors, tmp_path, "--port", LOCAL, "--workers", "2")
    port = s.port()
    s.wait_for(re.compile(r"worker 1 ready"))
    s.wait_for(re.compile(r"worker 2 ready"))
    pids = set(s.workers().values())
    send(port, "ONE")
    s.signal(signal.SIGKILL)
    s.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids), timeout=15)
    assert connect_refused("127.0.0.1", port)


def test_workers_share_a_unix_socket(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    """A unix: endpoint is shared as well: both workers answer on it."""
    path = tmp_path / "lmtp.sock"
    s = start(supervisors, tmp_path, "--port", f"unix:{path}", "--workers", "2", "--lmtp")
    s.wait_for(re.compile(r"worker 1 ready"))
    s.wait_for(re.compile(r"worker 2 ready"))
    for _ in range(3):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(path))
            assert sock.recv(1000).startswith(b"220 ")
            sock.sendall(b"LHLO me\r\n")
            assert sock.recv(1000).startswith(b"250")


def test_json_log_lines_carry_the_worker(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    """--log-format json: every worker line is one JSON object with "worker"."""
    s = start(supervisors, tmp_path, "--port", LOCAL, "--workers", "2", "--log-format", "json")
    line = s.wait_for(re.compile(r'\{[^\n]*"text": "smtpsession listening on [^\n]*\n'))
    m = re.search(r"127\.0\.0\.1:(\d+)", line.group(0))
    assert m is not None
    s.wait_for(re.compile(r'"worker": 1'))
    s.wait_for(re.compile(r'"worker": 2'))
    send(int(m.group(1)), "JSON")
    found = s.wait_for(re.compile(r'\{[^\n]*"result": "250"[^\n]*\n'))
    event = json.loads(found.group(0))
    assert event["worker"] in (1, 2)
    assert event["mail_from"] == "a@example.org"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--workers", "0"], "--workers wants 1 to 256"),
        (["--workers", "two"], "--workers wants a number"),
        (["--workers", "2", "--port", "ssl:0:privateKey=k.pem"], "cannot be shared by workers"),
    ],
)
def test_bad_worker_flags_are_one_line_errors(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    result = run_daemon(tmp_path, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert needle in output, output
    assert "Traceback" not in output, output
