"""
The command line of ``twistd smtpsession`` (smtpsession.tap): flags generated
from the options' metadata, the daemon's own flags, handler loading, and a
clear usage error for every bad input.  Nothing here listens on a socket.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from twisted.python import usage

from smtpsession import Handler, SMTPServerOptions, tap
from smtpsession.handlers import LogHandler, MaildirHandler, RelayHandler, SinkHandler
from smtpsession.service import SMTPService
from tests.unit.taputil import keep_sys_path, parse  # noqa: F401 (keep_sys_path: autouse)

#: The flags API.md promises, spelled exactly as there.
CONTRACT_FLAGS = [
    "port", "handler", "handler-option", "maildir", "hostname", "banner", "lmtp",
    "secure", "tls-cert", "tls-key", "tls-sni-dir", "auth-methods", "auth-optional",
    "allow-insecure-auth", "size", "max-clients", "max-recipients", "disable-command",
    "hide", "xclient", "xforward", "proxy-protocol", "xclient-trusted",
    "xforward-trusted", "proxy-protocol-trusted", "socket-timeout", "close-timeout",
    "no-reverse-lookup", "auth-file",
]  # fmt: skip


def flags_and_docs() -> tuple[dict[str, bool], dict[str, str]]:
    """Every long flag (name → takes a value) and its help text."""
    options = tap.Options()
    flags = {entry.rstrip("="): entry.endswith("=") for entry in options.longOpt}
    docs = {name: " ".join((doc or "").split()) for name, doc in options.docs.items()}
    return flags, docs


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (./Maildir) resolve inside the test's directory."""
    monkeypatch.chdir(tmp_path)


# ---------------------------------------------------------------------------
# Flags and the options' metadata
# ---------------------------------------------------------------------------


def test_every_option_with_a_flag_is_a_flag_with_its_help() -> None:
    """Each SMTPServerOptions field whose metadata names a flag has that
    flag, with the metadata's help text: the two cannot drift apart."""
    flags, docs = flags_and_docs()
    fields = [f for f in dataclasses.fields(SMTPServerOptions) if f.metadata.get("flag")]
    assert len(fields) > 20
    for f in fields:
        flag = f.metadata["flag"]
        assert flag in flags, flag
        help_text = " ".join(f.metadata["help"].split())
        assert docs[flag].startswith(help_text), (flag, docs[flag])
        takes_value = str(f.type) != "bool" and not str(f.type).startswith("bool |")
        assert flags[flag] is takes_value, flag


def test_contract_flags_exist() -> None:
    """Every flag API.md and the issue name exists under that exact name."""
    flags, docs = flags_and_docs()
    for flag in CONTRACT_FLAGS:
        assert flag in flags, flag
        assert docs.get(flag), f"--{flag} has no help text"


def test_switches_that_turn_things_off_say_so() -> None:
    """A boolean option that defaults to True gets a --no-... flag (the flag
    flips the default, so its name must say it turns something off)."""
    for f in dataclasses.fields(SMTPServerOptions):
        if str(f.type) == "bool" and f.metadata.get("flag") and f.default is True:
            assert f.metadata["flag"].startswith("no-"), f.name


def test_help_of_a_no_flag_reads_as_turning_off() -> None:
    """The help of every --no-... switch starts by saying what it turns off
    (issue 17, point 8: --no-transaction-log read as if it turned logging on)."""
    _, docs = flags_and_docs()
    for flag, doc in docs.items():
        if flag.startswith("no-"):
            assert doc.split()[0] in ("Turn", "Do", "Never", "Skip", "Disable"), (flag, doc)


def test_help_texts_name_their_values() -> None:
    """Issue 17, point 8: no "None" a command line cannot give, and the TLS
    versions listed."""
    _, docs = flags_and_docs()
    assert "None" not in docs["max-unauthenticated-commands"]
    for version in ("TLSv1.2", "TLSv1.3"):
        assert version in docs["tls-min-version"]


def test_help_lists_flags() -> None:
    """--help output (what twistd prints) mentions the daemon and option flags."""
    text = str(tap.Options())
    for flag in ("--port", "--handler", "--maildir", "--size", "--no-transaction-log"):
        assert flag in text


# ---------------------------------------------------------------------------
# Defaults and values
# ---------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    """No flags: port tcp:2525, the Maildir handler on ./Maildir, and the
    library's default options."""
    options = parse()
    assert options.endpoints == ["tcp:2525:interface=127.0.0.1"]
    assert isinstance(options.handler, MaildirHandler)
    assert options.handler.path == str(tmp_path / "Maildir")
    assert not (tmp_path / "Maildir").exists(), "nothing is created while parsing"
    server = options.server_options
    assert server is not None
    defaults = SMTPServerOptions(name=server.name)
    assert server == defaults
    assert options.factory.options is server
    assert options.factory.handler is options.handler


def test_values_reach_the_options() -> None:
    """Each kind of flag (switch, number, text, list, trust list, --hide)
    sets the matching option."""
    options = parse(
        "--hostname", "mx.example.com", "--banner", "hello there", "--lmtp",
        "--size", "1000", "--max-clients", "7", "--max-recipients", "3",
        "--socket-timeout", "12.5", "--close-timeout", "4",
        "--auth-methods", "PLAIN", "--auth-methods", "cram-md5,LOGIN",
        "--auth-optional", "--allow-insecure-auth",
        "--disable-command", "VRFY", "--disable-command", "help",
        "--hide", "DSN", "--hide", "size,chunking",
        "--xclient", "--xforward-trusted", "10.0.0.0/8,::1",
        "--proxy-protocol-trusted", "192.0.2.0/24",
        "--no-reverse-lookup", "--no-transaction-log",
        "--max-unauthenticated-commands", "0",
    )  # fmt: skip
    o = options.server_options
    assert o is not None
    assert o.name == "mx.example.com"
    assert o.banner == "hello there"
    assert o.lmtp is True
    assert (o.size, o.max_clients, o.max_recipients) == (1000, 7, 3)
    assert (o.socket_timeout, o.close_timeout) == (12.5, 4.0)
    assert o.auth_methods == ("PLAIN", "CRAM-MD5", "LOGIN")
    assert o.auth_optional and o.allow_insecure_auth
    assert o.disabled_commands == ("VRFY", "HELP")
    assert o.hide_dsn and o.hide_size and o.hide_chunking and not o.hide_pipelining
    assert o.use_xclient is True
    assert o.use_xforward == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
    )
    assert o.use_proxy == (ipaddress.ip_network("192.0.2.0/24"),)
    assert o.disable_reverse_lookup is True
    assert o.transaction_log is False
    assert o.max_allowed_unauthenticated_commands is None


def test_trusted_list_restricts_the_switch() -> None:
    """--xclient with --xclient-trusted means XCLIENT from those peers only."""
    o = parse("--xclient", "--xclient-trusted", "127.0.0.1").server_options
    assert o is not None
    assert o.use_xclient == (ipaddress.ip_network("127.0.0.1/32"),)


def test_ports_repeat() -> None:
    """--port is repeatable and replaces the default."""
    options = parse("--port", "tcp:2525:interface=127.0.0.1", "--port", "unix:/tmp/x.sock")
    assert options.endpoints == ["tcp:2525:interface=127.0.0.1", "unix:/tmp/x.sock"]


def test_make_service() -> None:
    """makeService gives an SMTPService with the parsed factory and ports,
    in the foreground mode twistd's -n asks for."""
    options = parse("--port", "tcp:0:interface=127.0.0.1", "--handler", "sink")
    options.parent = {"nodaemon": True}  # what twistd's ServerOptions provides
    service = tap.makeService(options)
    assert isinstance(service, SMTPService)
    assert service.factory is options.factory
    assert service.foreground is True  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------


class ConfigurableHandler(Handler):
    """A handler class for --handler tests."""

    def __init__(self, greeting: str = "hi", count: str = "1") -> None:
        self.greeting = greeting
        self.count = count


THE_HANDLER = ConfigurableHandler("object")


def make_handler(colour: str = "red") -> ConfigurableHandler:
    """A handler factory function for --handler tests."""
    return ConfigurableHandler(colour)


@pytest.fixture
def handler_module(monkeypatch: pytest.MonkeyPatch) -> str:
    """This test module, importable under a plain name."""
    module = types.ModuleType("tap_test_handlers")
    module.ConfigurableHandler = ConfigurableHandler  # type: ignore[attr-defined]
    module.THE_HANDLER = THE_HANDLER  # type: ignore[attr-defined]
    module.make_handler = make_handler  # type: ignore[attr-defined]
    module.nested = types.SimpleNamespace(handler=THE_HANDLER)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tap_test_handlers", module)
    return "tap_test_handlers"


def test_handler_class_with_options(handler_module: str) -> None:
    """module.Class is instantiated with the --handler-option values."""
    options = parse(
        "--handler", f"{handler_module}.ConfigurableHandler",
        "--handler-option", "greeting=hello=world",
        "--handler-option", "count=3",
    )  # fmt: skip
    handler = options.handler
    assert isinstance(handler, ConfigurableHandler)
    assert (handler.greeting, handler.count) == ("hello=world", "3")


def test_handler_object_by_colon(handler_module: str) -> None:
    """module:attr (with dots after the colon) names an object, used as is."""
    assert parse("--handler", f"{handler_module}:THE_HANDLER").handler is THE_HANDLER
    assert parse("--handler", f"{handler_module}:nested.handler").handler is THE_HANDLER


def test_handler_factory_function(handler_module: str) -> None:
    """A function is called, with the handler options, to make the handler."""
    handler = parse(
        "--handler", f"{handler_module}:make_handler", "--handler-option", "colour=blue"
    ).handler
    assert isinstance(handler, ConfigurableHandler) and handler.greeting == "blue"


@pytest.mark.parametrize(
    ("name", "cls"),
    [("maildir", MaildirHandler), ("sink", SinkHandler), ("log", LogHandler), ("relay", RelayHandler)],
)
def test_builtin_short_names(name: str, cls: type) -> None:
    """The built-in handlers have short names."""
    extra = ["--handler-option", "starttls=never"] if name == "relay" else []
    assert type(parse("--handler", name, *extra).handler) is cls


def test_maildir_path_and_options(tmp_path: Path) -> None:
    """--maildir and --handler-option reach the default Maildir handler; it
    also gets the server's --hostname for its Received header."""
    options = parse(
        "--maildir", "mail/store", "--handler-option", "per_recipient=yes",
        "--hostname", "mx.example.com",
    )  # fmt: skip
    handler = options.handler
    assert isinstance(handler, MaildirHandler)
    assert handler.path == str(tmp_path / "mail" / "store")
    assert handler.per_recipient is True
    assert handler.hostname == "mx.example.com"


def test_the_amqp_handler_gets_the_hostname_too() -> None:
    """--handler amqp: its Received line names the server's --hostname, as
    the Maildir and relay handlers' do (not the machine's name)."""
    from smtpsession.handlers.amqp import AMQPHandler

    handler = parse("--handler", "amqp", "--hostname", "mx.example.com").handler
    assert isinstance(handler, AMQPHandler)
    assert handler.hostname == "mx.example.com"
    assert "amqp" in tap.Options.longdesc


def test_relay_options_are_text() -> None:
    """Relay settings given as text are converted (port, booleans, times)."""
    handler = parse(
        "--handler", "relay", "--handler-option", "host=upstream.example",
        "--handler-option", "port=24", "--handler-option", "lmtp=yes",
        "--handler-option", "starttls=never", "--handler-option", "timeout=5",
    ).handler  # fmt: skip
    assert isinstance(handler, RelayHandler)
    assert (handler.host, handler.port, handler.lmtp, handler.timeout) == (
        "upstream.example", 24, True, 5.0,
    )  # fmt: skip


# ---------------------------------------------------------------------------
# Usage errors: one line, naming the flag
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--size", "abc"], "--size"),
        (["--size", "-1"], "--size"),
        (["--socket-timeout", "0"], "--socket-timeout"),
        (["--auth-methods", "NTLM"], "--auth-methods"),
        (["--hostname", "bad name"], "--hostname"),
        (["--tls-min-version", "SSLv3"], "--tls-min-version"),
        (["--hide", "XYZZY"], "--hide"),
        (["--disable-command", "FROB"], "--disable-command"),
        (["--xclient-trusted", "not-a-network"], "--xclient-trusted"),
        (["--port", "frob:123"], "--port"),
        (["--port", "tcp:notaport"], "--port"),
        (["--handler-option", "novalue"], "--handler-option"),
        (["--handler", "nosuchmodule.Handler"], "--handler"),
        (["--handler", "smtpsession.handlers:NoSuchHandler"], "--handler"),
        (["--handler", "justaname"], "--handler"),
        (["--handler-option", "colour=red"], "--handler"),  # Maildir takes no colour
        (["--handler", "sink", "--maildir", "x"], "--maildir"),
        (["--tls-cert", "/nonexistent/cert.pem"], "--tls-cert"),
        (["--auth-file", "/nonexistent/passwords"], "--auth-file"),
        (["--no-such-flag"], "no-such-flag"),
    ],
)
def test_bad_command_lines(argv: list[str], expected: str) -> None:
    """Each bad input is a UsageError whose one-line message names the flag."""
    with pytest.raises(usage.UsageError) as info:
        parse(*argv)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message and "Traceback" not in message


def test_as_twistds_subcommand_an_error_is_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17, point 6: under twistd, no help dump above the error."""
    from twisted.scripts.twistd import ServerOptions

    with pytest.raises(SystemExit) as info:
        ServerOptions().parseOptions(["-n", "smtpsession", "--size", "lots"])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "twistd smtpsession: error: --size wants a whole number, not 'lots'",
        "(twistd smtpsession --help lists every flag)",
    ]


def test_handler_object_takes_no_options(handler_module: str) -> None:
    """--handler-option with an object (not a class) is refused."""
    with pytest.raises(usage.UsageError, match="handler-option"):
        parse("--handler", f"{handler_module}:THE_HANDLER", "--handler-option", "a=b")


def test_handler_module_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler module that raises while importing is a usage error that
    says what it raised, not a traceback."""
    (tmp_path / "broken_handler_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(usage.UsageError, match="boom at import"):
        parse("--handler", "broken_handler_mod.Handler")


def test_handler_module_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler module beside the user is found without PYTHONPATH, as the
    README's own command line expects (issue 17, point 1)."""
    (tmp_path / "cwd_handler_mod.py").write_text("class Inbox:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "cwd_handler_mod", raising=False)
    handler = parse("--handler", "cwd_handler_mod.Inbox").handler
    assert type(handler).__name__ == "Inbox"


@pytest.mark.parametrize(
    ("source", "spec", "expected"),
    [
        (None, "nosuch_handler_mod.Inbox", "no module named 'nosuch_handler_mod'"),
        ("import nosuch_dependency_mod\n", "needs_dep_mod.Inbox",
         "module 'needs_dep_mod' failed to import: ModuleNotFoundError: "
         "No module named 'nosuch_dependency_mod'"),
        ("class Other:\n    pass\n", "no_attr_mod.Inbox", "no_attr_mod has no attribute 'Inbox'"),
        ("class Other:\n    pass\n", "no_attr_mod:Other.Missing",
         "no_attr_mod.Other has no attribute 'Missing'"),
    ],
)
def test_handler_errors_say_what_went_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str | None, spec: str, expected: str
) -> None:
    """Module missing, module failing on its own import, attribute missing:
    three different one-line messages."""
    module_name = spec.replace(":", ".").split(".")[0]
    if source is not None:
        (tmp_path / f"{module_name}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    with pytest.raises(usage.UsageError) as info:
        parse("--handler", spec)
    assert expected in str(info.value)


def test_unreadable_key(tmp_path: Path) -> None:
    """A key file that exists but cannot be read is a usage error."""
    if os.geteuid() == 0:
        # root reads anything: use a directory, which cannot be read as a file.
        key = tmp_path / "key-is-a-directory"
        key.mkdir()
    else:
        key = tmp_path / "key.pem"
        key.write_text("secret")
        key.chmod(0)
    cert = tmp_path / "cert.pem"
    cert.write_text("not really a certificate")
    with pytest.raises(usage.UsageError, match="--tls-key"):
        parse("--tls-cert", str(cert), "--tls-key", str(key))


def test_garbage_certificate(tmp_path: Path) -> None:
    """A certificate file that is readable but not a certificate is a
    one-line usage error (from building the TLS context)."""
    cert = tmp_path / "cert.pem"
    cert.write_text("this is not PEM\n")
    with pytest.raises(usage.UsageError) as info:
        parse("--tls-cert", str(cert), "--tls-key", str(cert))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------
# --auth-file: wired to smtpsession.cred.checker_from_file
# ---------------------------------------------------------------------------


def test_auth_file_uses_checker_from_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--auth-file PATH calls smtpsession.cred.checker_from_file(PATH) and
    configures its checker, which makes the server offer AUTH.  Works
    with the real module once it exists (only checker_from_file is
    replaced), and with a stand-in before."""
    from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse

    passwords = tmp_path / "passwords"
    passwords.write_text("alice:irrelevant\n")
    checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"secret")
    calls: list[str] = []

    def checker_from_file(path: str) -> Any:
        calls.append(path)
        return checker

    try:
        import smtpsession.cred as cred
    except ImportError:
        cred = types.ModuleType("smtpsession.cred")  # type: ignore[assignment]

        def checker_authenticator(checker: Any) -> Any:
            return lambda auth, session: None

        cred.checker_authenticator = checker_authenticator  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "smtpsession.cred", cred)
    monkeypatch.setattr(cred, "checker_from_file", checker_from_file, raising=False)
    options = parse("--auth-file", str(passwords))
    assert calls == [str(passwords)]
    assert options.server_options is not None
    assert options.server_options.credentials_checker is checker
    assert options.factory.auth_enabled


def test_plugin_is_found() -> None:
    """twistd finds the plugin (twisted/plugins in this source tree), which
    names smtpsession.tap; the directory has no __init__.py."""
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    makers = {p.tapname: p for p in getPlugins(IServiceMaker)}
    assert "smtpsession" in makers
    assert makers["smtpsession"].module == "smtpsession.tap"
    assert isinstance(makers["smtpsession"].options(), tap.Options)
    plugins_dir = Path(__file__).resolve().parents[2] / "twisted" / "plugins"
    assert (plugins_dir / "smtpsession_plugin.py").exists()
    assert not (plugins_dir / "__init__.py").exists()
    assert not (plugins_dir.parent / "__init__.py").exists()
