"""
The connection log under twistd (smtpsession._log.LineBatch): lines
written once per reactor turn, byte for byte what twistd's text observer
writes for the same log events; and the fallback to events when logging
is set up another way.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, textFileLogObserver

from smtpsession import _twisted_shim
from smtpsession._log import NAMESPACE, ConnectionLog, LineBatch
from smtpsession.session import Address, Envelope, Session


class CountingIO(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def twistd_like(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, CountingIO]:
    """Logging as twistd sets it up: one text observer, on a file."""
    out = CountingIO()
    observer = textFileLogObserver(out)
    monkeypatch.setattr(_twisted_shim, "sole_text_log_file", lambda: (observer, out))
    monkeypatch.setattr(_twisted_shim, "still_sole_observer", lambda o: o is observer)
    return observer, out


def session() -> Session:
    s = Session(id="0123456789abcdef0123456789abcdef", remote_address="192.0.2.1", remote_port=4)
    s.client_hostname = "[192.0.2.1]"
    s.transaction = 2
    return s


def test_lines_are_what_the_observer_writes_for_the_events(twistd_like: Any) -> None:
    """Batched or as events, the log file reads the same."""
    observer, out = twistd_like
    clock = Clock()
    clock.advance(1_765_000_000.25)
    envelope = Envelope(Address("a@example.org"), [Address("b@example.com"), Address("c@example.com")])

    def lines(log: ConnectionLog) -> None:
        s = session()
        log.connected(s)
        log.transaction(s, envelope, 1234, "250", clock.seconds() - 0.5)
        log.closed(s)

    emitted: list[dict[str, Any]] = []
    as_events = ConnectionLog(clock, True, ())
    as_events.log = Logger(namespace=NAMESPACE, observer=emitted.append)
    lines(as_events)
    assert len(emitted) == 3
    for e in emitted:
        e["log_time"] = clock.seconds()  # the fake clock's time, as the batch's
    expected = "".join(observer.formatEvent(e) for e in emitted)

    batched = ConnectionLog(clock, True, ())
    batched.write_directly(clock)
    assert isinstance(batched.batch, LineBatch)
    lines(batched)
    assert out.getvalue() == ""  # not before the end of the reactor turn
    clock.advance(0)
    assert out.getvalue() == expected
    assert out.writes == 1  # three lines, one write
    assert "duration=0.500s" in expected and "[smtpsession.connection#debug]" in expected


def test_no_batch_when_logging_is_set_up_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """Syslog, a custom observer, an application's own observers: events, as before."""
    monkeypatch.setattr(_twisted_shim, "sole_text_log_file", lambda: None)
    log = ConnectionLog(Clock(), True, ())
    log.write_directly(Clock())
    assert log.batch is None


def test_no_batch_for_an_observer_that_formats_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    observer = textFileLogObserver(out, timeFormat="%H:%M")
    monkeypatch.setattr(_twisted_shim, "sole_text_log_file", lambda: (observer, out))
    log = ConnectionLog(Clock(), True, ())
    log.write_directly(Clock())
    assert log.batch is None


def test_lines_become_events_if_logging_changes(twistd_like: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another observer added after start: the batch hands its lines to the logging system."""
    _, out = twistd_like
    clock = Clock()
    emitted: list[dict[str, Any]] = []
    log = ConnectionLog(clock, True, ())
    log.log = Logger(namespace=NAMESPACE, observer=emitted.append)
    log.write_directly(clock)
    log.connected(session())
    monkeypatch.setattr(_twisted_shim, "still_sole_observer", lambda o: False)
    clock.advance(0)
    assert out.getvalue() == ""
    [event] = emitted
    assert event["log_level"] is LogLevel.debug
    assert event["text"].startswith("[0123456789abcdef0123456789abcdef] connection from 192.0.2.1:4")


def test_the_shim_finds_twistds_observer() -> None:
    """The shim's view of a publisher with one text observer on a file (the twistd case)."""
    from twisted.logger import LogPublisher

    out = io.StringIO()
    observer = textFileLogObserver(out)
    publisher = LogPublisher(observer)
    assert publisher._observers == [observer]
    assert observer._outFile is out
    assert observer._encoding is None
