"""
The pytest plugin registered by smtpsession (entry point ``pytest11``).

It only defines fixtures; it has no effect on test collection or reporting.

``smtp_server``
    A server on 127.0.0.1 (a free port) for the duration of one test,
    recording what it receives::

        def test_signup_sends_welcome(smtp_server):
            app.signup("ann@example.com", smtp=smtp_server.address)
            [message] = smtp_server.messages
            assert message.rcpt_to == ["ann@example.com"]

``smtp_server_handler``, ``smtp_server_options``
    What that server runs (a new ``RecordingHandler``, and options with the
    reverse lookup off).  Override them in a ``conftest.py`` or a test
    module to test with your own handler or settings.

``conformance``
    A function that runs :mod:`smtpsession.conformance` against any server
    (``check(host, port, **options)``, the options of ``run_checks``) and
    returns the report; ``report.assert_passed()`` fails the test with
    every failed case listed::

        def test_my_server_conforms(conformance, my_server):
            conformance(*my_server.address).assert_passed()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from smtpsession.conformance import Report
    from smtpsession.options import SMTPServerOptions
    from smtpsession.testing import RunningServer

__all__ = ["conformance", "smtp_server", "smtp_server_handler", "smtp_server_options"]


@pytest.fixture
def smtp_server_handler() -> Any:
    """The handler of C{smtp_server}: a new C{RecordingHandler}."""
    from smtpsession.testing import RecordingHandler

    return RecordingHandler()


@pytest.fixture
def smtp_server_options() -> SMTPServerOptions | None:
    """The options of C{smtp_server} (C{None}: test defaults, no DNS)."""
    return None


@pytest.fixture
def smtp_server(
    smtp_server_handler: Any, smtp_server_options: SMTPServerOptions | None
) -> Iterator[RunningServer]:
    """A running server on 127.0.0.1, stopped after the test."""
    from smtpsession.testing import serve

    with serve(smtp_server_handler, smtp_server_options) as server:
        yield server


@pytest.fixture
def conformance() -> Callable[..., Report]:
    """C{check(host, port, **options)}: L{smtpsession.conformance.run_checks}."""
    from smtpsession.conformance import run_checks

    def check(host: str, port: int, **options: Any) -> Report:
        return run_checks(host, port, **options)

    return check
