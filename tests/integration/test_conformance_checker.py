"""
smtpsession.conformance, the checker for any SMTP/LMTP server, run against
smtpsession (every case passes or is skipped), against twisted.mail and
aiosmtpd (their known flaws are found), and against a deliberately broken
server of our own, which proves the checker can fail: it ends DATA at a
bare LF and executes what was pipelined after STARTTLS.

All servers listen on 127.0.0.1; every wait is bounded.  The results for
the peers are recorded in docs/conformance.rst ("Checking any server").
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.conformance import Report, Result, run_checks
from smtpsession.testing import RecordingHandler, call_in_reactor, serve
from tests.tlsutil import Identity, make_ca

REPO = Path(__file__).resolve().parents[2]

#: Quick but safe on loopback: replies come within milliseconds.
FAST: dict[str, Any] = {"timeout": 5.0, "settle": 0.3, "case_timeout": 10.0}

SMUGGLING = [
    "lf-dot-lf",
    "lf-dot-crlf",
    "crlf-dot-lf",
    "cr-dot-cr",
    "cr-dot-crlf",
    "crlf-dot-cr",
    "lf-dot-cr",
    "cr-dot-lf",
]


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    ca = make_ca(tmp_path_factory.mktemp("pki"))
    return ca.issue("server", ["mail.example.test", "localhost"])


def results(report: Report) -> dict[str, Result]:
    return {case.id: case.result for case in report.cases}


def _server_context(identity: Identity) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


# ---------------------------------------------------------------------------
# smtpsession itself: all green
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_smtpsession_passes_every_case(
    identity: Identity, lmtp: bool, conformance: Callable[..., Report]
) -> None:
    """With STARTTLS, CHUNKING and SMTPUTF8 on, nothing fails and the extension cases run."""
    options = SMTPServerOptions(
        name="mail.example.test",
        disable_reverse_lookup=True,
        lmtp=lmtp,
        tls_cert=str(identity.cert),
        tls_key=str(identity.key),
    )
    with serve(RecordingHandler(), options) as server:
        report = conformance(server.host, server.port, lmtp=lmtp, **FAST)
    got = results(report)
    report.assert_passed()
    ran = {c for c, r in got.items() if r is Result.PASS}
    assert set(SMUGGLING) <= ran
    assert {"injection-noop", "injection-mail", "no-starttls-after-tls", "session-reset"} <= ran
    assert {"envelope-in-one-write", "after-end-of-data", "many-commands"} <= ran
    assert {"bdat-last", "bdat-chunks", "bdat-is-opaque", "data-after-bdat"} <= ran
    assert {"utf8-with-parameter", "declared-size", "recipients-100", "message"} <= ran
    assert ("lmtp-reply-per-recipient" in ran) == lmtp
    # A recipient given twice gets two replies (RFC 2033 4.2); the checker
    # found smtpsession merging them into one, fixed since.
    assert ("lmtp-duplicate-recipient" in ran) == lmtp
    skipped = {c for c, r in got.items() if r is Result.SKIP}
    lmtp_only = {"lmtp-reply-per-recipient", "lmtp-duplicate-recipient"}
    assert skipped == ({"helo"} if lmtp else lmtp_only)


# ---------------------------------------------------------------------------
# twisted.mail: the STARTTLS injection is found
# ---------------------------------------------------------------------------


def _twisted_mail(identity: Identity) -> Any:
    """An ESMTP server of twisted.mail accepting every recipient (as bench/peers runs it)."""
    from twisted.internet import defer, reactor
    from twisted.internet import ssl as tssl
    from twisted.mail import smtp
    from zope.interface import implementer

    @implementer(smtp.IMessage)
    class Discard:
        def lineReceived(self, line: bytes) -> None:
            pass

        def eomReceived(self) -> Any:
            return defer.succeed(None)

        def connectionLost(self) -> None:
            pass

    @implementer(smtp.IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
            return None

        def validateFrom(self, helo: Any, origin: Any) -> Any:
            return origin

        def validateTo(self, user: Any) -> Any:
            return Discard

    context = tssl.PrivateCertificate.loadPEM(
        identity.cert.read_text() + identity.key.read_text()
    ).options()

    class Factory(smtp.SMTPFactory):
        protocol = smtp.ESMTP

        def buildProtocol(self, addr: Any) -> Any:
            p = smtp.SMTPFactory.buildProtocol(self, addr)
            p.delivery = Delivery()
            p.ctx = context
            return p

    return reactor.listenTCP(0, Factory(), interface="127.0.0.1")


@pytest.mark.filterwarnings("ignore:Passing pyOpenSSL:DeprecationWarning")
def test_twisted_mail_executes_commands_injected_before_starttls(identity: Identity) -> None:
    """
    twisted.mail keeps what followed STARTTLS in its line buffer and runs it
    inside TLS (CVE-2011-0411 class), and has no NOOP (RFC 5321 §4.5.1); it
    ends DATA at CRLF.CRLF only.
    """
    port = call_in_reactor(_twisted_mail, identity)
    try:
        report = run_checks("127.0.0.1", port.getHost().port, **FAST)
    finally:
        call_in_reactor(port.stopListening)
    got = results(report)
    assert got["injection-noop"] is Result.FAIL
    assert got["injection-mail"] is Result.FAIL
    assert got["noop-rset"] is Result.FAIL
    assert all(got[v] is Result.PASS for v in SMUGGLING), report.text()
    assert got["bdat-last"] is Result.SKIP  # no CHUNKING
    assert not report.ok


# ---------------------------------------------------------------------------
# aiosmtpd (the test extra): whatever its version does, recorded
# ---------------------------------------------------------------------------


@pytest.fixture
def aiosmtpd_server(identity: Identity) -> Iterator[int]:
    smtp = pytest.importorskip("aiosmtpd.smtp")

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    loop = asyncio.new_event_loop()
    context = _server_context(identity)
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        holder["server"] = await loop.create_server(
            lambda: smtp.SMTP(Sink(), enable_SMTPUTF8=True, tls_context=context),
            "127.0.0.1",
            0,
        )
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    assert started.wait(10)
    try:
        yield holder["server"].sockets[0].getsockname()[1]
    finally:

        async def stop() -> None:
            holder["server"].close()
            await holder["server"].wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_aiosmtpd(aiosmtpd_server: int) -> None:
    """aiosmtpd (1.4.6 when recorded): no smuggling variant, no STARTTLS injection works."""
    report = run_checks("127.0.0.1", aiosmtpd_server, **FAST)
    got = results(report)
    assert all(got[v] is Result.PASS for v in SMUGGLING), report.text()
    assert got["injection-noop"] is Result.PASS, report.text()
    assert got["injection-mail"] is Result.PASS, report.text()


# ---------------------------------------------------------------------------
# A deliberately broken server: the checker can fail
# ---------------------------------------------------------------------------


class BrokenServer(socketserver.ThreadingTCPServer):
    """Lines end at LF (CR stripped), DATA ends at a "." line, STARTTLS keeps the buffer."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), BrokenSession)
        self.context = context


class BrokenSession(socketserver.BaseRequestHandler):
    server: BrokenServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        out = sock
        tls = False
        out.sendall(b"220 broken.test ESMTP\r\n")
        buffer = b""
        in_data = False
        try:
            while True:
                while b"\n" not in buffer:
                    chunk = out.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                raw, _, buffer = buffer.partition(b"\n")
                line = raw.rstrip(b"\r")
                if in_data:
                    if line == b".":
                        in_data = False
                        out.sendall(b"250 queued\r\n")
                    continue
                verb = line[:8].split(b" ")[0].upper()
                if verb in (b"EHLO", b"HELO"):
                    offer = b"" if tls else b"250-STARTTLS\r\n"
                    out.sendall(
                        b"250-broken.test\r\n250-PIPELINING\r\n" + offer + b"250 8BITMIME\r\n"
                    )
                elif verb == b"STARTTLS":
                    out.sendall(b"220 go ahead\r\n")
                    # The flaw: the rest of `buffer` (sent in the clear) is
                    # processed after the handshake.
                    out = self.server.context.wrap_socket(sock, server_side=True)
                    tls = True
                elif verb == b"DATA":
                    in_data = True
                    out.sendall(b"354 go on\r\n")
                elif verb == b"QUIT":
                    out.sendall(b"221 bye\r\n")
                    return
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    out.sendall(b"250 ok\r\n")
                else:
                    out.sendall(b"500 unknown\r\n")
        except (OSError, ssl.SSLError):
            return


@pytest.fixture
def broken(identity: Identity) -> Iterator[int]:
    server = BrokenServer(_server_context(identity))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_the_checker_finds_a_broken_server(broken: int) -> None:
    """Exactly the LF-ended false ends fail, and both STARTTLS injections."""
    got = results(run_checks("127.0.0.1", broken, **FAST))
    assert {v: got[v] for v in SMUGGLING} == {
        v: Result.FAIL if v in ("lf-dot-lf", "lf-dot-crlf", "crlf-dot-lf") else Result.PASS
        for v in SMUGGLING
    }
    assert got["injection-noop"] is Result.FAIL
    assert got["injection-mail"] is Result.FAIL
    assert got["rcpt-before-mail"] is Result.FAIL
    assert got["no-starttls-after-tls"] is Result.PASS


# ---------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "smtpsession.conformance", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def test_cli_text_report_and_exit_status() -> None:
    """Text report, exit 0 against smtpsession."""
    with serve() as server:
        done = cli("--settle", "0.3", f"{server.host}:{server.port}")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"smtpsession.conformance: 127.0.0.1:{server.port} (SMTP)"
    assert any(line.startswith("PASS  smuggling/lf-dot-lf") for line in lines)
    assert any(line.startswith("SKIP  starttls/injection-noop") for line in lines)
    assert " 0 failed, " in lines[-1]


def test_cli_json_and_failure(broken: int) -> None:
    """--json prints the contract's shape exactly; a failing case makes the exit status 1."""
    done = cli("--json", "--settle", "0.3", f"127.0.0.1:{broken}")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"target", "cases"}
    assert report["target"] == f"127.0.0.1:{broken}"
    groups = {"rfc5321", "smuggling", "starttls", "pipelining", "limits", "chunking", "smtputf8"}
    for case in report["cases"]:
        assert set(case) == {"id", "group", "result", "detail"}
        assert case["result"] in ("pass", "fail", "skip")
        assert case["group"] in groups
    assert {c["group"] for c in report["cases"]} == groups
    failing = {c["id"] for c in report["cases"] if c["result"] == "fail"}
    assert {"lf-dot-lf", "injection-noop"} <= failing


def test_cli_unreachable_and_usage_errors() -> None:
    """Exit 2 and one line on stderr: no server there, or no HOST:PORT."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = cli(f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = cli("no-port-here")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
