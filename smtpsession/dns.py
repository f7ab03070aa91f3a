# -*- test-case-name: tests.protocol.test_dns -*-
"""
The client's PTR name, through twisted.names, capped in time.

A slow or broken DNS must never hold a connection for long: the lookup is
abandoned after C{timeout} seconds (1.5 by default, as smtp-server does) and
the client is then known as C{[address]}.  Names that could not be a host
name (too long, odd characters, CR/LF from a hostile PTR record) are
discarded, since they end up in headers and logs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from smtpsession._core.addresses import valid_hostname

__all__ = ["reverse_lookup", "valid_ptr_name"]

#: The one host-name check, shared with XCLIENT/XFORWARD NAME.
valid_ptr_name = valid_hostname


def _first_ptr(result: Any) -> str | None:
    answers = result[0] if isinstance(result, tuple) else result
    for rr in answers:
        payload = getattr(rr, "payload", None)
        target = getattr(payload, "name", None)
        if target is None:
            continue
        raw = getattr(target, "name", target)
        name = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
        name = name.rstrip(".").lower()
        return name if valid_ptr_name(name) else None
    return None


def reverse_lookup(
    address: str,
    resolver: Any,
    clock: IReactorTime,
    timeout: float = 1.5,
) -> Deferred[str | None]:
    """
    Look up the PTR name of C{address}.

    @param resolver: a C{twisted.internet.interfaces.IResolver} (anything
        with C{lookupPointer}), or C{None} for twisted.names' default.
    @return: a Deferred that fires with the lower-cased name, or C{None} if
        there is none, it is invalid, or the lookup failed or took too long.
        It never fails.
    """
    try:
        ptr = ipaddress.ip_address(address).reverse_pointer
    except ValueError:
        return succeed(None)
    if resolver is None:
        from twisted.names import client

        resolver = client.getResolver()
    try:
        d = resolver.lookupPointer(ptr, timeout=(timeout,))
    except Exception:
        return succeed(None)
    d.addTimeout(timeout, clock)
    d.addCallback(_first_ptr)

    def _failed(f: Failure) -> None:
        return None

    d.addErrback(_failed)
    return d
