"""
``twistd smtpsession`` as operators run it: real twistd subprocesses (found
from this source tree's twisted/plugins through PYTHONPATH), real clients,
real signals.

- the README's run command stores a message sent with swaks as exactly one
  complete file in ./Maildir/new;
- SIGKILL while messages are in flight never leaves a partial file in new/,
  and every message that got 250 is there;
- SIGTERM lets a transaction in progress finish within close_timeout while
  new connections are refused, and ends one that takes longer;
- a port in use, a bad flag, a handler that cannot be imported and an
  unreadable certificate each end the daemon with a one-line message.

Each daemon is killed by its PID at the end of its test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import files, require_program, wait_until
from tests.integration.loadutil import AckedSenders, numbered_message, stored_whole
from tests.rawsmtp import RawClient, connect_refused

REPO = Path(__file__).resolve().parents[2]
LISTENING = re.compile(r"smtpsession listening on 127\.0\.0\.1:(\d+)")


def twistd() -> str:
    """The twistd of the Python running the tests."""
    candidate = Path(sys.executable).with_name("twistd")
    if candidate.exists():
        return str(candidate)
    return require_program("twistd")


def daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Daemon:
    """A twistd subprocess whose output is collected as it comes."""

    def __init__(self, cwd: Path, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=daemon_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                m = pattern.search(self.output)
                if m is not None:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {pattern.pattern!r} in output:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def port(self) -> int:
        return int(self.wait_for(LISTENING).group(1))

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    """Daemons started by a test; all killed (by PID) when it ends."""
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def start(daemons: list[Daemon], cwd: Path, *args: str) -> Daemon:
    argv = [twistd(), "-n", "--pidfile=", "smtpsession", *args]
    d = Daemon(cwd, argv)
    daemons.append(d)
    return d


def run_daemon(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A twistd run expected to end by itself (bounded)."""
    return subprocess.run(
        [twistd(), "-n", "--pidfile=", "smtpsession", *args],
        cwd=cwd,
        env=daemon_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


LOCAL = "tcp:0:interface=127.0.0.1"


def assert_clean_exit(d: Daemon) -> None:
    """
    The daemon shut down in order after SIGTERM.  twistd ends by re-raising
    the signal it got (so a parent sees "terminated by SIGTERM"), hence the
    status; its last log line says the shutdown itself completed.
    """
    code = d.wait()
    assert code in (0, -signal.SIGTERM), d.output
    assert "Server Shut Down." in d.output, d.output
    assert "Traceback" not in d.output, d.output


# ---------------------------------------------------------------------------
# The README's run command
# ---------------------------------------------------------------------------


@pytest.mark.external
def test_readme_run_command_with_swaks(tmp_path: Path, daemons: list[Daemon]) -> None:
    """`twistd -n smtpsession`, exactly as the README says, listens on 2525
    and stores a message sent with swaks as one complete file in
    ./Maildir/new (and nothing in tmp/)."""
    swaks = require_program("swaks")
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as twistd does
        try:
            probe.bind(("0.0.0.0", 2525))
        except OSError:
            pytest.fail("port 2525 is busy; the README command needs it")
    d = Daemon(tmp_path, [twistd(), "-n", "smtpsession"])
    daemons.append(d)
    # Loopback only by default, and the line says how to listen publicly.
    assert d.wait_for(re.compile(
        r"smtpsession listening on 127\.0\.0\.1:2525 \(SMTP, (pure-Python|compiled) core\); "
        r"loopback only: --port tcp:25 \(or tcp6:25\) listens on every interface"
    ))  # fmt: skip
    sent = subprocess.run(
        [
            swaks, "--server", "127.0.0.1:2525", "--from", "alice@example.org",
            "--to", "bob@example.com", "--header", "Subject: readme",
            "--body", "Hello from swaks.\n.dot line\n", "--timeout", "20",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    [stored] = files(tmp_path / "Maildir" / "new")
    assert files(tmp_path / "Maildir" / "tmp") == []
    data = stored.read_bytes()
    assert data.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from ")
    assert b"Subject: readme\r\n" in data
    assert b"\r\n\r\nHello from swaks.\r\n.dot line\r\n" in data  # dot-unstuffed
    assert data.endswith(b"\r\n")
    d.signal(signal.SIGTERM)
    assert_clean_exit(d)


# ---------------------------------------------------------------------------
# Crash safety
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_sigkill_in_flight(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGKILL while several clients are in the middle of their bodies and
    others are sending in a loop: every file in new/ is a complete message,
    none of the half-sent ones is there, and every message that got 250 is."""
    d = start(daemons, tmp_path, "--port", LOCAL, "--no-reverse-lookup", "--no-transaction-log")
    port = d.port()
    maildir = tmp_path / "Maildir"
    expected: dict[str, bytes] = {}

    partial = []
    for i in range(4):
        ident = f"PARTIAL{i}"
        raw = RawClient("127.0.0.1", port)
        raw.start_message("a@example.org", ["b@example.com"])
        raw.send(numbered_message(ident, 100_000)[:60_000])
        partial.append(raw)
    wait_until(lambda: len(files(maildir / "tmp")) >= 4, timeout=15)

    senders = AckedSenders(
        ("127.0.0.1", port), threads=6, messages=300, expected=expected,
        make=lambda t, n: (f"MSG{t}x{n}", numbered_message(f"MSG{t}x{n}", 20_000 + 7919 * n % 60_000)),
    )  # fmt: skip
    senders.start()
    wait_until(lambda: len(senders.acked) >= 40, timeout=60)
    d.signal(signal.SIGKILL)
    d.wait()
    senders.stop()
    for raw in partial:
        raw.close()

    stored = stored_whole(maildir / "new", expected)
    missing = [ident for ident in senders.acked if ident not in stored]
    assert not missing, f"got 250 but not in new/: {missing}"
    assert len(files(maildir / "tmp")) >= 4  # the kill did catch bodies in flight


# ---------------------------------------------------------------------------
# Graceful shutdown
# ---------------------------------------------------------------------------


def test_sigterm_drains(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGTERM: an idle session gets 421 at once, new connections are
    refused, a transaction in progress finishes (250, then 421), the message
    is stored, and the daemon exits cleanly."""
    d = start(daemons, tmp_path, "--port", LOCAL, "--no-reverse-lookup", "--close-timeout", "20")
    port = d.port()
    busy = RawClient("127.0.0.1", port)
    busy.start_message("a@example.org", ["b@example.com"])
    busy.send(b"Subject: finishing\r\n\r\nfirst half\r\n")
    idle = RawClient("127.0.0.1", port)
    assert idle.command("EHLO idle.test")[0] == 250

    d.signal(signal.SIGTERM)
    assert idle.reply()[0] == 421
    wait_until(lambda: connect_refused("127.0.0.1", port), timeout=15)
    assert d.proc.poll() is None  # still draining

    busy.send(b"second half\r\n.\r\n")
    assert busy.reply()[0] == 250
    assert busy.reply()[0] == 421
    assert_clean_exit(d)
    [stored] = files(tmp_path / "Maildir" / "new")
    assert stored.read_bytes().endswith(b"\r\n\r\nfirst half\r\nsecond half\r\n")
    busy.close()
    idle.close()


def test_sigterm_ends_a_transaction_that_takes_too_long(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """A transaction still open when close_timeout expires gets 421, its
    message is not stored (and its tmp/ file is removed), and the daemon
    exits."""
    d = start(daemons, tmp_path, "--port", LOCAL, "--no-reverse-lookup", "--close-timeout", "1")
    port = d.port()
    stalled = RawClient("127.0.0.1", port)
    stalled.start_message("a@example.org", ["b@example.com"])
    stalled.send(b"Subject: too slow\r\n\r\nsome of it\r\n")
    maildir = tmp_path / "Maildir"
    wait_until(lambda: len(files(maildir / "tmp")) == 1, timeout=15)
    d.signal(signal.SIGTERM)
    assert stalled.reply()[0] == 421
    assert_clean_exit(d)
    assert files(maildir / "new") == [] and files(maildir / "tmp") == []
    stalled.close()


# ---------------------------------------------------------------------------
# Errors an operator sees
# ---------------------------------------------------------------------------


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    for needle in needles:
        assert needle in output, output


def test_port_in_use(tmp_path: Path) -> None:
    """A port in use: exit status 1 and one line naming it, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_daemon(tmp_path, "--port", f"tcp:{port}:interface=127.0.0.1")
    assert_one_line_error(result, f"cannot listen (Address already in use) on tcp:{port}")


def test_a_failed_start_leaves_no_pid_file(tmp_path: Path) -> None:
    """Issue 17, point 9: twistd writes twistd.pid before the service starts;
    a start that fails must not leave it behind.  (A Unix socket in a
    directory that does not exist: TCP ports in use are found even before
    twistd writes the file, see the next test.)"""
    result = subprocess.run(
        [twistd(), "-n", "smtpsession", "--port", f"unix:{tmp_path}/missing/lmtp.sock"],
        cwd=tmp_path, env=daemon_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert_one_line_error(result, "cannot listen")
    assert not (tmp_path / "twistd.pid").exists()


def test_port_in_use_when_daemonizing(tmp_path: Path) -> None:
    """Issue 17, point 6: without -n, twistd reported a start error as a
    bytes repr cut at 100 bytes (the child's traceback in twistd.log); a
    port in use is now found before twistd forks: one line, status 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [twistd(), "smtpsession", "--port", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, env=daemon_env(), stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode == 2, result
    assert result.stderr.splitlines()[0] == (
        f"twistd smtpsession: error: cannot listen (Address already in use) "
        f"on tcp:{port}:interface=127.0.0.1"
    )
    assert "An error has occurred" not in result.stderr + result.stdout
    assert not (tmp_path / "twistd.pid").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--size", "lots"], "--size wants a whole number"),
        (["--handler", "no_such_module.Handler"], "--handler 'no_such_module.Handler': no module named 'no_such_module'"),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-cert /nonexistent/cert.pem"),
        (["--port", "tcp:not-a-port"], "--port 'tcp:not-a-port'"),
    ],
)
def test_bad_command_line(tmp_path: Path, args: list[str], needle: str) -> None:
    """Usage errors end twistd with status 2 and one line naming the flag:
    no traceback, and not under twistd's 120 lines of help (issue 17,
    point 6)."""
    result = run_daemon(tmp_path, *args)
    assert_one_line_error(result, needle)
    assert result.returncode == 2, result
    assert result.stdout == "", result.stdout
    assert len(result.stderr.splitlines()) == 2, result.stderr


def test_unreadable_certificate(tmp_path: Path) -> None:
    """A certificate path that cannot be read as a file (here a directory)
    is reported by flag and path, with no traceback."""
    cert = tmp_path / "cert-dir"
    cert.mkdir()
    assert_one_line_error(
        run_daemon(tmp_path, "--tls-cert", str(cert), "--tls-key", str(cert)), "--tls-cert"
    )


def test_auth_file(tmp_path: Path, daemons: list[Daemon]) -> None:
    """--auth-file PATH: the daemon offers AUTH, checks the password file's
    hashed passwords, and takes mail from a user who logged in."""
    cred = pytest.importorskip("smtpsession.cred")  # helper A's module, landing in parallel
    passwords = tmp_path / "passwords"
    passwords.write_text(f"alice:{cred.hash_password('correct horse', 'pbkdf2-sha256', cost=1000)}\n")
    d = start(
        daemons, tmp_path, "--port", LOCAL, "--no-reverse-lookup", "--auth-file", str(passwords),
        "--allow-insecure-auth", "--auth-methods", "PLAIN,LOGIN",
    )  # fmt: skip
    port = d.port()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo()
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("alice", "wrong")
        client.login("alice", "correct horse")
        client.sendmail("alice@example.org", ["bob@example.com"], b"Subject: authed\r\n\r\nx\r\n")
    [stored] = files(tmp_path / "Maildir" / "new")
    assert b" with ESMTPA id " in stored.read_bytes()


# ---------------------------------------------------------------------------
# The transaction log under twistd: written in batches, formatted as before
# ---------------------------------------------------------------------------

TRANSACTION_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[smtpsession\.connection#info\] "
    r"\[([0-9a-f]{32})\] from=<a@example\.org> to=<b@example\.com>,<c@example\.com> "
    r"size=(\d+) result=250 duration=\d+\.\d{3}s client=127\.0\.0\.1$"
)
CONNECTION_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} \[smtpsession\.connection#debug\] "
    r"\[([0-9a-f]{32})\] (?:connection from 127\.0\.0\.1:\d+ \(\[127\.0\.0\.1\]\)"
    r"|closed after 3 transaction\(s\))$"
)


@pytest.mark.parametrize("where", ["stdout", "logfile"])
def test_transaction_log_lines_under_twistd(
    tmp_path: Path, daemons: list[Daemon], where: str
) -> None:
    """
    Under twistd the connection and transaction lines skip the logging
    system and are written in batches (smtpsession._log.LineBatch), to
    standard output or to --logfile, formatted exactly as twistd formats
    log events: time stamp, [namespace#level], the text.
    """
    args = ["--port", LOCAL, "--handler", "sink", "--no-reverse-lookup", "--log-level", "debug"]
    logfile = tmp_path / "smtpsession.log"
    argv = [twistd(), "-n", "--pidfile="]
    if where == "logfile":
        argv.append(f"--logfile={logfile}")
    d = Daemon(tmp_path, [*argv, "smtpsession", *args])
    daemons.append(d)

    def text() -> str:
        return logfile.read_text() if where == "logfile" else d.output

    if where == "logfile":
        deadline = time.monotonic() + 30
        while not LISTENING.search(logfile.read_text() if logfile.exists() else ""):
            assert time.monotonic() < deadline and d.proc.poll() is None, d.output
            time.sleep(0.05)
        port = int(LISTENING.search(logfile.read_text()).group(1))  # type: ignore[union-attr]
    else:
        port = d.port()
    body = b"Subject: x\r\n\r\nhello\r\n"
    with smtplib.SMTP("127.0.0.1", port) as client:
        for _ in range(3):
            client.sendmail("a@example.org", ["b@example.com", "c@example.com"], body)
    d.signal(signal.SIGTERM)
    assert d.wait() in (0, -signal.SIGTERM)
    assert "Server Shut Down." in text()
    lines = text().splitlines()
    transactions = [m for m in map(TRANSACTION_LINE.match, lines) if m]
    assert len(transactions) == 3, text()
    assert {m.group(1) for m in transactions} == {transactions[0].group(1)}
    # The size received, also for a handler that never reads the body
    # (the sink once logged size=0).
    assert all(int(m.group(2)) == len(body) for m in transactions)
    connection = [m for m in map(CONNECTION_LINE.match, lines) if m]
    assert len(connection) == 2, text()
    assert "Traceback" not in text()


def test_reverse_lookups_add_no_lines(tmp_path: Path, daemons: list[Daemon]) -> None:
    """
    Issue 17, point 4: with reverse lookups on (the default), Twisted logged
    four lines per connection for the UDP port of each DNS query; the log
    now has the transaction line and nothing about UDP ports.
    """
    d = start(daemons, tmp_path, "--port", LOCAL, "--handler", "sink")
    port = d.port()
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    deadline = time.monotonic() + 20
    while d.output.count("result=250") < 2:
        assert time.monotonic() < deadline, d.output
        time.sleep(0.05)
    d.signal(signal.SIGTERM)
    assert_clean_exit(d)
    assert "DNSDatagramProtocol" not in d.output, d.output
    assert "UDP Port" not in d.output, d.output


# ---------------------------------------------------------------------------
# The smtpsession command and --config
# ---------------------------------------------------------------------------


def test_the_command_serves_mail_from_the_sample_configuration(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """`python -m smtpsession --config smtpsession.toml` (the console script
    runs the same function) with contrib/'s sample, its port changed to a
    free one: a message sent with smtplib lands in ./Maildir/new."""
    sample = (REPO / "contrib" / "smtpsession.toml").read_text()
    assert 'port = ["tcp:2525:interface=127.0.0.1"]' in sample
    config = tmp_path / "smtpsession.toml"
    config.write_text(sample.replace("tcp:2525:interface=127.0.0.1", LOCAL))
    d = Daemon(tmp_path, [sys.executable, "-m", "smtpsession", "--config", str(config)])
    daemons.append(d)
    port = d.port()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("a@example.org", ["b@example.com"], b"Subject: configured\r\n\r\nhi\r\n")
    d.signal(signal.SIGTERM)
    assert_clean_exit(d)
    [stored] = files(tmp_path / "Maildir" / "new")
    assert b"Subject: configured" in stored.read_bytes()
    assert not (tmp_path / "twistd.pid").exists()


def test_the_command_reports_usage_errors_in_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smtpsession", "--hook-timeout", "soon"],
        cwd=tmp_path, env=daemon_env(), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "smtpsession: error: --hook-timeout wants a number, not 'soon'",
        "(smtpsession --help lists every flag)",
    ]


def test_json_log_and_default_level(tmp_path: Path, daemons: list[Daemon]) -> None:
    """--log-format json: every line of the log is a JSON object; the
    transaction has its fields; at the default level (info) there is no
    per-connection line."""
    d = start(daemons, tmp_path, "--port", LOCAL, "--handler", "sink", "--no-reverse-lookup",
              "--log-format", "json")  # fmt: skip
    port = int(d.wait_for(re.compile(r'"text": "smtpsession listening on 127\.0\.0\.1:(\d+)')).group(1))
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.sendmail("a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    d.wait_for(re.compile(r'"result": "250"'))
    d.signal(signal.SIGTERM)
    assert d.wait() in (0, -signal.SIGTERM)
    lines = d.output.splitlines()
    records = [json.loads(line) for line in lines[2:]]  # after twistd's own first lines
    [transaction] = [r for r in records if "mail_from" in r]
    assert transaction["system"] == "smtpsession.connection"
    assert transaction["rcpt_to"] == "<b@example.com>"
    assert transaction["recipients"] == ["b@example.com"]
    assert transaction["result"] == "250" and transaction["level"] == "info"
    assert not any("connection from" in r["text"] for r in records)


# ---------------------------------------------------------------------------
# asyncio in hooks (issue 17, point 2)
# ---------------------------------------------------------------------------

ASYNCIO_HANDLER = '''
import asyncio
from smtpsession import Handler, SMTPError

class Inbox(Handler):
    async def on_rcpt_to(self, address, session):
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        if address.address.startswith("nobody"):
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        body = b"".join([chunk async for chunk in stream])
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.call_later(0.01, done.set_result, len(body))
        await done
'''


@pytest.mark.parametrize(
    "command",
    [
        ["twistd", "--reactor=asyncio", "-n", "--pidfile=", "smtpsession"],
        ["python", "-m", "smtpsession", "--reactor", "asyncio"],
    ],
    ids=["twistd", "smtpsession-command"],
)
def test_asyncio_hooks_under_the_asyncio_reactor(
    tmp_path: Path, daemons: list[Daemon], command: list[str]
) -> None:
    """A handler written for asyncio (asyncio.sleep, the running loop, its
    futures), in a module of the current directory, under
    `twistd --reactor=asyncio` or `smtpsession --reactor asyncio` (the
    command's one twistd flag): it answers as written."""
    (tmp_path / "aio_inbox.py").write_text(ASYNCIO_HANDLER)
    program = [twistd()] if command[0] == "twistd" else [sys.executable]
    d = Daemon(tmp_path, [
        *program, *command[1:], "--port", LOCAL, "--handler", "aio_inbox.Inbox",
        "--no-reverse-lookup",
    ])  # fmt: skip
    daemons.append(d)
    port = d.port()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        refused = client.sendmail("a@example.org", ["b@example.com", "nobody@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert refused == {"nobody@example.com": (550, b"5.1.1 No such user here")}
    assert "AsyncioSelectorReactor" in d.output
    d.signal(signal.SIGTERM)
    assert_clean_exit(d)
    assert "imports asyncio" not in d.output


def test_asyncio_hooks_under_the_default_reactor_say_the_fix(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Under the default reactor the same handler cannot run: the client gets
    451 (try again later) and the log names the fix."""
    (tmp_path / "aio_inbox.py").write_text(ASYNCIO_HANDLER)
    d = start(daemons, tmp_path, "--port", LOCAL, "--handler", "aio_inbox.Inbox", "--no-reverse-lookup")
    # Said at start already (the module imports asyncio) ...
    d.wait_for(re.compile(r"the handler's module aio_inbox imports asyncio, but the reactor is "
                          r"EPollReactor: hooks that use asyncio need twistd --reactor=asyncio"))  # fmt: skip
    port = d.port()
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo()
        client.mail("a@example.org")
        assert client.rcpt("b@example.com")[0] == 451
    d.wait_for(re.compile(r"Hook on_rcpt_to uses asyncio, which needs Twisted's asyncio reactor: "
                          r"run twistd --reactor=asyncio -n smtpsession"))  # fmt: skip
