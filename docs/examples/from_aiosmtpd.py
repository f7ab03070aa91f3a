"""
The handler of "Coming from aiosmtpd": accept mail for one domain only and
save each message as a file.

    python from_aiosmtpd.py       # then send mail to 127.0.0.1 port 8025

or, with the daemon, from the directory that holds this file:

    twistd -n smtpsession --port tcp:8025:interface=127.0.0.1 \
        --handler from_aiosmtpd.SaveToDirectory \
        --handler-option domain=example.com --handler-option directory=mail
"""

from pathlib import Path

from smtpsession import Handler, SMTPError


class SaveToDirectory(Handler):
    def __init__(self, domain="example.com", directory="mail"):
        self.domain = domain.lower()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def on_rcpt_to(self, address, session):
        if not address.address.lower().endswith("@" + self.domain):
            raise SMTPError(550, "Relaying denied", "5.7.1")

    async def on_data(self, stream, session):
        name = f"{session.id}.{session.transaction}.eml"
        partial = self.directory / (name + ".part")
        try:
            with partial.open("wb") as f:
                async for chunk in stream:  # the body, as it arrives
                    f.write(chunk)
        except BaseException:
            # The client went away, or the server refused the body: keep nothing.
            partial.unlink(missing_ok=True)
            raise
        partial.rename(self.directory / name)
        return f"OK: saved as {name}"


if __name__ == "__main__":
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    from smtpsession import SMTPServerFactory, SMTPServerOptions

    factory = SMTPServerFactory(SaveToDirectory(), SMTPServerOptions())
    serverFromString(reactor, "tcp:8025:interface=127.0.0.1").listen(factory)
    reactor.run()
