"""
The relay handler against a second smtpsession instance acting as the
upstream (and, for broken upstreams, a scripted socket server): per-recipient
answers, temporary failures that stay temporary, an upstream that is down or
goes away mid-body, LMTP on either side, streaming of large bodies, and
STARTTLS verified against a certificate authority made for the test.
"""

from __future__ import annotations

import re
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smtpsession import Handler, SMTPError, SMTPServerOptions
from smtpsession.handlers import RelayHandler
from smtpsession.testing import RecordingHandler, RunningServer, serve
from tests.tlsutil import make_ca

BODY = (
    b"Subject: relayed\r\n"
    b"\r\n"
    b"First line.\r\n"
    b".A line that starts with a dot.\r\n"
    b"..Two dots.\r\n"
    b".\r\n"  # not the end: a lone dot inside the body
    b"Last line.\r\n"
)


class Upstream(RecordingHandler):
    """Records what it accepts; refuses nobody@ for good, later@ for now."""

    def on_rcpt_to(self, address: Any, session: Any) -> None:
        local = address.address.split("@")[0]
        if local == "nobody":
            raise SMTPError(550, "No such user here", "5.1.1")
        if local == "later":
            raise SMTPError(450, "Mailbox busy, try later", "4.2.1")

    async def on_data(self, stream: Any, session: Any) -> Any:
        await super().on_data(stream, session)
        subject = self.messages[-1].message["Subject"]
        if subject == "reject":
            self.messages.pop()
            raise SMTPError(554, "Content refused", "5.7.1")
        if subject == "defer":
            self.messages.pop()
            raise SMTPError(451, "Queue full", "4.3.1")
        return None


def opts(**kw: Any) -> SMTPServerOptions:
    kw.setdefault("name", "relay.test")
    kw.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**kw)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, RunningServer]]:
    handler = Upstream()
    with serve(handler, opts(name="upstream.test")) as server:
        yield handler, server


def relay_to(server: RunningServer, **kw: Any) -> RelayHandler:
    kw.setdefault("starttls", "never")
    kw.setdefault("hostname", "relay.test")
    kw.setdefault("timeout", 10)
    return RelayHandler(server.host, server.port, **kw)


# ---------------------------------------------------------------------------
# SMTP to SMTP
# ---------------------------------------------------------------------------


def test_per_recipient_refusal(upstream: tuple[Upstream, RunningServer]) -> None:
    """The upstream's refusal of one recipient is the client's RCPT answer;
    the message reaches the upstream for the others, with a Received
    header in front and every dotted line intact."""
    up, up_server = upstream
    with serve(relay_to(up_server), opts()) as relay, smtplib.SMTP(*relay.address) as client:
        refused = client.sendmail(
            "alice@example.org",
            ["bob@example.com", "nobody@example.com", "carol@example.com"],
            BODY,
        )
    assert refused == {"nobody@example.com": (550, b"5.1.1 No such user here")}
    [message] = up.messages
    assert message.mail_from == "alice@example.org"
    assert message.rcpt_to == ["bob@example.com", "carol@example.com"]
    head, sep, rest = message.data.partition(b"Subject: relayed")
    assert sep and rest == BODY[len(b"Subject: relayed") :]
    assert head.startswith(b"Received: from ")
    assert b"by relay.test (smtpsession) with ESMTP id " in head


def test_temporary_refusal_stays_temporary(upstream: tuple[Upstream, RunningServer]) -> None:
    """A 4xx from upstream reaches the client as 4xx, never as 250 or 5xx."""
    up, up_server = upstream
    with serve(relay_to(up_server), opts()) as relay, smtplib.SMTP(*relay.address) as client:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
            client.sendmail("a@example.org", ["later@example.com"], BODY)
        assert info.value.recipients == {"later@example.com": (450, b"4.2.1 Mailbox busy, try later")}
        with pytest.raises(smtplib.SMTPDataError) as data_info:
            client.sendmail("a@example.org", ["bob@example.com"], b"Subject: defer\r\n\r\nx\r\n")
        assert data_info.value.smtp_code == 451
        with pytest.raises(smtplib.SMTPDataError) as data_info:
            client.sendmail("a@example.org", ["bob@example.com"], b"Subject: reject\r\n\r\nx\r\n")
        assert data_info.value.smtp_code == 554
    assert up.messages == []


def test_upstream_down_is_a_temporary_failure() -> None:
    """Nothing listens upstream: MAIL gets 451 4.4.1, the client keeps the
    message, and the relay still serves the next attempt the same way."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nobody listens
    handler = RelayHandler("127.0.0.1", port, starttls="never", connect_timeout=5)
    with serve(handler, opts()) as relay:
        for _ in range(2):
            with smtplib.SMTP(*relay.address) as client:
                with pytest.raises(smtplib.SMTPSenderRefused) as info:
                    client.sendmail("a@example.org", ["b@example.com"], BODY)
                assert info.value.smtp_code == 451
                assert b"4.4.1" in info.value.smtp_error


def test_one_upstream_session_for_several_transactions(
    upstream: tuple[Upstream, RunningServer],
) -> None:
    """Transactions on one client connection reuse one upstream connection;
    an RSET in the middle of a transaction resets the upstream too."""
    up, up_server = upstream
    with serve(relay_to(up_server), opts()) as relay, smtplib.SMTP(*relay.address) as client:
        client.ehlo()
        assert client.mail("a@example.org")[0] == 250
        assert client.rcpt("dropped@example.com")[0] == 250
        assert client.rset()[0] == 250
        client.sendmail("a@example.org", ["b@example.com"], b"Subject: one\r\n\r\n1\r\n")
        client.sendmail("a@example.org", ["c@example.com"], b"Subject: two\r\n\r\n2\r\n")
    assert [m.rcpt_to for m in up.messages] == [["b@example.com"], ["c@example.com"]]
    assert len(up.sessions) == 1


def test_large_body_is_streamed_intact(upstream: tuple[Upstream, RunningServer]) -> None:
    """A 4 MB body full of dotted lines arrives byte for byte."""
    up, up_server = upstream
    line = b".dot " + b"x" * 70 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (4_000_000 // len(line))
    with serve(relay_to(up_server, received=False), opts()) as relay:
        with smtplib.SMTP(*relay.address) as client:
            client.sendmail("a@example.org", ["b@example.com"], body)
    [message] = up.messages
    assert message.data == body


# ---------------------------------------------------------------------------
# LMTP
# ---------------------------------------------------------------------------


class LmtpUpstream(Handler):
    """An LMTP upstream that answers each recipient after the body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def on_data(self, stream: Any, session: Any) -> list[Any]:
        self.bodies.append(b"".join([c async for c in stream]))
        out: list[Any] = []
        for a in session.envelope.rcpt_to:
            local = a.address.split("@")[0]
            if local.startswith("full"):
                out.append(SMTPError(452, "Mailbox full", "4.2.2"))
            elif local.startswith("gone"):
                out.append(SMTPError(550, "Mailbox disabled", "5.2.1"))
            else:
                out.append(f"Delivered to {a.address}")
        return out


def lmtp_data(client: smtplib.LMTP, sender: str, rcpts: list[str], body: bytes) -> list[int]:
    client.ehlo()
    assert client.mail(sender)[0] == 250
    for r in rcpts:
        assert client.rcpt(r)[0] == 250
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(re.sub(rb"(?m)^\.", b"..", body) + b".\r\n")  # dot-stuffed
    return [client.getreply()[0] for _ in rcpts]


def test_lmtp_answers_per_recipient() -> None:
    """LMTP client, LMTP upstream: each recipient gets the upstream's own
    answer after the body, in order."""
    up = LmtpUpstream()
    with serve(up, opts(lmtp=True, name="lmtp.up")) as up_server:
        handler = relay_to(up_server, lmtp=True)
        with serve(handler, opts(lmtp=True)) as relay, smtplib.LMTP(*relay.address) as client:
            codes = lmtp_data(
                client, "a@example.org", ["ok@x.test", "full@x.test", "gone@x.test"], BODY
            )
    assert codes == [250, 452, 550]
    assert len(up.bodies) == 1 and up.bodies[0].endswith(BODY)


def test_smtp_client_lmtp_upstream_mixed_answers() -> None:
    """An SMTP client has one answer for all recipients: when an LMTP
    upstream refuses some, the client gets the temporary failure (not a
    250 that would lose the message for them)."""
    up = LmtpUpstream()
    with serve(up, opts(lmtp=True, name="lmtp.up")) as up_server:
        with serve(relay_to(up_server, lmtp=True), opts()) as relay:
            with smtplib.SMTP(*relay.address) as client:
                with pytest.raises(smtplib.SMTPDataError) as info:
                    client.sendmail("a@example.org", ["ok@x.test", "full@x.test"], BODY)
                assert info.value.smtp_code == 452
                refused = client.sendmail("a@example.org", ["ok@x.test", "ok2@x.test"], BODY)
                assert refused == {}


# ---------------------------------------------------------------------------
# A broken upstream
# ---------------------------------------------------------------------------


class ScriptedUpstream:
    """
    A socket server that speaks just enough SMTP, then drops the
    connection after receiving part of the body.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        self.sock.settimeout(20)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            f = conn.makefile("rb")
            conn.sendall(b"220 scripted ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"EHLO":
                    conn.sendall(b"250-scripted\r\n250 PIPELINING\r\n")
                elif verb in (b"MAIL", b"RCPT", b"RSET"):
                    conn.sendall(b"250 OK\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go on\r\n")
                    self.received = f.read(1000)
                    return  # hang up in the middle of the body
                else:
                    conn.sendall(b"502 no\r\n")

    def close(self) -> None:
        self.sock.close()
        self.thread.join(20)


def test_upstream_lost_mid_body_is_a_temporary_failure() -> None:
    """The upstream hangs up during the body: the client still sends its
    whole body and then gets 451 (never 250)."""
    scripted = ScriptedUpstream()
    try:
        handler = RelayHandler("127.0.0.1", scripted.port, starttls="never", timeout=10)
        body = b"Subject: lost\r\n\r\n" + b"y" * 2_000_000 + b"\r\n"
        with serve(handler, opts()) as relay, smtplib.SMTP(*relay.address) as client:
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("a@example.org", ["b@example.com"], body)
            assert info.value.smtp_code == 451
            assert client.noop()[0] == 250  # the client's session goes on
    finally:
        scripted.close()
    assert scripted.received  # it did get part of the body


# ---------------------------------------------------------------------------
# STARTTLS, verified
# ---------------------------------------------------------------------------


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[tuple[Upstream, RunningServer, Path]]:
    ca = make_ca(tmp_path)
    identity = ca.issue("server", ["mail.upstream.test"])
    handler = Upstream()
    options = opts(
        name="mail.upstream.test", tls_cert=str(identity.cert), tls_key=str(identity.key)
    )
    with serve(handler, options) as server:
        yield handler, server, ca.path


def test_starttls_verified(tls_upstream: tuple[Upstream, RunningServer, Path]) -> None:
    """With the right CA and name the relay upgrades with STARTTLS, and the
    message travels encrypted (the upstream session is secure)."""
    up, server, ca = tls_upstream
    handler = relay_to(
        server, starttls="require", tls_ca=str(ca), tls_hostname="mail.upstream.test"
    )
    with serve(handler, opts()) as relay, smtplib.SMTP(*relay.address) as client:
        client.sendmail("a@example.org", ["b@example.com"], BODY)
    [message] = up.messages
    assert message.secure is True
    assert message.transmission_type == "ESMTPS"


@pytest.mark.parametrize(
    "settings",
    [
        {"tls_hostname": "some.other.name"},  # certificate is not for this name
        {"tls_hostname": "mail.upstream.test", "tls_ca": None},  # not a trusted CA
    ],
)
def test_starttls_verification_failure_is_temporary(
    tls_upstream: tuple[Upstream, RunningServer, Path], settings: dict[str, Any]
) -> None:
    """A certificate that does not verify (wrong name, unknown CA): 451 to
    the client, nothing delivered upstream."""
    up, server, ca = tls_upstream
    kw: dict[str, Any] = {"starttls": "opportunistic", "tls_ca": str(ca), **settings}
    with serve(relay_to(server, **kw), opts()) as relay, smtplib.SMTP(*relay.address) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("a@example.org", ["b@example.com"], BODY)
        assert info.value.smtp_code == 451
    assert up.messages == []


def test_starttls_required_but_not_offered(upstream: tuple[Upstream, RunningServer]) -> None:
    """starttls="require" and an upstream without STARTTLS: 451, nothing
    sent in clear."""
    up, up_server = upstream
    handler = relay_to(up_server, starttls="require", tls_verify=False)
    with serve(handler, opts()) as relay, smtplib.SMTP(*relay.address) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as info:
            client.sendmail("a@example.org", ["b@example.com"], BODY)
        assert info.value.smtp_code == 451
    assert up.messages == []


def test_bad_settings_fail_at_construction(tmp_path: Path) -> None:
    """Invalid relay settings are refused when the handler is built."""
    with pytest.raises(ValueError):
        RelayHandler("h", starttls="sometimes")
    with pytest.raises(ValueError):
        RelayHandler("h", username="only-user")
    with pytest.raises(OSError):
        RelayHandler("h", tls_ca=str(tmp_path / "missing.pem"))
