"""
Per-recipient LMTP delivery into one Maildir per user, with a quota.

An LMTP client (Postfix, for example) sends each message once for several
local recipients and expects one reply per recipient: alice's mailbox may
be full while bob's takes the message.  ``on_data`` therefore returns a list,
one entry per accepted recipient, in order.

Run it with the daemon:

    twistd -n smtpsession --lmtp --port unix:/run/lmtp.sock \
        --handler lmtp_deliver.MailboxDelivery --handler-option root=/srv/mail
"""

import os
import socket
import tempfile
import time
from pathlib import Path

from twisted.internet.threads import deferToThread

from smtpsession import Handler, SMTPError


class MailboxDelivery(Handler):
    """
    Deliver to root/<user>/ (a Maildir: tmp/, new/, cur/), where <user> is
    the local part of the recipient.  A user exists when their directory
    does.
    """

    def __init__(self, root="mail", quota=100 * 1024 * 1024):
        self.root = Path(root)
        self.quota = int(quota)

    def _mailbox(self, address):
        user = address.address.partition("@")[0].lower()
        if not user or user.startswith(".") or "/" in user:
            return None
        path = self.root / user
        return path if path.is_dir() else None

    def on_rcpt_to(self, address, session):
        if self._mailbox(address) is None:
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        # Spool the body once (memory up to 1 MB, then a temporary file)...
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
            async for chunk in stream:
                spool.write(chunk)
            # ...then deliver a copy per recipient, off the reactor thread.
            results = []
            for rcpt in session.envelope.rcpt_to:
                spool.seek(0)
                results.append(
                    await deferToThread(self._deliver, self._mailbox(rcpt), spool)
                )
            return results

    def _deliver(self, mailbox, spool):
        """One recipient's delivery: None on success, else an SMTPError."""
        if mailbox is None:  # the directory went away since RCPT
            return SMTPError(550, "No such user here", "5.1.1")
        size = spool.seek(0, os.SEEK_END)
        spool.seek(0)
        if _usage(mailbox) + size > self.quota:
            return SMTPError(552, "Mailbox full", "5.2.2")
        name = f"{time.time_ns()}.{os.getpid()}_{os.urandom(6).hex()}.{socket.gethostname()}"
        tmp = mailbox / "tmp" / name
        try:
            with open(tmp, "xb") as f:
                while block := spool.read(65536):
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, mailbox / "new" / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            return SMTPError(451, "Could not store the message, try again later", "4.3.0")
        return None


def _usage(mailbox):
    total = 0
    for folder in ("new", "cur"):
        for entry in os.scandir(mailbox / folder):
            total += entry.stat().st_size
    return total
