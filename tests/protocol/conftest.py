"""
Protocol tests run on a fake clock and in-memory transports.  Each test also
fails if a Deferred was left with an unhandled error: that is how a bug in a
hook continuation would otherwise go unnoticed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from twisted.logger import LogEvent, globalLogPublisher


@pytest.fixture(autouse=True)
def no_unhandled_deferred_errors() -> Iterator[None]:
    """Fail the test if any Deferred error went unhandled during it."""
    seen: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "twisted.internet.defer" and "log_failure" in event:
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield
        gc.collect()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert not seen, [e["log_failure"].getTraceback() for e in seen]
