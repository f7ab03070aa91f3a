"""
docs/deployment.rst, "Several instances behind HAProxy": two daemons behind
HAProxy running contrib/haproxy/smtpsession.cfg as shipped, its addresses
given through the environment variables the file reads.

- the file is valid as shipped (``haproxy -c``);
- messages sent through HAProxy reach both instances, and each instance
  sees the client's own address (127.0.0.2, from the PROXY v2 header), not
  HAProxy's (127.0.0.1): in the Received header and the transaction log;
- one instance killed (SIGKILL) in the middle of a transaction: that
  client gets no 250, the transaction on the other instance completes, new
  connections are served by the other instance (HAProxy redispatches at
  once, and its health check marks the dead one DOWN within a bound), and
  every 250 any client got is a message in a Maildir, and nothing else is.

HAProxy and the daemons listen on 127.0.0.1 only and are killed by PID.
"""

from __future__ import annotations

import re
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import files, require_program, wait_until
from tests.integration.test_daemon import REPO, Daemon, twistd
from tests.rawsmtp import RawClient, connect_refused

pytestmark = pytest.mark.external

CONFIG = REPO / "contrib" / "haproxy" / "smtpsession.cfg"
CLIENT = "127.0.0.2"  # the clients' address; HAProxy's is 127.0.0.1
INSTANCE = re.compile(r"^(s[12])\.test ESMTP")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def processes() -> Iterator[list[Daemon]]:
    """Daemons and HAProxy started by a test; all killed (by PID) when it ends."""
    started: list[Daemon] = []
    yield started
    for p in started:
        p.kill()


def test_shipped_config_is_valid(tmp_path: Path) -> None:
    """`haproxy -c` accepts the file with no variable set (its defaults),
    and it has what the docs say it has."""
    haproxy = require_program("haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(CONFIG)],
        cwd=tmp_path,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = CONFIG.read_text()
    for needle in [
        'bind "${SMTPSESSION_FRONT-:25}"',
        "balance leastconn",
        "send-proxy-v2 check",
        "tcp-check expect rstring ^220",
        "timeout client 6m",
        "option redispatch",
    ]:
        assert needle in text, needle


def send(port: int, subject: str) -> tuple[str, int]:
    """
    One message through HAProxy from 127.0.0.2: (the instance that greeted,
    the final answer's code), or (the instance or "", 0) when the connection
    failed before an answer.
    """
    client = smtplib.SMTP(source_address=(CLIENT, 0), timeout=20)
    instance = ""
    try:
        _, greeting = client.connect("127.0.0.1", port)
        m = INSTANCE.match(greeting.decode())
        instance = m.group(1) if m else ""
        client.ehlo("client.test")
        client.sendmail("a@example.org", ["b@example.com"], f"Subject: {subject}\r\n\r\nx\r\n")
        return instance, 250
    except (smtplib.SMTPException, OSError):
        return instance, 0
    finally:
        try:
            client.close()
        except OSError:
            pass


def stored_subjects(cwd: Path) -> list[str]:
    out = []
    for path in files(cwd / "Maildir" / "new"):
        m = re.search(rb"\r\nSubject: (\S+)\r\n", path.read_bytes())
        assert m is not None, path.read_bytes()
        out.append(m.group(1).decode())
    return out


def test_two_instances_behind_haproxy(
    tmp_path: Path, processes: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    Two `twistd -n smtpsession --proxy-protocol-trusted 127.0.0.1` behind
    HAProxy with contrib/haproxy/smtpsession.cfg: 20 messages spread over
    both, each stored with the client's own address; then s1 is killed
    in the middle of a transaction, and the accounting holds: every 250 is
    a stored message, the interrupted one is nowhere in new/, and new
    connections go to s2 (before and after the health check marks s1 DOWN).
    """
    cwd, instances = start_instances(tmp_path, processes)
    front = free_port()
    proxy = start_haproxy(tmp_path, processes, monkeypatch, front, instances)
    wait_for_instances(proxy, front, {"s1", "s2"})

    # 20 messages, one connection each: both instances take some.
    acked: dict[str, list[str]] = {"s1": [], "s2": []}
    for n in range(20):
        instance, code = send(front, f"spread{n}")
        assert code == 250 and instance in acked, (instance, code)
        acked[instance].append(f"spread{n}")
    assert acked["s1"] and acked["s2"], acked
    for name in ("s1", "s2"):
        assert sorted(stored_subjects(cwd[name])) == sorted(acked[name])
        for path in files(cwd[name] / "Maildir" / "new"):
            # The client's address, from the PROXY header, not HAProxy's.
            assert path.read_bytes().startswith(
                b"Return-Path: <a@example.org>\r\nReceived: from client.test ([127.0.0.2])\r\n"
                + f"\tby {name}.test (smtpsession) with ESMTP id ".encode()
            )
        logged = re.compile(r"\bclient=127\.0\.0\.2$", re.MULTILINE)
        daemon, count = instances[name], len(acked[name])
        wait_until(lambda: len(logged.findall(daemon.output)) >= count)  # noqa: B023
        assert "client=127.0.0.1" not in daemon.output
    # HAProxy's own log names the instance of each connection.
    wait_until(lambda: len(re.findall(r" smtp smtpsession/s[12] ", proxy.output)) >= 22)

    # A transaction in flight on each instance (leastconn: one each).
    raw = [RawClient("127.0.0.1", front, source=CLIENT) for _ in range(2)]
    on = {instance_of(r.greeting): r for r in raw}
    assert set(on) == {"s1", "s2"}, [r.greeting for r in raw]
    for name, r in on.items():
        r.start_message("a@example.org", ["b@example.com"])
        r.send(f"Subject: inflight-{name}\r\n\r\nfirst half\r\n".encode())
    wait_until(lambda: all(files(cwd[n] / "Maildir" / "tmp") for n in cwd))

    # SIGKILL s1.
    instances["s1"].signal(signal.SIGKILL)
    instances["s1"].wait()
    killed_at = time.monotonic()
    # Its client: the connection is gone, no 250.
    doomed = on["s1"]
    try:
        doomed.send(b"second half\r\n.\r\n")
        answer = doomed.reply()[0]
    except OSError:
        answer = 0
    assert answer != 250
    # The other one completes.
    on["s2"].send(b"second half\r\n.\r\n")
    assert on["s2"].reply()[0] == 250
    acked["s2"].append("inflight-s2")
    for r in raw:
        r.close()

    # New connections right away (s1 not yet known to be down: HAProxy's
    # connection to it is refused, and it redispatches to s2) and after the
    # health check marked s1 DOWN: all served by s2.
    for phase in ("before", "after"):
        if phase == "after":
            proxy.wait_for(re.compile(r"Server smtpsession/s1 is DOWN"), timeout=20)
        for n in range(5):
            instance, code = send(front, f"{phase}{n}")
            assert (instance, code) == ("s2", 250), (phase, n, instance, code)
            acked["s2"].append(f"{phase}{n}")
    assert time.monotonic() - killed_at < 20
    # HAProxy's log: connections retried on s2 after s1 refused them ("+1").
    assert re.search(r" smtp smtpsession/s2 \S+ \d+ -- \S+/\+1 ", proxy.output), proxy.output
    assert "smtpsession/s2 is DOWN" not in proxy.output, proxy.output

    # The accounting: every 250 is a stored message, and nothing else is.
    for name in ("s1", "s2"):
        assert sorted(stored_subjects(cwd[name])) == sorted(acked[name]), name
    assert "inflight-s1" not in stored_subjects(cwd["s1"])
    # ... though the kill did catch it in flight: its file is left in tmp/.
    assert len(files(cwd["s1"] / "Maildir" / "tmp")) == 1
    assert "Invalid PROXY header" not in instances["s2"].output

    instances["s2"].signal(signal.SIGTERM)
    assert instances["s2"].wait() in (0, -signal.SIGTERM)
    assert "Traceback" not in instances["s2"].output, instances["s2"].output


def test_haproxy_reloaded_or_restarted(
    tmp_path: Path, processes: list[Daemon], monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    HAProxy stopped while a transaction is on its way through it:

    - soft stop (SIGUSR1, what a reload does to the old process): it stops
      listening, the session in progress finishes (250, stored), then it
      exits by itself;
    - hard stop (SIGTERM, a restart or a crash): the session is cut, the
      client gets no 250, the instance stores nothing (its tmp/ file is
      removed), and the client's retry through the next HAProxy is stored
      once.
    """
    cwd, instances = start_instances(tmp_path, processes, ("s2",))
    maildir = cwd["s2"] / "Maildir"
    front = free_port()

    proxy = start_haproxy(tmp_path, processes, monkeypatch, front, instances)
    wait_for_instances(proxy, front, {"s2"})
    client = RawClient("127.0.0.1", front, source=CLIENT)
    client.start_message("a@example.org", ["b@example.com"])
    client.send(b"Subject: reload\r\n\r\nfirst half\r\n")
    wait_until(lambda: len(files(maildir / "tmp")) == 1)
    proxy.signal(signal.SIGUSR1)
    wait_until(lambda: connect_refused("127.0.0.1", front), timeout=10)
    client.send(b"second half\r\n.\r\n")
    assert client.reply()[0] == 250
    assert client.command("QUIT")[0] == 221
    client.close()
    assert proxy.wait(20) == 0
    assert stored_subjects(cwd["s2"]) == ["reload"]

    proxy = start_haproxy(tmp_path, processes, monkeypatch, front, instances)
    wait_for_instances(proxy, front, {"s2"})
    client = RawClient("127.0.0.1", front, source=CLIENT)
    client.start_message("a@example.org", ["b@example.com"])
    client.send(b"Subject: restart\r\n\r\nfirst half\r\n")
    wait_until(lambda: len(files(maildir / "tmp")) == 1)
    proxy.signal(signal.SIGTERM)
    proxy.wait(20)
    try:
        client.send(b"second half\r\n.\r\n")
        answer = client.reply()[0]
    except OSError:
        answer = 0
    client.close()
    assert answer != 250
    wait_until(lambda: files(maildir / "tmp") == [], timeout=10)
    assert stored_subjects(cwd["s2"]) == ["reload"]

    proxy = start_haproxy(tmp_path, processes, monkeypatch, front, instances)
    wait_for_instances(proxy, front, {"s2"})
    assert send(front, "restart") == ("s2", 250)
    assert sorted(stored_subjects(cwd["s2"])) == ["reload", "restart"]


def start_instances(
    tmp_path: Path, processes: list[Daemon], names: tuple[str, ...] = ("s1", "s2")
) -> tuple[dict[str, Path], dict[str, Daemon]]:
    """
    Daemons as the docs run them behind HAProxy, each in a directory of its
    own (so with a Maildir of its own) and greeting with its name.
    """
    cwd = {name: tmp_path / name for name in names}
    instances: dict[str, Daemon] = {}
    for name, where in cwd.items():
        where.mkdir()
        d = Daemon(where, [
            twistd(), "-n", "--pidfile=", "smtpsession", "--port", "tcp:0:interface=127.0.0.1",
            "--proxy-protocol-trusted", "127.0.0.1", "--hostname", f"{name}.test",
            "--no-reverse-lookup", "--max-clients", "500",
        ])  # fmt: skip
        processes.append(d)
        instances[name] = d
    return cwd, instances


def start_haproxy(
    tmp_path: Path,
    processes: list[Daemon],
    monkeypatch: pytest.MonkeyPatch,
    front: int,
    instances: dict[str, Daemon],
) -> Daemon:
    """
    `haproxy -db -f contrib/haproxy/smtpsession.cfg`, its addresses set
    through the environment variables the file reads (an instance missing
    from C{instances} gets a port where nobody listens).
    """
    monkeypatch.setenv("SMTPSESSION_FRONT", f"127.0.0.1:{front}")
    for name in ("s1", "s2"):
        port = instances[name].port() if name in instances else free_port()
        monkeypatch.setenv(f"SMTPSESSION_{name.upper()}", f"127.0.0.1:{port}")
    proxy = Daemon(tmp_path, [require_program("haproxy"), "-db", "-f", str(CONFIG)])
    processes.append(proxy)
    return proxy


def wait_for_instances(proxy: Daemon, front: int, names: set[str]) -> None:
    """Until each of C{names} has greeted a connection through HAProxy (bounded)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while not names <= seen:
        assert time.monotonic() < deadline and proxy.proc.poll() is None, proxy.output
        seen.add(greeter(front))


def instance_of(greeting: tuple[int, str] | None) -> str:
    assert greeting is not None and greeting[0] == 220, greeting
    m = INSTANCE.match(greeting[1])
    return m.group(1) if m else ""


def greeter(port: int) -> str:
    """Which instance greets a new connection through HAProxy ("" if none yet)."""
    try:
        client = RawClient("127.0.0.1", port, timeout=5, source=CLIENT)
    except OSError:
        time.sleep(0.05)
        return ""
    try:
        greeting = client.greeting
        client.command("QUIT")
    except OSError:
        time.sleep(0.05)
        return ""
    finally:
        client.close()
    return instance_of(greeting) if greeting and greeting[0] == 220 else ""
