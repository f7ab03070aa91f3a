"""
The daemon's log (smtpsession._daemon_log): --log-level, --log-format
json, and Twisted's per-query DNS port lines left out.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import twisted.logger
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, LogPublisher, textFileLogObserver
from twisted.python.failure import Failure

from smtpsession import _daemon_log, _twisted_shim
from smtpsession._daemon_log import DaemonLogObserver, json_line
from smtpsession._log import ConnectionLog, LineBatch
from smtpsession.session import Session


def legacy(text: str) -> dict[str, Any]:
    """An event as twisted.python.log.msg(text) makes it."""
    return {
        "message": (text,), "system": "-", "isError": 0, "log_text": text,
        "log_format": "{log_text}", "log_level": LogLevel.info, "log_namespace": "log_legacy",
    }  # fmt: skip


def test_resolver_chatter_is_dropped_and_nothing_else() -> None:
    """Issue 17, point 4: four lines per reverse lookup, none of them kept."""
    seen: list[dict[str, Any]] = []
    quiet = DaemonLogObserver(seen.append)
    for text in (
        "DNSDatagramProtocol starting on 33616",
        "Starting protocol <twisted.names.dns.DNSDatagramProtocol object at 0x7fbde540ed50>",
        "(UDP Port 33616 Closed)",
        "Stopping protocol <twisted.names.dns.DNSDatagramProtocol object at 0x7fbde540ed50>",
    ):
        quiet(legacy(text))
    assert seen == []
    kept = [
        legacy("(UDP Port 4000 Closed)"),  # a port not opened for DNS
        legacy("Starting protocol <myapp.Statsd object at 0x1>"),
        legacy("DNSDatagramProtocol starting on 53 and more"),
        {"log_format": "{text}", "text": "DNSDatagramProtocol starting on 1",
         "log_namespace": "x", "log_level": LogLevel.info},
    ]  # fmt: skip
    for event in kept:
        quiet(event)
    assert seen == kept


@pytest.mark.parametrize(
    ("level", "kept"),
    [("debug", 5), ("info", 4), ("warn", 3), ("error", 2), ("critical", 1)],
)
def test_events_below_the_level_are_dropped(level: str, kept: int) -> None:
    seen: list[dict[str, Any]] = []
    observer = DaemonLogObserver(seen.append, LogLevel.levelWithName(level))
    for name in _daemon_log.LEVELS:
        observer({"log_format": "x", "log_level": LogLevel.levelWithName(name)})
    assert len(seen) == kept


def test_the_batched_lines_follow_the_level(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connection log's batched lines skip the observers: at the default
    level (info) the debug lines (one per connection) are not even made."""
    for level, expected in (("info", 1), ("debug", 3)):
        out = io.StringIO()
        publisher = LogPublisher(textFileLogObserver(out))
        monkeypatch.setattr(twisted.logger, "globalLogPublisher", publisher)
        assert _daemon_log.install(level)
        clock = Clock()
        log = ConnectionLog(clock, True, ())
        log.log = Logger(namespace=log.log.namespace, observer=publisher)
        log.write_directly(clock)
        assert log.batch is not None
        s = Session(id="0" * 32, remote_address="192.0.2.1", remote_port=4)
        s.client_hostname = "[192.0.2.1]"
        log.connected(s)
        log.authenticated(s, False, "alice")  # an event, through the observer
        s.transaction = 1
        log.closed(s)
        log.flush()
        assert len(out.getvalue().splitlines()) == expected, out.getvalue()


def test_the_transaction_log_is_batched_behind_the_observer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the daemon's observer in front of twistd's, the shim still finds
    the file and the lines are formatted as twistd's observer formats them."""
    out = io.StringIO()
    observer = textFileLogObserver(out)
    publisher = LogPublisher(observer)
    monkeypatch.setattr(twisted.logger, "globalLogPublisher", publisher)
    assert _daemon_log.install("info", "text")
    [front] = publisher._observers
    assert isinstance(front, DaemonLogObserver) and front.text_observer is observer
    assert _twisted_shim.sole_text_log_file() == (front, out)
    assert _twisted_shim.still_sole_observer(front)
    assert LineBatch.attach(Clock(), Logger()) is not None


def test_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """--log-format json: one object per line on twistd's file, with the
    event's fields; the transaction log goes as events (no batch)."""
    out = io.StringIO()
    publisher = LogPublisher(textFileLogObserver(out))
    monkeypatch.setattr(twisted.logger, "globalLogPublisher", publisher)
    assert _daemon_log.install("info", "json")
    assert LineBatch.attach(Clock(), Logger()) is None
    log = Logger(namespace="smtpsession.connection", observer=publisher)
    log.info(
        "[{session_id}] from=<{mail_from}> size={size}",
        session_id="abc", mail_from="a@example.org", size=12, rcpt_to=["b@example.com"],
    )  # fmt: skip
    log.debug("not at info")
    [line] = out.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "info"
    assert record["system"] == "smtpsession.connection"
    assert record["text"] == "[abc] from=<a@example.org> size=12"
    assert (record["session_id"], record["mail_from"], record["size"]) == ("abc", "a@example.org", 12)
    assert record["rcpt_to"] == ["b@example.com"]
    assert record["time"].endswith("+00:00")


def test_json_line_of_a_failure() -> None:
    failure = Failure(ZeroDivisionError("division by zero"))
    line = json_line({"log_format": "boom", "log_level": LogLevel.critical,
                      "log_namespace": "x", "log_failure": failure, "log_time": 0.0})  # fmt: skip
    assert line is not None and line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["level"] == "critical" and "ZeroDivisionError" in record["traceback"]
    assert record["time"] == "1970-01-01T00:00:00.000+00:00"


def test_a_workers_lines_name_it_and_its_transaction_log_is_still_batched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--workers: a worker's text lines carry worker=N after the system, and
    the batched transaction lines match them, so a worker keeps the cheap
    batch (a format mismatch would turn every line into an event)."""
    out = io.StringIO()
    observer = _daemon_log.worker_observer(out, "info", "text", 3)
    publisher = LogPublisher(observer)
    monkeypatch.setattr(twisted.logger, "globalLogPublisher", publisher)
    Logger(namespace="smtpsession.worker", observer=publisher).info("ready")
    assert "[smtpsession.worker#info worker=3] ready\n" in out.getvalue()
    clock = Clock()
    batch = LineBatch.attach(clock, Logger())
    assert batch is not None
    batch.add(clock.seconds(), "info", "[abc] from=<a@example.org>")
    # Written a tenth of a second later, with whatever came meanwhile: the
    # supervisor copies each write, so fewer and larger ones.
    clock.advance(_daemon_log.WORKER_BATCH_DELAY / 2)
    assert "[abc]" not in out.getvalue()
    clock.advance(_daemon_log.WORKER_BATCH_DELAY / 2)
    assert out.getvalue().endswith("[smtpsession.connection#info worker=3] [abc] from=<a@example.org>\n")


def test_a_workers_legacy_lines_and_json_lines_name_it() -> None:
    out = io.StringIO()
    # twisted.python.log's events (Twisted's own ports) have a system of their own.
    _daemon_log.worker_observer(out, "info", "text", 2)(
        dict(legacy("TCP Port 25 Closed"), log_system="-")
    )
    assert "[- worker=2] TCP Port 25 Closed" in out.getvalue()
    out = io.StringIO()
    _daemon_log.worker_observer(out, "info", "json", 2)(
        {"log_format": "x={x}", "x": 1, "log_level": LogLevel.info, "log_namespace": "n"}
    )
    record = json.loads(out.getvalue())
    assert (record["worker"], record["text"], record["x"]) == (2, "x=1", 1)
    out = io.StringIO()
    _daemon_log.worker_observer(out, "warn", "text", 2)(legacy("below warn"))
    assert out.getvalue() == ""
