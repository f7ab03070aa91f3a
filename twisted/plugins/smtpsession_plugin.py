"""
The C{twistd smtpsession} plugin.

Only a name: twistd imports C{smtpsession.tap} when the subcommand is used,
so listing plugins stays cheap.  This directory must not get an
C{__init__.py} (twisted.plugins is a namespace shared with Twisted itself).
"""

from twisted.application.service import ServiceMaker

smtpsession = ServiceMaker(
    "smtpsession",
    "smtpsession.tap",
    "SMTP and LMTP server (default: Maildir store on port 2525)",
    "smtpsession",
)
