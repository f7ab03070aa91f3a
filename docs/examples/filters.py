"""
Filters: features in front of any handler, each in a class of its own.

A filter has methods named like a handler's hooks, with one more argument:
``next``, the rest of the chain (the other filters, then the handler).
It may refuse (raise SMTPError), change what the next stage sees, look at
what comes back, or pass on.  Only the hooks a filter defines go through it.

Give them to the server in the order they should see each call:

    SMTPServerFactory(handler, options, filters=[Timing(), Aliases({...}), Stamp("mx")])
"""

import time

from smtpsession import Address, SMTPError
from smtpsession.pipeline import Filter


class Timing(Filter):
    """Observe: how long each message took to be accepted, and how many were refused."""

    def __init__(self):
        self.accepted = []  # seconds, one per accepted message
        self.refused = 0

    async def on_data(self, stream, session, next):
        start = time.monotonic()
        try:
            result = await next(stream, session)
        except SMTPError:
            self.refused += 1
            raise
        self.accepted.append(time.monotonic() - start)
        return result


class Aliases(Filter):
    """Change the envelope: deliver mail for an alias to its real mailbox."""

    def __init__(self, aliases):
        self.aliases = {alias.lower(): target for alias, target in aliases.items()}

    def on_rcpt_to(self, address, session, next):
        target = self.aliases.get(address.address.lower())
        if target is not None:
            address = Address(target, address.args, address.dsn)
        return next(address, session)


class NoBounceToMany(Filter):
    """Refuse: a null sender (a bounce) goes to one recipient only (RFC 5321 §4.5.5)."""

    def on_rcpt_to(self, address, session, next):
        envelope = session.envelope
        if envelope.mail_from.address == "" and envelope.rcpt_to:
            raise SMTPError(550, "Bounces go to one recipient", "5.7.1")
        return next(address, session)


class Stamp(Filter):
    """Change the body: a header at the top of every message the handler reads."""

    def __init__(self, name):
        self.header = f"X-Checked-By: {name}\r\n".encode("ascii")

    def on_data(self, stream, session, next):
        stream.prepend(self.header)
        return next(stream, session)
