"""
The manual: it builds with warnings as errors, its generated references are
complete, and every example program in docs/examples works as printed.

The examples are exercised against a real server on 127.0.0.1 with smtplib,
the way a reader would try them.
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import os
import re
import smtplib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import smtpsession
from smtpsession import SMTPServerOptions
from smtpsession.testing import call_in_reactor, serve

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

#: Daemon flags that API.md promises (beside the options' own flags).
CONTRACT_FLAGS = [
    "port",
    "handler",
    "handler-option",
    "maildir",
    "auth-file",
    "hostname",
    "banner",
    "lmtp",
    "secure",
    "tls-cert",
    "tls-key",
    "tls-sni-dir",
    "auth-methods",
    "auth-optional",
    "allow-insecure-auth",
    "size",
    "max-clients",
    "max-recipients",
    "disable-command",
    "hide",
    "xclient",
    "xforward",
    "proxy-protocol",
    "xclient-trusted",
    "xforward-trusted",
    "proxy-protocol-trusted",
    "socket-timeout",
    "close-timeout",
    "no-reverse-lookup",
    # Policy and abuse limits
    "hook-timeout",
    "max-connections-per-ip",
    "max-auth-failures",
    "auth-failure-delay",
    "max-transactions",
    "pregreet-delay",
]

OPTIONS = SMTPServerOptions(name="docs.test", disable_reverse_lookup=True)


# ---------------------------------------------------------------------------
# The build
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the HTML manual from scratch, warnings as errors."""
    out = tmp_path_factory.mktemp("docs-html")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-E",
            "-q",
            "-b",
            "html",
            str(DOCS),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    )
    return out


def page(built: Path, name: str) -> str:
    return (built / f"{name}.html").read_text(encoding="utf-8")


def ids(text: str) -> set[str]:
    return {html.unescape(m) for m in re.findall(r'\bid="([^"]+)"', text)}


def daemon_flags() -> list[str]:
    """The long flags of smtpsession.tap.Options, if the daemon exists yet."""
    try:
        tap = importlib.import_module("smtpsession.tap")
    except ModuleNotFoundError as e:
        if e.name != "smtpsession.tap":
            raise
        return []
    opts = tap.Options()
    flags = []
    for entry in opts.longOpt:
        name = opts.synonyms.get(entry.rstrip("="), entry.rstrip("="))
        if name not in ("help", "version") and name not in flags:
            flags.append(name)
    return flags


def test_docs_build_with_warnings_as_errors(built: Path) -> None:
    """sphinx-build -W passes, and every page of the toctree was written."""
    for name in [
        "index",
        "tutorial",
        "cookbook",
        "design",
        "security",
        "reliability",
        "benchmarks",
        "fuzzing",
        "changelog",
        "deployment",
        "conformance",
        "howto/tls-and-auth",
        "howto/daemon",
        "howto/handlers",
        "howto/testing",
        "howto/from-aiosmtpd",
        "howto/from-smtp-server",
        "reference/api",
        "reference/hooks",
        "reference/session",
        "reference/options",
        "reference/replies",
    ]:
        assert (built / f"{name}.html").is_file(), name


@pytest.mark.parametrize("doc", ["security.md", "reliability.md", "deployment.rst"])
def test_cited_tests_exist(doc: str) -> None:
    """Every test that docs/security.md, docs/reliability.md and
    docs/deployment.rst (its table of failures) name as ``file::function``
    exists (as a top-level function of that file)."""
    import ast

    cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (DOCS / doc).read_text())
    assert len(cited) >= 10
    missing = []
    for file, name in cited:
        path = ROOT / file
        tree = ast.parse(path.read_text()) if path.is_file() else ast.Module(body=[], type_ignores=[])
        defined = {
            n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in defined:
            missing.append(f"{file}::{name}")
    assert not missing, missing


def test_options_reference_has_every_option(built: Path) -> None:
    """Every SMTPServerOptions field has an entry with its help text."""
    text = page(built, "reference/options")
    found = ids(text)
    plain = html.unescape(re.sub(r"<[^>]+>", "", text))
    plain = " ".join(plain.split())
    for field in dataclasses.fields(SMTPServerOptions):
        assert f"smtpsession.SMTPServerOptions.{field.name}" in found, field.name
        help_text = " ".join(field.metadata["help"].split())
        assert help_text in plain, field.name


def test_options_reference_has_every_flag(built: Path) -> None:
    """
    Every twistd flag is documented: those of the options' metadata, those
    API.md promises, and every flag the daemon's parser really has.
    """
    found = ids(page(built, "reference/options"))
    metadata_flags = [
        f.metadata["flag"]
        for f in dataclasses.fields(SMTPServerOptions)
        if f.metadata.get("flag")
    ]
    for flag in [*metadata_flags, *CONTRACT_FLAGS, *daemon_flags()]:
        assert f"cmdoption-twistd-smtpsession-{flag}" in found, flag


def test_api_reference_has_every_public_name(built: Path) -> None:
    """Each name of smtpsession.__all__ is documented in the API reference."""
    found = ids(page(built, "reference/api"))
    for name in smtpsession.__all__:
        assert f"smtpsession.{name}" in found, name
    assert "smtpsession.interfaces.IMessageStream" in found
    assert "module-smtpsession.testing" in found


def test_hooks_and_session_pages_are_complete(built: Path) -> None:
    """Every hook has a section; every Session/Envelope/Address field an entry."""
    from smtpsession import ISMTPHandler
    from smtpsession.session import Address, Envelope, Session

    hooks = ids(page(built, "reference/hooks"))
    for name in ISMTPHandler.names():
        assert name.replace("_", "-") in hooks, name
    fields = ids(page(built, "reference/session"))
    for field in dataclasses.fields(Session):
        assert f"smtpsession.Session.{field.name}" in fields, field.name
    for cls in (Envelope, Address):
        for slot in cls.__slots__:
            assert f"smtpsession.{cls.__name__}.{slot}" in fields, slot


def test_replies_page_lists_the_catalogue(built: Path) -> None:
    """Every fixed reply of the catalogue is on the replies page."""
    from smtpsession._core import replies

    text = html.unescape(re.sub(r"<[^>]+>", "", page(built, "reference/replies")))
    for name, value in vars(replies).items():
        if name.isupper() and isinstance(value, tuple) and len(value) == 2:
            assert name in text, name
            assert value[1].decode().rstrip("\r\n") in text, name


# ---------------------------------------------------------------------------
# The examples
# ---------------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    """Import docs/examples/NAME.py as a module, the way a reader would."""
    path = EXAMPLES / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name", sorted(p.stem for p in EXAMPLES.glob("*.py")) or ["(none)"]
)
def test_every_example_imports_cleanly(name: str) -> None:
    """Importing an example has no side effect beyond defining things."""
    module = load_example(name)
    assert module.__doc__, f"{name}.py should say what it shows"


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: "
        + subject.encode()
        + b"\r\n\r\n"
        + body
    )


def test_quickstart(capsys: pytest.CaptureFixture[str]) -> None:
    """The index's quick start accepts example.com mail and prints a line."""
    quickstart = load_example("quickstart")
    with serve(quickstart.Inbox(), OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        refused = c.sendmail(
            "alice@example.org",
            ["bob@example.com", "eve@example.net"],
            message("hi"),
        )
        assert refused == {"eve@example.net": (550, b"5.1.1 No such user here")}
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("alice@example.org", ["eve@example.net"], message("hi"))
    out = capsys.readouterr().out
    assert f"{len(message('hi'))} bytes from <alice@example.org>" in out


def test_first_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """The tutorial's first handler: known mailboxes only, a summary line each."""
    first = load_example("first_handler")
    handler = first.Mailboxes("alice@example.com, Bob@Example.com")
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        c.mail("carol@example.org")
        assert c.rcpt("bob@example.com")[0] == 250
        assert c.rcpt("mallory@example.com") == (550, b"5.1.1 No such user here")
        code, text = c.data(message("Lunch?"))
    assert code == 250 and text.startswith(b"2.6.0 OK: received as ")
    out = capsys.readouterr().out
    assert "carol@example.org -> bob@example.com: 'Lunch?'" in out


def test_tutorial_maildir(tmp_path: Path) -> None:
    """The tutorial's Maildir step stores accepted mail, refuses the rest."""
    tutorial = load_example("tutorial_maildir")
    handler = tutorial.LocalMaildir("alice@example.com", path=str(tmp_path / "Maildir"))
    body = message("stored")
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        refused = c.sendmail(
            "carol@example.org", ["alice@example.com", "bob@example.com"], body
        )
    assert refused == {"bob@example.com": (550, b"5.1.1 No such user here")}
    [stored] = list((tmp_path / "Maildir" / "new").iterdir())
    assert stored.read_bytes().endswith(body)


def test_reject_recipients() -> None:
    """Relaying is refused, unknown users are refused, postmaster always works."""
    recipe = load_example("reject_recipients")
    handler = recipe.KnownRecipients(["example.com"], ["alice@example.com"])
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        c.mail("someone@example.org")
        assert c.rcpt("ALICE@example.com")[0] == 250
        assert c.rcpt("postmaster")[0] == 250
        assert c.rcpt("nobody@example.com") == (550, b"5.1.1 No such user here")
        assert c.rcpt("victim@elsewhere.org") == (554, b"5.7.1 Relay access denied")


def test_filters() -> None:
    """The cookbook's filters, in front of a recording handler."""
    from smtpsession.testing import RecordingHandler
    from smtpsession.testing.memory import MemoryServer

    recipe = load_example("filters")
    timing = recipe.Timing()
    handler = RecordingHandler()
    server = MemoryServer(
        handler,
        filters=[
            timing,
            recipe.Aliases({"Info@example.com": "alice@example.com"}),
            recipe.NoBounceToMany(),
            recipe.Stamp("mx.example"),
        ],
    )
    client = server.connect()
    client.ehlo()
    replies = client.send_message("a@example.org", ["info@example.com"], message("alias"))
    assert [r[:3] for r in replies] == ["250", "250", "354", "250"]
    [received] = handler.messages
    assert received.rcpt_to == ["alice@example.com"]
    assert received.data.startswith(b"X-Checked-By: mx.example\r\nFrom: alice@example.org")
    assert len(timing.accepted) == 1 and timing.refused == 0
    assert client.lines("MAIL FROM:<>", "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>") == [
        "250 2.1.0 Accepted",
        "250 2.1.5 Accepted",
        "550 5.7.1 Bounces go to one recipient",
    ]


CHECKER = (
    "import sys\n"
    "data = sys.stdin.buffer.read()\n"
    "sys.exit(1 if b'BUY NOW' in data else 3 if b'CRASH' in data else 0)\n"
)


@pytest.fixture
def reap_children() -> Iterator[None]:
    """
    serve() runs the reactor in a thread, without signal handlers, so no
    SIGCHLD tells Twisted that a child exited (twistd does install them).
    Reap by polling instead, as the SIGCHLD handler would.
    """
    from twisted.internet.process import reapAllProcesses
    from twisted.internet.task import LoopingCall

    loop = LoopingCall(reapAllProcesses)
    call_in_reactor(lambda: loop.start(0.02, now=False) and None)
    try:
        yield
    finally:
        call_in_reactor(loop.stop)


@pytest.mark.usefixtures("reap_children")
def test_spam_check() -> None:
    """
    The checker's verdict decides: ham is delivered whole, spam gets 550, a
    failing checker 451.  The ham is large (3 MB, far more than a pipe
    holds), so the checker's stdin pushes back on the stream, and the
    session goes on afterwards on the same connection.
    """
    recipe = load_example("spam_check")
    delivered: list[bytes] = []

    handler = recipe.SpamCheck(command=[sys.executable, "-c", CHECKER])
    default_deliver = handler.deliver

    async def deliver(message_file: Any, session: Any) -> Any:
        delivered.append(message_file.read())
        return await default_deliver(message_file, session)

    handler.deliver = deliver  # what a subclass overriding deliver() does
    big = message("report", b"".join(b"line %07d of the report\r\n" % i for i in range(120_000)))
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        assert c.sendmail("a@example.org", ["b@example.com"], big) == {}
        with pytest.raises(smtplib.SMTPDataError) as spam:
            c.sendmail("a@example.org", ["b@example.com"], message("BUY NOW"))
        with pytest.raises(smtplib.SMTPDataError) as crash:
            c.sendmail("a@example.org", ["b@example.com"], message("CRASH"))
    assert delivered == [big]
    assert (spam.value.smtp_code, spam.value.smtp_error) == (
        550,
        b"5.7.1 Message looks like spam",
    )
    assert crash.value.smtp_code == 451


def test_store_sqlite(tmp_path: Path) -> None:
    """
    Messages land in SQLite whole, in pieces, marked complete; the reply
    names the stored message.
    """
    recipe = load_example("store_sqlite")
    path = tmp_path / "mail.sqlite3"
    handler = call_in_reactor(recipe.SQLiteStore, str(path))
    big = message("big", os.urandom(1_500_000).hex().encode() + b"\r\n")
    small = message("small")
    try:
        with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
            c.ehlo("client.test")
            c.sendmail("a@example.org", ["b@example.com", "c@example.com"], big)
            c.mail("a@example.org")
            c.rcpt("d@example.com")
            code, text = c.data(small)
            assert code == 250 and re.match(rb"2\.6\.0 OK: stored as message \d+$", text)
    finally:
        call_in_reactor(handler.pool.close)
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT id, mail_from, rcpt_to, size, complete FROM messages ORDER BY id"
        ).fetchall()
        assert [r[1:] for r in rows] == [
            ("a@example.org", "b@example.com,c@example.com", len(big), 1),
            ("a@example.org", "d@example.com", len(small), 1),
        ]
        pieces = db.execute(
            "SELECT data FROM pieces WHERE message = ? ORDER BY seq", (rows[0][0],)
        ).fetchall()
    finally:
        db.close()
    assert len(pieces) >= 3
    assert b"".join(p[0] for p in pieces) == big


def test_relay_dovecot() -> None:
    """
    The relay recipe refuses other domains itself, passes the upstream's
    per-recipient answers through, and delivers what the upstream took
    (an smtpsession LMTP server stands in for Dovecot).
    """
    from smtpsession import Handler, SMTPError
    from smtpsession.testing import RecordingHandler

    recipe = load_example("relay_dovecot")

    class Dovecot(RecordingHandler):
        def on_rcpt_to(self, address: Any, session: Any) -> None:
            if address.address.startswith("nobody@"):
                raise SMTPError(550, "User doesn't exist: nobody@example.com", "5.1.1")

    dovecot = Dovecot()
    body = message("relayed")
    with serve(dovecot, OPTIONS.replace(lmtp=True, name="dovecot.test")) as upstream:
        front = recipe.DovecotFront(
            "example.com", upstream=f"tcp:127.0.0.1:{upstream.port}", hostname="mx.test"
        )
        assert isinstance(front, Handler)
        with serve(front, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
            refused = c.sendmail(
                "carol@example.org",
                ["alice@example.com", "nobody@example.com", "eve@example.net"],
                body,
            )
    assert refused == {
        "nobody@example.com": (550, b"5.1.1 User doesn't exist: nobody@example.com"),
        "eve@example.net": (554, b"5.7.1 Relay access denied"),
    }
    [delivered] = dovecot.messages
    assert delivered.rcpt_to == ["alice@example.com"]
    assert delivered.data.endswith(body)


def make_maildir(root: Path, user: str) -> Path:
    for sub in ("tmp", "new", "cur"):
        (root / user / sub).mkdir(parents=True)
    return root / user


def test_lmtp_deliver(tmp_path: Path) -> None:
    """
    One LMTP reply per recipient: delivered to alice, 552 for bob's full
    mailbox; unknown users are refused at RCPT.
    """
    recipe = load_example("lmtp_deliver")
    alice = make_maildir(tmp_path, "alice")
    bob = make_maildir(tmp_path, "bob")
    (bob / "cur" / "old-message").write_bytes(b"x" * 5000)
    handler = recipe.MailboxDelivery(root=str(tmp_path), quota="4000")
    options = OPTIONS.replace(lmtp=True)
    body = message("for you")
    with serve(handler, options) as server:
        client = smtplib.LMTP(server.host, server.port)
        try:
            client.ehlo("mta.test")
            client.mail("sender@example.org")
            assert client.rcpt("alice@example.com")[0] == 250
            assert client.rcpt("nobody@example.com") == (550, b"5.1.1 No such user here")
            assert client.rcpt("bob@example.com")[0] == 250
            # smtplib.LMTP reads one DATA reply; the second is read here.
            replies = [client.data(body), client.getreply()]
        finally:
            client.quit()
    assert replies == [(250, b"2.6.0 OK: message accepted"), (552, b"5.2.2 Mailbox full")]
    [delivered] = list((alice / "new").iterdir())
    assert delivered.read_bytes() == body
    assert list((alice / "tmp").iterdir()) == []
    assert list((bob / "new").iterdir()) == []


def test_lmtp_sendmail_pitfall_is_documented() -> None:
    """Issue 17, point 10: the testing guide suggests smtplib.LMTP, so it must
    say that its sendmail reads one reply, and show the getreply() way that
    test_lmtp_deliver above exercises."""
    text = " ".join((DOCS / "howto" / "testing.rst").read_text().split())
    assert "reads only the *first* reply after the body" in text
    assert "client.getreply() for _ in accepted[1:]" in text


def test_no_page_installs_from_an_index() -> None:
    """Issue 17, point 3: smtpsession is not on a package index, so no page
    may tell a user to ``pip install smtpsession`` (the name alone)."""
    pages = [ROOT / "README.md", *DOCS.rglob("*.rst"), *DOCS.rglob("*.md")]
    pages = [p for p in pages if "_build" not in p.parts]
    for page in pages:
        for line in page.read_text().splitlines():
            assert not re.search(r"pip install smtpsession(\s|$)", line), (page.name, line)


def test_what_the_quick_start_leaves_is_ignored_by_git() -> None:
    """Issue 17, point 9: the README's quick start, run in a checkout, leaves
    a virtualenv, a Maildir and twistd's pid and log files; git ignores them."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [".venv/bin/python", ".venv-2/bin/python", "Maildir/new/1", "twistd.pid", "twistd.log"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == paths, result.stdout + result.stderr


def test_size_policy() -> None:
    """
    Anonymous senders are held to the smaller limit, declared (at MAIL) or
    not (during DATA); the server-wide limit still applies to everyone.
    """
    recipe = load_example("size_policy")
    # The handler words the server-wide refusal too.
    options = OPTIONS.replace(size=100_000, reject_oversized=False)

    big = message("big", b"x" * 5000 + b"\r\n")
    with serve(recipe.SizePolicy(anonymous_limit="1000"), options) as server:
        with smtplib.SMTP(*server.address) as c:
            assert c.sendmail("a@example.org", ["b@example.com"], message("ok")) == {}
            # smtplib declares SIZE= because the server advertises SIZE.
            with pytest.raises(smtplib.SMTPSenderRefused) as declared:
                c.sendmail("a@example.org", ["b@example.com"], big)
            assert declared.value.smtp_code == 552
            c.rset()
            c.mail("a@example.org")  # no SIZE declared
            c.rcpt("b@example.com")
            assert c.data(big)[0] == 552
            assert c.noop()[0] == 250  # the session goes on
    huge = message("huge", b"y" * 150_000 + b"\r\n")
    everyone = recipe.SizePolicy()
    everyone.limit = lambda session: None  # no per-session limit: only size
    with serve(everyone, options) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        c.mail("a@example.org")
        c.rcpt("b@example.com")
        assert c.data(big)[0] == 250
        c.mail("a@example.org")
        c.rcpt("b@example.com")
        assert c.data(huge) == (552, b"5.3.4 Message too large")


def test_greylist() -> None:
    """First attempt 450; after the delay the same triplet passes; others wait."""
    from twisted.internet.task import Clock

    recipe = load_example("greylist")
    clock = Clock()
    handler = recipe.Greylist(delay=300, expire=3600, clock=clock)
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        c.mail("a@example.org")
        code, text = c.rcpt("b@example.com")
        assert (code, text) == (450, b"4.7.1 Greylisted, please try again in 300 seconds")
        c.rset()
        clock.advance(301)
        c.mail("a@example.org")
        assert c.rcpt("b@example.com")[0] == 250
        assert c.rcpt("c@example.com")[0] == 450
        c.rset()
        clock.advance(4000)  # past the expiry: greylisted again
        c.mail("a@example.org")
        assert c.rcpt("b@example.com")[0] == 450


def _with_login(cls: type, *args: Any) -> Any:
    """The recipe's handler, with AUTH for user "carol" (password "pw")."""

    class WithLogin(cls):  # type: ignore[misc, valid-type]
        def on_auth(self, auth: Any, session: Any) -> Any:
            return auth.username if auth.validate_password("pw") else None

    return WithLogin(*args)


LOGIN_OPTIONS = OPTIONS.replace(allow_insecure_auth=True, auth_optional=True)


def test_helo_policy() -> None:
    """Our own name and dotless names are refused at the hello; the session stays ungreeted."""
    recipe = load_example("helo_policy")
    with serve(recipe.HeloPolicy(["docs.test"]), OPTIONS) as server, smtplib.SMTP(
        *server.address
    ) as c:
        assert c.ehlo("docs.test") == (550, b"You are not me")
        assert c.helo("localhost") == (550, b"Give your fully qualified host name")
        assert c.docmd("MAIL FROM:<a@example.org>")[0] == 503
        assert c.ehlo("[127.0.0.1]")[0] == 250
        assert c.ehlo("client.example.org")[0] == 250
        assert c.ehlo("docs.test") == (550, b"5.7.1 You are not me")
        assert c.docmd("MAIL FROM:<a@example.org>")[0] == 250  # the last good EHLO stands


def test_vrfy_directory() -> None:
    """Strangers get 252; a logged-in user gets 250, 553 with candidates, or 550."""
    recipe = load_example("vrfy_directory")
    people = {
        "alice@example.com": "Alice Liddell",
        "alice@example.org": "Alice Other",
        "bob@example.com": "Bob Builder",
    }
    handler = _with_login(recipe.Directory, people)
    with serve(handler, LOGIN_OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        assert c.verify("bob@example.com")[0] == 252
        c.login("carol", "pw")
        assert c.verify("bob@example.com") == (250, b"2.1.5 Bob Builder <bob@example.com>")
        assert c.verify("bob") == (250, b"2.1.5 Bob Builder <bob@example.com>")
        assert c.verify("nobody@example.com") == (550, b"5.1.1 Error: no such user")
        code, text = c.verify("alice")
        assert code == 553 and text.splitlines() == [
            b"5.1.4 User ambiguous, possibilities:",
            b"5.1.4 Alice Liddell <alice@example.com>",
            b"5.1.4 Alice Other <alice@example.org>",
        ]


def test_expn_lists() -> None:
    """EXPN is 502 for strangers; a logged-in user gets the members, or 550."""
    recipe = load_example("expn_lists")
    handler = _with_login(recipe.MailingLists, {"staff": ["alice@example.com", "bob@example.com"]})
    with serve(handler, LOGIN_OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        assert c.expn("staff") == (502, b"5.5.1 Error: command not implemented")
        c.login("carol", "pw")
        assert c.expn("Staff") == (250, b"2.1.5 <alice@example.com>\n2.1.5 <bob@example.com>")
        assert c.expn("staff@example.com")[0] == 250
        assert c.expn("nobody") == (550, b"5.1.1 Error: no such mailing list")


def test_rset_release() -> None:
    """RCPT reserves quota; RSET gives it back (before its 250); a stored message uses it."""
    recipe = load_example("rset_release")
    handler = recipe.QuotaReservations({"alice@example.com": 1})
    with serve(handler, OPTIONS) as server, smtplib.SMTP(*server.address) as c:
        c.ehlo("client.test")
        c.mail("a@example.org")
        assert c.rcpt("alice@example.com")[0] == 250
        assert handler.free == {"alice@example.com": 0}
        c.mail("b@example.org")  # nested MAIL: refused, the reservation stays
        assert c.rcpt("alice@example.com") == (452, b"4.2.2 Mailbox full, try again later")
        assert c.rset() == (250, b"2.0.0 Flushed")
        assert handler.free == {"alice@example.com": 1}
        assert c.sendmail("a@example.org", ["alice@example.com"], message("kept")) == {}
        assert handler.free == {"alice@example.com": 0}
        assert [mailbox for mailbox, _ in handler.stored] == ["alice@example.com"]
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            c.sendmail("a@example.org", ["alice@example.com"], message("full"))
        assert c.rcpt("nobody@example.com")[0] == 503  # sendmail reset the transaction


# ---------------------------------------------------------------------------
# The migration guides
# ---------------------------------------------------------------------------

MIGRATION_GUIDES = ("howto/from-aiosmtpd.rst", "howto/from-smtp-server.rst")

#: A Python cross-reference: ``:attr:`title <target>```, ``:attr:`~target```,
#: or ``:attr:`!target``` for a name that has no entry of its own in the docs.
_PY_XREF = re.compile(r":(?:py:)?(?:attr|meth|class|func|mod|exc|obj|data):`([^`]+)`")
_OPTION_XREF = re.compile(r":option:`([^`]+)`")
_LITERAL_FLAG = re.compile(r"``--([a-z0-9][a-z0-9-]*)")
_LITERAL_COMMAND = re.compile(r"``((?:twistd|smtpsession|python3? -m smtpsession) [^`]+)``")

#: smtp-server's options and callbacks that the guide's tables must map.
SMTP_SERVER_NAMES = [
    "secure", "name", "banner", "size", "hideSTARTTLS", "hideSize", "hidePIPELINING",
    "hide8BITMIME", "hideSMTPUTF8", "authMethods", "authOptional", "disabledCommands",
    "allowInsecureAuth", "disableReverseLookup", "maxClients", "useProxy", "useXClient",
    "useXForward", "lmtp", "socketTimeout", "closeTimeout", "onAuth(", "onConnect(",
    "onSecure(", "onMailFrom(", "onRcptTo(", "onData(", "onClose(", "stream.sizeExceeded",
    "err.responseCode", "session.envelope",
]


def _xref_target(text: str) -> str:
    """A role's target: what is in <...>, else the whole text; no ~ or !."""
    m = re.search(r"<([^<>]+)>\s*$", text)
    return (m.group(1) if m else text).strip().lstrip("!~")


def _cites_smtpsession(target: str) -> bool:
    """The names conf.py holds to account: the package's and its __all__'s."""
    return target.split(".")[0] in ("smtpsession", *smtpsession.__all__)


def _has(obj: Any, name: str) -> bool:
    """Whether a module, class or zope interface has the attribute NAME."""
    from zope.interface.interface import InterfaceClass

    if isinstance(obj, InterfaceClass):
        return name in obj.names()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj):
        if name in {f.name for f in dataclasses.fields(obj)}:
            return True  # a field with a default_factory has no class attribute
    return hasattr(obj, name)


def _resolves(target: str) -> bool:
    """Whether TARGET (relative to the package, as on the pages) exists."""
    if target.split(".")[0] != "smtpsession":
        target = f"smtpsession.{target}"
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            if not _has(obj, name):
                return False
            obj = getattr(obj, name, None)
        return True
    return False


def _literal_blocks(text: str) -> list[tuple[str, str]]:
    """
    Every literal block of a page as (language, code): the
    ``.. code-block:: LANGUAGE`` directives, and the ``::`` paragraphs
    (Python, the manual's default).
    """
    import textwrap

    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = re.match(r"\s*\.\. code-block:: (\w+)\s*$", line)
        if m:
            language = m.group(1)
        elif line.rstrip().endswith("::") and not re.match(r"\s*\.\. [\w:-]+::", line):
            language = "python"
        else:
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        while i < len(lines) and (
            not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent
        ):
            body.append(lines[i])
            i += 1
        blocks.append((language, textwrap.dedent("\n".join(body)).strip("\n")))
    return blocks


#: How a command line that runs the daemon starts.
_DAEMON_COMMAND = re.compile(r"(twistd|smtpsession|python3? -m smtpsession)( |$)")


def _daemon_commands(code: str) -> list[list[str]]:
    """
    The command lines of a shell block that run the daemon (``twistd ...
    smtpsession``, ``smtpsession``, ``python -m smtpsession``), split into
    words.
    """
    joined = re.sub(r"\\\n\s*", " ", code)
    return [
        line.split() for line in joined.splitlines() if _DAEMON_COMMAND.match(line.strip())
    ]


def _unknown_flags(words: list[str], twistd_flags: set[str], flags: set[str]) -> list[str]:
    """The --flags of a daemon command line that twistd (before the
    ``smtpsession`` subcommand) or the daemon (after it) does not have."""
    subcommand = words.index("smtpsession") if "smtpsession" in words else len(words)
    if subcommand == 0:  # the smtpsession command: the daemon's flags and --reactor
        flags = flags | {"reactor"}
    unknown = []
    for position, word in enumerate(words):
        if word.startswith("--"):
            known = twistd_flags if position < subcommand else flags
            if word[2:].split("=")[0] not in known:
                unknown.append(word)
    return unknown


def test_migration_guides_name_real_things() -> None:
    """
    Every smtpsession name the migration guides cite exists.  The pages cite
    them in forms a machine can check: Python roles (``:attr:``,
    ``:meth:``, ``:class:``, ...) whose targets must resolve (an
    ``SMTPServerOptions.X`` target must be a dataclass field, a
    ``Handler.X`` target a hook), ``:option:`` roles and ``--flag``
    literals that must be flags of ``twistd smtpsession`` (or of twistd
    itself), daemon command lines (inline, or in shell blocks), and Python
    blocks
    that must parse, import only names smtpsession has, and define only
    real hooks.  Each guide maps every hook, and the smtp-server guide
    every option and callback of smtp-server it promises to.
    """
    import ast

    from twisted.scripts.twistd import ServerOptions

    from smtpsession import ISMTPHandler

    hooks = set(ISMTPHandler.names())
    fields = {f.name for f in dataclasses.fields(SMTPServerOptions)}
    flags = set(daemon_flags())
    assert flags, "the daemon's flags could not be read"
    twistd_flags = {entry.rstrip("=") for entry in ServerOptions().longOpt}
    index = (DOCS / "index.rst").read_text()
    problems: list[str] = []
    cited_fields: dict[str, set[str]] = {}

    for guide in MIGRATION_GUIDES:
        text = (DOCS / guide).read_text()
        if guide.removesuffix(".rst") not in index:
            problems.append(f"{guide}: not in the toctree of index.rst")
        fields_here = cited_fields[guide] = set()
        hooks_here = set()

        for role_text in _PY_XREF.findall(text):
            target = _xref_target(role_text)
            if not _cites_smtpsession(target):
                continue  # another project's name (Twisted's Deferred)
            if not _resolves(target):
                problems.append(f"{guide}: {target} does not exist")
            owner, _, attribute = target.rpartition(".")
            owner = owner.rpartition(".")[2]
            if owner == "SMTPServerOptions" and attribute not in ("replace", "hidden_extensions"):
                if attribute in fields:
                    fields_here.add(attribute)
                else:
                    problems.append(f"{guide}: SMTPServerOptions has no field {attribute!r}")
            if owner == "Handler":
                if attribute in hooks:
                    hooks_here.add(attribute)
                else:
                    problems.append(f"{guide}: {attribute!r} is not a hook")

        for role_text in _OPTION_XREF.findall(text):
            flag = _xref_target(role_text).split()[0].lstrip("-")
            if flag not in flags:
                problems.append(f"{guide}: twistd smtpsession has no flag --{flag}")
        for flag in _LITERAL_FLAG.findall(text):
            if flag not in flags | twistd_flags:
                problems.append(f"{guide}: ``--{flag}`` is no flag of twistd or the daemon")

        for language, code in _literal_blocks(text):
            if language == "python":
                try:
                    tree = ast.parse(code)
                except SyntaxError as e:
                    problems.append(f"{guide}: a Python block does not parse: {e}\n{code}")
                    continue
                for node in ast.walk(tree):
                    if (
                        isinstance(node, ast.ImportFrom)
                        and node.module
                        and node.module.split(".")[0] == "smtpsession"
                    ):
                        module = importlib.import_module(node.module)
                        problems.extend(
                            f"{guide}: from {node.module} import {alias.name}: no such name"
                            for alias in node.names
                            if not hasattr(module, alias.name)
                        )
                    if (
                        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                        and node.name.startswith("on_")
                        and node.name not in hooks
                    ):
                        problems.append(f"{guide}: def {node.name}: not a hook")
            elif language == "sh":
                for words in _daemon_commands(code):
                    for word in _unknown_flags(words, twistd_flags, flags):
                        problems.append(f"{guide}: {' '.join(words)}: unknown {word}")
        for command in _LITERAL_COMMAND.findall(text):
            for word in _unknown_flags(command.split(), twistd_flags, flags):
                problems.append(f"{guide}: ``{command}``: unknown {word}")

        if hooks - hooks_here:
            problems.append(f"{guide}: hooks not mapped: {sorted(hooks - hooks_here)}")

    smtp_server = (DOCS / "howto" / "from-smtp-server.rst").read_text()
    problems.extend(
        f"from-smtp-server.rst: smtp-server's {name.rstrip('(')} is not mapped"
        for name in SMTP_SERVER_NAMES
        if f"``{name}" not in smtp_server
    )
    # The options table maps smtp-server's options (some 45 of them) to fields.
    assert len(cited_fields["howto/from-smtp-server.rst"]) >= 45, sorted(
        cited_fields["howto/from-smtp-server.rst"]
    )
    assert not problems, "\n".join(problems)


def test_from_aiosmtpd_example(tmp_path: Path) -> None:
    """
    The aiosmtpd guide's handler: other domains are refused, a message is
    saved whole under a unique name that the reply gives, and a body cut
    short leaves no file behind.
    """
    from smtpsession.testing.memory import MemoryServer

    example = load_example("from_aiosmtpd")
    directory = tmp_path / "mail"
    server = MemoryServer(example.SaveToDirectory("Example.COM", str(directory)))
    client = server.connect()
    client.ehlo()
    body = message("saved")
    replies = client.send_message("a@example.org", ["bob@example.com", "eve@example.net"], body)
    assert replies[:3] == [
        "250 2.1.0 Accepted",
        "250 2.1.5 Accepted",
        "550 5.7.1 Relaying denied",
    ]
    assert replies[3].startswith("354 ")
    saved = re.fullmatch(r"250 2\.6\.0 OK: saved as ([0-9a-f]{32}\.1\.eml)", replies[4])
    assert saved is not None, replies
    assert [p.name for p in directory.iterdir()] == [saved.group(1)]
    assert (directory / saved.group(1)).read_bytes() == body

    cut = server.connect()
    cut.ehlo()
    cut.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n" + body)
    cut.disconnect()
    assert [p.name for p in directory.iterdir()] == [saved.group(1)]


@pytest.fixture(autouse=True)
def _forget_examples() -> Iterator[None]:
    """Each test imports the examples afresh."""
    yield
    for name in [n for n in sys.modules if n.startswith("docs_example_")]:
        del sys.modules[name]
