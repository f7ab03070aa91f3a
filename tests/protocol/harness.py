"""
The protocol tests' harness: smtpsession's public in-memory test server
(L{smtpsession.testing.memory}) under the names these tests grew up with.
Nothing here touches a socket or the global reactor.
"""

from __future__ import annotations

from smtpsession.testing.memory import (
    MemoryClient as FakeConnection,
)
from smtpsession.testing.memory import (
    MemoryServer as FakeServer,
)
from smtpsession.testing.memory import (
    MemoryTransport as FakeTransport,
)
from smtpsession.testing.memory import codes, options

__all__ = ["FakeConnection", "FakeServer", "FakeTransport", "codes", "options"]
