"""
smtpsession.testing as users use it in their own test suites: the
``smtp_server`` pytest fixture (in a separate pytest run, as a user's suite
would load it) and the ``serve()`` context manager with its conveniences.
"""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import textwrap
import threading
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from smtpsession import Handler, SMTPError
from smtpsession.testing import RecordingHandler, serve

REPO = Path(__file__).resolve().parents[2]

USER_TESTS = '''
import smtplib

import pytest

from smtpsession import Handler, SMTPError


def send(address, rcpt):
    with smtplib.SMTP(*address) as client:
        return client.sendmail("app@example.org", [rcpt], b"Subject: Welcome\\r\\n\\r\\nHi!\\r\\n")


def test_records_messages(smtp_server):
    send(smtp_server.address, "ann@example.com")
    [message] = smtp_server.messages
    assert message.rcpt_to == ["ann@example.com"]
    assert message.message["Subject"] == "Welcome"


def test_each_test_gets_a_fresh_server(smtp_server):
    assert smtp_server.messages == []


class TestOwnHandler:
    @pytest.fixture
    def smtp_server_handler(self):
        class OnlyExample(Handler):
            def on_rcpt_to(self, address, session):
                if not address.address.endswith("@example.com"):
                    raise SMTPError(550, "No such user", "5.1.1")
        return OnlyExample()

    def test_refuses(self, smtp_server):
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            send(smtp_server.address, "ann@elsewhere.test")
'''


def plugin_installed() -> bool:
    """Whether the pytest11 entry point is installed (pip install)."""
    return any(ep.value == "smtpsession.testing.pytest_plugin" for ep in entry_points(group="pytest11"))


def test_fixture_in_a_users_suite(tmp_path: Path) -> None:
    """A user's test file using smtp_server (and overriding its handler)
    passes in its own pytest run.  When smtpsession is installed the entry
    point provides the fixture; from a source checkout it is loaded by name."""
    (tmp_path / "test_user_app.py").write_text(textwrap.dedent(USER_TESTS))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    if not plugin_installed():
        args[3:3] = ["-p", "smtpsession.testing.pytest_plugin"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    result = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout


def test_serve_records_and_parses() -> None:
    """serve() with no handler records messages; each parses as an email
    message; the handler can be cleared between checks."""
    with serve() as server:
        with smtplib.SMTP(*server.address) as client:
            client.sendmail("a@example.org", ["b@example.com"], b"Subject: one\r\n\r\nbody\r\n")
        [message] = server.messages
        assert message.message["Subject"] == "one"
        assert message.message.get_content() == "body\n"
        assert isinstance(server.handler, RecordingHandler)
        server.handler.clear()
        assert server.messages == []


def test_wait_for_messages() -> None:
    """wait_for_messages waits for mail sent in the background, and says
    so (TimeoutError) when it does not come."""
    with serve() as server:

        def later() -> None:
            with smtplib.SMTP(*server.address) as client:
                client.sendmail("a@example.org", ["b@example.com"], b"Subject: bg\r\n\r\nx\r\n")

        thread = threading.Thread(target=later)
        thread.start()
        [message] = server.wait_for_messages(1, timeout=20)
        thread.join(20)
        assert message.mail_from == "a@example.org"
        with pytest.raises(TimeoutError):
            server.wait_for_messages(2, timeout=0.2)


def test_messages_needs_a_recording_handler() -> None:
    """With a handler that records nothing, .messages says what to do."""

    class Refuse(Handler):
        def on_mail_from(self, address: object, session: object) -> None:
            raise SMTPError(550, "no")

    with serve(Refuse()) as server, pytest.raises(AttributeError, match="RecordingHandler"):
        server.messages  # noqa: B018
