"""
Quick start: accept mail for example.com and print a line per message.

    python quickstart.py          # then send mail to 127.0.0.1 port 2525
"""

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from smtpsession import Handler, SMTPError, SMTPServerFactory, SMTPServerOptions


class Inbox(Handler):
    def on_rcpt_to(self, address, session):
        if not address.address.lower().endswith("@example.com"):
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        size = 0
        async for chunk in stream:  # the body, as it arrives
            size += len(chunk)
        print(f"{session.id}: {size} bytes from <{session.envelope.mail_from.address}>")
        return f"OK: queued as {session.id}"


if __name__ == "__main__":
    factory = SMTPServerFactory(Inbox(), SMTPServerOptions(size=10_000_000))
    serverFromString(reactor, "tcp:2525:interface=127.0.0.1").listen(factory)
    reactor.run()
