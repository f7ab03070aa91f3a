"""
A hypothesis state machine over whole sessions through the core.

Rules play a client: EHLO/LHLO, MAIL, RCPT, DATA with bodies that need
dot-stuffing or hold bare CR/LF, BDAT chunks, AUTH, RSET, NOOP, and
random bytes.  Each rule's bytes reach the core cut at points hypothesis
chooses, and the application answers (accept or refuse) as hypothesis
chooses.  While the session is predictable (no random bytes yet) every
rule knows the exact reply codes due; always:

  - no exception escapes the core, and replies are well-formed;
  - one reply per command (DATA: the 354 and then one, or one per
    recipient in LMTP), in order;
  - a body's events are balanced (one DataStart, then one DataEnd or
    DataAborted), a body ends (and the application is asked about it)
    only once the client sent all of it, and the body the application
    saw is exactly the one sent, dot-unstuffed;
  - the bytes of the whole session, replayed with the same answers
    whole, cut elsewhere, and (when short) a byte at a time, give the same
    replies, the same events and the same messages received.

The atheris harnesses in C{fuzz/} search the same ground by coverage;
this runs in every test run, within a few seconds.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from smtpsession._core.connection import ServerConnection
from smtpsession._core.events import (
    CLOSED,
    NEED_DATA,
    PAUSED,
    Auth,
    BodyRejected,
    DataAborted,
    DataEnd,
    DataStart,
    MailFrom,
    RcptTo,
)
from smtpsession.errors import SMTPError
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Session
from smtpsession.testing.memory import codes, split_replies

pytestmark = pytest.mark.fuzz

#: What the application answers, in the order it was asked: ("mail", bool),
#: ("rcpt", bool), ("auth", bool), ("data", [bool, ...]).
Answer = tuple[str, Any]

#: The application's verdict: accept more often than not, so that
#: transactions get far enough to have bodies.
verdict = st.sampled_from([True, True, True, False])

BODY_PIECES = [
    b"a",
    b"text ",
    b".",
    b"..",
    b"\r\n",
    b"\r\n.",
    b"\r\n..",
    b"\r\n.\r\n",
    b"\r",
    b"\n",
]
HOSTILE = [
    b"\r\n.\r\n",
    b".\r\n",
    b"BDAT 3\r\n",
    b"BDAT 2 LAST\r\n",
    b"DATA\r\n",
    b"\r",
    b"\n",
    b"RSET\r\n",
    b"MAIL FROM:<x@y.example>\r\n",
    b"RCPT TO:<z@y.example>\r\n",
    b"\x00\xff",
]


def has_bare(body: bytes) -> bool:
    """Whether some CR is not followed by LF, or some LF not preceded by CR."""
    crlf = body.count(b"\r\n")
    return crlf != body.count(b"\r") or crlf != body.count(b"\n")


def stuffed(body: bytes) -> bytes:
    """The body as DATA sends it: dot-stuffed, then ended with CRLF.CRLF."""
    if not body:
        return b".\r\n"
    wire = (b"." if body.startswith(b".") else b"") + body.replace(b"\r\n.", b"\r\n..")
    return wire + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n"


def unstuffed(segment: bytes) -> bytes | None:
    """RFC 5321 read literally: the body a DATA segment ending in CRLF.CRLF stands for."""
    w = b"\r\n" + segment
    i = w.find(b"\r\n.\r\n")
    if i < 0 or i + 5 != len(w):
        return None
    return w[: i + 2].replace(b"\r\n.", b"\r\n")[2:]


def cut(data: bytes, points: Sequence[int]) -> list[bytes]:
    """C{data} cut at C{points} (taken modulo its length)."""
    if len(data) < 2:
        return [data] if data else []
    cuts = sorted({p % len(data) for p in points} - {0})
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class App:
    """
    The application around one connection: answers from a plan (or, once
    the plan is out, from a seeded generator), records what it saw and
    checks the core's events as they come.
    """

    def __init__(self, lmtp: bool, lenient: bool, answers: list[Answer] | None, seed: int) -> None:
        options = SMTPServerOptions(
            name="mx.example",
            lmtp=lmtp,
            lenient_line_endings=lenient,
            auth_optional=True,
            allow_insecure_auth=True,
            disable_reverse_lookup=True,
        )
        self.session = Session(id="machine", remote_address="192.0.2.1", remote_port=40000)
        self.conn = ServerConnection(options, self.session, auth_enabled=True)
        #: Answers to give, in order (a replay gives those of the first run).
        self.plan: list[Answer] = list(answers) if answers is not None else []
        self.replaying = answers is not None
        self.rng = random.Random(seed)
        self.used: list[Answer] = []
        self.unplanned = 0
        self.wire = bytearray()
        self.out = bytearray()
        self.log: list[Any] = []
        #: The messages it received whole (sender, recipients, body), whatever
        #: it answered; a body the core refused is not among them.
        self.received: list[tuple[str, list[str], bytes]] = []
        self.ends = 0
        self.body_open = False
        self.chunking = False
        self.body_start = 0
        self.chunks: list[bytes] = []
        self.rejected = False
        self.conn.greet()
        self.out += self.conn.data_to_send()

    def answer(self, kind: str, n: int = 1) -> Any:
        if self.plan:
            planned_kind, value = self.plan.pop(0)
            assert planned_kind == kind, f"asked about {kind}, the plan says {planned_kind}"
        else:
            assert not self.replaying, f"the replay asked about {kind} once more"
            self.unplanned += 1
            value = (
                [self.rng.random() < 0.7 for _ in range(n)]
                if kind == "data"
                else (self.rng.random() < 0.7)
            )
        self.used.append((kind, value))
        return value

    def send(self, data: bytes) -> list[str]:
        """Feed C{data}; the replies it brought, checked for shape."""
        self.wire += data
        self.conn.receive_data(data)
        self.pump()
        out = self.conn.data_to_send()
        self.out += out
        return split_replies(out)

    def consumed(self) -> int:
        return len(self.wire) - self.conn.unparsed

    def pump(self) -> None:
        conn = self.conn
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA or ev is CLOSED:
                return
            assert ev is not PAUSED, "paused with no answer due"
            if type(ev) is bytes:
                assert self.body_open and not self.rejected, "a chunk outside a body"
                self.chunks.append(ev)
                continue
            self.log.append(type(ev).__name__)
            if isinstance(ev, MailFrom):
                assert not self.body_open
                self.log.append(ev.address.address)
                if self.answer("mail"):
                    conn.mail_from_result()
                else:
                    conn.mail_from_result(SMTPError(550, "Sender refused"))
            elif isinstance(ev, RcptTo):
                assert not self.body_open
                self.log.append(ev.address.address)
                if self.answer("rcpt"):
                    conn.rcpt_to_result()
                else:
                    conn.rcpt_to_result(SMTPError(450, "Mailbox busy"))
            elif isinstance(ev, Auth):
                conn.auth_result(ev.request.username if self.answer("auth") else None)
            elif isinstance(ev, DataStart):
                assert not self.body_open, "a body started inside another"
                self.body_open = True
                self.chunking = ev.chunking
                self.body_start = self.consumed()
                self.chunks = []
                self.rejected = False
            elif isinstance(ev, BodyRejected):
                assert self.body_open and not self.rejected
                self.rejected = True
            elif isinstance(ev, DataAborted):
                assert self.body_open, "DataAborted with no body"
                self.body_open = False
            elif isinstance(ev, DataEnd):
                self.data_end(ev)
            else:  # pragma: no cover - a new event needs a policy here
                raise AssertionError(f"unexpected event {ev!r}")

    def data_end(self, ev: DataEnd) -> None:
        assert self.body_open, "DataEnd with no body"
        self.body_open = False
        self.ends += 1
        body = b"".join(self.chunks)
        assert (ev.rejected is not None) == self.rejected
        if not self.chunking:
            expected = unstuffed(bytes(self.wire[self.body_start : self.consumed()]))
            assert expected is not None, "the body ended before its CRLF.CRLF"
            if not self.rejected:
                assert body == expected, (body, expected)
        env = self.session.envelope
        assert env.mail_from is not None and env.rcpt_to, "a body outside a transaction"
        rcpts = [r.address for r in env.rcpt_to]
        n = len(rcpts) if self.conn.cfg.lmtp else 1
        # LMTP replies once per successful RCPT (RFC 2033 4.2): a recipient
        # given twice is once in the envelope but answered twice.
        order = self.conn.rcpt_order
        due = len(order) if order is not None and self.conn.cfg.lmtp else n
        verdicts = self.answer("data", n)
        results: list[SMTPError | str | None] = [
            None if ok else SMTPError(554, "Message refused") for ok in verdicts
        ]
        reply_codes = self.conn.data_result(results)
        assert len(reply_codes.split(";")) == due, reply_codes
        if not self.rejected:
            self.received.append((env.mail_from.address, rcpts, body))

    def lost(self) -> None:
        """The client goes: a body still open must be aborted."""
        aborted = self.conn.connection_lost()
        assert (aborted is not None) == self.body_open, "a body left open"
        self.body_open = False
        assert self.conn.data_to_send() == b""

    def outcome(self) -> tuple[bytes, list[Any], list[Any]]:
        return bytes(self.out), self.log, self.received


class SessionMachine(RuleBasedStateMachine):
    """A client, the model of what the server should say, and the server."""

    @initialize(
        lmtp=st.booleans(),
        lenient=st.booleans(),
        seed=st.integers(0, 2**16),
        replay_cuts=st.lists(st.integers(1, 10**6), max_size=12),
        greet=st.booleans(),
    )
    def start(
        self, lmtp: bool, lenient: bool, seed: int, replay_cuts: list[int], greet: bool
    ) -> None:
        self.lmtp = lmtp
        self.lenient = lenient
        self.seed = seed
        self.replay_cuts = replay_cuts
        self.app = App(lmtp, lenient, None, seed)
        # The model: what a conforming server has agreed to so far.
        self.exact = True
        self.closed = False
        self.greeted = False
        self.mail = False
        self.binary = False
        self.rcpts = 0
        self.bdat_open = False
        self.bdat_chunks: list[bytes] = []
        self.authenticated = False
        self.auth_failures = 0
        self.counter = 0
        if greet:
            self.hello([])

    # -- sending ---------------------------------------------------------------------

    def deliver(self, data: bytes, points: Sequence[int], plan: Sequence[Answer] = ()) -> list[str]:
        """Send C{data} in pieces; the replies.  The body must not end before the last piece."""
        app = self.app
        if self.exact:
            app.plan.extend(plan)
        ends = app.ends
        replies: list[str] = []
        pieces = cut(data, points)
        for i, piece in enumerate(pieces):
            replies += app.send(piece)
            if i < len(pieces) - 1 and self.exact and plan and plan[-1][0] == "data":
                assert app.ends == ends, "a body ended before the client sent all of it"
        if self.exact:
            assert not app.plan, f"the server did not ask about {app.plan}"
            assert app.unplanned == 0, "the server asked the application something unexpected"
        return replies

    def expect(self, replies: list[str], expected: list[int]) -> None:
        if self.closed:
            expected = []
        if self.exact:
            assert codes(replies) == expected, (replies, expected)

    def reset(self) -> None:
        self.mail = False
        self.binary = False
        self.rcpts = 0
        self.bdat_open = False
        self.bdat_chunks = []

    def new_address(self, domain: str) -> str:
        self.counter += 1
        return f"u{self.counter}@{domain}"

    # -- commands ---------------------------------------------------------------------

    @rule(points=st.lists(st.integers(1, 1000), max_size=3))
    def hello(self, points: list[int]) -> None:
        verb = b"LHLO" if self.lmtp else b"EHLO"
        replies = self.deliver(verb + b" client.example\r\n", points)
        self.expect(replies, [250])
        if self.exact and not self.closed:
            # RFC 5321 §4.1.4: as if RSET had been sent; a body in progress is aborted.
            self.greeted = True
            self.reset()

    @rule(
        accept=verdict,
        body_type=st.sampled_from([b"", b" BODY=8BITMIME", b" BODY=BINARYMIME"]),
        points=st.lists(st.integers(1, 1000), max_size=3),
    )
    def mail_from(self, accept: bool, body_type: bytes, points: list[int]) -> None:
        line = f"MAIL FROM:<{self.new_address('example.org')}>".encode() + body_type + b"\r\n"
        asked = self.greeted and not self.mail and not self.bdat_open and not self.closed
        replies = self.deliver(line, points, [("mail", accept)] if asked else [])
        if not self.greeted or self.mail or self.bdat_open:
            self.expect(replies, [503])
        elif accept:
            self.expect(replies, [250])
            self.mail = True
            self.binary = body_type == b" BODY=BINARYMIME"
        else:
            self.expect(replies, [550])

    @rule(accept=verdict, points=st.lists(st.integers(1, 1000), max_size=3))
    def rcpt_to(self, accept: bool, points: list[int]) -> None:
        line = f"RCPT TO:<{self.new_address('example.com')}>\r\n".encode()
        asked = self.greeted and self.mail and not self.bdat_open and not self.closed
        replies = self.deliver(line, points, [("rcpt", accept)] if asked else [])
        if not asked:
            self.expect(replies, [503])
        elif accept:
            self.expect(replies, [250])
            self.rcpts += 1
        else:
            self.expect(replies, [450])

    @rule(
        accept_mail=verdict,
        accept_rcpts=st.lists(verdict, min_size=1, max_size=3),
        points=st.lists(st.integers(1, 1000), max_size=4),
    )
    def envelope(self, accept_mail: bool, accept_rcpts: list[bool], points: list[int]) -> None:
        """MAIL and its RCPTs pipelined in one go (PIPELINING): one reply each, in order."""
        wire = f"MAIL FROM:<{self.new_address('example.org')}>\r\n".encode()
        for _ in accept_rcpts:
            wire += f"RCPT TO:<{self.new_address('example.com')}>\r\n".encode()
        opened = self.greeted and not self.mail and not self.bdat_open and not self.closed
        plan: list[Answer] = []
        expected = [503]
        if opened:
            plan.append(("mail", accept_mail))
            expected = [250 if accept_mail else 550]
        if opened and accept_mail:
            plan += [("rcpt", ok) for ok in accept_rcpts]
            expected += [250 if ok else 450 for ok in accept_rcpts]
        elif self.greeted and self.mail and not self.bdat_open and not self.closed:
            # The MAIL is refused as nested; its RCPTs join the open transaction.
            plan += [("rcpt", ok) for ok in accept_rcpts]
            expected += [250 if ok else 450 for ok in accept_rcpts]
        else:
            expected += [503] * len(accept_rcpts)
        replies = self.deliver(wire, points, plan)
        self.expect(replies, expected)
        if self.exact and not self.closed and plan:
            if opened and accept_mail:
                self.mail = True
                self.binary = False
            if self.mail:
                self.rcpts += sum(accept_rcpts)

    def final_codes(self, refused: bool, verdicts: list[bool]) -> list[int]:
        """The final reply codes: the core's 554 for a bare CR/LF, else the application's."""
        if refused:
            return [554] * len(verdicts)
        return [250 if ok else 554 for ok in verdicts]

    @precondition(
        lambda self: (
            not self.exact
            or (self.rcpts > 0 and not self.binary and not self.bdat_open and not self.closed)
        )
    )
    @rule(
        body=st.lists(st.sampled_from(BODY_PIECES), max_size=12).map(b"".join),
        data=st.data(),
        points=st.lists(st.integers(1, 10**4), max_size=4),
    )
    def data_message(self, body: bytes, data: st.DataObject, points: list[int]) -> None:
        """A whole DATA transaction: the body arrives complete and unstuffed."""
        n = self.rcpts if self.lmtp else 1
        verdicts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        before = len(self.app.received)
        replies = self.deliver(b"DATA\r\n" + stuffed(body), points, [("data", verdicts)])
        expected = body + (b"" if not body or body.endswith(b"\r\n") else b"\r\n")
        refused = has_bare(expected) and not self.lenient
        self.expect(replies, [354, *self.final_codes(refused, verdicts)])
        if self.exact:
            if not refused:
                [(_, _, got)] = self.app.received[before:]
                assert got == expected, (got, expected)
            self.reset()

    @rule(points=st.lists(st.integers(1, 1000), max_size=2))
    def data_refused(self, points: list[int]) -> None:
        """DATA when the server must refuse it (no body follows then)."""
        would_start = self.greeted and self.mail and self.rcpts and not self.binary
        if self.exact and would_start and not self.bdat_open:
            return  # it would be accepted: data_message covers that
        replies = self.deliver(b"DATA\r\n", points)
        self.expect(replies, [503])
        if self.exact and self.bdat_open:
            self.reset()  # RFC 3030 §2: DATA after BDAT ends the transaction

    @rule(
        chunks=st.lists(
            st.lists(st.sampled_from(BODY_PIECES), max_size=6).map(b"".join), min_size=1, max_size=3
        ),
        last=st.booleans(),
        data=st.data(),
        points=st.lists(st.integers(1, 10**4), max_size=4),
    )
    def bdat(self, chunks: list[bytes], last: bool, data: st.DataObject, points: list[int]) -> None:
        """BDAT chunks (the last one LAST or not); refused ones have their octets swallowed."""
        wire = b""
        for i, chunk in enumerate(chunks):
            tail = b" LAST" if last and i == len(chunks) - 1 else b""
            wire += b"BDAT %d%s\r\n" % (len(chunk), tail) + chunk
        ok = self.greeted and self.mail and self.rcpts > 0 and not self.closed
        n = self.rcpts if self.lmtp else 1
        verdicts = data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) if last else []
        before = len(self.app.received)
        replies = self.deliver(wire, points, [("data", verdicts)] if ok and last else [])
        if not ok:
            self.expect(replies, [503] * len(chunks))
            return
        body = b"".join(self.bdat_chunks) + b"".join(chunks)
        refused = has_bare(body) and not self.binary and not self.lenient
        expected = [250] * (len(chunks) - 1)
        expected += self.final_codes(refused, verdicts) if last else [250]
        self.expect(replies, expected)
        if not self.exact:
            return
        if last:
            if not refused:
                [(_, _, got)] = self.app.received[before:]
                assert got == body, (got, body)
            self.reset()
        else:
            self.bdat_chunks.extend(chunks)
            self.bdat_open = True

    @rule(accept=verdict, points=st.lists(st.integers(1, 1000), max_size=3))
    def auth(self, accept: bool, points: list[int]) -> None:
        line = b"AUTH PLAIN AHVzZXIAcGFzc3dvcmQ=\r\n"  # \0user\0password
        asked = (
            self.greeted
            and not self.authenticated
            and not self.mail
            and not self.bdat_open
            and not self.closed
        )
        replies = self.deliver(line, points, [("auth", accept)] if asked else [])
        if not asked:
            self.expect(replies, [503])
        elif accept:
            self.expect(replies, [235])
            self.authenticated = True
        else:
            self.auth_failures += 1
            if self.auth_failures >= 5:
                self.expect(replies, [421])
                self.closed = True
            else:
                self.expect(replies, [535])

    @rule(points=st.lists(st.integers(1, 1000), max_size=2))
    def rset(self, points: list[int]) -> None:
        self.expect(self.deliver(b"RSET\r\n", points), [250])
        if self.exact:
            self.reset()

    @rule(points=st.lists(st.integers(1, 1000), max_size=2))
    def noop(self, points: list[int]) -> None:
        self.expect(self.deliver(b"NOOP\r\n", points), [250])

    @rule(
        junk=st.lists(
            st.one_of(st.binary(min_size=1, max_size=40), st.sampled_from(HOSTILE)),
            min_size=1,
            max_size=4,
        ).map(b"".join),
        points=st.lists(st.integers(1, 1000), max_size=3),
    )
    def random_bytes(self, junk: bytes, points: list[int]) -> None:
        """Anything at all; from here on only the invariants are checked."""
        self.exact = False
        self.deliver(junk, points)

    # -- invariants and the end ----------------------------------------------------------

    @invariant()
    def model_agrees(self) -> None:
        if not hasattr(self, "app") or not self.exact:
            return
        assert self.app.conn.closed == self.closed
        assert self.app.body_open == self.bdat_open

    def teardown(self) -> None:
        if not hasattr(self, "app") or sys.exc_info()[1] is not None:
            return  # nothing ran, or a step failed: let its error show
        live = self.app
        live.lost()
        wire = bytes(live.wire)
        replays = [[wire], cut(wire, self.replay_cuts)]
        if len(wire) <= 1500:
            replays.append([wire[i : i + 1] for i in range(len(wire))])
        for pieces in replays:
            again = App(self.lmtp, self.lenient, live.used, self.seed)
            for piece in pieces:
                again.send(piece)
            assert not again.plan, f"the replay did not ask about {again.plan}"
            again.lost()
            assert again.outcome() == live.outcome(), "the cut changed the outcome"


TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = settings(
    # A few seconds in every test run; SMTPSESSION_MACHINE_EXAMPLES=5000
    # for a long run (docs/fuzzing.md).
    max_examples=int(os.environ.get("SMTPSESSION_MACHINE_EXAMPLES", "150")),
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
