"""
RFC 3207, STARTTLS.  The injection cases are the CVE-2011-0411 class: a
client (or a man in the middle) sends a command in the same packet as
STARTTLS; a server that keeps it in its input buffer executes it after
the handshake, as if it had come over TLS.  RFC 3207 §4.2 makes the session
start afresh after TLS, so nothing from before may survive.  Certificates
are not verified: these cases test the protocol around TLS.
"""

from __future__ import annotations

from collections.abc import Callable

from smtpsession.conformance.client import CaseTimeout, Connection, ConnectionClosed
from smtpsession.conformance.probe import (
    CaseFunction,
    Outcome,
    Probe,
    Skip,
    failed,
    parse_extensions,
    passed,
)

__all__ = ["CASES", "GROUP"]

GROUP = "starttls"


def _begin_tls(probe: Probe, conn: Connection, injected: bytes = b"") -> bytes:
    """
    EHLO, STARTTLS (with C{injected} in the same write), the 220; returns
    the octets that arrived in the clear after the 220 (before the
    handshake).
    """
    probe.require("STARTTLS")
    probe.hello(conn)
    conn.send(b"STARTTLS\r\n" + injected)
    reply = conn.reply()
    if reply.code != 220:
        raise Skip(f"STARTTLS answered {reply}")
    return conn.unread(probe.settle / 2 if injected else 0.001)


def _inject(command: bytes) -> Callable[[Probe], Outcome]:
    def case(probe: Probe) -> Outcome:
        with probe.connect() as conn:
            clear = _begin_tls(probe, conn, command + b"\r\n")
            if clear:
                return failed(f"the injected command was answered in the clear: {clear[:80]!r}")
            try:
                conn.start_tls()
            except ConnectionClosed as e:
                return passed(f"the server dropped the connection instead ({e})")
            answered = conn.extra(probe.settle)
            if answered:
                return failed(
                    f"{command.decode()!r} sent in the clear with STARTTLS was executed "
                    f"after the handshake: {', '.join(str(r) for r in answered)}"
                )
            try:
                after = conn.command(f"{probe.hello_verb} conformance.example")
            except (ConnectionClosed, CaseTimeout) as e:
                return passed(f"nothing executed; the session ended after TLS ({e})")
        return passed(f"discarded; {probe.hello_verb} over TLS: {after.code}")

    case.__doc__ = f"{command.decode()!r} sent in the clear with STARTTLS is not executed."
    return case


def no_starttls_after_tls(probe: Probe) -> Outcome:
    """RFC 3207 §4.2: after the handshake, EHLO must not offer STARTTLS again."""
    with probe.connect() as conn:
        _begin_tls(probe, conn)
        conn.start_tls()
        reply = probe.hello(conn)
    if "STARTTLS" in parse_extensions(reply):
        return failed(f"STARTTLS still offered over TLS ({probe.hello_verb})")
    return passed()


def session_reset(probe: Probe) -> Outcome:
    """RFC 3207 §4.2: the transaction state before TLS is discarded (MAIL is not remembered)."""
    with probe.connect() as conn:
        probe.require("STARTTLS")
        probe.hello(conn)
        mail = conn.command(probe.mail_line())
        if mail.kind != 2:
            raise Skip(f"MAIL refused: {mail}")
        reply = conn.command("STARTTLS")
        if reply.code != 220:
            return passed(f"STARTTLS refused inside a transaction ({reply})")
        conn.start_tls()
        probe.hello(conn)
        rcpt = conn.command(probe.rcpt_line())
    if rcpt.kind == 2:
        return failed("a MAIL given before STARTTLS was still in force after it")
    return passed(f"RCPT after TLS without MAIL: {rcpt}")


CASES: list[tuple[str, CaseFunction]] = [
    ("injection-noop", _inject(b"NOOP")),
    ("injection-mail", _inject(b"MAIL FROM:<injected@example.org>")),
    ("no-starttls-after-tls", no_starttls_after_tls),
    ("session-reset", session_reset),
]
