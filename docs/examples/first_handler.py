"""
The tutorial's first handler: accept mail for a few mailboxes, refuse the
rest, and print a summary of every message.

Run it with the daemon from the directory that holds this file:

    twistd -n smtpsession --handler first_handler.Mailboxes \
        --handler-option mailboxes=alice@example.com,bob@example.com
"""

from email.parser import BytesHeaderParser

from smtpsession import Handler, SMTPError


class Mailboxes(Handler):
    # The daemon passes --handler-option values as strings, hence a
    # comma-separated list rather than a Python list.
    def __init__(self, mailboxes="postmaster@example.com"):
        self.mailboxes = {m.strip().lower() for m in mailboxes.split(",") if m.strip()}

    def on_rcpt_to(self, address, session):
        # Refuse at RCPT, before the client sends the body: it gets a clear
        # 550 per unknown recipient and can bounce the message at once.
        if address.address.lower() not in self.mailboxes:
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        body = await stream.read()
        headers = BytesHeaderParser().parsebytes(body)
        envelope = session.envelope
        recipients = ", ".join(r.address for r in envelope.rcpt_to)
        print(
            f"[{session.id}] {envelope.mail_from.address} -> {recipients}: "
            f"{headers['Subject']!r}, {len(body)} bytes"
        )
        return f"OK: received as {session.id}"
