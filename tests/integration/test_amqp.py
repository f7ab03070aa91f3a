"""
``--handler amqp`` against a real RabbitMQ: Debian's ``rabbitmq-server``,
started by L{tests.integration.rabbitmq} on 127.0.0.1 once for the module.

- every message that got 250 is in the queue exactly as accepted: the
  ``Received`` line, then the bytes sent; persistent, with the envelope in
  the headers and the session id and transaction number as message_id;
- no 250 without the broker's confirm: a broker that is killed, stopped or
  frozen means 4xx (451 4.3.0), and a broker that comes back is used again
  by the same server, without a restart;
- the broker's own refusals are 451 too: a nack (a full queue that rejects
  publishes), a message no queue would take, an exchange deleted under the
  handler;
- the daemon starts while the broker is away and delivers once it is back;
- the consumer example of the docs reads what the handler published;
- without a broker: a hung one is given up after connect_timeout and tried
  again, a handler nobody started answers 451, bad options and pika missing
  are one-line usage errors.

No test leaves a failure in the log (an unhandled error in a Deferred after
a cancelled publication, say).  Each test uses its own queue; every wait is
bounded in time.
"""

from __future__ import annotations

import gc
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage

from smtpsession import SMTPServerOptions
from smtpsession.handlers import AMQPHandler
from smtpsession.testing import RunningServer, call_in_reactor, serve
from tests.conftest import wait_until
from tests.integration.rabbitmq import RabbitMQ
from tests.integration.test_daemon import Daemon, daemon_env, twistd
from tests.rawsmtp import RawClient
from tests.unit.taputil import keep_sys_path, parse  # noqa: F401 (keep_sys_path: autouse)

REPO = Path(__file__).resolve().parents[2]

#: What the byte-for-byte test sends: 8-bit text (UTF-8, and Latin-1 bytes
#: that are not UTF-8), lines starting with dots, a line of 998 characters
#: and one of 5000.
SENT = (
    b"From: Carol <carol@example.org>\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <amqp-1@example.org>\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    + "Grüße aus Köln, café, 日本語.\r\n".encode()
    + b"caf\xe9 (Latin-1) \xff\xfe\x80\r\n"
    b".A line that starts with a dot.\r\n"
    b"..Two dots.\r\n"
    + b"x" * 998 + b"\r\n"
    + b"y" * 5000 + b"\r\n"
    b"last line\r\n"
)

MESSAGE_ID = re.compile(r"^([0-9a-f]{32})\.(\d+)$")


def opts(**kw: Any) -> SMTPServerOptions:
    kw.setdefault("name", "mx.test")
    kw.setdefault("disable_reverse_lookup", True)
    kw.setdefault("hook_timeout", 5)
    return SMTPServerOptions(**kw)


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    """One broker for the module (it takes seconds to start)."""
    rabbit = RabbitMQ(tmp_path_factory.mktemp("rabbitmq"))
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.close()


@pytest.fixture
def broker(module_broker: RabbitMQ) -> Iterator[RabbitMQ]:
    """The module's broker, running again for the next test if this one stopped it."""
    yield module_broker
    module_broker.resume()
    if module_broker.proc is None:
        module_broker.start()


@pytest.fixture(autouse=True)
def no_logged_failures() -> Iterator[None]:
    """
    Nothing the handler does (a hook timeout cancelling a publication, a
    connection lost mid-publish, a late confirm) leaves a failure in the
    log: no unhandled error in a Deferred, no traceback.
    """
    failures: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_failure") is not None or event.get("isError"):
            failures.append(formatEvent(event) + str(event.get("log_failure", "")))

    globalLogPublisher.addObserver(observe)
    try:
        yield
        gc.collect()  # a Deferred with an unhandled failure says so when collected
        call_in_reactor(lambda: None)  # and the reactor thread has logged it
    finally:
        globalLogPublisher.removeObserver(observe)
    assert failures == []


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    return "test-" + re.sub(r"[^A-Za-z0-9_-]", "-", request.node.name)


@pytest.fixture
def handlers() -> Iterator[list[AMQPHandler]]:
    """The handlers a test started: stopped (their connection closed) at its end."""
    made: list[AMQPHandler] = []
    yield made
    for handler in made:
        call_in_reactor(handler.stopService)
        assert not handler.connected


def make_handler(
    handlers: list[AMQPHandler], url: str, *, connected: bool = True, **kw: Any
) -> AMQPHandler:
    """
    An AMQPHandler started (in the reactor's thread) as SMTPService starts
    it; connected by the time it is returned, unless C{connected} is false.
    """
    kw.setdefault("hostname", "mx.test")
    kw.setdefault("max_reconnect_delay", 0.5)

    def make() -> AMQPHandler:
        handler = AMQPHandler(url, **kw)
        handler.startService()
        return handler

    handler: AMQPHandler = call_in_reactor(make)
    handlers.append(handler)
    if connected:
        wait_until(lambda: handler.connected, timeout=10)
    return handler


def send(
    server: RunningServer | tuple[str, int], sender: str, rcpts: list[str], body: bytes
) -> tuple[int, bytes]:
    """One transaction on a fresh connection: the reply that decided it."""
    address = server.address if isinstance(server, RunningServer) else server
    with smtplib.SMTP(*address, timeout=30) as client:
        try:
            client.sendmail(sender, rcpts, body, mail_options=["BODY=8BITMIME"])
        except smtplib.SMTPRecipientsRefused as e:
            return next(iter(e.recipients.values()))
        except smtplib.SMTPResponseException as e:
            return e.smtp_code, e.smtp_error
    return 250, b""


def received_line(body: bytes) -> bytes:
    """The Received header the handler put in front (folded lines included)."""
    assert body.startswith(b"Received: from ")
    end = re.search(rb"\r\n(?![ \t])", body)
    assert end is not None
    return body[: end.end()]


# ---------------------------------------------------------------------------
# What is published
# ---------------------------------------------------------------------------


@pytest.mark.external
def test_every_accepted_message_is_in_the_queue_as_accepted(
    broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]
) -> None:
    """Several transactions on one connection (8-bit text, dots, long lines,
    a null sender, several recipients, a 1 MB body): as many messages in
    the queue as 250s, each the Received line plus exactly the bytes sent,
    persistent, with the envelope in its headers and <session>.<n> as id."""
    handler = make_handler(handlers, broker.url, routing_key=queue)
    big = b"Subject: big\r\n\r\n" + (b"0123456789" * 7 + b"\r\n") * 14_000
    sent = [
        ("carol@example.org", ["alice@example.com", "bob@example.com", "dave@example.net"], SENT),
        ("", ["alice@example.com"], b"Subject: bounce\r\n\r\nNull sender.\r\n"),
        ("carol@example.org", ["bob@example.com"], big),
    ]
    with serve(handler, opts()) as server, smtplib.SMTP(*server.address, timeout=30) as client:
        for sender, rcpts, body in sent:
            assert client.sendmail(sender, rcpts, body, mail_options=["BODY=8BITMIME"]) == {}
    got = broker.get_all(queue)
    assert len(got) == len(sent)
    session_ids = set()
    for n, ((sender, rcpts, body), (properties, data)) in enumerate(zip(sent, got, strict=True), 1):
        head = received_line(data)
        assert data == head + body
        assert b"by mx.test (smtpsession) with ESMTP id " in head
        m = MESSAGE_ID.match(properties.message_id)
        assert m is not None, properties.message_id
        assert m.group(2) == str(n)  # the transaction number on the connection
        assert f" id {properties.message_id}".encode() in head
        session_ids.add(m.group(1))
        assert properties.delivery_mode == 2
        assert properties.content_type == "message/rfc822"
        assert properties.headers == {"x-mail-from": sender, "x-rcpt-to": rcpts}
    assert len(session_ids) == 1


# ---------------------------------------------------------------------------
# No 250 without a confirm
# ---------------------------------------------------------------------------


@pytest.mark.external
def test_broker_killed_then_back(broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]) -> None:
    """
    The broker dies (SIGKILL) with one message published and not yet
    confirmed, and another still arriving: both get 451 4.3.0, the first
    at once (not after hook_timeout), and neither is in the queue; while
    the broker is down, MAIL gets 451 4.3.0; when it is back, the same
    server (no restart) delivers again.
    """
    handler = make_handler(handlers, broker.url, routing_key=queue)
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with serve(handler, opts(hook_timeout=10)) as server:
            arriving = RawClient(server.host, server.port, timeout=20)
            published = RawClient(server.host, server.port, timeout=20)
            try:
                arriving.start_message("carol@example.org", ["alice@example.com"])
                arriving.send(b"Subject: arriving\r\n\r\nfirst half\r\n")
                broker.pause()  # takes the next message, confirms nothing
                published.start_message("carol@example.org", ["alice@example.com"])
                published.send(b"Subject: published\r\n\r\nx\r\n.\r\n")
                time.sleep(0.5)  # published (the log says so below), not confirmed
                started = time.monotonic()
                broker.kill()
                code, text = published.reply()
                assert (code, text[:5]) == (451, "4.3.0"), text
                assert time.monotonic() - started < 5  # the connection's loss, not the timeout
                wait_until(lambda: not handler.connected, timeout=10)
                arriving.send(b"second half\r\n.\r\n")
                code, text = arriving.reply()
                assert (code, text[:5]) == (451, "4.3.0"), text
            finally:
                arriving.close()
                published.close()
            code, text_b = send(server, "carol@example.org", ["alice@example.com"], b"Subject: down\r\n\r\nx\r\n")
            assert (code, text_b[:5]) == (451, b"4.3.0")
            broker.start()
            wait_until(lambda: handler.connected, timeout=15)
            assert send(server, "carol@example.org", ["alice@example.com"], b"Subject: back\r\n\r\nx\r\n")[0] == 250
    finally:
        globalLogPublisher.removeObserver(events.append)
    lost = [formatEvent(e) for e in events if "did not take message" in (e.get("log_format") or "")]
    assert len(lost) == 1, lost  # the published one: its publication failed
    subjects = [re.search(rb"Subject: (\w+)", body).group(1) for _, body in broker.get_all(queue)]  # type: ignore[union-attr]
    assert subjects == [b"back"]


@pytest.mark.external
def test_no_confirm_within_hook_timeout_is_451(
    broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]
) -> None:
    """A frozen broker (SIGSTOP) takes the message but never confirms it:
    451 4.3.0 once hook_timeout has passed, never 250.  Thawed, the broker
    confirms the next message at once on the same connection."""
    handler = make_handler(handlers, broker.url, routing_key=queue)
    with serve(handler, opts(hook_timeout=1.5)) as server:
        broker.pause()
        try:
            started = time.monotonic()
            code, text = send(server, "carol@example.org", ["alice@example.com"], b"Subject: frozen\r\n\r\nx\r\n")
            elapsed = time.monotonic() - started
        finally:
            broker.resume()
        assert (code, text[:5]) == (451, b"4.3.0")
        assert 1.4 < elapsed < 5, elapsed
        assert send(server, "carol@example.org", ["alice@example.com"], b"Subject: thawed\r\n\r\nx\r\n")[0] == 250
    # At least once: the frozen broker may have stored the first one too.
    subjects = [re.search(rb"Subject: (\w+)", body).group(1) for _, body in broker.get_all(queue)]  # type: ignore[union-attr]
    assert subjects[-1:] == [b"thawed"] and set(subjects) <= {b"frozen", b"thawed"}


@pytest.mark.external
def test_nack_is_451(broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]) -> None:
    """A queue that is full and rejects publishes nacks the second message:
    451 4.3.0, and only the first is in the queue.  The queue existed with
    arguments of its own: the handler uses it as it is."""
    broker.call(
        lambda ch: ch.queue_declare(
            queue, durable=True, arguments={"x-max-length": 1, "x-overflow": "reject-publish"}
        )
    )
    handler = make_handler(handlers, broker.url, routing_key=queue)
    with serve(handler, opts()) as server:
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: first\r\n\r\n1\r\n")[0] == 250
        code, text = send(server, "a@example.org", ["b@example.com"], b"Subject: second\r\n\r\n2\r\n")
        assert (code, text[:5]) == (451, b"4.3.0")
        assert b"did not take" in text
        [(_, body)] = broker.get_all(queue)
        assert body.endswith(b"Subject: first\r\n\r\n1\r\n")
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: third\r\n\r\n3\r\n")[0] == 250
    assert broker.count(queue) == 1


@pytest.mark.external
def test_unroutable_is_451(broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]) -> None:
    """declare_queue=no and no such queue: the broker returns the message
    (it is published mandatory) and the client gets 451, not a 250 for a
    message nobody will ever read."""
    handler = make_handler(handlers, broker.url, routing_key=queue, declare_queue="no")
    with serve(handler, opts()) as server:
        code, text = send(server, "a@example.org", ["b@example.com"], b"Subject: lost\r\n\r\nx\r\n")
    assert (code, text[:5]) == (451, b"4.3.0")
    with pytest.raises(Exception, match="NOT_FOUND"):
        broker.count(queue)


@pytest.mark.external
def test_exchange_deleted_and_declared_again(
    broker: RabbitMQ, queue: str, handlers: list[AMQPHandler]
) -> None:
    """With a named exchange, the queue is bound to it.  The exchange
    deleted under the handler: 451 (the broker closes the channel), and 451
    while it is missing; declared again, the handler reconnects by itself."""
    exchange = queue + "-x"

    def declare(ch: Any) -> None:
        ch.exchange_declare(exchange, exchange_type="direct")

    broker.call(declare)
    handler = make_handler(handlers, broker.url, exchange=exchange, routing_key=queue)
    with serve(handler, opts()) as server:
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: one\r\n\r\n1\r\n")[0] == 250
        broker.call(lambda ch: ch.exchange_delete(exchange))
        code, text = send(server, "a@example.org", ["b@example.com"], b"Subject: two\r\n\r\n2\r\n")
        assert (code, text[:5]) == (451, b"4.3.0")
        wait_until(lambda: not handler.connected, timeout=5)
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: two\r\n\r\n2\r\n")[0] == 451
        broker.call(declare)
        wait_until(lambda: handler.connected, timeout=10)
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: three\r\n\r\n3\r\n")[0] == 250
    subjects = [re.search(rb"Subject: (\w+)", body).group(1) for _, body in broker.get_all(queue)]  # type: ignore[union-attr]
    assert subjects == [b"one", b"three"]


# ---------------------------------------------------------------------------
# The daemon, and the docs' consumer
# ---------------------------------------------------------------------------


@pytest.mark.external
def test_daemon_starts_while_the_broker_is_away(
    broker: RabbitMQ, queue: str, tmp_path: Path
) -> None:
    """`twistd -n smtpsession --handler amqp` starts with the broker
    stopped, answers 451, connects when the broker is back, delivers, and
    shuts down cleanly on SIGTERM."""
    broker.stop()
    argv = [
        twistd(), "-n", "--pidfile=", "smtpsession",
        "--port", "tcp:0:interface=127.0.0.1", "--no-reverse-lookup",
        "--handler", "amqp",
        "--handler-option", f"url={broker.url}",
        "--handler-option", f"routing_key={queue}",
        "--handler-option", "max_reconnect_delay=0.5",
    ]  # fmt: skip
    daemon = Daemon(tmp_path, argv)
    try:
        port = daemon.port()
        daemon.wait_for(re.compile(r"AMQP: cannot connect to amqp://guest:\*\*\*@127\.0\.0\.1"))
        server = ("127.0.0.1", port)
        code, _ = send(server, "a@example.org", ["b@example.com"], b"Subject: early\r\n\r\nx\r\n")
        assert code == 451
        broker.start()
        daemon.wait_for(re.compile(r"AMQP: connected again to "), timeout=15)
        assert send(server, "a@example.org", ["b@example.com"], b"Subject: daemon\r\n\r\nx\r\n")[0] == 250
        daemon.signal(signal.SIGTERM)
        code = daemon.wait()
    finally:
        daemon.kill()
    assert code in (0, -signal.SIGTERM), daemon.output
    assert "Server Shut Down." in daemon.output
    assert "Traceback" not in daemon.output and "Unhandled" not in daemon.output, daemon.output
    assert "guest:guest" not in daemon.output  # no password in the log
    [(properties, body)] = broker.get_all(queue)
    assert body.endswith(b"Subject: daemon\r\n\r\nx\r\n")
    assert properties.headers["x-mail-from"] == "a@example.org"


@pytest.mark.external
def test_consumer_example(broker: RabbitMQ, queue: str, handlers: list[AMQPHandler], tmp_path: Path) -> None:
    """docs/examples/amqp_consumer.py stores what the handler published in
    a Maildir, one file per message (Return-Path from x-mail-from), prints
    the envelope, and acks: the queue is empty afterwards."""
    handler = make_handler(handlers, broker.url, routing_key=queue)
    with serve(handler, opts()) as server:
        for n in range(2):
            body = f"Subject: consumed {n}\r\n\r\nHello.\r\n".encode()
            assert send(server, "" if n else "a@example.org", ["b@example.com"], body)[0] == 250
    maildir = tmp_path / "Maildir"
    result = subprocess.run(
        [
            sys.executable, str(REPO / "docs" / "examples" / "amqp_consumer.py"),
            "--url", broker.url, "--queue", queue, "--maildir", str(maildir), "--count", "2",
        ],
        env=daemon_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    stored = sorted((maildir / "new").iterdir())
    assert len(stored) == 2
    texts = sorted(p.read_bytes() for p in stored)
    assert texts[0].startswith(b"Return-Path: <>\r\nReceived: from ")
    assert texts[0].endswith(b"Subject: consumed 1\r\n\r\nHello.\r\n")
    assert texts[1].startswith(b"Return-Path: <a@example.org>\r\nReceived: from ")
    assert "from <a@example.org> to <b@example.com>" in result.stdout
    assert broker.count(queue) == 0


# ---------------------------------------------------------------------------
# No broker needed
# ---------------------------------------------------------------------------


def test_silent_broker_is_given_up_after_connect_timeout(handlers: list[AMQPHandler]) -> None:
    """A "broker" that accepts connections and never answers (hung): each
    attempt is abandoned after connect_timeout (its socket closed) and made
    again, the log says so once, and MAIL gets 451 meanwhile."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(8)
            listener.settimeout(10)
            url = f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}/%2F"
            handler = make_handler(
                handlers, url, connected=False, connect_timeout=0.3, max_reconnect_delay=0.2
            )
            attempts = [listener.accept()[0] for _ in range(3)]
            try:
                for attempt in attempts[:2]:
                    attempt.settimeout(10)
                    assert attempt.recv(8) == b"AMQP\x00\x00\x09\x01"  # pika's greeting
                    try:
                        assert attempt.recv(8) == b""  # then given up
                    except ConnectionResetError:
                        pass  # given up by an abort
                with serve(handler, opts()) as server:
                    code, _ = send(server, "a@example.org", ["b@example.com"], b"Subject: x\r\n\r\nx\r\n")
                assert code == 451
                # Stopped before this side closes anything (that would be a
                # new reason to log).
                call_in_reactor(handler.stopService)
            finally:
                for attempt in attempts:
                    attempt.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [formatEvent(e) for e in events if "cannot connect" in (e.get("log_format") or "")]
    assert warnings == [
        f"AMQP: cannot connect to {url.replace('guest:guest', 'guest:***')}: "
        "no answer within 0.3 s; mail gets 451 until it can"
    ]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("url=http://127.0.0.1/", "url must look like amqp://"),
        ("url=amqp://guest:secret@:5672/", "url must look like amqp://"),
        ("url=amqp://127.0.0.1:notaport/", "Port could not be cast"),
        ("url=amqps://127.0.0.1/", "amqps:// is not supported"),
        ("url=amqp://127.0.0.1/?bogus=1", "Unknown URL parameter"),
        ("declare_queue=maybe", "not a yes/no value"),
        ("connect_timeout=0", "must be positive"),
    ],
)
def test_bad_options_are_one_line_usage_errors(option: str, message: str) -> None:
    with pytest.raises(usage.UsageError) as info:
        parse("--handler", "amqp", "--handler-option", option)
    text = str(info.value)
    assert message in text and "\n" not in text, text
    assert "secret" not in text


def test_options_from_text() -> None:
    """Text from --handler-option becomes the right types; defaults as API.md says."""
    handler = parse("--handler", "amqp").handler
    assert isinstance(handler, AMQPHandler)
    assert (handler.url, handler.exchange, handler.routing_key, handler.declare_queue) == (
        "amqp://guest:guest@127.0.0.1:5672/%2F", "", "smtpsession", True,
    )  # fmt: skip
    for text, value in [("no", False), ("false", False), ("0", False), ("yes", True), ("on", True)]:
        handler = parse(
            "--handler", "amqp",
            "--handler-option", "url=amqp://u:p@mq.example:5673/mail",
            "--handler-option", "exchange=mail",
            "--handler-option", "routing_key=in",
            "--handler-option", f"declare_queue={text}",
        ).handler  # fmt: skip
        assert isinstance(handler, AMQPHandler)
        assert (handler.host, handler.port, handler.exchange, handler.routing_key) == (
            "mq.example", 5673, "mail", "in",
        )  # fmt: skip
        assert handler.declare_queue is value
        assert "u:***@mq.example" in repr(handler) and ":p@" not in repr(handler)


def test_not_started_is_451() -> None:
    """A handler nobody started (no SMTPService, no startService) never
    connects: MAIL gets 451 4.3.0, not a 250 for mail that goes nowhere."""
    from smtpsession.testing.memory import MemoryServer

    handler = AMQPHandler("amqp://guest:guest@127.0.0.1:1/%2F")
    client = MemoryServer(handler).connect()  # a bare factory: nothing starts the service
    client.ehlo()
    [reply] = client.lines("MAIL FROM:<a@example.org>")
    assert reply.startswith("451 4.3.0")
    assert not handler.running


def test_without_pika() -> None:
    """smtpsession.handlers imports without pika, and --handler amqp then
    says in one line how to install it."""
    code = (
        "import sys; sys.modules['pika'] = None\n"
        "import smtpsession.handlers\n"
        "from twisted.python import usage\n"
        "from smtpsession import tap\n"
        "try:\n"
        "    tap.Options().parseOptions(['--handler', 'amqp'])\n"
        "except usage.UsageError as e:\n"
        "    print(e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=daemon_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert "pip install smtpsession[amqp]" in line
