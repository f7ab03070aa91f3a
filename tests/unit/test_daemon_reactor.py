"""
The daemon (one process or each worker of --workers) dispatches its
reactor's ready sockets without Twisted's legacy logging context
(smtpsession._twisted_shim.dispatch_without_log_context); a library user's
reactor is left as it is.
"""

from __future__ import annotations

from typing import Any

import pytest

from smtpsession import _daemon_service, _worker


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(_daemon_service, "dispatch_without_log_context", calls.append)
    return calls


def test_the_daemon_applies_it_to_the_global_reactor(
    applied: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet import reactor

    class Listening:
        def privilegedStartService(self) -> None:
            pass

    class Probe(_daemon_service._Daemon, Listening):
        pass

    monkeypatch.setattr(_daemon_service._daemon_log, "install", lambda level, fmt: None)
    Probe().privilegedStartService()
    assert applied == [reactor]


def test_each_worker_applies_it(
    applied: list[Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet import reactor

    from smtpsession import tap

    monkeypatch.setattr(tap, "PROGRAM", tap.PROGRAM)  # the worker renames itself

    with pytest.raises(SystemExit):  # an unknown flag: the worker stops after applying it
        _worker.main(["--worker", "1", "--sockets", "3", "--", "--no-such-flag"])
    assert applied == [reactor]
    assert "no-such-flag" in capsys.readouterr().err
