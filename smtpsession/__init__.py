"""
smtpsession: SMTP and LMTP servers for Twisted.

Embed with L{SMTPServerFactory} on any endpoint, or run the daemon with
C{twistd -n smtpsession}.  The public names are exactly those in
C{__all__}; everything else is private.
"""

from smtpsession._core.sasl import AuthRequest
from smtpsession.errors import SMTPError
from smtpsession.factory import SMTPServerFactory
from smtpsession.handler import Handler
from smtpsession.interfaces import ISMTPHandler
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Address, Envelope, Session

__version__ = "0.1.0"

__all__ = [
    "SMTPServerFactory",
    "SMTPServerOptions",
    "Handler",
    "ISMTPHandler",
    "SMTPError",
    "Session",
    "Envelope",
    "Address",
    "AuthRequest",
]
