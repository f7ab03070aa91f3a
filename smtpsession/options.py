# -*- test-case-name: tests.unit.test_options -*-
"""
L{SMTPServerOptions}: every knob of the server in one frozen value.

Names follow nodemailer's smtp-server options in snake_case.  The object is
frozen because one instance is shared by every connection of a factory; the
core copies what it needs into locals at connection start.  Each field's
``metadata`` carries the twistd flag and help text, so the daemon's flags and
the docs' option table are generated from this one place (see
C{smtpsession.tap} and C{docs/reference/options.rst}).

This module is stdlib-only so that the sans-IO core can read it.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SMTPServerOptions", "KNOWN_AUTH_METHODS", "COMMANDS", "OPTIONAL_EXTENSIONS"]

#: The SASL mechanisms the server implements.
KNOWN_AUTH_METHODS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2")

#: Every command verb the server implements (used to validate
#: C{disabled_commands}).
COMMANDS = (
    "HELO",
    "EHLO",
    "LHLO",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    "RSET",
    "NOOP",
    "QUIT",
    "HELP",
    "VRFY",
    "STARTTLS",
    "AUTH",
    "XCLIENT",
    "XFORWARD",
)

#: The extensions that are off unless listed in C{enable}.
OPTIONAL_EXTENSIONS = ("RRVS", "DELIVERBY", "MT-PRIORITY")

_HIDEABLE = (
    "PIPELINING",
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    "DSN",
    "SIZE",
    "STARTTLS",
    "REQUIRETLS",
    "CHUNKING",
    "LIMITS",
)


def _opt(default: Any, flag: str | None, help: str, **kw: Any) -> Any:
    """A dataclass field that also records its twistd flag and help text."""
    md = {"flag": flag, "help": help}
    if callable(default) and not isinstance(default, (bool, int, float, str)):
        return field(default_factory=default, metadata=md, **kw)
    return field(default=default, metadata=md, **kw)


@dataclass(frozen=True)
class SMTPServerOptions:
    """
    Configuration of an L{smtpsession.SMTPServerFactory}.

    All arguments are keyword arguments with production defaults; see
    C{docs/reference/options.rst} for the full table.  Invalid values raise
    C{ValueError} or C{TypeError} here, at construction, not at the first
    connection.
    """

    # --- identity and greeting -------------------------------------------
    name: str = _opt(
        socket.gethostname,
        "hostname",
        "Server host name used in the greeting and replies.",
    )
    banner: str = _opt("", "banner", "Text appended to the 220 greeting.")
    helo_response: str = _opt(
        "{name} Nice to meet you, {client_hostname}",
        "helo-response",
        "First line of the HELO/EHLO/LHLO reply; {name} and "
        "{client_hostname} are replaced.",
    )
    lmtp: bool = _opt(False, "lmtp", "Speak LMTP (RFC 2033) instead of SMTP.")

    # --- TLS ---------------------------------------------------------------
    secure: bool = _opt(
        False,
        "secure",
        "Implicit TLS: handshake before the greeting (port 465 style).",
    )
    secured: bool = _opt(
        False,
        "secured",
        "TLS is terminated in front of this server; report sessions as secure.",
    )
    needs_upgrade: bool = _opt(
        False,
        None,
        "With secure: accept plain TCP and start TLS in the protocol "
        "(for endpoints that cannot do TLS themselves).",
    )
    tls_cert: str | None = _opt(
        None,
        "tls-cert",
        "PEM file with the certificate and its chain (may also hold the key); "
        "enables STARTTLS. Re-read when it changes.",
    )
    tls_key: str | None = _opt(
        None, "tls-key", "PEM file with the private key (default: the tls-cert file)."
    )
    tls_ca: str | None = _opt(
        None, "tls-ca", "PEM file of CAs that client certificates must chain to."
    )
    tls_sni_dir: str | None = _opt(
        None,
        "tls-sni-dir",
        "Directory of .pem files (private key + certificate chain each), "
        "served by SNI for the DNS names in each certificate; rescanned "
        "every few seconds.",
    )
    sni_options: Mapping[str, Any] | None = _opt(
        None,
        None,
        "Map of server name (wildcards: *.example.com) to a PEM path with key "
        "and chain, a (cert, key) pair of paths, or a pyOpenSSL context.",
    )
    tls_context: Any = _opt(
        None,
        None,
        "A ready pyOpenSSL context factory (e.g. twisted CertificateOptions) "
        "used instead of tls_cert/tls_key.",
    )
    request_cert: bool = _opt(
        False, "tls-request-cert", "Ask clients for a certificate."
    )
    reject_unauthorized: bool = _opt(
        False,
        "tls-require-cert",
        "Refuse clients without a certificate that verifies against tls-ca "
        "(implies tls-request-cert).",
    )
    tls_handshake_timeout: float = _opt(
        10.0, "tls-handshake-timeout", "Seconds a TLS handshake may take."
    )
    tls_min_version: str = _opt(
        "TLSv1.2", "tls-min-version",
        "Lowest TLS version accepted: TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3.",
    )
    tls_ciphers: str | None = _opt(
        None,
        "tls-ciphers",
        "OpenSSL cipher string for TLS 1.2 and older (default: OpenSSL's).",
    )
    hide_starttls: bool = _opt(
        False, None, "Do not advertise STARTTLS (it still works)."
    )
    hide_requiretls: bool = _opt(
        True, None, "Do not advertise REQUIRETLS on TLS sessions."
    )

    # --- authentication -----------------------------------------------------
    auth_methods: Sequence[str] = _opt(
        ("PLAIN", "LOGIN"),
        "auth-methods",
        "SASL mechanisms offered, comma separated "
        "(PLAIN, LOGIN, CRAM-MD5, XOAUTH2).",
    )
    auth_optional: bool = _opt(
        False, "auth-optional", "Offer AUTH but do not require it."
    )
    allow_insecure_auth: bool = _opt(
        False, "allow-insecure-auth", "Allow AUTH on connections without TLS."
    )
    auth_required_message: str = _opt(
        "Error: authentication Required",
        None,
        "Text of the 530 reply to mail commands before AUTH.",
    )
    max_allowed_unauthenticated_commands: int | None = _opt(
        10,
        "max-unauthenticated-commands",
        "Commands allowed before AUTH when AUTH is required (0: no limit).",
    )
    credentials_checker: Any = _opt(
        None,
        None,
        "A twisted.cred ICredentialsChecker for PLAIN/LOGIN (and CRAM-MD5 "
        "when it can check hashed passwords).",
    )

    # --- capability hiding ----------------------------------------------------
    hide_pipelining: bool = _opt(False, None, "Do not advertise PIPELINING.")
    hide_8bitmime: bool = _opt(False, None, "Do not advertise 8BITMIME.")
    hide_smtputf8: bool = _opt(False, None, "Do not advertise SMTPUTF8.")
    hide_enhancedstatuscodes: bool = _opt(
        False,
        None,
        "Do not advertise or send RFC 3463 enhanced status codes.",
    )
    hide_dsn: bool = _opt(False, None, "Do not advertise or validate DSN.")
    hide_size: bool = _opt(
        False, None, "Advertise SIZE without a number and skip the MAIL check."
    )
    hide_chunking: bool = _opt(False, None, "Do not advertise CHUNKING.")
    hide_limits: bool = _opt(
        False,
        None,
        "Do not advertise LIMITS (RFC 9422: RCPTMAX from max_recipients, MAILMAX "
        "from max_transactions, each when set); the limits still apply.",
    )

    # --- optional extensions ------------------------------------------------
    enable: Sequence[str] = _opt(
        (),
        "enable",
        "Extensions that are off by default to turn on, comma separated: RRVS "
        "(RFC 7293), DELIVERBY (RFC 2852), MT-PRIORITY (RFC 6710).  Each is then "
        "advertised and its parameter validated and put on the envelope; while "
        "off, its parameter gets 555 5.5.4.",
    )

    # --- commands, limits, sizes -------------------------------------------
    disabled_commands: Sequence[str] = _opt(
        (), "disable-command", "Commands to refuse as unknown (repeatable)."
    )
    size: int = _opt(
        10 * 1024 * 1024,
        "size",
        "Largest message in bytes, advertised with SIZE (0: no limit).  The "
        "default, 10 MiB, is Postfix's.",
    )
    reject_oversized: bool = _opt(
        True,
        "no-reject-oversized",
        "Turn off the size check of the core and let the handler decide "
        "(stream.size_exceeded); by default a message larger than size gets "
        "552 whatever the handler says, and a BDAT chunk that would go over it "
        "is refused and the session closed.",
    )
    max_recipients: int = _opt(
        1000,
        "max-recipients",
        "Recipients per message (0: no limit), advertised as LIMITS RCPTMAX "
        "(RFC 9422).  The default bounds the memory one transaction can take, "
        "as Postfix's smtpd_recipient_limit does.",
    )
    max_clients: int = _opt(
        0, "max-clients", "Concurrent connections (0: no limit)."
    )
    max_command_length: int = _opt(
        16384, "max-command-length", "Longest command line in bytes."
    )
    max_unrecognized_commands: int = _opt(
        10,
        "max-unrecognized-commands",
        "Unknown commands after which the connection is closed with 421.",
    )
    socket_timeout: float = _opt(
        60.0, "socket-timeout", "Idle seconds before 421 and close."
    )
    close_timeout: float = _opt(
        30.0,
        "close-timeout",
        "Seconds open transactions may take to finish on shutdown.",
    )
    session_timeout: float = _opt(
        1800.0,
        "session-timeout",
        "Seconds a session may last in all, whatever the client sends (0: no "
        "limit); then 421 and close.  Bounds clients that trickle bytes.",
    )
    data_timeout: float = _opt(
        600.0,
        "data-timeout",
        "Seconds a message body may take to arrive, from DATA (or the first "
        "BDAT) to its end (0: no limit); then 421 and close.",
    )
    hook_timeout: float = _opt(
        30.0,
        "hook-timeout",
        "Seconds a hook (with the filters in front of it) may take to answer; "
        "then it is cancelled and the client gets 451 4.3.0 (on_connect: 421). "
        "For on_data, counted from the end of the body. 0: no limit (the idle "
        "socket timeout still runs while a hook is pending).",
    )
    lenient_address_parsing: bool = _opt(
        False,
        "lenient-address-parsing",
        "Accept addresses that break RFC 5321 syntax (e.g. user.@host).",
    )
    lenient_line_endings: bool = _opt(
        False,
        "lenient-line-endings",
        "Accept bare CR or LF in commands and message bodies "
        "(rejected by default: SMTP smuggling).",
    )

    # --- per-client limits ---------------------------------------------------
    max_connections_per_ip: int = _opt(
        50,
        "max-connections-per-ip",
        "Concurrent connections from one client address (the proxied address "
        "behind PROXY); one more gets 421 4.7.0 (0: no limit).  Postfix's "
        "default; limits-exempt networks are not counted.",
    )
    limits_exempt: Sequence[str] = _opt(
        ("127.0.0.0/8", "::1"),
        "limits-exempt",
        "Networks (CIDR,...) not subject to max-connections-per-ip: local "
        "clients (a local MTA, health checks, load generators).",
    )
    max_auth_failures: int = _opt(
        5,
        "max-auth-failures",
        "Failed AUTH attempts on one connection; the last is answered 421 4.7.0 "
        "and the connection closed (0: no limit).",
    )
    auth_failure_delay: float = _opt(
        1.0,
        "auth-failure-delay",
        "Seconds each failed AUTH waits before its reply (a tarpit for "
        "password guessing; 0: none).",
    )
    max_transactions: int = _opt(
        0,
        "max-transactions",
        "Transactions on one connection; the next MAIL gets 421 4.7.0 and the "
        "connection is closed (0: no limit).  Advertised as LIMITS MAILMAX "
        "(RFC 9422).",
    )
    pregreet_delay: float = _opt(
        0.0,
        "pregreet-delay",
        "Seconds to wait before the greeting; a client that talks first gets "
        "554 5.5.1 and is closed (as Postfix's postscreen; 0: off).",
    )

    # --- logging ------------------------------------------------------------
    transaction_log: bool = _opt(
        True,
        "no-transaction-log",
        "Turn off the transaction log (by default one line per transaction: "
        "sender, recipients, size, result, duration; connections at debug "
        "level).",
    )

    # --- network identity, proxies ------------------------------------------
    disable_reverse_lookup: bool = _opt(
        False, "no-reverse-lookup", "Do not look up the client's PTR name."
    )
    resolver: Any = _opt(
        None,
        None,
        "A twisted IResolver for PTR lookups (default: twisted.names).",
    )
    use_proxy: bool | Sequence[str] = _opt(
        False,
        "proxy-protocol",
        "Expect a HAProxy PROXY v1/v2 header before the greeting (from every "
        "peer, or only from the trusted networks).",
    )
    ignored_hosts: Sequence[str] = _opt(
        (),
        "ignored-hosts",
        "Peers or networks (CIDR,...), e.g. health checkers, whose connections "
        "and transactions are not logged.",
    )
    use_xclient: bool | Sequence[str] = _opt(
        False,
        "xclient",
        "Enable Postfix XCLIENT (for every peer, or only the trusted networks).",
    )
    use_xforward: bool | Sequence[str] = _opt(
        False,
        "xforward",
        "Enable Postfix XFORWARD (for every peer, or only the trusted networks).",
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "bool" and not isinstance(v, bool):
                raise TypeError(f"{f.name} must be a bool, not {v!r}")
        if not self.name or any(c in self.name for c in "\r\n\0 "):
            raise ValueError(f"name must be a host name, not {self.name!r}")
        if any(c in self.banner for c in "\r\n\0"):
            raise ValueError("banner must be a single line")
        methods = tuple(m.strip().upper() for m in _as_seq(self.auth_methods))
        for m in methods:
            if m not in KNOWN_AUTH_METHODS:
                raise ValueError(
                    f"unknown auth method {m!r}; known: "
                    + ", ".join(KNOWN_AUTH_METHODS)
                )
        set_(self, "auth_methods", tuple(dict.fromkeys(methods)))
        disabled = tuple(c.strip().upper() for c in _as_seq(self.disabled_commands))
        set_(self, "disabled_commands", disabled)
        enable = tuple(dict.fromkeys(e.strip().upper() for e in _as_seq(self.enable)))
        for ext in enable:
            if ext not in OPTIONAL_EXTENSIONS:
                raise ValueError(
                    f"unknown extension {ext!r} to enable; known: "
                    + ", ".join(OPTIONAL_EXTENSIONS)
                )
        set_(self, "enable", enable)
        for name in (
            "size",
            "max_recipients",
            "max_clients",
            "max_connections_per_ip",
            "max_auth_failures",
            "max_transactions",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {v!r}")
        if self.max_command_length < 512:
            raise ValueError("max_command_length must be at least 512 (RFC 5321)")
        if self.max_unrecognized_commands < 1:
            raise ValueError("max_unrecognized_commands must be at least 1")
        mauc = self.max_allowed_unauthenticated_commands
        if mauc is False or mauc == 0:
            set_(self, "max_allowed_unauthenticated_commands", None)
        elif mauc is not None and (isinstance(mauc, bool) or mauc < 1):
            raise ValueError(
                "max_allowed_unauthenticated_commands must be >= 1, 0 or None"
            )
        for name in ("socket_timeout", "close_timeout", "tls_handshake_timeout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in (
            "hook_timeout",
            "session_timeout",
            "data_timeout",
            "auth_failure_delay",
            "pregreet_delay",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a number of seconds >= 0 (0: no limit)")
        if self.tls_min_version not in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"):
            raise ValueError(f"unknown TLS version {self.tls_min_version!r}")
        for name in ("use_proxy", "use_xclient", "use_xforward"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                set_(self, name, trusted_networks(v))
        set_(self, "ignored_hosts", trusted_networks(self.ignored_hosts))
        set_(self, "limits_exempt", trusted_networks(self.limits_exempt))

    @property
    def hidden_extensions(self) -> frozenset[str]:
        """The upper-case names of the extensions not advertised."""
        return frozenset(
            ext
            for ext in _HIDEABLE
            if getattr(self, "hide_" + ext.lower())
        )

    def replace(self, **changes: Any) -> SMTPServerOptions:
        """A copy with some fields changed (the options are frozen)."""
        return dataclasses.replace(self, **changes)


def _as_seq(v: str | Sequence[str]) -> Sequence[str]:
    """Accept ``"PLAIN,LOGIN"`` as well as ``["PLAIN", "LOGIN"]``."""
    if isinstance(v, str):
        return [p for p in v.split(",") if p.strip()]
    return list(v)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trusted_networks(
    spec: str | Sequence[str | Network],
) -> tuple[Network, ...]:
    """
    Parse a trust list (``"10.0.0.0/8,::1"`` or a list of strings) into
    networks; ``"*"`` means every address.
    """
    out: list[Network] = []
    for item in _as_seq(spec) if isinstance(spec, str) else spec:
        if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            out.append(item)
            continue
        item = str(item).strip()
        if item == "*":
            out.extend(
                [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
            )
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {item!r}") from None
    return tuple(out)


def is_trusted(setting: bool | Sequence[Any], address: str) -> bool:
    """
    Whether a peer address is allowed by a C{use_*} setting: C{True} trusts
    everyone, a tuple of networks trusts its members.
    """
    if setting is True:
        return True
    if not setting:
        return False
    ip = _peer_ip(address)
    return ip is not None and any(ip in net for net in setting)


@functools.lru_cache(maxsize=4096)
def _peer_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    A peer's address as an ip_address object (IPv4-mapped IPv6 as IPv4), or
    C{None} if it is not one.  Remembered for the last 4,096 addresses: a
    connection asks up to five times (limits_exempt, ignored_hosts, PROXY,
    XCLIENT, XFORWARD), and ipaddress's parser cost about 28,000
    instructions per connection for limits_exempt alone (callgrind).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
