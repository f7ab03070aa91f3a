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

- Postfix's smtpd (Debian's 3.7, an instance of the test's own), with its
  defaults, ends DATA at the same three bare-LF dots (its fix,
  smtpd_forbid_bare_newline, is off by default in 3.7); with the fix on,
  nothing fails; STARTTLS injection is refused either way.

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


# ---------------------------------------------------------------------------
# Postfix's smtpd
# ---------------------------------------------------------------------------

#: A Postfix instance of the test's own: its master, in the foreground, on a
#: configuration directory and queue in a temporary directory (the machine's
#: Postfix is left alone; run-tests.sh stops it).  Mail is accepted from
#: loopback and discarded.
POSTFIX_MAIN = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
mail_owner = postfix
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.test
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
alias_maps =
alias_database =
local_recipient_maps =
default_transport = discard
relay_transport = discard
maillog_file = /dev/stdout
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_forbid_bare_newline_exclusions =
{extra}
"""
POSTFIX_SERVICES = ["cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
                    "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
                    "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
                    "proxymap unix - - n - - proxymap", "discard unix - - n - - discard",
                    "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
                    "tlsmgr unix - - n 1000? 1 tlsmgr",
                    "postlog unix-dgram n - n - 1 postlogd"]  # fmt: skip
POSTFIX_QUEUE = ["pid", "public", "private", "maildrop", "incoming", "active", "deferred",
                 "defer", "bounce", "trace", "flush", "hold", "corrupt", "saved"]  # fmt: skip


def postfix(identity: Identity, extra: str = "") -> Iterator[int]:
    """
    The instance's directory is made with tempfile, not pytest's tmp_path:
    Postfix's daemons run as the postfix user, who cannot enter pytest's
    private (0700) temporary directories.
    """
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="smtpsession-postfix-"))
    try:
        yield from _postfix(base, identity, extra)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _postfix(tmp_path: Path, identity: Identity, extra: str) -> Iterator[int]:
    master = Path("/usr/lib/postfix/sbin/master")
    if not master.exists():
        require_program("postfix")  # fails with the package to install
    if os.geteuid() != 0:
        pytest.skip("a Postfix instance needs root (its queue belongs to the postfix user)")
    import grp
    import pwd

    owner, postdrop = pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postdrop").gr_gid
    port = free_port()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "main.cf").write_text(
        POSTFIX_MAIN.format(base=tmp_path, cert=identity.cert, key=identity.key, extra=extra)
    )
    (conf / "master.cf").write_text(
        "\n".join([f"127.0.0.1:{port} inet n - n - - smtpd", *POSTFIX_SERVICES]) + "\n"
    )
    (tmp_path / "data").mkdir()
    os.chown(tmp_path / "data", owner, -1)
    tmp_path.chmod(0o755)
    for name in POSTFIX_QUEUE:
        path = tmp_path / "queue" / name
        path.mkdir(parents=True)
        if name != "pid":
            os.chown(path, owner, postdrop if name in ("maildrop", "public") else -1)
    (tmp_path / "queue" / "maildrop").chmod(0o730)
    (tmp_path / "queue" / "public").chmod(0o710)
    (tmp_path / "queue" / "private").chmod(0o700)
    log = open(tmp_path / "master.log", "wb")  # its log (maillog_file = /dev/stdout)
    proc = subprocess.Popen(
        [str(master), "-c", str(conf), "-d"], stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        try:
            greeted(port, proc)
        except AssertionError as e:
            raise AssertionError(f"{e}: {(tmp_path / 'master.log').read_text()[-2000:]}") from None
        yield port
    finally:
        proc.terminate()  # master ends its children
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@pytest.fixture
def postfix_default(identity: Identity) -> Iterator[int]:
    yield from postfix(identity)


@pytest.fixture
def postfix_forbidding_bare_newlines(identity: Identity) -> Iterator[int]:
    yield from postfix(identity, "smtpd_forbid_bare_newline = normalize")


def test_postfix_as_configured_by_default_ends_data_at_bare_lf_dots(postfix_default: int) -> None:
    """Debian's Postfix 3.7 with its defaults (smtpd_forbid_bare_newline =
    no, the 2023 disclosure's default on stable releases): DATA ends at
    LF.LF, LF.CRLF and CRLF.LF.  STARTTLS injection is refused (fixed in
    2011)."""
    report = run_checks("127.0.0.1", postfix_default, **FAST)
    got = {case.id: case.result for case in report.cases}
    assert {case for case, result in got.items() if result is Result.FAIL} == {
        "lf-dot-lf", "lf-dot-crlf", "crlf-dot-lf",
    }
    assert got["injection-noop"] is got["injection-mail"] is Result.PASS


def test_postfix_forbidding_bare_newlines_passes(postfix_forbidding_bare_newlines: int) -> None:
    """With smtpd_forbid_bare_newline = normalize (Postfix's fix), no case fails."""
    assert failing(postfix_forbidding_bare_newlines) == set()
