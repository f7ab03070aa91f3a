"""
The tutorial's first handler: accept mail for a few mailboxes, refuse the
rest, and print a summary of every message.

Run it with the daemon from the directory that holds this file:

    PYTHONPATH=. twistd -n smtpsession --handler first_handler.Mailboxes \
        --handler-option mailboxes=alice@example.com,bob@example.com
"""

from smtpsession import Handler, SMTPError


class Mailboxes(Handler):
    """
    Accept mail for the addresses in C{mailboxes}, a comma-separated list
    (the daemon passes C{--handler-option} values as strings).
    """

    def __init__(self, mailboxes: str = "postmaster@example.com") -> None:
        self.mailboxes = {m.strip().lower() for m in mailboxes.split(",") if m.strip()}

    def on_rcpt_to(self, address, session):
        # Refuse at RCPT, before the client sends the body: it gets a clear
        # 550 per unknown recipient and can bounce the message at once.
        if address.address.lower() not in self.mailboxes:
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        body = await stream.read()
        envelope = session.envelope
        recipients = ", ".join(r.address for r in envelope.rcpt_to)
        subject = _header(body, b"Subject")
        print(
            f"[{session.id}] {envelope.mail_from.address} -> {recipients}: "
            f"{subject!r}, {len(body)} bytes"
        )
        return f"OK: received as {session.id}"


def _header(message: bytes, name: bytes) -> str:
    """The first value of a header, good enough for a log line."""
    head = message.split(b"\r\n\r\n", 1)[0]
    prefix = name.lower() + b":"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip().decode("utf-8", "replace")
    return ""
