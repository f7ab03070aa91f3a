"""
Reject by recipient: relay nothing, and accept only known mailboxes.

Two different refusals, because the client should act differently:
a domain we do not serve is a policy refusal ("relay access denied",
5.7.1); an unknown user in one of our domains is "no such mailbox" (5.1.1).
Both happen at RCPT, so the client never sends a body we would throw away.
"""

from smtpsession import Handler, SMTPError


class KnownRecipients(Handler):
    def __init__(self, domains, mailboxes):
        self.domains = {d.lower() for d in domains}
        self.mailboxes = {m.lower() for m in mailboxes}

    def on_rcpt_to(self, address, session):
        mailbox = address.address.lower()
        if mailbox == "postmaster":
            return  # RFC 5321 §4.5.1: always accept <postmaster>
        domain = mailbox.rpartition("@")[2]
        if domain not in self.domains:
            if session.user is None:
                raise SMTPError(554, "Relay access denied", "5.7.1")
            return  # authenticated users may send anywhere
        if mailbox not in self.mailboxes:
            raise SMTPError(550, "No such user here", "5.1.1")
