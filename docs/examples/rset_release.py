"""
Per-transaction resources released at RSET (on_rset).

Each accepted recipient reserves room for one message in its mailbox's
quota, so a full mailbox is refused at RCPT, before the body is sent.  The
reservation is used when the message is stored, and given back when the
client abandons the transaction with RSET, or goes away.  The server
answers RSET only once on_rset has returned, so the next MAIL never sees a
quota that is still being given back.
"""

from smtpsession import Handler, SMTPError


class QuotaReservations(Handler):
    def __init__(self, quotas):
        self.free = {mailbox.lower(): slots for mailbox, slots in quotas.items()}
        self.stored = []

    def on_rcpt_to(self, address, session):
        mailbox = address.address.lower()
        if mailbox not in self.free:
            raise SMTPError(550, "No such user here", "5.1.1")
        if self.free[mailbox] < 1:
            raise SMTPError(452, "Mailbox full, try again later", "4.2.2")
        self.free[mailbox] -= 1
        session.reserved = [*getattr(session, "reserved", []), mailbox]

    async def on_data(self, stream, session):
        try:
            body = await stream.read()
        except Exception:  # the body was refused, or never completed
            self._release(session)
            raise
        self.stored.extend((mailbox, body) for mailbox in session.reserved)
        session.reserved = []  # used, not given back

    def on_rset(self, session):
        # The transaction is already reset: the reply is 250 whatever this
        # does, and an exception here is logged, not sent.
        self._release(session)

    def on_close(self, session):
        self._release(session)

    def _release(self, session):
        for mailbox in getattr(session, "reserved", []):
            self.free[mailbox] += 1
        session.reserved = []
