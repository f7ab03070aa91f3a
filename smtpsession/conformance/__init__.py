"""
Check any SMTP or LMTP server, case by case: RFC 5321 behaviour, every
SMTP smuggling variant, plaintext injection after STARTTLS, pipelining,
limits, CHUNKING and SMTPUTF8.

    from smtpsession.conformance import run_checks

    report = run_checks("127.0.0.1", 2525)
    print(report.text())
    report.assert_passed()

From the shell: C{python -m smtpsession.conformance [--json] [--lmtp]
HOST:PORT}; from pytest: the C{conformance} fixture.  The checker is a
client of its own (sockets and ssl, blocking, every read bounded), so it
runs against servers of any make, this one included.

A case fails only when the server breaks a requirement; behaviours the
RFCs leave open pass, with a note in the detail.  Each case opens its own
connections, so one broken case cannot spoil the next.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from smtpsession.conformance import (
    chunking,
    limits,
    pipelining,
    rfc5321,
    smtputf8,
    smuggling,
    starttls,
)
from smtpsession.conformance.client import (
    CaseTimeout,
    Connection,
    ConnectionClosed,
    MalformedReply,
)
from smtpsession.conformance.probe import (
    CaseFunction,
    Probe,
    Result,
    Skip,
    Target,
    parse_extensions,
)

__all__ = [
    "GROUPS",
    "Case",
    "Report",
    "Result",
    "Unreachable",
    "run_checks",
]

#: Every group of cases, in report order: (name, [(id, function), ...]).
GROUPS: list[tuple[str, list[tuple[str, CaseFunction]]]] = [
    (m.GROUP, m.CASES)
    for m in (rfc5321, smuggling, starttls, pipelining, limits, chunking, smtputf8)
]


class Unreachable(OSError):
    """The target could not be reached, or did not speak SMTP at all."""


@dataclass(frozen=True)
class Case:
    """The result of one case."""

    id: str
    group: str
    result: Result
    detail: str = ""


@dataclass
class Report:
    """All the cases run against one target."""

    target: str
    cases: list[Case] = field(default_factory=list)
    lmtp: bool = False

    @property
    def failures(self) -> list[Case]:
        return [c for c in self.cases if c.result is Result.FAIL]

    @property
    def ok(self) -> bool:
        """No case failed (skips are not failures)."""
        return not self.failures

    def result(self, case_id: str) -> Result:
        """The result of the case named C{case_id} (KeyError if there is none)."""
        for case in self.cases:
            if case.id == case_id:
                return case.result
        raise KeyError(case_id)

    def as_json(self) -> dict[str, object]:
        """C{{"target": "HOST:PORT", "cases": [{"id", "group", "result", "detail"}, ...]}}."""
        return {
            "target": self.target,
            "cases": [{**asdict(c), "result": c.result.value} for c in self.cases],
        }

    def json(self) -> str:
        return json.dumps(self.as_json(), indent=2, ensure_ascii=False)

    def text(self) -> str:
        """One line per case, then the counts."""
        width = max((len(c.group) + len(c.id) + 1 for c in self.cases), default=0)
        protocol = "LMTP" if self.lmtp else "SMTP"
        out = [f"smtpsession.conformance: {self.target} ({protocol})"]
        for c in self.cases:
            name = f"{c.group}/{c.id}"
            out.append(f"{c.result.value.upper():4}  {name:{width}}  {c.detail}".rstrip())
        counts = {r: sum(c.result is r for c in self.cases) for r in Result}
        out.append(
            f"{len(self.cases)} cases: {counts[Result.PASS]} passed, "
            f"{counts[Result.FAIL]} failed, {counts[Result.SKIP]} skipped"
        )
        return "\n".join(out)

    def assert_passed(self) -> None:
        """Raise AssertionError naming every failed case, with its detail."""
        if self.failures:
            lines = [f"{c.group}/{c.id}: {c.detail}" for c in self.failures]
            raise AssertionError(
                f"{len(lines)} conformance case(s) failed against {self.target}:\n  "
                + "\n  ".join(lines)
            )


def _discover(target: Target) -> dict[str, str]:
    """The greeting and EHLO (LHLO) once, for the extensions; L{Unreachable} if impossible."""
    deadline = time.monotonic() + target.case_timeout
    try:
        conn = Connection(target.host, target.port, timeout=target.timeout, deadline=deadline)
    except OSError as e:
        raise Unreachable(f"cannot connect to {target.address}: {e.strerror or e}") from e
    try:
        conn.reply()
        verb = "LHLO" if target.lmtp else "EHLO"
        reply = conn.command(f"{verb} conformance.example")
        if reply.code != 250:
            return {}
        return parse_extensions(reply)
    except (CaseTimeout, ConnectionClosed, MalformedReply) as e:
        raise Unreachable(f"{target.address} does not speak SMTP: {e}") from e
    finally:
        conn.close()


def _run_one(probe: Probe, function: CaseFunction) -> tuple[Result, str]:
    try:
        return function(probe)
    except Skip as e:
        return Result.SKIP, str(e)
    except CaseTimeout as e:
        return Result.FAIL, f"timed out: {e}"
    except ConnectionClosed as e:
        return Result.FAIL, f"connection lost: {e}"
    except MalformedReply as e:
        return Result.FAIL, f"malformed reply: {e}"
    except OSError as e:
        return Result.FAIL, f"network error: {e}"


def run_checks(
    host: str,
    port: int,
    *,
    lmtp: bool = False,
    timeout: float = 5.0,
    settle: float = 1.0,
    case_timeout: float = 10.0,
    total_timeout: float = 300.0,
    mail_from: str = "sender@example.org",
    rcpt_to: str = "postmaster@example.com",
    groups: Iterable[str] | None = None,
) -> Report:
    """
    Run every case (or those of C{groups}) against C{host}:C{port}.

    @param timeout: bound on each read.
    @param settle: how long the line must stay quiet before the checker
        believes no further reply is coming (raise it for slow links).
    @param case_timeout: bound on one case; C{total_timeout} on them all
        (the cases left over are skipped).
    @param mail_from: the sender of the checker's messages, and
        C{rcpt_to} their recipient: give ones the server accepts, or the
        cases that need a transaction are skipped.
    @raise Unreachable: if the server cannot be reached or does not greet.
    """
    target = Target(host, port, lmtp, mail_from, rcpt_to, timeout, settle, case_timeout)
    extensions = _discover(target)
    wanted = set(groups) if groups is not None else None
    report = Report(target.address, lmtp=lmtp)
    end = time.monotonic() + total_timeout
    for group, cases in GROUPS:
        if wanted is not None and group not in wanted:
            continue
        for case_id, function in cases:
            now = time.monotonic()
            if now >= end:
                result, detail = Result.SKIP, "the total time budget is spent"
            else:
                probe = Probe(target, extensions, deadline=min(end, now + case_timeout))
                result, detail = _run_one(probe, function)
            report.cases.append(Case(case_id, group, result, detail))
    return report
