"""
When L{smtpsession._writer.TurnSender} holds replies back for the end of the reactor
turn, and when it sends them at once (a single busy client).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from smtpsession._writer import TurnSender as _TurnSender


class FakeProtocol:
    """Stands for a connection's ReplyWriter."""

    def __init__(self, name: str, sent: list[str]) -> None:
        self.name = name
        self.sent = sent

    def flush(self) -> None:
        self.sent.append(self.name)


def test_holds_while_several_clients_write_and_not_for_one() -> None:
    clock = Clock()
    sender = _TurnSender(clock)
    sent: list[str] = []
    a: Any = FakeProtocol("a", sent)
    b: Any = FakeProtocol("b", sent)

    # Several clients in one turn: nothing goes out before the turn ends,
    # then each client's replies in the order they were made.
    sender.add(a)
    sender.add(b)
    assert sent == []
    clock.advance(0)
    assert sent == ["a", "b"]

    # One client per turn: still held for _ALONE turns, then sent at once.
    for _ in range(_TurnSender._ALONE):
        sent.clear()
        sender.add(a)
        assert sent == []
        clock.advance(0)
        assert sent == ["a"]
    sent.clear()
    sender.add(a)
    assert sent == ["a"] and not clock.getDelayedCalls()

    # Another client writes: held back again, together with the first.
    sent.clear()
    sender.add(b)
    sender.add(a)
    assert sent == []
    clock.advance(0)
    assert sent == ["b", "a"]


def test_a_turn_with_two_clients_restarts_the_count() -> None:
    clock = Clock()
    sender = _TurnSender(clock)
    sent: list[str] = []
    a: Any = FakeProtocol("a", sent)
    b: Any = FakeProtocol("b", sent)
    for _ in range(_TurnSender._ALONE - 1):
        sender.add(a)
        clock.advance(0)
    sender.add(a)
    sender.add(b)
    clock.advance(0)
    for _ in range(_TurnSender._ALONE - 1):
        sent.clear()
        sender.add(a)
        assert sent == []
        clock.advance(0)


def test_one_failing_connection_does_not_keep_the_others_waiting() -> None:
    from twisted.logger import Logger, LogLevel, globalLogPublisher

    class Broken:
        log = Logger()
        aborted = False

        def flush(self) -> None:
            raise RuntimeError("broken socket")

        def abort(self) -> None:
            self.aborted = True

    clock = Clock()
    sender = _TurnSender(clock)
    sent: list[str] = []
    broken: Any = Broken()
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        sender.add(broken)
        sender.add(FakeProtocol("a", sent))  # type: ignore[arg-type]
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert sent == ["a"]
    assert broken.aborted
    assert any(e.get("log_level") is LogLevel.critical for e in events)


def test_a_closed_connection_is_not_kept() -> None:
    """The sender drops its reference to the last connection when that one closes."""
    import gc
    import weakref

    clock = Clock()
    sender = _TurnSender(clock)
    sent: list[str] = []

    a: Any = FakeProtocol("a", sent)
    for _ in range(_TurnSender._ALONE):
        sender.add(a)
        clock.advance(0)
    sender.add(a)  # sent at once: a is the one client
    assert sent[-1] == "a" and not clock.getDelayedCalls()
    ref = weakref.ref(a)
    sender.forget(a)
    del a
    gc.collect()
    assert ref() is None
