"""
The sans-IO SMTP/LMTP engine: bytes in, events out, replies in, bytes out.

Nothing in this package imports Twisted or does I/O (a test checks it), so
every protocol rule is testable with plain function calls.  See
C{smtpsession._core.connection} for the theory of operation.
"""
