"""
A spam-check hook: pipe each message through an external checker.

The body is streamed into the checker's standard input as it arrives, with
backpressure (a slow checker pauses the client), and a copy is spooled for
delivery.  The checker's exit status decides the reply.  The default command
is SpamAssassin's ``spamc --check`` (exit status 0: not spam, 1: spam); any
program that reads a message on standard input and answers with its exit
status works.
"""

import contextlib
import os
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IConsumer
from twisted.internet.protocol import ProcessProtocol
from zope.interface import implementer

from smtpsession import Handler, SMTPError

SPAM = 1


class _Checker(ProcessProtocol):
    """Collect the child's exit status; ignore what it prints."""

    def __init__(self):
        self.exited = Deferred()

    def processEnded(self, reason):
        self.exited.callback(reason.value.exitCode)


@implementer(IConsumer)
class _Tee:
    """Write the body to the checker and to a spool file at once."""

    def __init__(self, process, spool):
        self.process = process
        self.spool = spool

    def registerProducer(self, producer, streaming):
        # The checker's stdin pipe decides the pace: when it is full, the
        # stream stops reading from the client.
        self.process.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.process.unregisterProducer()

    def write(self, data):
        self.spool.write(data)
        self.process.write(data)


class SpamCheck(Handler):
    def __init__(self, command=("spamc", "--check"), reactor=None):
        if reactor is None:
            from twisted.internet import reactor
        self.command = list(command)
        self.reactor = reactor

    async def on_data(self, stream, session):
        checker = _Checker()
        process = self.reactor.spawnProcess(
            checker, self.command[0], self.command, env=dict(os.environ)
        )
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
            try:
                await stream.write_to(_Tee(process, spool))
                process.closeStdin()
            except BaseException:
                # The body did not arrive whole (the client went away, or
                # the server refused it): stop the checker and give up.
                with contextlib.suppress(ProcessExitedAlready):
                    process.signalProcess("KILL")
                raise
            status = await checker.exited
            if status == SPAM:
                raise SMTPError(550, "Message looks like spam", "5.7.1")
            if status != 0:
                # The checker failed: ask the client to try again later
                # rather than let unchecked mail in or refuse good mail.
                raise SMTPError(451, "Content check unavailable, try again later", "4.3.0")
            spool.seek(0)
            return await self.deliver(spool, session)

    async def deliver(self, message, session):
        """
        Store a message that passed the check.  message is a binary file
        holding the whole message.  Override this; the default keeps nothing.
        """
        return f"OK: checked, queued as {session.id}"
