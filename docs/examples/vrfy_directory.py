"""
VRFY answered from a directory (on_vrfy), for authenticated users only.

VRFY lets anyone harvest valid addresses, which is why servers answer it
with ``252`` ("cannot verify, but will accept", RFC 5321 §3.5.3), the
default.  Colleagues logged in to the submission port may look each
other up: ``250 Full Name <mailbox>``, ``553`` with the candidates when a
user name is ambiguous, ``550`` for nobody.
"""

from smtpsession import Handler, SMTPError


class Directory(Handler):
    def __init__(self, people):
        # mailbox -> full name
        self.people = {mailbox.lower(): name for mailbox, name in people.items()}

    def on_vrfy(self, address, session):
        if session.user is None:
            return None  # strangers get the default 252
        # address is the mailbox when the client gave one, else the text
        # as sent (a user name): look it up as a local part then.
        key = address.lower()
        if "@" in key:
            matches = [key] if key in self.people else []
        else:
            matches = [m for m in self.people if m.partition("@")[0] == key]
        if not matches:
            return False  # 550 5.1.1 Error: no such user
        if len(matches) > 1:
            lines = ["User ambiguous, possibilities:", *map(self._line, matches)]
            raise SMTPError(553, "\n".join(lines), "5.1.4")
        return self._line(matches[0])  # 250 2.1.5 Full Name <mailbox>

    def _line(self, mailbox):
        return f"{self.people[mailbox]} <{mailbox}>"
