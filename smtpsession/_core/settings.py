# -*- test-case-name: tests.unit.test_connection -*-
"""
L{CoreConfig}: what one server configuration fixes for the core, computed
once per listener and shared by every connection made with it.

An idle client then carries one reference instead of fifteen fields, and
no connection repeats the work of deciding what the options mean (which
mechanisms AUTH can offer, which verbs are disabled, which hooks exist).
The driver builds one with L{smtpsession._core.machine.configure}.
"""

from __future__ import annotations

from typing import Any

from smtpsession.options import SMTPServerOptions

__all__ = ["CoreConfig"]


class CoreConfig:
    """
    The options as the core reads them, plus what the driver knows about
    the listener: whether STARTTLS can be offered, whether credentials can
    be checked, and which hooks the application really has (without one
    there is nobody to ask, so the core answers at once and emits no
    event).
    """

    __slots__ = (
        "options",
        "name",
        "lmtp",
        "max_line",
        "lenient_endings",
        "lenient_addresses",
        "size_limit",
        "check_size",
        "reject_oversized",
        "max_rcpt",
        "max_transactions",
        "max_auth_failures",
        "pregreet",
        "tls_available",
        "disabled",
        "chunking",
        "rrvs",
        "deliverby",
        "mt_priority",
        "auth_enabled",
        "auth_required",
        "mail_hook",
        "rcpt_hook",
        "data_hook",
        "helo_hook",
        "vrfy_hook",
        "expn_hook",
        "rset_hook",
        "commands",
    )

    def __init__(
        self,
        options: SMTPServerOptions,
        *,
        tls_available: bool,
        auth_enabled: bool,
        disabled: frozenset[bytes],
        mechanisms: frozenset[str],
        mail_hook: bool,
        rcpt_hook: bool,
        data_hook: bool,
        helo_hook: bool = False,
        vrfy_hook: bool = False,
        expn_hook: bool = False,
        rset_hook: bool = False,
    ) -> None:
        auth_enabled = (
            auth_enabled
            and b"AUTH" not in disabled
            and any(m in mechanisms for m in options.auth_methods)
        )
        self.options = options
        self.name: str = options.name
        self.lmtp: bool = options.lmtp
        self.max_line: int = options.max_command_length
        self.lenient_endings: bool = options.lenient_line_endings
        self.lenient_addresses: bool = options.lenient_address_parsing
        self.size_limit: int = options.size
        #: MAIL's SIZE parameter is compared with the limit.
        self.check_size: bool = options.size > 0 and not options.hide_size
        self.reject_oversized: bool = options.reject_oversized and options.size > 0
        self.max_rcpt: int = options.max_recipients
        self.max_transactions: int = options.max_transactions
        self.max_auth_failures: int = options.max_auth_failures
        #: Early talkers are bots to refuse for good (554), not clients to
        #: tell off (421).
        self.pregreet: bool = options.pregreet_delay > 0
        self.tls_available = tls_available
        self.disabled = disabled
        self.chunking: bool = not options.hide_chunking and b"BDAT" not in disabled
        #: The extensions that are off unless C{options.enable} lists them.
        self.rrvs: bool = "RRVS" in options.enable
        self.deliverby: bool = "DELIVERBY" in options.enable
        self.mt_priority: bool = "MT-PRIORITY" in options.enable
        self.auth_enabled = auth_enabled
        self.auth_required: bool = auth_enabled and not options.auth_optional
        self.mail_hook = mail_hook
        self.rcpt_hook = rcpt_hook
        self.data_hook = data_hook
        #: The optional hooks: without one the core answers HELO/EHLO/LHLO,
        #: VRFY and RSET itself, as it always did, and EXPN stays 502.
        self.helo_hook = helo_hook
        self.vrfy_hook = vrfy_hook
        self.expn_hook = expn_hook
        self.rset_hook = rset_hook
        #: verb → L{smtpsession._core.machine.Verb}, filled in by C{configure}.
        self.commands: dict[bytes, Any] = {}
