"""
SMTP smuggling (the 2023 disclosures): a message that contains a false
end of data, a dot between bare CRs and LFs, followed by a second
transaction and then the real CRLF.CRLF.  A server that ends DATA at the
false end answers the first message and then the smuggled commands: it
would deliver a second message its sender could forge.  A server that ends
DATA only at CRLF.CRLF answers once, accepting the message (the bare
characters kept as data) or refusing it (as smtpsession does, with 554):
both pass.
"""

from __future__ import annotations

from collections.abc import Callable

from smtpsession.conformance.client import CaseTimeout
from smtpsession.conformance.probe import CaseFunction, Outcome, Probe, failed, message, passed

__all__ = ["CASES", "GROUP", "VARIANTS"]

GROUP = "smuggling"

#: The false ends of data, named by their characters: every combination of
#: bare CR, bare LF and CRLF around the dot that one implementation or
#: another took for the end (SEC Consult, December 2023, and the follow-ups).
VARIANTS: dict[str, bytes] = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-crlf": b"\n.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "cr-dot-cr": b"\r.\r",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-cr": b"\r\n.\r",
    "lf-dot-cr": b"\n.\r",
    "cr-dot-lf": b"\r.\n",
}


def _smuggle(variant: bytes) -> Callable[[Probe], Outcome]:
    def case(probe: Probe) -> Outcome:
        smuggled = (
            f"{probe.mail_line()}\r\n{probe.rcpt_line()}\r\nDATA\r\n".encode()
            + b"Subject: smuggled\r\n\r\nsmuggled message"
        )
        with probe.connect() as conn:
            probe.transaction(conn)
            probe.start_data(conn)
            conn.send(
                message("conformance: smuggling probe", "first line").rstrip(b"\r\n")
                + variant
                + smuggled
                + b"\r\n.\r\n"
            )
            try:
                first = conn.reply()
            except CaseTimeout:
                return failed("no reply after CRLF.CRLF (the message never ended)")
            extra = conn.extra(probe.settle)
        if extra:
            replies = ", ".join(str(r.code) for r in [first, *extra])
            return failed(
                f"DATA ended at {variant!r}: the smuggled commands were answered ({replies})"
            )
        how = "accepted as data" if first.kind == 2 else f"refused ({first})"
        return passed(f"only CRLF.CRLF ended the message; {how}")

    case.__name__ = f"smuggle_{variant!r}"
    case.__doc__ = f"A false end of data {variant!r} must not end DATA (RFC 5321 §4.1.1.4)."
    return case


CASES: list[tuple[str, CaseFunction]] = [(name, _smuggle(v)) for name, v in VARIANTS.items()]
