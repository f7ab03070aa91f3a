"""
A size policy: authenticated users may send up to the server's ``size``
limit; anonymous senders get a smaller one.

The check happens twice.  At ``MAIL FROM``, against the size the client
declares (``SIZE=``), so an honest client is refused before it sends
anything.  During ``DATA``, against the bytes actually received, because a
client may lie or declare nothing.  Raising in the middle of the body is
fine: the server discards the rest and sends the 552 when the body ends.
"""

from smtpsession import Handler, SMTPError


class SizePolicy(Handler):
    def __init__(self, anonymous_limit=5 * 1024 * 1024):
        self.anonymous_limit = int(anonymous_limit)

    def limit(self, session):
        """The limit for this session, or None for the server's own."""
        return None if session.user is not None else self.anonymous_limit

    def on_mail_from(self, address, session):
        limit = self.limit(session)
        declared = address.args.get("SIZE")
        if limit is not None and declared is not None and int(declared) > limit:
            raise SMTPError(552, f"Message too large: the limit is {limit} bytes", "5.3.4")

    async def on_data(self, stream, session):
        limit = self.limit(session)
        received = []
        async for chunk in stream:
            # stream.size_exceeded is the server-wide limit (the size
            # option), stream.byte_length what arrived so far.
            if stream.size_exceeded or (limit is not None and stream.byte_length > limit):
                raise SMTPError(552, "Message too large", "5.3.4")
            received.append(chunk)
        return await self.deliver(b"".join(received), session)

    async def deliver(self, message, session):
        """Store the message (override this)."""
        return None
