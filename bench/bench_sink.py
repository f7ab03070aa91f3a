"""
The handler smtpsession runs under the benchmark: what the peers in peers/ do.

It accepts every sender and recipient (no hooks for those: the defaults accept)
and reads the whole body as users do, with ``async for``, then discards it.
"""

from __future__ import annotations

from typing import Any

from smtpsession import Handler


class Sink(Handler):
    """Read every message completely; keep nothing."""

    async def on_data(self, stream: Any, session: Any) -> None:
        size = 0
        async for chunk in stream:
            size += len(chunk)
