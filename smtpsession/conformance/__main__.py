"""
C{python -m smtpsession.conformance [--json] [--lmtp] HOST:PORT}: check a
server and print the report.  Exit status 0 when no case failed, 1 when
one did, 2 for a usage error or a target that cannot be reached (one line
on stderr: scripts tell "the server is wrong" from "the check did not run").
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from smtpsession.conformance import GROUPS, Unreachable, run_checks

__all__ = ["main", "parse_target"]

USAGE_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line on stderr, not argparse's usage block."""
        self.exit(USAGE_ERROR, f"{self.prog}: {message} (see --help)\n")


def parse_target(text: str) -> tuple[str, int]:
    """C{HOST:PORT} or C{[IPv6]:PORT} → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m smtpsession.conformance",
        description=(
            "Check an SMTP or LMTP server for RFC 5321 behaviour, SMTP smuggling, "
            "STARTTLS injection, pipelining, limits, CHUNKING and SMTPUTF8."
        ),
    )
    parser.add_argument("target", type=parse_target, metavar="HOST:PORT")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--lmtp", action="store_true", help="the server speaks LMTP (LHLO)")
    parser.add_argument("--mail-from", default="sender@example.org", metavar="ADDRESS")
    parser.add_argument("--rcpt-to", default="postmaster@example.com", metavar="ADDRESS")
    parser.add_argument(
        "--group",
        action="append",
        choices=[name for name, _ in GROUPS],
        help="run only this group (repeatable)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="bound on each read (s)")
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="quiet time after which no further reply is expected (s)",
    )
    parser.add_argument("--case-timeout", type=float, default=10.0, help="bound per case (s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    host, port = args.target
    try:
        report = run_checks(
            host,
            port,
            lmtp=args.lmtp,
            timeout=args.timeout,
            settle=args.settle,
            case_timeout=args.case_timeout,
            mail_from=args.mail_from,
            rcpt_to=args.rcpt_to,
            groups=args.group,
        )
    except Unreachable as e:
        print(f"smtpsession.conformance: {e}", file=sys.stderr)
        return USAGE_ERROR
    print(report.json() if args.json else report.text())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
