# -*- test-case-name: tests.test_public_api -*-
"""
The contracts between smtpsession and the code users write.

L{ISMTPHandler} is what a handler implements (every hook optional);
L{IMessageStream} is what C{on_data} receives.  The docstrings here are the
reference the docs are built from.
"""

from __future__ import annotations

from typing import Any

from zope.interface import Attribute, Interface

__all__ = ["ISMTPHandler", "IMessageStream"]


class ISMTPHandler(Interface):
    """
    Application hooks of an SMTP/LMTP server.

    Every hook may return a plain value, a L{twisted.internet.defer.Deferred}
    or a coroutine.  Raising (or failing with) L{smtpsession.SMTPError}
    sends that reply; any other exception sends C{451 4.3.0}, is logged with
    its traceback, and the session goes on.  While a hook is pending, later
    pipelined commands wait, so replies stay in order.
    """

    def on_connect(session: Any) -> Any:
        """
        A client connected (after the PROXY header, implicit TLS and the
        reverse lookup), before the greeting.  Raise L{SMTPError} to refuse
        the connection with that reply (default 554).
        """

    def on_secure(session: Any) -> Any:
        """
        A TLS handshake finished (implicit TLS or STARTTLS); called once per
        handshake.  C{session.tls_options} and C{session.servername} are
        set.  Raise to send that reply and close.
        """

    def on_auth(auth: Any, session: Any) -> Any:
        """
        A SASL exchange produced credentials (an L{smtpsession.AuthRequest}).
        Return the user object (anything truthy) to accept (235; it becomes
        C{session.user}); C{None} or C{False} to refuse (535 5.7.8); raise
        L{SMTPError} for another reply.  Defining this hook is what makes the
        server offer AUTH.
        """

    def on_mail_from(address: Any, session: Any) -> Any:
        """
        MAIL FROM was parsed and validated (an L{smtpsession.Address}).
        Return to accept; raise L{SMTPError} to refuse (default 550); a
        C{False} result also refuses.
        """

    def on_rcpt_to(address: Any, session: Any) -> Any:
        """
        RCPT TO was parsed and validated.  Return to accept; raise
        L{SMTPError} to refuse (default 550); C{False} also refuses.
        """

    def on_data(stream: Any, session: Any) -> Any:
        """
        A message body begins (DATA, or the first BDAT).  C{stream} provides
        L{IMessageStream}.  The reply is sent once the body has ended and
        this hook's result is known.

        SMTP: C{None} → 250, a C{str} → 250 with that text.  LMTP: also a
        list with one entry per accepted recipient, in order, each C{None},
        a C{str} or an L{SMTPError}.  Raise L{SMTPError} for one reply
        (default 450), sent once per recipient in LMTP.
        """

    def on_close(session: Any) -> Any:
        """The connection is gone, whatever the reason.  Result ignored."""

    def on_helo(hostname: Any, session: Any) -> Any:
        """
        HELO, EHLO or LHLO was valid (C{hostname} is the client's name,
        lower-cased, as C{session.host_name_appears_as} will be).  Return
        to accept (250, the capabilities after EHLO/LHLO); raise
        L{SMTPError} to refuse (default 550); C{False} also refuses.  A
        refused hello changes nothing: the session keeps the greeting it
        had before, or still has none.
        """

    def on_vrfy(address: Any, session: Any) -> Any:
        """
        VRFY: C{address} is a C{str}, the mailbox when the argument is
        one, else the argument as sent.  C{None} or C{True} → the default
        C{252}; a C{str} → C{250} with that text (a list: one line per
        entry); C{False} → C{550 5.1.1}; raise L{SMTPError} for another
        reply (a 2xx one too).
        """

    def on_expn(name: Any, session: Any) -> Any:
        """
        EXPN (defining this hook is what turns EXPN on; without it EXPN is
        C{502}).  A list → C{250}, one line per entry (a C{str} as it is,
        an L{smtpsession.Address} as C{<mailbox>}); a C{str} → C{250} with
        that text; C{False} or an empty list → C{550 5.1.1}; C{None} → the
        default C{502}; raise L{SMTPError} for another reply.
        """

    def on_rset(session: Any) -> Any:
        """
        RSET: called after the transaction was reset.  The reply is C{250}
        whatever the hook returns or raises (RFC 5321 §4.1.1.5); it is
        sent, and the next command read, once the hook has answered.  An
        exception is logged.  Not called for the implicit resets (a hello,
        STARTTLS, the end of a transaction).
        """


class IMessageStream(Interface):
    """
    A message body as it arrives: dot-unstuffed, line endings as received.

    Read it one way: C{async for chunk in stream}, C{await stream.read()}
    (or C{stream.read().addCallback(...)}), or C{stream.write_to(consumer)}.
    The client is paused while the reader does not keep up.  If C{on_data}
    returns without reading, the rest of the body is drained.
    """

    byte_length = Attribute("Bytes of body received so far.")
    size_exceeded = Attribute(
        "Whether byte_length is above the server's size option."
    )

    def __aiter__() -> Any:
        """Iterate over the body's chunks (C{bytes}) as they arrive."""

    def read() -> Any:
        """A Deferred that fires with the whole body (C{bytes})."""

    def write_to(consumer: Any) -> Any:
        """
        Push the body into an L{twisted.internet.interfaces.IConsumer} with
        backpressure (the stream registers itself as its streaming
        producer).  Returns a Deferred that fires when the body is done, or
        fails if the body did not arrive in full (or the consumer called
        C{stopProducing}).
        """
