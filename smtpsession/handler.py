# -*- test-case-name: tests.protocol.test_hooks -*-
"""
L{Handler}: the base class whose methods are the default of every hook.

Subclass it and override what you need.  A handler need not subclass it at
all: any object works, and missing hooks behave as here.  The server looks
at the handler once (L{smtpsession._hooks.HookTable}) and skips the hooks
left at their defaults entirely, which is why these defaults must stay
trivial.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from smtpsession.interfaces import ISMTPHandler

__all__ = ["Handler"]


@implementer(ISMTPHandler)
class Handler:
    """
    Accept every connection, hello, sender, recipient and message; offer no
    AUTH; verify and expand nothing.
    """

    def on_connect(self, session: Any) -> Any:
        """Accept the connection."""
        return None

    def on_secure(self, session: Any) -> Any:
        """Accept the TLS session."""
        return None

    def on_auth(self, auth: Any, session: Any) -> Any:
        """
        Refuse.  Overriding this method is what makes the server offer
        AUTH; as long as it is not overridden (and no C{twisted.cred}
        checker is configured), AUTH is not advertised at all.
        """
        return None

    def on_mail_from(self, address: Any, session: Any) -> Any:
        """Accept the sender."""
        return None

    def on_rcpt_to(self, address: Any, session: Any) -> Any:
        """Accept the recipient."""
        return None

    def on_data(self, stream: Any, session: Any) -> Any:
        """Accept the message; its body is drained and discarded."""
        return None

    def on_close(self, session: Any) -> Any:
        """Nothing to clean up."""
        return None

    def on_helo(self, hostname: Any, session: Any) -> Any:
        """Accept the client's hello."""
        return None

    def on_vrfy(self, address: Any, session: Any) -> Any:
        """The default reply: 252, cannot verify but will accept."""
        return None

    def on_expn(self, name: Any, session: Any) -> Any:
        """The default reply: 502, EXPN is not implemented."""
        return None

    def on_rset(self, session: Any) -> Any:
        """Nothing to forget."""
        return None
