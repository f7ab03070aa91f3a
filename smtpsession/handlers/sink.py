"""
L{SinkHandler}: accept every message and keep nothing.

For load tests, for a catch-all that must never bounce, and as the smallest
possible handler: it overrides no hook, so the server skips every hook call
and drains bodies without handing them to Python code at all.
"""

from __future__ import annotations

from smtpsession.handler import Handler

__all__ = ["SinkHandler"]


class SinkHandler(Handler):
    """Accept every sender, recipient and message, and discard the bodies."""

    def __repr__(self) -> str:
        return "SinkHandler()"
