# -*- test-case-name: tests.unit.test_connection,tests.unit.test_framing -*-
"""
The message body: DATA and BDAT, their framing, the core's own verdicts
on a body (bare CR/LF, size), and the application's answer at its end.

A body is released as it arrives, one C{bytes} event per received
segment (the framers in L{smtpsession._core.framing} find the end and
undo dot-stuffing); it is never held whole.  When the core refuses a
body it says so at once (L{BodyRejected}, so the reader stops), keeps
reading to its end without releasing more, and answers with its own
verdict whatever the application says.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.events import NEED_DATA, BodyRejected, DataEnd, DataStart
from smtpsession._core.framing import BdatFramer, DataFramer
from smtpsession._core.replies import format_reply
from smtpsession._core.state import (
    BDAT,
    COMMAND,
    DATA,
    DATA_ANSWER,
    NOTHING,
    WAIT,
    SessionState,
)
from smtpsession._core.verdicts import fit_results
from smtpsession.errors import SMTPError

__all__ = [
    "data",
    "bdat",
    "refuse_bdat",
    "read_data",
    "read_bdat",
    "discard_skipped",
    "data_answered",
]

_BDAT_ARGS = re.compile(rb"([0-9]{1,15})(?: +(LAST))? *\Z", re.IGNORECASE)

#: Body bytes that count as progress for the idle timer (C{socket_timeout})
#: even without a line end.  A body is progress when it ends, when a DATA
#: line ends, or when this many bytes have come since the last progress:
#: never byte by byte, or a client trickling a body a byte a second would
#: hold its connection until C{data_timeout} (ten times longer by default),
#: however short the idle timeout.  A real client, however slow its link,
#: sends a kilobyte or a line well within the timeout.
BODY_PROGRESS = 1024


def _bare_rejection() -> BodyRejected:
    return BodyRejected(
        SMTPError(
            554,
            "Error: message contains a bare <CR> or <LF>; lines must end with <CR><LF>",
            "5.6.0",
        )
    )


def _size_rejection(limit: int) -> BodyRejected:
    return BodyRejected(SMTPError(552, R.TOO_BIG_TEXT.format(limit=limit), "5.3.4"))


# -- DATA ------------------------------------------------------------------------------


def data(st: SessionState, arg: bytes) -> Any:
    env = st.session.envelope
    if st.body_open:
        # RFC 3030 §2: DATA and BDAT do not mix in one transaction.
        ev = st.abort_body("DATA after BDAT")
        st.reset_transaction()
        st.error(R.DATA_AFTER_BDAT)
        return ev
    if env.mail_from is None:
        st.error(R.NEED_MAIL)
        return None
    if not env.rcpt_to:
        st.error(R.NEED_RCPT)
        return None
    if env.body_type == "binarymime":
        st.error(R.BINARYMIME_NEEDS_BDAT)
        return None
    st.out.append(R.START_DATA[0])
    st.framer = DataFramer(check_bare=not st.cfg.lenient_endings)
    _start_body(st)
    st.phase = DATA
    return DataStart(False)


def read_data(st: SessionState) -> Any:
    """One step of DATA: a chunk, a rejection, the end, or NEED_DATA."""
    framer = st.framer
    assert framer is not None
    if st.pos >= len(st.buf):
        return NEED_DATA
    body, end = _feed(st, framer, True)
    events: list[Any] = []
    if body:
        _body_piece(st, body, framer.bare, events)
    if end >= 0:
        st.framer = None
        if framer.bare and st.rejected is not None and st.rejected.error.code == 552:
            # Refused for its size by a segment that ended before the bare
            # CR/LF: the body is refused as bare, as it is when that
            # segment also holds the line ending (or the body comes whole),
            # so the reply does not depend on how the body was cut.
            st.rejected = _bare_rejection()
        events.append(_finish_body(st))
    return _emit(st, events) or NEED_DATA


# -- BDAT ------------------------------------------------------------------------------


def bdat(st: SessionState, arg: bytes) -> Any:
    m = _BDAT_ARGS.match(arg)
    if m is None:
        st.close_with(R.BDAT_SYNTAX)
        return None
    size = int(m.group(1))
    last = m.group(2) is not None
    env = st.session.envelope
    if env.mail_from is None or not env.rcpt_to:
        st.error(R.NEED_MAIL if env.mail_from is None else R.NEED_RCPT)
        st.skip = size
        return None
    cfg = st.cfg
    if cfg.reject_oversized and st.body_length + size > cfg.size_limit:
        # Too big, said in advance: swallowing it could take for ever, and
        # nothing after it could be read as commands.  Refuse and close.
        ev = st.abort_body("message too big")
        st.close_with(R.too_big(cfg.size_limit))
        return ev
    st.bdat_last = last
    first = not st.body_open
    if first:
        st.bdat_framer = BdatFramer(
            check_bare=not st.cfg.lenient_endings and env.body_type != "binarymime"
        )
        _start_body(st)
    assert st.bdat_framer is not None
    st.bdat_framer.start(size)
    st.phase = BDAT
    if first:
        return DataStart(True)
    return None


def refuse_bdat(st: SessionState, arg: bytes, reply: R.Pair) -> None:
    """Refuse a BDAT but swallow its octets, so they are never commands."""
    m = _BDAT_ARGS.match(arg)
    if m is None:
        # Without a size the chunk's end is unknowable: close rather than
        # risk reading body bytes as commands.
        st.close_with(R.BDAT_SYNTAX)
        return
    st.error(reply)
    st.skip = int(m.group(1))


def discard_skipped(st: SessionState) -> bool:
    """Drop the octets of a refused chunk; whether they are all gone."""
    buf = st.buf
    avail = len(buf) - st.pos
    if avail <= 0:
        return False
    if avail >= st.skip:
        st.pos += st.skip
        st.skip = 0
        return True
    st.skip -= avail
    st.buf = b""
    st.pos = 0
    return False


def read_bdat(st: SessionState) -> Any:
    """
    One step of a BDAT chunk: a piece, a rejection, the end, NEED_DATA, or
    None when the chunk is complete and commands follow.
    """
    framer = st.bdat_framer
    assert framer is not None
    events: list[Any] = []
    if framer.remaining:
        if st.pos >= len(st.buf):
            return NEED_DATA
        body, end = _feed(st, framer, False)
        if body:
            _body_piece(st, body, framer.bare, events)
        if end < 0:
            return _emit(st, events) or NEED_DATA
    # The chunk is complete.
    if st.bdat_last:
        framer.finish()
        if framer.bare and st.rejected is None:
            events.append(_reject(st, _bare_rejection()))
        st.bdat_framer = None
        events.append(_finish_body(st))
    else:
        st.phase = COMMAND
        st.out.append(
            format_reply(
                250, f"OK: {st.body_length} octets received", "2.0.0" if st.esc else None
            )
        )
    return _emit(st, events)


# -- both ------------------------------------------------------------------------------


def _start_body(st: SessionState) -> None:
    st.body_open = True
    st.body_length = 0
    st.rejected = None
    st.unproven = 0


def _feed(st: SessionState, framer: DataFramer | BdatFramer, lines: bool) -> tuple[bytes, int]:
    """
    Give the framer what is buffered; keep what follows the body's end (or
    the chunk's), and count the progress (see L{BODY_PROGRESS}).
    """
    buf = st.buf
    pos = st.pos
    chunk = buf[pos:] if pos else buf
    body, end = framer.feed(chunk)
    st.buf = chunk[end:] if end >= 0 else b""
    st.pos = 0
    if end >= 0:
        _advanced(st)
    else:
        _received(st, chunk, lines)
    return body, end


def _advanced(st: SessionState) -> None:
    """The body (or a BDAT chunk) ended: progress."""
    st.progress += 1
    st.unproven = 0


def _received(st: SessionState, chunk: bytes, lines: bool) -> None:
    """
    Body bytes that do not end it: progress once they add up to
    L{BODY_PROGRESS}, or (in DATA, C{lines}) when they end a line.
    """
    n = st.unproven + len(chunk)
    if n >= BODY_PROGRESS or (lines and b"\n" in chunk):
        st.progress += 1
        n = 0
    st.unproven = n


def _reject(st: SessionState, ev: BodyRejected) -> BodyRejected:
    st.rejected = ev
    return ev


def _body_piece(st: SessionState, body: bytes, bare: bool, events: list[Any]) -> None:
    """Account for released body bytes; emit them unless refused."""
    st.body_length += len(body)
    if st.rejected is not None:
        return
    cfg = st.cfg
    if bare:
        events.append(_reject(st, _bare_rejection()))
    elif cfg.reject_oversized and st.body_length > cfg.size_limit:
        events.append(_reject(st, _size_rejection(cfg.size_limit)))
    elif cfg.data_hook:
        events.append(body)


def _emit(st: SessionState, events: list[Any]) -> Any:
    """The first event of a step; the others wait in C{queued}."""
    if not events:
        return None
    if len(events) > 1:
        if st.queued is None:
            st.queued = events[1:]
        else:
            st.queued.extend(events[1:])
    return events[0]


def _finish_body(st: SessionState) -> DataEnd:
    st.body_open = False
    st.pause_for(DATA_ANSWER)
    return DataEnd(st.body_length, st.rejected)


def data_answered(
    st: SessionState, results: Sequence[SMTPError | str | None]
) -> str:
    """
    The application's results for the body that ended: queue the final
    reply (one per recipient in LMTP), end the transaction, and return
    the reply codes sent, C{;}-separated (for the transaction log).
    """
    if st.phase != WAIT or st.wait != DATA_ANSWER:
        st.expect(DATA_ANSWER)  # raises: no body has ended
    st.phase = COMMAND
    st.wait = NOTHING
    rejected = st.rejected
    lmtp = st.cfg.lmtp
    if rejected is not None:
        n = len(st.session.envelope.rcpt_to) if lmtp else 1
        results = [rejected.error] * n
    elif len(results) != 1 or lmtp:
        results = fit_results(results, lmtp, len(st.session.envelope.rcpt_to))
    order = st.rcpt_order
    if order is not None:
        # A recipient given twice (LMTP): its result once per RCPT, in order.
        results = [results[i] for i in order]
    if len(results) == 1:
        result = results[0]
        if result is None and not lmtp:
            st.out.append(R.MESSAGE_QUEUED[st.esc])  # the common case
            code = "250"
        else:
            code = _answer(st, result, lmtp)
    else:
        code = ";".join([_answer(st, result, lmtp) for result in results])
    st.end_transaction()
    return code


def _answer(st: SessionState, result: SMTPError | str | None, lmtp: bool) -> str:
    """Queue one final reply; its code."""
    if result is None:
        st.out.append((R.MESSAGE_ACCEPTED if lmtp else R.MESSAGE_QUEUED)[st.esc])
        return "250"
    if isinstance(result, SMTPError):
        st.app_error(result, 450, "LMTP" if lmtp else "DATA")
        return str(result.code or 450)
    st.out.append(format_reply(250, str(result), "2.6.0" if st.esc else None))
    return "250"
