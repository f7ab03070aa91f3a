"""
The options and daemon flags of the optional extensions: C{--hide LIMITS}
(C{hide_limits}) and C{--enable} (C{enable}: RRVS, DELIVERBY, MT-PRIORITY).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from smtpsession.options import SMTPServerOptions
from tests.unit.taputil import keep_sys_path, parse  # noqa: F401 (keep_sys_path: autouse)


def test_hide_limits_flag() -> None:
    """--hide LIMITS sets hide_limits, which hidden_extensions reports."""
    o = parse("--hide", "limits").server_options
    assert o is not None
    assert o.hide_limits is True
    assert "LIMITS" in o.hidden_extensions
    default = parse().server_options
    assert default is not None and default.hide_limits is False


def test_enable_flag_is_repeatable_and_comma_separated() -> None:
    """--enable rrvs,deliverby --enable MT-Priority turns all three on, upper-cased."""
    o = parse("--enable", "rrvs,deliverby", "--enable", "MT-Priority").server_options
    assert o is not None
    assert o.enable == ("RRVS", "DELIVERBY", "MT-PRIORITY")
    default = parse().server_options
    assert default is not None and default.enable == ()


def test_enable_flag_refuses_unknown_extensions() -> None:
    """An unknown name is a usage error that lists the known ones."""
    with pytest.raises(usage.UsageError, match=r"--enable.*'XYZZY'.*DELIVERBY, MT-PRIORITY, RRVS"):
        parse("--enable", "rrvs,xyzzy")


def test_enable_option_values() -> None:
    """The option takes a list or a comma-separated string; unknown names are a ValueError."""
    assert SMTPServerOptions(name="x", enable="rrvs, mt-priority").enable == ("RRVS", "MT-PRIORITY")
    assert SMTPServerOptions(name="x", enable=["DELIVERBY", "deliverby"]).enable == ("DELIVERBY",)
    with pytest.raises(ValueError, match=r"unknown extension 'PRIORITY'.*RRVS, DELIVERBY, MT-PRIORITY"):
        SMTPServerOptions(name="x", enable=["priority"])


def test_enable_in_a_config_file(tmp_path: Path) -> None:
    """enable = [...] in the TOML file is the flag."""
    path = tmp_path / "smtpsession.toml"
    path.write_text('enable = ["rrvs", "mt-priority"]\n')
    o = parse("--config", str(path)).server_options
    assert o is not None and o.enable == ("RRVS", "MT-PRIORITY")
