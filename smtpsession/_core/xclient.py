# -*- test-case-name: tests.unit.test_xclient -*-
"""
Postfix's XCLIENT and XFORWARD: a trusted proxy in front of us tells us
who the real client is (XCLIENT, which restarts the session) or where the
mail came from (XFORWARD, for the logs and the handler).

Whether a peer may use them is decided once, by the driver, from the
address the connection really came from (or its PROXY header's), never
from an address XCLIENT itself supplied: after XCLIENT ADDR neither
command is accepted again.
"""

from __future__ import annotations

import re

from smtpsession._core import replies as R
from smtpsession._core.addresses import canonical_ip, valid_hostname
from smtpsession._core.greeting import XCLIENT_KEYS, XFORWARD_KEYS, banner
from smtpsession._core.params import xtext_decode
from smtpsession._core.state import SessionState

__all__ = ["xclient", "xforward"]

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def _attributes(
    st: SessionState, arg: bytes, keys: tuple[str, ...], unavailable: tuple[str, ...]
) -> dict[str, str | None] | None:
    """Parse ``KEY=value ...``; None (after replying 501) if malformed."""
    values: dict[str, str | None] = {}
    tokens = [t for t in arg.split(b" ") if t]
    if not tokens:
        st.error(R.BAD_PARAMETER)
        return None
    for token in tokens:
        key_b, eq, raw = token.partition(b"=")
        if not eq or b"=" in raw:
            st.error(R.BAD_PARAMETER)
            return None
        try:
            key = key_b.decode("ascii").upper()
            value = xtext_decode(raw.decode("utf-8"))
        except UnicodeDecodeError:
            st.error(R.BAD_PARAMETER)
            return None
        if key not in keys or _CONTROLS.search(value):
            st.error(R.BAD_PARAMETER)
            return None
        if key in values:
            continue  # the first one wins, as in smtp-server
        values[key] = None if value.upper() in unavailable else value
    address = values.get("ADDR")
    if address is not None:
        if address[:5].upper() == "IPV6:":
            address = address[5:]
        try:
            values["ADDR"] = canonical_ip(address)
        except ValueError:
            st.error(R.INVALID_ADDRESS)
            return None
    name = values.get("NAME")
    if name is not None:
        name = name.rstrip(".").lower()
        if not valid_hostname(name):
            st.error(R.INVALID_HOSTNAME)
            return None
        values["NAME"] = name
    port = values.get("PORT")
    if port is not None and (not port.isdigit() or len(port) > 5 or int(port) > 65535):
        st.error(R.INVALID_PORT)
        return None
    return values


def _allowed(st: SessionState, trusted: bool) -> bool:
    """Trusted, not after XCLIENT ADDR, not inside a transaction; replies if not."""
    if not trusted or st.xclient_addr_used:
        st.error(R.NOT_ALLOWED)
        return False
    if st.in_transaction:
        st.error(R.TRANSACTION_IN_PROGRESS)
        return False
    return True


def xclient(st: SessionState, arg: bytes) -> None:
    if not _allowed(st, st.xclient_trusted):
        return None
    values = _attributes(st, arg, XCLIENT_KEYS, ("[UNAVAILABLE]", "[TEMPUNAVAIL]"))
    if values is None:
        return None
    # Everything is valid: apply it all at once.
    s = st.session
    x = s.x_client
    if "ADDR" in values:
        x.setdefault("ADDR:DEFAULT", s.remote_address)
        s.remote_address = values["ADDR"] or x["ADDR:DEFAULT"]
        if "NAME" not in values:
            s.client_hostname = f"[{s.remote_address}]"
        s.user = None
        st.xclient_addr_used = True
    if "NAME" in values:
        x.setdefault("NAME:DEFAULT", s.client_hostname)
        s.client_hostname = values["NAME"] or f"[{s.remote_address}]"
    if "PORT" in values:
        x.setdefault("PORT:DEFAULT", s.remote_port)
        port = values["PORT"]
        s.remote_port = int(port) if port else 0
    if "LOGIN" in values:
        # A trusted proxy vouches for the login: no credentials to check.
        s.user = values["LOGIN"] or None
    for key, value in values.items():
        x[key] = int(value) if key == "PORT" and value else value
    # RFC-wise this is a new session: greet again, forget the greeting.
    s.opening_command = None
    s.host_name_appears_as = None
    st.esc = 0
    st.reset_transaction()
    st.update_transmission_type()
    st.out.append(banner(st))
    return None


def xforward(st: SessionState, arg: bytes) -> None:
    if not _allowed(st, st.xforward_trusted):
        return None
    values = _attributes(st, arg, XFORWARD_KEYS, ("[UNAVAILABLE]",))
    if values is None:
        return None
    s = st.session
    x = s.x_forward
    if "ADDR" in values:
        x.setdefault("ADDR:DEFAULT", s.remote_address)
        s.remote_address = values["ADDR"] or x["ADDR:DEFAULT"]
    if "NAME" in values:
        s.client_hostname = values["NAME"] or f"[{s.remote_address}]"
    if "PORT" in values:
        port = values["PORT"]
        s.remote_port = int(port) if port else 0
    helo = values.get("HELO")
    if helo:
        s.host_name_appears_as = helo.lower()
    for key, value in values.items():
        x[key] = int(value) if key == "PORT" and value else value
    st.reset_transaction()
    st.out.append(R.OK[st.esc])
    return None
