# -*- test-case-name: tests.integration.test_maildir -*-
"""
L{MaildirHandler}: store each message in a Maildir, crash-safely.

The order of operations is the whole point (it is the Maildir protocol):

 1. the message is written to C{tmp/} under a name no other delivery uses;
 2. the file is flushed and C{fsync}ed;
 3. it is renamed into C{new/} (atomic: a reader sees all of it or none);
 4. the C{new/} directory is C{fsync}ed, so the rename itself is durable;
 5. only then does the client get its C{250}.

A message that fails on the way (the client disconnects, the server refuses
the body, the disk fills up) never reaches C{new/}, and its C{tmp/} file is
removed.  Steps 2 to 4 block on the disk, so they run in the reactor's
thread pool; writing the chunks themselves only copies into the page cache
and stays on the reactor thread.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from typing import IO, Any
from urllib.parse import quote

from twisted.logger import Logger

from smtpsession._core import app_replies
from smtpsession.errors import SMTPError
from smtpsession.handler import Handler
from smtpsession.handlers._trace import (
    default_hostname,
    received_header,
    return_path_header,
)

__all__ = ["MaildirHandler", "as_bool", "remove_orphans"]

_SUBDIRS = ("tmp", "new", "cur")


def as_bool(value: object) -> bool:
    """
    A boolean from a Python value or from C{--handler-option} text
    (C{yes}/C{no}, C{true}/C{false}, C{on}/C{off}, C{1}/C{0}).
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "yes", "true", "on"):
        return True
    if text in ("0", "no", "false", "off", ""):
        return False
    raise ValueError(f"not a yes/no value: {value!r}")


def folder_name(address: str) -> str:
    """
    The per-recipient folder of an address: lower-cased, with C{/}, control
    characters and the like percent-encoded, and never C{.} or C{..}.
    """
    name = quote(address.lower(), safe="@+-_.=!#$&'*^`{|}~")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name or "%00"


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MaildirHandler(Handler):
    """
    Deliver every message into a Maildir (the daemon's default handler).

    @param path: the Maildir (created with C{tmp}, C{new} and C{cur} if
        missing).
    @param per_recipient: deliver into one Maildir per recipient,
        C{PATH/<address>/}, instead of C{PATH} itself.  Under LMTP each
        recipient then gets its own answer.
    @param received: prepend a C{Received} trace header.
    @param return_path: prepend a C{Return-Path} header.
    @param fsync: C{fsync} the file and the directory before answering
        (turn off only for throwaway mail: a crash may then lose messages
        that got C{250}).
    @param hostname: the name in the C{Received} header's C{by} clause
        (default: this machine's name; the daemon passes C{--hostname}).
    @param reactor: the reactor whose thread pool does the blocking disk
        work (default: the global reactor).

    Every argument may also be given as text (C{--handler-option
    per_recipient=yes}), which is how the daemon passes them.
    """

    log = Logger()

    def __init__(
        self,
        path: str = "./Maildir",
        *,
        per_recipient: bool | str = False,
        received: bool | str = True,
        return_path: bool | str = True,
        fsync: bool | str = True,
        hostname: str | None = None,
        reactor: Any = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.per_recipient = as_bool(per_recipient)
        self.received = as_bool(received)
        self.return_path = as_bool(return_path)
        self.fsync = as_bool(fsync)
        self.hostname = hostname or default_hostname()
        self._reactor = reactor
        self._ready: set[str] = set()
        self._counter = 0
        host = os.uname().nodename if hasattr(os, "uname") else "localhost"
        # Maildir spec: "/" and ":" cannot appear in the host part.
        self._host = (host or "localhost").replace("/", "\\057").replace(":", "\\072")

    def __repr__(self) -> str:
        return f"MaildirHandler({self.path!r}, per_recipient={self.per_recipient})"

    # ------------------------------------------------------------------
    # The hook
    # ------------------------------------------------------------------

    async def on_data(self, stream: Any, session: Any) -> Any:
        """
        Write the body to C{tmp/}, commit it to C{new/}, then answer.  Under
        LMTP with C{per_recipient}, answer each recipient separately.
        """
        envelope = session.envelope  # the server starts a new one after DATA
        lmtp = session.transmission_type.startswith("LMTP")
        try:
            self._prepare(self.path)
        except OSError as e:
            raise self._error(e, session) from None
        name = self._unique_name()
        tmp_path = os.path.join(self.path, "tmp", name)
        committed = False
        f: IO[bytes] | None = None
        try:
            f = open(tmp_path, "xb", opener=_private)
            if self.return_path:
                f.write(return_path_header(envelope))
            if self.received:
                f.write(received_header(session, envelope, self.hostname))
            async for chunk in stream:
                if not stream.size_exceeded:
                    f.write(chunk)
            if stream.size_exceeded:
                raise app_replies.message_too_big()
            f.flush()
            folders = self._folders(envelope) if self.per_recipient else [self.path]
            outcome = await self._in_thread(self._commit, f, tmp_path, name, folders, lmtp)
            committed = True
        except OSError as e:
            raise self._error(e, session) from None
        finally:
            if not committed:
                _discard(f, tmp_path)
        if not self.per_recipient:
            return None
        by_folder: dict[str, OSError | None] = outcome
        errors = {key: self._error(e, session) for key, e in by_folder.items() if e is not None}
        results = [errors.get(folder_name(a.address)) for a in envelope.rcpt_to]
        if not lmtp:
            return next((r for r in results if r is not None), None)
        return results

    # ------------------------------------------------------------------
    # Disk work
    # ------------------------------------------------------------------

    def _prepare(self, maildir: str) -> None:
        """
        Create C{tmp}, C{new}, C{cur} once per Maildir per process, and
        clear C{tmp} of what deliveries interrupted by a crash left there.
        """
        if maildir in self._ready:
            return
        for sub in _SUBDIRS:
            os.makedirs(os.path.join(maildir, sub), mode=0o700, exist_ok=True)
        self._ready.add(maildir)
        remove_orphans(os.path.join(maildir, "tmp"))

    def _folders(self, envelope: Any) -> list[str]:
        seen: dict[str, None] = {}
        for a in envelope.rcpt_to:
            seen[os.path.join(self.path, folder_name(a.address))] = None
        return list(seen)

    def _unique_name(self) -> str:
        """
        A name unique across processes and time, per the Maildir spec:
        seconds, then microseconds, pid, a counter and random bits, then
        the host.
        """
        self._counter += 1
        now = time.time()
        sec = int(now)
        usec = int((now - sec) * 1_000_000)
        rand = os.urandom(8).hex()
        return f"{sec}.M{usec}P{os.getpid()}Q{self._counter}R{rand}.{self._host}"

    def _commit(
        self,
        f: IO[bytes],
        tmp_path: str,
        name: str,
        folders: list[str],
        lmtp: bool,
    ) -> dict[str, OSError | None]:
        """
        Runs in a thread: make the file durable and visible in each
        folder's C{new/}.  Returns each folder's outcome (C{None} or the
        error, LMTP only); raises when nothing may be reported as delivered.
        """
        try:
            if self.fsync:
                os.fsync(f.fileno())
        finally:
            f.close()
        if folders == [self.path]:
            target = os.path.join(self.path, "new", name)
            os.rename(tmp_path, target)
            if self.fsync:
                _fsync_dir(os.path.join(self.path, "new"))
            return {}
        results: dict[str, OSError | None] = {}
        linked: list[str] = []
        try:
            for folder in folders:
                key = os.path.basename(folder)
                try:
                    self._prepare(folder)
                    target = os.path.join(folder, "new", name)
                    _link_or_copy(tmp_path, target, folder, self.fsync)
                    if self.fsync:
                        _fsync_dir(os.path.join(folder, "new"))
                except OSError as e:
                    if not lmtp:
                        raise
                    results[key] = e
                    continue
                linked.append(target)
                results[key] = None
        except BaseException:
            # One answer for everybody: either every copy is there or none.
            for target in linked:
                _unlink(target)
            raise
        finally:
            _unlink(tmp_path)
        return results

    def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = self._reactor = global_reactor
        get_pool = getattr(reactor, "getThreadPool", None)
        if get_pool is None:
            from twisted.internet.defer import maybeDeferred

            return maybeDeferred(fn, *args)
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(reactor, get_pool(), fn, *args)

    def _error(self, e: OSError, session: Any) -> SMTPError:
        self.log.error(
            "[{session_id}] Maildir delivery to {path} failed: {error}",
            session_id=getattr(session, "id", None),
            path=self.path,
            error=f"{type(e).__name__}: {e}",
        )
        if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            return app_replies.storage_full()
        return app_replies.storage_failed()


#: Files in C{tmp/} older than this are left by interrupted deliveries (the
#: Maildir specification: "delete any file that hasn't been accessed in 36
#: hours"); a delivery in progress is never that old.
ORPHAN_AGE = 36 * 3600


def remove_orphans(tmp: str, now: float | None = None) -> int:
    """Delete the files in C{tmp} not touched for L{ORPHAN_AGE}; how many."""
    cutoff = (time.time() if now is None else now) - ORPHAN_AGE
    removed = 0
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return 0
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and max(st.st_atime, st.st_mtime) < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError:
            continue  # gone already, or not ours to remove
    return removed


def _private(path: str, flags: int) -> int:
    """Open new message files readable by their owner only."""
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)


def _link_or_copy(source: str, target: str, folder: str, fsync: bool) -> None:
    """
    Put C{source} at C{target} atomically: a hard link where the file
    system has them, else a copy through the folder's C{tmp/} and a rename.
    """
    try:
        os.link(source, target)
        return
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EMLINK):
            raise
    staged = os.path.join(folder, "tmp", os.path.basename(target))
    try:
        with open(source, "rb") as src, open(staged, "xb", opener=_private) as dst:
            while block := src.read(1 << 20):
                dst.write(block)
            dst.flush()
            if fsync:
                os.fsync(dst.fileno())
        os.rename(staged, target)
    except BaseException:
        _unlink(staged)
        raise


def _discard(f: IO[bytes] | None, path: str) -> None:
    if f is not None:
        try:
            f.close()
        except OSError:
            pass
    _unlink(path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        Logger().failure("Could not remove {path}", path=path)
