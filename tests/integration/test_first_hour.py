"""
The first hour of a new user, run as written (issue 17, acceptance 2).

A copy of this source tree stands for the user's fresh clone.  The README's
quick-start line runs there exactly as the README prints it (a new
virtualenv, ``pip install .``, the daemon); then the tutorial's commands run
exactly as the tutorial prints them, with that virtualenv first on PATH (as
``. venv/bin/activate`` would have it): its first handler from a module in
the current directory (no PYTHONPATH), and its asyncio step.  Each command
is taken from the page itself, so a page that changes its commands changes
what runs here.

``SMTPSESSION_MYPYC=0`` is the one thing added to the environment: it
keeps the install to the pure-Python build (compiling the core takes a
minute or more; tests/integration/test_wheel.py covers the compiled build).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import files, require_program

pytestmark = [pytest.mark.slow, pytest.mark.external]

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".venv*", "venv", "node_modules", "__pycache__",
    "_build", "Maildir", ".peers", "dropin.cache", ".mypy_cache", ".ruff_cache", "results",
    "twistd.pid", "twistd.log*",
)  # fmt: skip
LISTENING = re.compile(r"smtpsession listening on 127\.0\.0\.1:2525 ")


def command(page: Path, starts: str) -> str:
    """
    The first command on C{page} that starts with C{starts}, with its
    backslash-continued lines, exactly as printed (indentation removed).
    C{starts} is compared with the command on one line.
    """
    lines = page.read_text().splitlines()
    for i, line in enumerate(lines):
        parts = [line.strip()]
        while parts[-1].endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i].strip())
        if " ".join(p.rstrip("\\").strip() for p in parts).startswith(starts):
            return "\n".join(parts)
    raise AssertionError(f"{page.name} has no command starting with {starts!r}")


class Shell:
    """Commands run with bash in the user's directory."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", line], cwd=self.cwd, env=self.env, capture_output=True, text=True,
            timeout=900,
        )  # fmt: skip

    def serve(self, line: str, timeout: float) -> subprocess.Popen[str]:
        """Start a daemon command line and wait for its listening line."""
        (self.cwd / "twistd.pid").unlink(missing_ok=True)
        log = open(self.cwd / f"daemon-{time.monotonic_ns()}.out", "w+")
        proc = subprocess.Popen(
            ["bash", "-c", line], cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        proc.log = log  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        while True:
            log.seek(0)
            output = log.read()
            if LISTENING.search(output):
                return proc
            assert proc.poll() is None, output
            assert time.monotonic() < deadline, output
            time.sleep(0.2)

    def stop(self, proc: subprocess.Popen[str]) -> str:
        """SIGTERM to the daemon (its PID from twistd.pid, which -n writes), then its output."""
        pid = int((self.cwd / "twistd.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=60)
        log = proc.log  # type: ignore[attr-defined]
        log.seek(0)
        return str(log.read())


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", 2525))
        except OSError:
            pytest.fail("port 2525 is busy; the README and the tutorial need it")
    home = tmp_path_factory.mktemp("first-hour") / "smtpsession"
    shutil.copytree(REPO, home, ignore=SKIP)
    # python3 on PATH is the Python running the tests (the README says python3).
    bin_dir = home.parent / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["SMTPSESSION_MYPYC"] = "0"
    env["PYTHONUNBUFFERED"] = "1"
    yield Shell(home, env)


def test_readme_quick_start_then_the_tutorial(user: Shell) -> None:
    if os.environ.get("SMTPSESSION_EXPECT_COMPILED") == "1":
        # run-tests.sh's second run: this test installs the pure build in a
        # virtualenv of its own whatever the run, so it would repeat itself.
        pytest.skip("installs its own (pure-Python) copy: the first run covers it")
    swaks = require_program("swaks")
    assert swaks
    readme = REPO / "README.md"
    tutorial = REPO / "docs" / "tutorial.rst"

    # The README: install and run the daemon; the tutorial's first swaks.
    quick_start = command(readme, "python3 -m venv .venv && .venv/bin/pip install .")
    daemon = user.serve(quick_start, timeout=900)
    sent = user.run(command(tutorial, "swaks --server 127.0.0.1:2525 --from carol@example.org --to alice@example.com"))
    assert sent.returncode == 0, sent.stdout + sent.stderr
    output = user.stop(daemon)
    assert "Traceback" not in output, output
    assert len(files(user.cwd / "Maildir" / "new")) == 1

    # From here on the virtualenv is active, as the tutorial has it.
    user.env["PATH"] = f"{user.cwd / '.venv' / 'bin'}{os.pathsep}{user.env['PATH']}"
    user.env["VIRTUAL_ENV"] = str(user.cwd / ".venv")

    # The first handler, saved as first_handler.py in the current directory.
    shutil.copy(REPO / "docs" / "examples" / "first_handler.py", user.cwd / "first_handler.py")
    daemon = user.serve(command(tutorial, "twistd -n smtpsession --handler first_handler.Mailboxes"), timeout=60)
    known = user.run(command(tutorial, "swaks --server 127.0.0.1:2525 --from carol@example.org --to alice@example.com --header"))
    unknown = user.run(command(tutorial, "swaks --server 127.0.0.1:2525 --from carol@example.org --to mallory@example.com"))
    output = user.stop(daemon)
    assert known.returncode == 0, known.stdout + known.stderr
    assert "<** 550 5.1.1 No such user here" in unknown.stdout, unknown.stdout
    assert "carol@example.org -> alice@example.com: 'Lunch?'" in output, output

    # The asyncio step, under the asyncio reactor.
    shutil.copy(REPO / "docs" / "examples" / "asyncio_hooks.py", user.cwd / "asyncio_hooks.py")
    daemon = user.serve(command(tutorial, "twistd --reactor=asyncio -n smtpsession"), timeout=60)
    sent = user.run(command(tutorial, "swaks --server 127.0.0.1:2525 --from carol@example.org --to bob@example.com"))
    with smtplib.SMTP("127.0.0.1", 2525, timeout=20) as client:
        client.ehlo()
        client.mail("carol@example.org")
        refused = client.rcpt("mallory@example.com")
    output = user.stop(daemon)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert refused == (550, b"5.1.1 No such user here")
    assert "bytes for 1 recipient(s)" in output, output
    assert "Traceback" not in output, output
