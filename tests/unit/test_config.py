"""
--config PATH (smtpsession.config): a TOML file of the daemon's flags, the
command line overriding it; the sample file in contrib/ and the systemd
unit beside it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from twisted.python import usage

from smtpsession import tap
from tests.unit.taputil import keep_sys_path, parse  # noqa: F401 (keep_sys_path: autouse)

ROOT = Path(__file__).resolve().parent.parent.parent
SAMPLE = ROOT / "contrib" / "smtpsession.toml"
UNIT = ROOT / "contrib" / "smtpsession.service"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "smtpsession.toml"
    path.write_text(text)
    return str(path)


def test_the_file_sets_options(tmp_path: Path) -> None:
    path = write(tmp_path, """
port = ["tcp:2526:interface=127.0.0.1", "tcp6:2526:interface=\\\\:\\\\:1"]
handler = "sink"
size = 5000
hook_timeout = 2.5
no_transaction_log = true
no_reverse_lookup = false
auth_methods = ["PLAIN"]
""")  # fmt: skip
    options = parse("--config", path)
    assert options.endpoints == ["tcp:2526:interface=127.0.0.1", "tcp6:2526:interface=\\:\\:1"]
    assert type(options.handler).__name__ == "SinkHandler"
    assert options.server_options is not None
    assert options.server_options.size == 5000
    assert options.server_options.hook_timeout == 2.5
    assert options.server_options.transaction_log is False
    assert options.server_options.disable_reverse_lookup is False
    assert tuple(options.server_options.auth_methods) == ("PLAIN",)


def test_the_command_line_overrides_the_file(tmp_path: Path) -> None:
    """Whatever the order: a scalar flag, and a repeatable one (the file's
    ports are dropped, not added to)."""
    path = write(tmp_path, 'port = ["tcp:2526"]\nsize = 5000\nhandler = "sink"\n')
    for argv in (
        ["--config", path, "--size", "7000", "--port", "tcp:2527"],
        ["--size=7000", "--port=tcp:2527", f"--config={path}"],
    ):
        options = parse(*argv)
        assert options.server_options is not None
        assert options.server_options.size == 7000
        assert options.endpoints == ["tcp:2527"]


def test_handler_options_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'handler = "maildir"\n[handler_options]\nper_recipient = "yes"\n')
    options = parse("--config", path, "--maildir", str(tmp_path / "Maildir"))
    assert options.handler.per_recipient is True  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sise = 10\n", "unknown key 'sise'"),
        ("hook-timeout = 10\n", "unknown key 'hook-timeout'"),
        ("config = 'x.toml'\n", "unknown key 'config'"),
        ("size = [1, 2]\n", "size takes one value, not a list"),
        ("no_transaction_log = 'yes'\n", "no_transaction_log must be true or false"),
        ("size = true\n", "size must be a string or a number"),
        ("handler_options = 3\n", "handler_options must be a table"),
        ("size = \n", "not valid TOML"),
        ("size = 'lots'\n", "--size wants a whole number, not 'lots'"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(usage.UsageError) as info:
        parse("--config", path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match=r"--config .*nothere.toml: No such file"):
        parse("--config", str(tmp_path / "nothere.toml"))


# ---------------------------------------------------------------------------
# contrib/
# ---------------------------------------------------------------------------


def test_the_sample_names_every_option() -> None:
    """Every flag of the daemon appears in the sample file, as a key (active
    or commented out), with its help text above it."""
    text = SAMPLE.read_text()
    keys = set()
    for line in text.splitlines():
        line = line.removeprefix("# ")
        if " = " in line and not line.startswith(" "):
            keys.add(line.split(" = ", 1)[0])
    options = tap.Options()
    flags = {entry.rstrip("=") for entry in options.longOpt} - {"help", "version", "config"}
    missing = {f for f in flags if f.replace("-", "_") not in keys} - {"handler-option"}
    assert missing == set()
    assert "[handler_options]" in text


def test_the_sample_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = parse("--config", str(SAMPLE))
    assert options.endpoints == ["tcp:2525:interface=127.0.0.1"]
    assert options.server_options is not None and options.server_options.size == 10485760


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze finds nothing to say about the unit (it warns, with
    status 0, about unknown keys and bad values: any output fails)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text()
    assert "ExecStart=/opt/smtpsession/bin/smtpsession --config /etc/smtpsession/smtpsession.toml" in text
    # The command must exist for systemd-analyze: any executable will do.
    unit = tmp_path / "smtpsession.service"
    unit.write_text(text.replace("/opt/smtpsession/bin/smtpsession", shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
