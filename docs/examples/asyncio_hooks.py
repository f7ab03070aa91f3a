"""
The tutorial's asyncio step: a handler written with asyncio, as it would be
for aiosmtpd, run on Twisted's asyncio reactor.

Run it with the daemon from the directory that holds this file:

    twistd --reactor=asyncio -n smtpsession --handler asyncio_hooks.Mailboxes
"""

import asyncio

from smtpsession import Handler, SMTPError


class Mailboxes(Handler):
    def __init__(self, mailboxes="alice@example.com,bob@example.com"):
        self.mailboxes = {m.strip().lower() for m in mailboxes.split(",") if m.strip()}

    async def lookup(self, address):
        # Stands for an asyncio client (asyncpg, aiohttp, redis.asyncio...).
        await asyncio.sleep(0.01)
        return address.lower() in self.mailboxes

    async def on_rcpt_to(self, address, session):
        if not await self.lookup(address.address):
            raise SMTPError(550, "No such user here", "5.1.1")

    async def on_data(self, stream, session):
        body = b"".join([chunk async for chunk in stream])
        await asyncio.sleep(0)
        print(f"[{session.id}] {len(body)} bytes for {len(session.envelope.rcpt_to)} recipient(s)")
