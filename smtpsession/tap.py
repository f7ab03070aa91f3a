# -*- test-case-name: tests.unit.test_tap -*-
"""
The C{twistd smtpsession} daemon: its command line and its service.

    twistd -n smtpsession [--port ENDPOINT]... [--handler HANDLER] [options]

The flags that configure the server are generated from the fields of
L{SMTPServerOptions} (each field's metadata carries its flag and help
text), so the daemon and the library cannot drift apart: a new option
with a C{flag} is a new flag.  The daemon adds its own: where to listen
(C{--port}), which handler runs (C{--handler}, C{--handler-option},
C{--maildir}), C{--auth-file}, C{--hide} and the C{*-trusted} lists.

Everything that can be wrong with a command line is found while parsing it,
before twistd daemonizes: a bad value, an endpoint string that does not
parse, a handler that cannot be imported or built, a certificate that cannot
be read.  Each is a one-line C{UsageError}.  A port that cannot be opened is
found when the service starts and is also reported in one line.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.python import usage

from smtpsession import _daemon_log, config
from smtpsession._daemon_service import DaemonService, DaemonSupervisor
from smtpsession._handler_loading import (
    BUILTIN_HANDLERS,
    asyncio_without_its_reactor,
    build_handler,
    load_handler,
    one_line,
)
from smtpsession.options import (
    COMMANDS,
    OPTIONAL_EXTENSIONS,
    SMTPServerOptions,
    trusted_networks,
)
from smtpsession.service import SMTPService, cannot_listen

__all__ = ["BUILTIN_HANDLERS", "Options", "load_handler", "makeService"]

DEFAULT_PORT = "tcp:2525:interface=127.0.0.1"

#: How the daemon names itself in its one-line errors: C{twistd
#: smtpsession}, or C{smtpsession} when run by L{smtpsession.cli}.
PROGRAM = "twistd smtpsession"
DEFAULT_MAILDIR = "./Maildir"
#: The endpoints a supervisor can share with its workers (C{--workers}).
_SHAREABLE = ("tcp", "tcp6", "unix")


# ---------------------------------------------------------------------------
# Flags generated from SMTPServerOptions
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _OptionFlag:
    """One C{SMTPServerOptions} field as a command-line flag."""

    field: str
    flag: str
    #: "switch" (no value; sets the opposite of the default), "trust" (a
    #: switch plus a C{FLAG-trusted} list), "list" (repeatable,
    #: comma-separated), "int", "float" or "str".
    kind: str
    default: Any
    help: str


def _kind(f: dataclasses.Field[Any]) -> str:
    t = str(f.type).replace(" ", "")
    if t == "bool":
        return "switch"
    if t.startswith("bool|"):
        return "trust"
    if t.startswith("Sequence["):
        return "list"
    if t in ("int", "int|None"):
        return "int"
    if t in ("float", "float|None", "int|float"):
        return "float"
    return "str"


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return None  # a default_factory: computed at start-up (e.g. the host name)


def _option_flags() -> list[_OptionFlag]:
    out = []
    for f in dataclasses.fields(SMTPServerOptions):
        flag = f.metadata.get("flag")
        if flag:
            out.append(_OptionFlag(f.name, flag, _kind(f), _default(f), f.metadata.get("help", "")))
    return out


OPTION_FLAGS = _option_flags()


def _hideable() -> dict[str, str]:
    """Extension name (upper case) → its C{hide_*} field."""
    return {
        f.name[len("hide_") :].upper(): f.name
        for f in dataclasses.fields(SMTPServerOptions)
        if f.name.startswith("hide_") and str(f.type) == "bool"
    }


def _coercer(spec: _OptionFlag) -> Callable[[str], Any]:
    """Turn the text of a flag into the option's type, with a clear error."""

    def coerce(text: str) -> Any:
        text = text.strip()
        try:
            if spec.kind == "int":
                value: Any = int(text)
            elif spec.kind == "float":
                value = float(text)
            else:
                value = text
        except ValueError:
            what = "a whole number" if spec.kind == "int" else "a number"
            raise ValueError(f"--{spec.flag} wants {what}, not {text!r}") from None
        if spec.kind in ("int", "float") and value < 0:
            raise ValueError(f"--{spec.flag} cannot be negative ({text})")
        return value

    return coerce


def _choice(flag: str, values: tuple[str, ...]) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text.lower() not in values:
            raise ValueError(f"--{flag} wants one of {', '.join(values)}, not {text!r}")
        return text.lower()

    return check


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _list_handler(key: str, doc: str, check: Callable[[str], list[Any]]) -> Callable[..., None]:
    def handler(self: Options, value: str) -> None:
        self[key].extend(check(value))

    handler.__doc__ = doc
    handler.__name__ = "opt_" + key.replace("-", "_")
    return handler


def _trusted_check(flag: str) -> Callable[[str], list[Any]]:
    def check(value: str) -> list[Any]:
        try:
            return list(trusted_networks(value))
        except ValueError as e:
            raise usage.UsageError(f"--{flag}: {e}") from None

    return check


def _names_check(known: Callable[[], Any], message: str) -> Callable[[str], list[str]]:
    """
    A check for a comma-separated list of upper-case names, each of which
    must be one of C{known()}: the commands of --disable-command, the
    extensions of --hide and of --enable.  C{message} names the culprit (C{{name}}) and
    the choices (C{{known}}).
    """

    def check(value: str) -> list[str]:
        allowed = known()
        out = []
        for name in _split(value):
            name = name.upper()
            if name not in allowed:
                raise usage.UsageError(
                    message.format(name=repr(name), known=", ".join(sorted(allowed)))
                )
            out.append(name)
        return out

    return check


_commands_check = _names_check(
    lambda: COMMANDS, "--disable-command: unknown command {name} (known: {known})"
)
_hide_check = _names_check(_hideable, "--hide: {name} cannot be hidden (one of: {known})")
_enable_check = _names_check(
    lambda: OPTIONAL_EXTENSIONS, "--enable: unknown extension {name} (known: {known})"
)


def _handler_option_check(value: str) -> list[tuple[str, str]]:
    key, sep, text = value.partition("=")
    key = key.strip()
    if not sep or not key.isidentifier():
        raise usage.UsageError(f"--handler-option wants KEY=VALUE, not {value!r}")
    return [(key, text)]


def _port_check(value: str) -> list[str]:
    if not value.strip():
        raise usage.UsageError("--port wants an endpoint string such as tcp:2525")
    return [value.strip()]


# ---------------------------------------------------------------------------
# The option parser
# ---------------------------------------------------------------------------


#: The daemon's logging flags (see smtpsession._daemon_log).
_LOG_FLAGS: list[list[Any]] = [
    [
        "log-level",
        None,
        "info",
        "Lowest level logged: " + ", ".join(_daemon_log.LEVELS)
        + " (debug adds a line per connection).",
        _choice("log-level", _daemon_log.LEVELS),
    ],
    [
        "log-format",
        None,
        "text",
        "Log lines as text (twistd's format) or json (one object per line).",
        _choice("log-format", _daemon_log.FORMATS),
    ],
]


#: The most --workers takes: more processes than that on one machine are a
#: mistake (a typo, or a port per process meant).
MAX_WORKERS = 256


def _workers(text: str) -> int:
    try:
        count = int(text.strip())
    except ValueError:
        raise ValueError(f"--workers wants a number of processes, not {text!r}") from None
    if not 1 <= count <= MAX_WORKERS:
        raise ValueError(f"--workers wants 1 to {MAX_WORKERS}, not {count}")
    return count


#: --workers (smtpsession._supervisor).
_WORKERS_FLAG: list[Any] = [
    "workers",
    None,
    1,
    "Worker processes sharing the listening sockets, under one supervisor "
    f"(1: one process, no supervisor; at most {MAX_WORKERS}).",
    _workers,
]


class Options(usage.Options):
    """
    The command line of C{twistd smtpsession}.

    After C{parseOptions}, C{server_options} is the L{SMTPServerOptions},
    C{handler} the handler object, C{endpoints} the endpoint strings and
    C{factory} the ready L{smtpsession.SMTPServerFactory}.
    """

    synopsis = "[--port ENDPOINT]... [--handler HANDLER] [options]"
    longdesc = (
        "An SMTP/LMTP server.  By default it listens on 127.0.0.1 port 2525 and stores "
        "every message in ./Maildir.  --handler names your own handler: "
        "module.Class (instantiated with the --handler-option KEY=VALUE "
        "values as keyword arguments), module:attribute (an object), or a "
        "built-in: " + ", ".join(BUILTIN_HANDLERS) + "."
    )

    optFlags: list[list[Any]] = [
        [spec.flag, None, spec.help]
        for spec in OPTION_FLAGS
        if spec.kind in ("switch", "trust")
    ]
    optParameters: list[list[Any]] = [
        [
            "handler",
            None,
            None,
            "The handler: module.Class, module:attribute, or one of "
            + ", ".join(BUILTIN_HANDLERS)
            + " [default: maildir].",
        ],
        [
            "auth-file",
            None,
            None,
            "Password file checked for AUTH PLAIN and LOGIN (see smtpsession.cred).",
        ],
        [
            "config",
            None,
            None,
            "TOML file of these flags (keys in snake_case, a [handler_options] "
            "table); flags on the command line override it.",
        ],
        _WORKERS_FLAG,
    ] + _LOG_FLAGS + [
        [
            spec.flag,
            None,
            spec.default if spec.default not in ("", None) else None,
            spec.help,
            _coercer(spec),
        ]
        for spec in OPTION_FLAGS
        if spec.kind in ("int", "float", "str")
    ]

    #: Repeatable flags: key → the checker that turns one value into items.
    _lists: dict[str, Callable[[str], list[Any]]] = {}

    def __init__(self) -> None:
        super().__init__()
        for key in self._lists:
            self[key] = []
        self["maildir"] = DEFAULT_MAILDIR
        self._maildir_given = False
        self.server_options: SMTPServerOptions | None = None
        self.handler: object = None
        self.endpoints: list[str] = []
        self.factory: Any = None
        #: What the daemon should warn about when it starts (logging is not set up yet).
        self.warnings: list[str] = []
        #: The flags as given (the workers of --workers parse them again).
        self.argv: list[str] = []
        #: Whether each --port is tried before starting (not in a worker:
        #: its supervisor holds them).
        self.probe_ports = True

    def parseOptions(self, options: Any = None) -> None:
        """
        As usage.Options does; but as twistd's subcommand, a usage error is
        one line on standard error and exit status 2 (twistd would print
        its whole help, some 120 lines, above it, and exit 1).
        """
        try:
            if options is None:
                options = sys.argv[1:]
            self.argv = list(options)
            super().parseOptions(self._with_config(list(options)))
        except usage.UsageError as e:
            # usage.Options puts this before the coercer's own message.
            message = str(e).removeprefix("Parameter type enforcement failed: ")
            if self.parent is None:
                raise usage.UsageError(message) from None
            sys.stderr.write(f"{PROGRAM}: error: {message}\n({PROGRAM} --help lists every flag)\n")
            raise SystemExit(2) from None

    def _with_config(self, argv: list[str]) -> list[str]:
        """C{argv} with the arguments of its C{--config} file in front."""
        path = config.config_path(argv)
        if path is None:
            return argv
        takes_value = {entry.rstrip("="): entry.endswith("=") for entry in self.longOpt}
        given = config.given_flags(argv)
        return config.config_arguments(path, takes_value, self._lists, given) + argv

    def opt_maildir(self, path: str) -> None:
        """Directory of the default Maildir handler (created if missing) [default: ./Maildir]."""
        self["maildir"] = path
        self._maildir_given = True

    def opt_version(self) -> None:
        """Print the version of smtpsession and exit."""
        from smtpsession import __version__

        print(f"smtpsession {__version__}")
        raise SystemExit(0)

    # ------------------------------------------------------------------

    def postOptions(self) -> None:
        self.endpoints = list(self["port"]) or [DEFAULT_PORT]
        self.server_options = self._server_options()
        self.handler = self._handler()
        from twisted.internet import reactor

        for description in self.endpoints:
            if self["workers"] > 1 and description.split(":", 1)[0].lower() not in _SHAREABLE:
                raise usage.UsageError(
                    f"--workers: --port {description!r} cannot be shared by workers; use "
                    "tcp:, tcp6: or unix: (for implicit TLS: tcp:465 with --secure "
                    "--tls-cert --tls-key)"
                )
            _check_endpoint(reactor, description, self.probe_ports)
        self.factory = self._factory(reactor)
        warning = asyncio_without_its_reactor(self.handler, reactor)
        self.warnings = [warning] if warning else []

    def _server_options(self) -> SMTPServerOptions:
        kwargs: dict[str, Any] = {}
        flag_of: dict[str, str] = {}
        for spec in OPTION_FLAGS:
            flag_of[spec.field] = spec.flag
            if spec.kind == "switch":
                if self[spec.flag]:
                    kwargs[spec.field] = not spec.default
            elif spec.kind == "trust":
                trusted = self[f"{spec.flag}-trusted"]
                if trusted:
                    kwargs[spec.field] = tuple(trusted)
                elif self[spec.flag]:
                    kwargs[spec.field] = True
            elif spec.kind == "list":
                if self[spec.flag]:
                    kwargs[spec.field] = tuple(self[spec.flag])
            elif self[spec.flag] is not None:
                kwargs[spec.field] = self[spec.flag]
        hideable = _hideable()
        for ext in self["hide"]:
            kwargs[hideable[ext]] = True
            flag_of[hideable[ext]] = f"hide {ext}"
        self._check_files(kwargs)
        if self["auth-file"]:
            kwargs["credentials_checker"] = _checker_from_file(self["auth-file"])
        try:
            return SMTPServerOptions(**kwargs)
        except (ValueError, TypeError) as e:
            # Say which flag: retry the fields one at a time.
            for name, value in kwargs.items():
                try:
                    SMTPServerOptions(**{name: value})
                except (ValueError, TypeError) as single:
                    flag = flag_of.get(name, name.replace("_", "-"))
                    raise usage.UsageError(f"--{flag}: {single}") from None
            raise usage.UsageError(str(e)) from None

    def _check_files(self, kwargs: dict[str, Any]) -> None:
        """Unreadable certificates and keys are found now, not at STARTTLS."""
        for name in ("tls_cert", "tls_key", "tls_ca"):
            path = kwargs.get(name)
            if path:
                _readable(f"--{name.replace('_', '-')}", path)
        sni = kwargs.get("tls_sni_dir")
        if sni:
            try:
                os.listdir(sni)
            except OSError as e:
                raise usage.UsageError(f"--tls-sni-dir {sni}: {e.strerror or e}") from None

    def _handler(self) -> object:
        spec = self["handler"] or "maildir"
        kwargs: dict[str, Any] = dict(self["handler-option"])
        target = load_handler(spec)
        from smtpsession.handlers import MaildirHandler, RelayHandler
        from smtpsession.handlers.amqp import AMQPHandler

        if isinstance(target, type) and issubclass(target, MaildirHandler):
            kwargs.setdefault("path", self["maildir"])
        elif self._maildir_given:
            raise usage.UsageError(
                "--maildir is for the Maildir handler; pass your handler's "
                "settings with --handler-option KEY=VALUE"
            )
        # The built-in handlers that write a Received line name --hostname in it.
        named = (MaildirHandler, RelayHandler, AMQPHandler)
        if isinstance(target, type) and issubclass(target, named):
            assert self.server_options is not None
            kwargs.setdefault("hostname", self.server_options.name)
        return build_handler(spec, target, kwargs)

    def _factory(self, reactor: Any) -> Any:
        from smtpsession.factory import SMTPServerFactory

        try:
            return SMTPServerFactory(self.handler, self.server_options, reactor=reactor)
        except usage.UsageError:
            raise
        except Exception as e:
            raise usage.UsageError(f"cannot start the server: {one_line(e)}") from None


def _install_list_flags() -> None:
    """Add the repeatable flags (C{opt_*} methods) to L{Options}."""
    lists: dict[str, tuple[str, Callable[[str], list[Any]]]] = {
        "port": (
            f"Endpoint to listen on (repeatable): tcp:2525, tcp6:25, "
            f"unix:/run/lmtp.sock, ssl:465:privateKey=...  [default: {DEFAULT_PORT}]",
            _port_check,
        ),
        "handler-option": (
            "KEY=VALUE keyword argument for the handler class (repeatable).",
            _handler_option_check,
        ),
        "hide": (
            "Do not advertise an extension (repeatable): "
            + ", ".join(sorted(_hideable()))
            + ".",
            _hide_check,
        ),
    }
    for spec in OPTION_FLAGS:
        if spec.kind == "list":
            doc = spec.help
            if "repeatable" not in doc:
                doc += " (repeatable, or comma separated)"
            if spec.default:
                doc += f" [default: {','.join(spec.default)}]"
            check: Callable[[str], list[Any]] = _split
            if spec.field == "disabled_commands":
                check = _commands_check
            elif spec.field == "enable":
                check = _enable_check
            lists[spec.flag] = (doc, check)
        elif spec.kind == "trust":
            lists[f"{spec.flag}-trusted"] = (
                f"Networks (CIDR,...) allowed to use --{spec.flag}; implies it (repeatable).",
                _trusted_check(f"{spec.flag}-trusted"),
            )
    for key, (doc, check) in lists.items():
        setattr(Options, "opt_" + key.replace("-", "_"), _list_handler(key, doc, check))
        Options._lists[key] = check


_install_list_flags()


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _readable(flag: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as e:
        raise usage.UsageError(f"{flag} {path}: {e.strerror or e}") from None


def _check_endpoint(reactor: Any, description: str, probe: bool = True) -> None:
    """Parse an endpoint string now, so that a typo is a usage error."""
    from twisted.internet.endpoints import serverFromString

    try:
        endpoint = serverFromString(reactor, description)
    except Exception as e:
        raise usage.UsageError(f"--port {description!r}: {one_line(e)}") from None
    reason = cannot_listen(endpoint, description) if probe else None
    if reason is not None:
        raise usage.UsageError(reason)


def _checker_from_file(path: str) -> Any:
    _readable("--auth-file", path)
    try:
        # Imported by name: the module is optional until it lands.
        cred = importlib.import_module("smtpsession.cred")
        checker_from_file = cred.checker_from_file
    except (ImportError, AttributeError) as e:
        raise usage.UsageError(f"--auth-file is not available: {one_line(e)}") from None
    try:
        return checker_from_file(path)
    except Exception as e:
        raise usage.UsageError(f"--auth-file {path}: {one_line(e)}") from None


def makeService(options: Options) -> SMTPService:
    """
    The service C{twistd smtpsession} runs (IServiceMaker): one server, or
    with C{--workers N} (N > 1) a supervisor of N worker processes.
    """
    if options.factory is None:
        options.postOptions()
    service: SMTPService
    if options["workers"] > 1:
        service = DaemonSupervisor(
            options.factory, options.endpoints, options["workers"], options.argv
        )
    else:
        service = DaemonService(options.factory, options.endpoints)
    daemon: Any = service
    daemon.program = PROGRAM
    daemon.log_level = options["log-level"]
    daemon.log_format = options["log-format"]
    daemon.warnings = list(options.warnings)
    parent = getattr(options, "parent", None)
    if parent is not None:
        try:
            daemon.foreground = bool(parent["nodaemon"])
            daemon.pidfile = parent["pidfile"] or ""
        except KeyError:
            pass
    return service
