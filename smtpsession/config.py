# -*- test-case-name: tests.unit.test_config -*-
"""
C{--config PATH}: the daemon's flags in a TOML file.

The file's top-level keys are the long flag names in snake_case
(C{port = ["tcp:2525:interface=127.0.0.1"]}, C{hook_timeout = 60},
C{no_transaction_log = true}), and a C{[handler_options]} table holds the
C{--handler-option} values.  The file becomes command-line arguments placed
before the real ones, so there is one parser and one set of checks and
error messages for both; a flag given on the command line replaces the
file's value (for a repeatable flag such as C{--port}, all of the file's
values).  An unknown key is an error naming it: a misspelt option must not
be silently ignored by a mail server.

Read with the standard library's C{tomllib}.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from twisted.python import usage

__all__ = ["find_flag", "config_path", "given_flags", "config_arguments"]

#: The table of handler keyword arguments, and the flag it stands for.
HANDLER_OPTIONS = "handler_options"


def find_flag(argv: Sequence[str], name: str) -> tuple[slice, str] | None:
    """
    Where the last C{--NAME VALUE} or C{--NAME=VALUE} is in C{argv} (before
    any C{--}), and its value; C{None} if it is not there.
    """
    found = None
    for i, token in enumerate(argv):
        if token == "--":
            break
        if token == f"--{name}" and i + 1 < len(argv):
            found = slice(i, i + 2), argv[i + 1]
        elif token.startswith(f"--{name}="):
            found = slice(i, i + 1), token[len(name) + 3 :]
    return found


def config_path(argv: Sequence[str]) -> str | None:
    """The value of C{--config} in C{argv}, if there is one (the last wins)."""
    found = find_flag(argv, "config")
    return None if found is None else found[1]


def given_flags(argv: Sequence[str]) -> set[str]:
    """The long flags named in C{argv} (without their values)."""
    names = set()
    for token in argv:
        if token == "--":
            break
        if token.startswith("--"):
            names.add(token[2:].split("=", 1)[0])
    return names


def config_arguments(
    path: str, takes_value: Mapping[str, bool], repeatable: Iterable[str], given: set[str]
) -> list[str]:
    """
    The arguments the file at C{path} stands for.

    @param takes_value: every long flag → whether it takes a value.
    @param repeatable: the flags that may be given more than once.
    @param given: the flags of the command line, which the file's yield to.
    @raise usage.UsageError: the file cannot be read or parsed, or has an
        unknown key or a value of the wrong kind.
    """
    try:
        with open(path, "rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise usage.UsageError(f"--config {path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise usage.UsageError(f"--config {path}: not valid TOML: {e}") from None
    many = set(repeatable)
    out: list[str] = []
    for key, value in table.items():
        flag = "handler-option" if key == HANDLER_OPTIONS else key.replace("_", "-")
        if flag not in takes_value or flag in ("config", "help", "version") or "-" in key:
            raise usage.UsageError(f"--config {path}: unknown key {key!r}")
        if flag in given:
            continue
        out += _arguments(path, key, flag, value, takes_value[flag], flag in many)
    return out


def _arguments(path: str, key: str, flag: str, value: Any, takes_value: bool, many: bool) -> list[str]:
    where = f"--config {path}: {key}"
    if key == HANDLER_OPTIONS:
        if not isinstance(value, dict):
            raise usage.UsageError(f"{where} must be a table of KEY = VALUE")
        return [f"--{flag}={k}={_scalar(where, v)}" for k, v in value.items()]
    if not takes_value:
        if not isinstance(value, bool):
            raise usage.UsageError(f"{where} must be true or false")
        return [f"--{flag}"] if value else []
    if isinstance(value, list):
        if not many:
            raise usage.UsageError(f"{where} takes one value, not a list")
        return [f"--{flag}={_scalar(where, item)}" for item in value]
    return [f"--{flag}={_scalar(where, value)}"]


def _scalar(where: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise usage.UsageError(f"{where} must be a string or a number, not {value!r}")
    return str(value)
