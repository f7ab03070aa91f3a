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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from smtpsession.options import SMTPServerOptions
    from smtpsession.testing import RunningServer

__all__ = ["smtp_server", "smtp_server_handler", "smtp_server_options"]


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
