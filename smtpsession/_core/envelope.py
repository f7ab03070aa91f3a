# -*- test-case-name: tests.unit.test_connection,tests.unit.test_fast_paths -*-
"""
MAIL and RCPT: the envelope of a transaction, and the application's
answers to them.

Each command has two parsers that give the same answers: a fast path for
the shapes real clients send with nearly every message (an ASCII
dot-atom address at a host name; for MAIL, at most C{BODY=7BIT|8BITMIME}
and C{SIZE=n}), one regular expression; and the general parser for
everything else (quoted local parts, source routes, IP literals, UTF-8,
DSN and AUTH parameters).  A non-ASCII mailbox never matches the fast
path, so the RFC 6531 rules (C{553 5.6.7} without C{SMTPUTF8}, IDNA
domains) cost an ASCII command nothing.  L{mail} and L{rcpt} are the fast paths: they
hand the line to the general parser (L{slow_mail}, L{slow_rcpt}, or the
C{general} given to them) whenever they are not sure, and it decides (and
words the refusal).  C{tests/unit/test_fast_paths.py} runs both on the
same lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from smtpsession._core import replies as R
from smtpsession._core.addresses import (
    MAX_ADDRESS_OCTETS,
    MAX_LABEL_OCTETS,
    AddressError,
    check_mailbox,
    split_path,
)
from smtpsession._core.events import MailFrom, RcptTo
from smtpsession._core.params import (
    ParamError,
    is_xtext,
    parse_by,
    parse_params,
    parse_priority,
    parse_rrvs,
)
from smtpsession._core.state import (
    COMMAND,
    MAIL_ANSWER,
    NOTHING,
    RCPT_ANSWER,
    WAIT,
    SessionState,
)
from smtpsession.errors import SMTPError
from smtpsession.session import RRVS, Address, DeliverBy, EnvelopeDSN, RecipientDSN

__all__ = ["mail", "rcpt", "slow_mail", "slow_rcpt", "mail_answered", "rcpt_answered"]

#: A command's function (the general parsers, or what a test puts instead).
Command = Callable[[SessionState, bytes], Any]

_SIZE = re.compile(r"[0-9]{1,20}\Z")
_NOTIFY_VALUES = frozenset(["SUCCESS", "FAILURE", "DELAY"])
_ORCPT = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*;.+\Z", re.DOTALL)

# The common shapes of MAIL and RCPT (ASCII dot-atom @ host name) in one
# regular expression each, so the usual command costs one match.
_ATOM = rb"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# Labels without a length bound: a bound made the pattern backtrack (twice
# the time); _fast_ok measures them instead, and only in long mailboxes.
_LABEL = rb"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"
_PLAIN_MAILBOX = _ATOM + rb"(?:\." + _ATOM + rb")*@" + _LABEL + rb"(?:\." + _LABEL + rb")*"
# MAIL may carry the two parameters real clients send with nearly every
# message (BODY=8BITMIME, SIZE=n); others take the general parser.
_FAST_FROM = re.compile(
    rb"(?i:from): ?<("
    + _PLAIN_MAILBOX
    + rb")>((?: (?:[Bb][Oo][Dd][Yy]=(?:7[Bb][Ii][Tt]|8[Bb][Ii][Tt][Mm][Ii][Mm][Ee])"
    + rb"|[Ss][Ii][Zz][Ee]=[0-9]{1,20})){0,2})\Z"
)
_FAST_TO = re.compile(rb"(?i:to): ?<(" + _PLAIN_MAILBOX + rb")>\Z")
#: The longest mailbox that cannot hold a label over 63 octets ("a@" + 63):
#: only a longer one has its labels measured on the fast path.
_SHORT_MAILBOX = 2 + MAX_LABEL_OCTETS


def _fast_ok(mailbox: bytes) -> bool:
    """Whether the fast path may take a mailbox its pattern matched."""
    n = len(mailbox)
    if n <= _SHORT_MAILBOX:
        return True
    if n > MAX_ADDRESS_OCTETS:
        return False
    domain = mailbox[mailbox.rindex(b"@") + 1 :]
    return all(len(label) <= MAX_LABEL_OCTETS for label in domain.split(b"."))


def _path_argument(arg: bytes, keyword: bytes) -> str | None:
    """The text after ``FROM:``/``TO:``, or None on a syntax error."""
    n = len(keyword)
    if arg[:n].upper() != keyword:
        return None
    try:
        return arg[n:].decode("utf-8").lstrip(" ")
    except UnicodeDecodeError:
        return None


def _param_error(st: SessionState, e: ParamError, syntax: R.Pair) -> None:
    if e.kind == "duplicate":
        st.error(R.pair(501, f"Error: duplicate {e.key} parameter"))
    elif e.kind == "novalue":
        st.error(R.pair(501, f"Error: {e.key} parameter requires a value"))
    else:
        st.error(syntax)


# -- MAIL ------------------------------------------------------------------------------


def slow_mail(st: SessionState, arg: bytes) -> Any:
    """MAIL in any shape: the general parser."""
    cfg = st.cfg
    text = _path_argument(arg, b"FROM:")
    if text is None:
        st.error(R.BAD_SENDER)
        return None
    try:
        path, rest = split_path(text)
        address = "" if path == "" else check_mailbox(path, lenient=cfg.lenient_addresses)
    except AddressError:
        st.error(R.BAD_SENDER)
        return None
    try:
        args, raw = parse_params(rest)
    except ParamError as e:
        _param_error(st, e, R.BAD_SENDER)
        return None
    if st.in_transaction:
        st.error(R.NESTED_MAIL)
        return None
    s = st.session
    size = args.get("SIZE")
    if size is not None:
        if not isinstance(size, str) or _SIZE.match(size) is None:
            st.error(R.BAD_SIZE)
            return None
        if cfg.check_size and int(size) > cfg.size_limit:
            st.error(R.too_big(cfg.size_limit))
            return None
    body_type = "7bit"
    body = args.get("BODY")
    if body is not None:
        b = str(body).upper()
        if b == "7BIT":
            body_type = "7bit"
        elif b == "8BITMIME":
            body_type = "8bitmime"
        elif b == "BINARYMIME" and cfg.chunking:
            body_type = "binarymime"
        else:
            st.error(R.BAD_BODY_NO_CHUNKING if cfg.options.hide_chunking else R.BAD_BODY)
            return None
    smtp_utf8 = False
    if "SMTPUTF8" in args:
        if args["SMTPUTF8"] is not True:
            st.error(R.BAD_SMTPUTF8)
            return None
        smtp_utf8 = True
    elif not address.isascii():
        # RFC 6531 §3.4: a UTF-8 mailbox only in a transaction that says so.
        st.error(R.NOT_ASCII_WITHOUT_SMTPUTF8)
        return None
    require_tls = False
    if "REQUIRETLS" in args:
        if not s.secure:
            st.error(R.REQUIRETLS_CLEARTEXT)
            return None
        if args["REQUIRETLS"] is not True:
            st.error(R.BAD_REQUIRETLS)
            return None
        require_tls = True
    dsn = None
    if not cfg.options.hide_dsn and ("RET" in args or "ENVID" in args):
        dsn = EnvelopeDSN()
        ret = args.get("RET")
        if ret is not None:
            r = str(ret).upper()
            if r not in ("FULL", "HDRS"):
                st.error(R.BAD_RET)
                return None
            dsn.ret = r
            args["RET"] = r
        envid = args.get("ENVID")
        if envid is not None:
            if not is_xtext(raw["ENVID"]) or len(raw["ENVID"]) > 100:
                st.error(R.BAD_ENVID)
                return None
            dsn.envid = str(envid)
    if "AUTH" in args:
        # RFC 4954 §5: the value is xtext; "<>" means "unknown sender".
        if not is_xtext(raw["AUTH"]):
            st.error(R.BAD_AUTH_PARAM)
            return None
        if s.user is None:
            # "...if the client is not authenticated, then the server
            # MUST behave as if the AUTH=<> parameter was supplied."
            args["AUTH"] = "<>"
    deliver_by = None
    by = args.get("BY")
    if by is not None:
        # RFC 2852 (DELIVERBY), when enabled.
        if not cfg.deliverby:
            st.error(R.BY_NOT_ENABLED)
            return None
        parsed = parse_by(by) if isinstance(by, str) else None
        if parsed is None:
            st.error(R.BAD_BY)
            return None
        if parsed[1] == "R" and parsed[0] <= 0:
            st.error(R.BY_NOT_POSITIVE)  # already too late to deliver
            return None
        deliver_by = DeliverBy(*parsed)
    priority = None
    mt_priority = args.get("MT-PRIORITY")
    if mt_priority is not None:
        # RFC 6710 (MT-PRIORITY), when enabled.
        if not cfg.mt_priority:
            st.error(R.MT_PRIORITY_NOT_ENABLED)
            return None
        priority = parse_priority(mt_priority) if isinstance(mt_priority, str) else None
        if priority is None:
            st.error(R.BAD_MT_PRIORITY)
            return None
    addr = Address(address, args)
    st.pending_mail = (addr, body_type, smtp_utf8, require_tls, dsn, deliver_by, priority)
    return _ask_mail(st, addr)


def mail(st: SessionState, arg: bytes, general: Command = slow_mail) -> Any:
    """MAIL: its common shape here, anything else by C{general}, with the same answers."""
    limit = st.cfg.max_transactions
    if limit and st.session.transaction > limit:
        st.close_with(R.TOO_MANY_TRANSACTIONS)
        return None
    m = _FAST_FROM.match(arg)
    if m is None or not _fast_ok(m.group(1)):
        return general(st, arg)
    if st.session.envelope.mail_from is not None or st.body_open:
        st.error(R.NESTED_MAIL)
        return None
    params = m.group(2)
    args: dict[str, Any] = {}
    body_type = "7bit"
    if params:
        for item in params[1:].split(b" "):
            key, _, value = item.partition(b"=")
            name = key.decode("ascii").upper()
            if name in args:
                return general(st, arg)  # a repeated parameter: the parser says why
            args[name] = value.decode("ascii")
        size = args.get("SIZE")
        if size is not None and st.cfg.check_size and int(size) > st.cfg.size_limit:
            return general(st, arg)  # the parser words the refusal
        if args.get("BODY", "").upper() == "8BITMIME":
            body_type = "8bitmime"
    addr = Address(m.group(1).decode("ascii"), args)
    st.pending_mail = (addr, body_type, False, False, None, None, None)
    return _ask_mail(st, addr)


def _ask_mail(st: SessionState, addr: Address) -> MailFrom | None:
    """Wait for the application's verdict, or accept at once if it has no hook."""
    st.phase = WAIT
    st.wait = MAIL_ANSWER
    if not st.cfg.mail_hook:
        mail_answered(st, None)
        return None
    return MailFrom(addr)


def mail_answered(st: SessionState, error: SMTPError | None) -> None:
    """The verdict on the pending MAIL: C{None} accepts."""
    if st.phase != WAIT or st.wait != MAIL_ANSWER:
        st.expect(MAIL_ANSWER)  # raises: no MAIL is pending
    st.phase = COMMAND
    st.wait = NOTHING
    pending = st.pending_mail
    st.pending_mail = None
    assert pending is not None
    if error is not None:
        st.app_error(error, 550, "MAIL")
        st.after_answer()
        return
    address, body_type, smtp_utf8, require_tls, dsn, deliver_by, priority = pending
    env = st.session.envelope
    env.mail_from = address
    env.body_type = body_type
    env.smtp_utf8 = smtp_utf8
    env.require_tls = require_tls
    if smtp_utf8:
        st.update_transmission_type(utf8=True)  # UTF8SMTP...: until the transaction ends
    if dsn is not None:
        env.dsn = dsn
    if deliver_by is not None:
        env.deliver_by = deliver_by
    if priority is not None:
        env.priority = priority
    st.out.append(R.MAIL_OK[st.esc])


# -- RCPT ------------------------------------------------------------------------------


def slow_rcpt(st: SessionState, arg: bytes) -> Any:
    """RCPT in any shape: the general parser."""
    text = _path_argument(arg, b"TO:")
    if text is None:
        st.error(R.BAD_RECIPIENT)
        return None
    try:
        path, rest = split_path(text)
        if path.lower() == "postmaster":
            address = path
        elif path == "":
            raise AddressError("null recipient")
        else:
            address = check_mailbox(path, lenient=st.cfg.lenient_addresses)
    except AddressError:
        st.error(R.BAD_RECIPIENT)
        return None
    try:
        args, raw = parse_params(rest)
    except ParamError as e:
        _param_error(st, e, R.BAD_RECIPIENT)
        return None
    if _rcpt_out_of_order(st):
        return None
    if not address.isascii() and not st.session.envelope.smtp_utf8:
        st.error(R.NOT_ASCII_WITHOUT_SMTPUTF8)  # RFC 6531 §3.4, as for MAIL
        return None
    dsn = None
    if not st.cfg.options.hide_dsn:
        notify = args.get("NOTIFY")
        orcpt = args.get("ORCPT")
        if notify is not None or orcpt is not None:
            dsn = RecipientDSN()
        if notify is not None:
            values = [v.strip().upper() for v in str(notify).split(",")]
            if "NEVER" in values:
                if len(values) > 1:
                    st.error(R.NOTIFY_NEVER)
                    return None
            elif not values or any(v not in _NOTIFY_VALUES for v in values):
                st.error(R.BAD_NOTIFY)
                return None
            assert dsn is not None
            dsn.notify = tuple(values)
        if orcpt is not None:
            if _ORCPT.match(str(orcpt)) is None or not is_xtext(raw["ORCPT"].split(";", 1)[1]):
                st.error(R.BAD_ORCPT)
                return None
            assert dsn is not None
            dsn.orcpt = str(orcpt)
    rrvs = None
    value = args.get("RRVS")
    if value is not None:
        # RFC 7293 (RRVS), when enabled: checking the mailbox's age is the
        # handler's (550 5.7.17 from on_rcpt_to).
        if not st.cfg.rrvs:
            st.error(R.RRVS_NOT_ENABLED)
            return None
        parsed = parse_rrvs(value) if isinstance(value, str) else None
        if parsed is None:
            st.error(R.BAD_RRVS)
            return None
        rrvs = RRVS(*parsed)
    if _rcpt_over_limit(st, address):
        return None
    return _ask_rcpt(st, Address(address, args, dsn, rrvs))


def rcpt(st: SessionState, arg: bytes, general: Command = slow_rcpt) -> Any:
    """RCPT: its common shape here, anything else by C{general}, with the same answers."""
    m = _FAST_TO.match(arg)
    if m is None or not _fast_ok(m.group(1)):
        return general(st, arg)
    address = m.group(1).decode("ascii")
    if _rcpt_out_of_order(st) or _rcpt_over_limit(st, address):
        return None
    return _ask_rcpt(st, Address(address))


def _rcpt_out_of_order(st: SessionState) -> bool:
    """RCPT needs a MAIL and no started BDAT; replies if not."""
    if st.session.envelope.mail_from is None:
        st.error(R.NEED_MAIL)
    elif st.body_open:
        st.error(R.RCPT_AFTER_BDAT)
    else:
        return False
    return True


def _rcpt_over_limit(st: SessionState, address: str) -> bool:
    """A new address needs room under max_recipients; replies if not."""
    limit = st.cfg.max_rcpt
    if (
        limit
        and len(st.session.envelope.rcpt_to) >= limit
        and address.lower() not in (st.rcpt_index or ())
    ):
        st.error(R.TOO_MANY_RECIPIENTS)
        return True
    return False


def _ask_rcpt(st: SessionState, addr: Address) -> RcptTo | None:
    """Wait for the application's verdict, or accept at once if it has no hook."""
    st.pending_rcpt = addr
    st.phase = WAIT
    st.wait = RCPT_ANSWER
    if not st.cfg.rcpt_hook:
        rcpt_answered(st, None)
        return None
    return RcptTo(addr)


def rcpt_answered(st: SessionState, error: SMTPError | None) -> None:
    """The verdict on the pending RCPT: C{None} accepts."""
    if st.phase != WAIT or st.wait != RCPT_ANSWER:
        st.expect(RCPT_ANSWER)  # raises: no RCPT is pending
    st.phase = COMMAND
    st.wait = NOTHING
    address = st.pending_rcpt
    st.pending_rcpt = None
    assert address is not None
    if error is not None:
        st.app_error(error, 550, "RCPT")
        return
    rcpts = st.session.envelope.rcpt_to
    key = address.address.lower()
    index = st.rcpt_index
    if index is None:
        index = st.rcpt_index = {}
    i = index.get(key)
    order = st.rcpt_order
    if i is None:
        index[key] = len(rcpts)
        if order is not None:
            order.append(len(rcpts))
        rcpts.append(address)
    else:
        # The envelope holds each address once (the handler delivers once);
        # LMTP still owes this RCPT a reply of its own after the body.
        rcpts[i] = address
        if st.cfg.lmtp:
            if order is None:
                order = st.rcpt_order = list(range(len(rcpts)))
            order.append(i)
    st.out.append(R.RCPT_OK[st.esc])

