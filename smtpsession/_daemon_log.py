# -*- test-case-name: tests.unit.test_daemon_log -*-
"""
The daemon's log: C{--log-level}, C{--log-format text|json}, and the lines
left out.

twistd sets up one observer writing text to its log file.  When the daemon
starts, L{DaemonLogObserver} takes its place, in front of it (or of a JSON
observer on the same file): it drops events below C{--log-level} and the
four lines Twisted writes around every DNS query (a UDP port opened, its
protocol started and stopped, the port closed: with reverse lookups on,
four lines per connection of a log that promises one per transaction).
The connection log's batched lines (L{smtpsession._log.LineBatch}) skip the
observers, so they read its C{min_level} and follow it.

The JSON format is one object per line (documented in docs/howto/daemon.rst):
C{time} (ISO 8601, UTC), C{level}, C{system} (the log namespace), C{text}
(the line as the text format shows it) and the event's own fields
(C{session_id}, C{mail_from}, C{rcpt_to}, C{size}, C{result},
C{duration}, C{client}, ...), plus C{traceback} for a failure.  Twisted's
C{jsonFileLogObserver} is not used as it is: it writes Twisted's private
serialisation (log levels as objects with class UUIDs), made to be read
back by Twisted rather than by log tools.

A worker of C{--workers N} (smtpsession._worker) writes the same lines to
its standard output, each marked with its number: C{worker=N} after the
C{[system]} of a text line, a C{"worker": N} field in JSON; the supervisor
copies them into its own log as they come (smtpsession._supervisor).
"""

from __future__ import annotations

import datetime
import json
import re
from typing import Any, TextIO

from twisted.logger import (
    FileLogObserver,
    ILogObserver,
    LogLevel,
    formatEvent,
    formatEventAsClassicLogText,
)
from zope.interface import implementer

from smtpsession import _twisted_shim

__all__ = ["LEVELS", "FORMATS", "DaemonLogObserver", "json_line", "install", "worker_observer"]

#: The values of --log-level, lowest first.
LEVELS = ("debug", "info", "warn", "error", "critical")
#: The values of --log-format.
FORMATS = ("text", "json")

#: How long a worker's transaction lines wait to be written, at most: the
#: supervisor copies every write of a worker to its log, and one write per
#: reactor turn (a few lines) cost it some 30 microseconds a message at
#: 5,000 messages a second; a tenth of a second makes the writes hundreds
#: of lines long.  The price: a worker killed with SIGKILL takes up to a
#: tenth of a second of its last lines with it.
WORKER_BATCH_DELAY = 0.1

_PRIORITY = {LogLevel.levelWithName(name): i for i, name in enumerate(LEVELS)}

#: What Twisted logs, at info level, for each UDP port twisted.names opens
#: for one query (a fresh port per query, for source-port randomisation).
_RESOLVER_PORT = re.compile(
    r"(?:DNSDatagramProtocol starting on (\d+)"
    r"|(?:Starting|Stopping) protocol <twisted\.names\.dns\.DNSDatagramProtocol object at 0x[0-9a-fA-F]+>"
    r"|\(UDP Port (\d+) Closed\))"
)

#: Keys of Twisted's own bookkeeping, not the event's fields.
_BOOKKEEPING = frozenset(
    {"message", "system", "isError", "time", "format", "why", "failure", "log_trace"}
)


@implementer(ILogObserver)
class DaemonLogObserver:
    """
    In front of the observer that writes the daemon's log: events below
    C{min_level} and Twisted's per-query DNS port lines are dropped,
    everything else goes through unchanged.
    """

    def __init__(
        self, observer: Any, min_level: LogLevel = LogLevel.info, system_suffix: str = ""
    ) -> None:
        #: The observer behind (read by the shim: the connection log's
        #: batched lines are formatted as it formats them).
        self.text_observer = observer
        self.formatEvent = getattr(observer, "formatEvent", None)
        #: What a worker's text lines add after the system (" worker=2"),
        #: for the batched lines to match.
        self.system_suffix = system_suffix
        #: How long the connection log's batched lines may wait (a worker's:
        #: L{WORKER_BATCH_DELAY}).
        self.batch_delay = 0.0
        self.min_level = min_level
        self._min = _PRIORITY[min_level]
        self._dns_ports: set[str] = set()

    def __call__(self, event: dict[str, Any]) -> None:
        if _PRIORITY.get(event.get("log_level", LogLevel.info), 1) < self._min:
            return
        if event.get("log_namespace") == "log_legacy" and self._resolver_chatter(event):
            return
        self.text_observer(event)

    def _resolver_chatter(self, event: dict[str, Any]) -> bool:
        message = event.get("message")
        if event.get("isError") or not isinstance(message, tuple) or len(message) != 1:
            return False
        match = _RESOLVER_PORT.fullmatch(str(message[0]))
        if match is None:
            return False
        opened, closed = match.groups()
        if opened is not None:
            if len(self._dns_ports) < 65536:
                self._dns_ports.add(opened)
            return True
        if closed is None:
            return True  # the protocol started or stopped
        if closed in self._dns_ports:
            self._dns_ports.discard(closed)
            return True
        return False  # a UDP port of someone else's


def json_line(event: dict[str, Any], worker: int = 0) -> str | None:
    """One event as one line of JSON (see the module's docstring)."""
    when = event.get("log_time")
    level = event.get("log_level")
    out: dict[str, Any] = {
        "time": (
            datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="milliseconds")
            if isinstance(when, (int, float))
            else None
        ),
        "level": getattr(level, "name", "info"),
        "system": event.get("log_namespace", "-"),
        "text": formatEvent(event),
    }
    if worker:
        out["worker"] = worker
    for key, value in event.items():
        if key.startswith("log_") or key in _BOOKKEEPING or key in out:
            continue
        if isinstance(value, (str, int, float, bool)) or value is None:
            out[key] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            out[key] = list(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            out["traceback"] = failure.getTraceback()
        except Exception:
            out["traceback"] = repr(failure)
    return json.dumps(out, ensure_ascii=False) + "\n"


def install(level: str = "info", log_format: str = "text") -> bool:
    """
    Put a L{DaemonLogObserver} in place of twistd's observer (JSON lines
    on its file for C{log_format="json"}); C{False}, changing nothing, when
    logging is not twistd's single observer on a file.
    """
    min_level = LogLevel.levelWithName(level)
    if log_format == "json":
        found = _twisted_shim.sole_text_log_file()
        if found is None:
            return False
        out: TextIO = found[1]
        return _twisted_shim.wrap_sole_observer(
            lambda _: DaemonLogObserver(FileLogObserver(out, json_line), min_level)
        )
    return _twisted_shim.wrap_sole_observer(lambda observer: DaemonLogObserver(observer, min_level))


def worker_observer(out: TextIO, level: str, log_format: str, worker: int) -> DaemonLogObserver:
    """
    The log observer of worker number C{worker}: C{--log-level} and
    C{--log-format} as in the supervisor, lines on C{out} marked with the
    worker's number.
    """
    min_level = LogLevel.levelWithName(level)
    if log_format == "json":
        return DaemonLogObserver(
            FileLogObserver(out, lambda event: json_line(event, worker)), min_level
        )
    suffix = f" worker={worker}"

    def text(event: dict[str, Any]) -> str | None:
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{getattr(level, 'name', '-')}"
        return formatEventAsClassicLogText(dict(event, log_system=f"{system}{suffix}"))

    observer = DaemonLogObserver(FileLogObserver(out, text), min_level, suffix)
    observer.batch_delay = WORKER_BATCH_DELAY
    return observer
