"""
A real Dovecot LMTP server for the tests: Debian's C{dovecot-core} and
C{dovecot-lmtpd} (run-tests.sh installs them), started as a subprocess with
a configuration of its own in a fresh temporary directory.

What it runs (see L{Dovecot.config}):

- LMTP only (C{protocols = lmtp}), on a TCP listener on 127.0.0.1 (a free
  port) and on Dovecot's usual Unix socket, C{BASE_DIR/lmtp}; nothing else
  listens (C{listen = 127.0.0.1}, no SSL);
- the users of L{USERS} in a passwd-file (C{alice}, C{bob}; C{full}, whose
  quota is 10 bytes; C{broken}, whose Maildir cannot be created), each with
  a Maildir C{mail/<user>/}; any other address is unknown to Dovecot;
- the two LMTP headers Dovecot can leave out are left out
  (C{lmtp_add_received_header = no}, C{lmtp_hdr_delivery_address = none}):
  what it adds to a message is then C{Return-Path: <sender>} alone;
- each LMTP process shows its session's state in its title
  (C{verbose_proctitle}), so a test can wait until Dovecot is in DATA
  (L{Dovecot.lmtp_states});
- Dovecot refuses to deliver mail as root, so it runs entirely as one
  unprivileged user: the current user, or C{nobody} when the tests run as
  root (the process is started as that user, and every C{*_user} setting
  names it).

The directory is made with L{tempfile.mkdtemp} rather than pytest's
C{tmp_path}: Unix socket paths must stay short, and when the tests run as
root the C{nobody} user must be able to reach it.  It is removed by
L{Dovecot.cleanup}.

Dovecot is stopped by the PID of its master process (SIGTERM, then SIGKILL
after a bound), and L{Dovecot.stop} waits for the master's children to be
gone too.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["USERS", "Dovecot", "require_dovecot", "running_dovecot"]

#: The local parts Dovecot knows (all at example.com), and what is special
#: about them.
USERS = {
    "alice": "",
    "bob": "",
    "full": "userdb_quota_rule=*:storage=10B",  # any message is over quota: 552
    "broken": "userdb_mail=maildir:{root}/not-a-directory/broken",  # 451 at DATA
}

DOVECOT_CANDIDATES = ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot")
LMTP_CANDIDATES = ("/usr/lib/dovecot/lmtp", "/usr/libexec/dovecot/lmtp")


def require_dovecot() -> str:
    """
    The path of the C{dovecot} master binary, once its LMTP service binary
    is known to exist too.  As for the suite's other external programs
    (L{tests.conftest.require_program}), a missing one fails the test,
    since run-tests.sh installs them, unless C{SMTPSESSION_ALLOW_SKIP} is
    set, which makes it a skip.
    """
    found = shutil.which("dovecot") or next(
        (p for p in DOVECOT_CANDIDATES if os.access(p, os.X_OK)), None
    )
    lmtp = next((p for p in LMTP_CANDIDATES if os.access(p, os.X_OK)), None)
    missing = []
    if found is None:
        missing.append("dovecot (Debian package dovecot-core)")
    if lmtp is None:
        missing.append("its LMTP service, /usr/lib/dovecot/lmtp (Debian package dovecot-lmtpd)")
    if missing:
        reason = " and ".join(missing) + " not installed; ./run-tests.sh installs them"
        if os.environ.get("SMTPSESSION_ALLOW_SKIP"):
            pytest.skip(reason)
        pytest.fail(reason)
    assert found is not None
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> tuple[int, int, str, str]:
    """(uid, gid, user name, group name) Dovecot runs as."""
    if os.geteuid() == 0:
        entry = pwd.getpwnam("nobody")
    else:
        entry = pwd.getpwuid(os.geteuid())
    return entry.pw_uid, entry.pw_gid, entry.pw_name, grp.getgrgid(entry.pw_gid).gr_name


def _children(pid: int) -> set[int]:
    """The PIDs whose parent is C{pid} (Linux /proc; empty elsewhere)."""
    found: set[int] = set()
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


class PortTaken(Exception):
    """Dovecot could not listen on the port it was given."""


class Dovecot:
    """One Dovecot instance: its configuration, its process, its mailboxes."""

    def __init__(self, *, save_crlf: bool = False) -> None:
        self.binary = require_dovecot()
        self.uid, self.gid, self.user, self.group = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="smtpsession-dovecot-"))
        self.save_crlf = save_crlf
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_dir = self.root / "run"
        self.mail_root = self.root / "mail"
        self.config_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self._write_files()

    # -- files ------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """Dovecot's LMTP Unix socket (its default name, in base_dir)."""
        return self.base_dir / "lmtp"

    def config(self) -> str:
        """The whole dovecot.conf: nothing is read from /etc/dovecot."""
        root = self.root
        crlf = "yes" if self.save_crlf else "no"
        return f"""\
# Written by tests/integration/dovecot.py for one test run.
base_dir = {self.base_dir}
state_dir = {root}/state
log_path = {self.log_path}
instance_name = smtpsession-test-{self.port}
hostname = dovecot.test
protocols = lmtp
listen = 127.0.0.1
ssl = no

# Everything runs as one unprivileged user (Dovecot will not deliver as root).
default_internal_user = {self.user}
default_internal_group = {self.group}
default_login_user = {self.user}
mail_uid = {self.uid}
mail_gid = {self.gid}
first_valid_uid = 1
first_valid_gid = 1

passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
mail_location = maildir:{self.mail_root}/%n
mail_save_crlf = {crlf}
mail_plugins = quota
plugin {{
  quota = maildir:User quota
}}

# What Dovecot adds to each message: Return-Path only.
lmtp_add_received_header = no
lmtp_hdr_delivery_address = none

service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {self.port}
  }}
  unix_listener lmtp {{
    mode = 0666
  }}
}}
# The state of each LMTP session in its process title (see lmtp_states).
verbose_proctitle = yes
# anvil chroots by default, which an unprivileged master cannot do.
service anvil {{
  chroot =
}}
"""

    def _write_files(self) -> None:
        self.config_path.write_text(self.config())
        lines = []
        for name, extra in USERS.items():
            lines.append(f"{name}@example.com:{{PLAIN}}unused::::::{extra.format(root=self.root)}")
        (self.root / "users").write_text("\n".join(lines) + "\n")
        (self.root / "not-a-directory").write_text("a file where broken's Maildir would go\n")
        self.mail_root.mkdir()
        for path in [self.root, *self.root.iterdir()]:
            if os.geteuid() == 0:
                os.chown(path, self.uid, self.gid)
        self.root.chmod(0o755)

    # -- the process ------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> None:
        """
        Start Dovecot and wait until its LMTP port greets (bounded).  The
        free port was only free when it was chosen: if another process took
        it since, Dovecot is started again on another one (at most twice).
        """
        for attempt in range(3):
            try:
                self._start(timeout)
                return
            except PortTaken:
                if attempt == 2:
                    raise
                self.port = free_port()
                self.config_path.write_text(self.config())

    def _start(self, timeout: float) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log_before = len(self.log())
        as_root = os.geteuid() == 0
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config_path)],
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.uid if as_root else None,
            group=self.gid if as_root else None,
            extra_groups=[] if as_root else None,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                if "Address already in use" in self.log()[log_before:]:
                    raise PortTaken(self.port)
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"dovecot exited ({self.proc.returncode}): {err}{self.log()}")
            if self._greets() and self.socket_path.exists():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"dovecot did not start within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                return s.recv(100).startswith(b"220 ")
        except OSError:
            return False

    def stop(self, timeout: float = 20.0) -> None:
        """
        SIGTERM to the master (by its PID), then wait for it and for its
        children, all bounded; SIGKILL to whatever is left at the bound.
        """
        proc = self.proc
        if proc is None:
            return
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in children):
            if time.monotonic() > deadline:
                for pid in children:
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        if proc.stderr is not None:
            proc.stderr.close()

    def kill_lmtp_processes(self) -> int:
        """SIGKILL the master's C{lmtp} children (a crash); how many there were."""
        assert self.proc is not None
        killed = 0
        for pid in _children(self.proc.pid):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm == "lmtp":
                os.kill(pid, signal.SIGKILL)
                killed += 1
        return killed

    def lmtp_states(self) -> list[str]:
        """
        The state of each LMTP session, from its process title
        (C{verbose_proctitle}): GREETING, READY, MAIL FROM ..., RCPT TO
        ..., DATA.
        """
        if self.proc is None:
            return []
        states = []
        for pid in _children(self.proc.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            m = re.search(r"/lmtp \[127\.0\.0\.1 ([^\]]*)\]", title)
            if m:
                states.append(m.group(1))
        return states

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- what it did ------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def maildir(self, user: str) -> Path:
        return self.mail_root / user

    def stored(self, user: str) -> list[Path]:
        """The messages in a user's Maildir (new/ and cur/), oldest first."""
        found: list[Path] = []
        for sub in ("new", "cur"):
            folder = self.maildir(user) / sub
            if folder.is_dir():
                found.extend(folder.iterdir())
        return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def saved_in_log(self, user: str) -> int:
        """How many times Dovecot's log says it saved a message for C{user}."""
        pattern = re.compile(rf"lmtp\({re.escape(user)}@example\.com\).*: saved mail to INBOX")
        return len(pattern.findall(self.log()))


@contextmanager
def running_dovecot(*, save_crlf: bool = False) -> Iterator[Dovecot]:
    """A started Dovecot, stopped and removed at the end."""
    dovecot = Dovecot(save_crlf=save_crlf)
    try:
        dovecot.start()
        yield dovecot
    finally:
        dovecot.cleanup()
