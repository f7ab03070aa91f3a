"""
smtpsession.conformance against two more peers of bench/, run as the
benchmark runs them (bench/peers/): nodemailer's smtp-server (Node.js, SMTP
and LMTP, STARTTLS) and emersion's go-smtp (Debian's package, built here
with Debian's Go).  Their known flaws are found, and nothing else:

- go-smtp ends DATA at a dot between bare LFs (three of the eight SMTP
  smuggling variants) and answers RCPT before MAIL with 502 (RFC 5321 §3.3
  wants 503);
- smtp-server, in LMTP, answers a recipient given twice once (RFC 2033
  §4.2 wants a reply per RCPT), which the pipelining case sees too.

The table of docs/conformance.rst ("Server by server") records the same.
Each peer listens on 127.0.0.1 and is stopped by its PID.  The compiled run
of run-tests.sh skips this file: it checks other servers, not smtpsession's
core.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smtpsession.conformance import Result, run_checks
from tests.conftest import require_program
from tests.tlsutil import Identity, make_ca

REPO = Path(__file__).resolve().parents[2]
FAST = {"timeout": 5.0, "settle": 0.3, "case_timeout": 10.0}

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(
        os.environ.get("SMTPSESSION_EXPECT_COMPILED") == "1",
        reason="checks other servers; the pure-Python run covers it",
    ),
]


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca.issue("server", ["localhost"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def greeted(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Wait (bounded) until the peer sends its greeting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the peer exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(3) == b"220":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"no greeting on port {port} within {timeout:g} s")


def run_peer(argv: list[str], port: int, identity: Identity, **env: str) -> Iterator[int]:
    environment = dict(os.environ, SMTPBENCH_TLS_CERT=str(identity.cert),
                       SMTPBENCH_TLS_KEY=str(identity.key), **env)  # fmt: skip
    proc = subprocess.Popen(
        argv, env=environment, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        greeted(port, proc)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


def failing(port: int, lmtp: bool = False) -> set[str]:
    report = run_checks("127.0.0.1", port, lmtp=lmtp, **FAST)
    got = {case.id: case.result for case in report.cases}
    assert Result.PASS in got.values()
    return {case for case, result in got.items() if result is Result.FAIL}


# ---------------------------------------------------------------------------
# nodemailer's smtp-server
# ---------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["smtp", "lmtp"])
def node_smtp_server(request: pytest.FixtureRequest, identity: Identity) -> Iterator[tuple[int, bool]]:
    node = require_program("node")
    modules = REPO / "tests" / "js" / "node_modules"
    if not (modules / "smtp-server").is_dir():
        pytest.fail("tests/js/node_modules/smtp-server is missing: run-tests.sh installs it")
    port = free_port()
    lmtp = bool(request.param)
    argv = [node, str(REPO / "bench" / "peers" / "node_sink.cjs"), str(port), "lmtp" if lmtp else "smtp"]
    for p in run_peer(argv, port, identity, NODE_PATH=str(modules)):
        yield p, lmtp


def test_node_smtp_server(node_smtp_server: tuple[int, bool]) -> None:
    """No smuggling, no STARTTLS injection; in LMTP, one reply for a
    recipient given twice (the flaw smtpsession had until 744260a)."""
    port, lmtp = node_smtp_server
    expected = {"lmtp-duplicate-recipient", "envelope-in-one-write"} if lmtp else set()
    assert failing(port, lmtp) == expected


# ---------------------------------------------------------------------------
# go-smtp
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gosmtp_sink(tmp_path_factory: pytest.TempPathFactory) -> str:
    """bench/peers/gosmtp_sink.go built as bench/setup-peers.sh builds it."""
    go = require_program("go")
    gocode = Path("/usr/share/gocode/src/github.com/emersion/go-smtp")
    if not gocode.is_dir():
        pytest.fail("go-smtp's sources are missing: run-tests.sh installs golang-github-emersion-go-smtp-dev")
    base = tmp_path_factory.mktemp("go")
    (base / "src" / "gosmtp_sink").mkdir(parents=True)
    shutil.copy(REPO / "bench" / "peers" / "gosmtp_sink.go", base / "src" / "gosmtp_sink" / "main.go")
    env = dict(os.environ, GOPATH=f"{base}:/usr/share/gocode", GO111MODULE="off", GOFLAGS="",
               GOCACHE=str(base / "cache"))  # fmt: skip
    subprocess.run([go, "build", "-o", "gosmtp_sink", "gosmtp_sink"], cwd=base, env=env,
                   check=True, timeout=240, capture_output=True)  # fmt: skip
    return str(base / "gosmtp_sink")


@pytest.fixture
def go_smtp(gosmtp_sink: str, identity: Identity) -> Iterator[int]:
    port = free_port()
    yield from run_peer([gosmtp_sink, str(port)], port, identity)


def test_go_smtp_ends_data_at_bare_lf_dots(go_smtp: int) -> None:
    """SMTP smuggling: DATA ends at LF.LF, LF.CRLF and CRLF.LF, and the
    smuggled commands are answered; RCPT before MAIL is 502, not 503."""
    assert failing(go_smtp) == {"lf-dot-lf", "lf-dot-crlf", "crlf-dot-lf", "rcpt-before-mail"}
