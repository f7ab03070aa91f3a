"""
The tutorial's second step: the first handler's recipient check, with the
messages stored for real by the built-in Maildir handler.

    twistd -n smtpsession --handler tutorial_maildir.LocalMaildir \
        --handler-option mailboxes=alice@example.com,bob@example.com \
        --handler-option path=./Maildir
"""

from smtpsession import SMTPError
from smtpsession.handlers import MaildirHandler


class LocalMaildir(MaildirHandler):
    """Store mail for the listed mailboxes in the Maildir at path; refuse the rest."""

    def __init__(self, mailboxes="postmaster@example.com", path="./Maildir", **options):
        super().__init__(path, **options)
        self.mailboxes = {m.strip().lower() for m in mailboxes.split(",") if m.strip()}

    def on_rcpt_to(self, address, session):
        if address.address.lower() not in self.mailboxes:
            raise SMTPError(550, "No such user here", "5.1.1")
