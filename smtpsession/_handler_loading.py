# -*- test-case-name: tests.unit.test_tap -*-
"""
C{--handler}: from the text of the flag to the handler object.

C{module.Class}, C{module:attribute} or a built-in short name; modules are
found in the current directory too.  Separate from L{smtpsession.tap} so
that the command line's module stays readable in one sitting.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from twisted.python import usage

__all__ = ["BUILTIN_HANDLERS", "load_handler", "build_handler", "asyncio_without_its_reactor", "one_line"]

#: The handlers C{--handler} knows by a short name.
BUILTIN_HANDLERS = {
    "maildir": "smtpsession.handlers.MaildirHandler",
    "relay": "smtpsession.handlers.RelayHandler",
    "amqp": "smtpsession.handlers.AMQPHandler",
    "log": "smtpsession.handlers.LogHandler",
    "sink": "smtpsession.handlers.SinkHandler",
}


def load_handler(spec: str) -> object:
    """
    The object C{--handler} names: C{module.Class}, C{module:attribute}
    (dotted attributes allowed) or a built-in short name.

    Modules are found in the current directory too, as gunicorn and uvicorn
    find an application there: C{twistd} does not put it on C{sys.path}, and
    a handler module beside the user is the first thing a new user writes.
    Twisted's C{namedAny} is not used because its one error ("does not name
    an object") hides whether the module is missing, fails to import, or
    lacks the attribute; each of those gets its own message here.

    @raise usage.UsageError: when it cannot be imported.
    """
    name = BUILTIN_HANDLERS.get(spec.lower(), spec)
    if ":" in name:
        module_name, _, attribute = name.partition(":")
        candidates = [(module_name, attribute.split("."))]
    elif "." in name:
        parts = name.split(".")
        # Longest module first: a.b.C may be class C of module a.b.
        candidates = [(".".join(parts[:i]), parts[i:]) for i in range(len(parts) - 1, 0, -1)]
    else:
        raise usage.UsageError(
            f"--handler {spec!r}: give module.Class, module:attribute, or one of "
            + ", ".join(BUILTIN_HANDLERS)
        )
    _search_current_directory()
    for module_name, attributes in candidates:
        module = _import_handler_module(spec, module_name)
        if module is None:
            continue
        obj: Any = module
        for i, part in enumerate(attributes):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                owner = ".".join([module_name, *attributes[:i]])
                raise usage.UsageError(
                    f"--handler {spec!r}: {owner} has no attribute {part!r}"
                ) from None
        return obj
    raise usage.UsageError(
        f"--handler {spec!r}: no module named {candidates[-1][0]!r} "
        f"(looked in the current directory, {os.getcwd()}, and on sys.path)"
    )


def _search_current_directory() -> None:
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def _import_handler_module(spec: str, module_name: str) -> Any:
    """
    The module, or None when it does not exist (so that a shorter prefix may
    be tried); a module that exists but fails to import is an error naming
    the module and its own exception.
    """
    try:
        return importlib.import_module(module_name)
    except Exception as e:
        missing = e.name if isinstance(e, ModuleNotFoundError) else None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            return None
        raise usage.UsageError(
            f"--handler {spec!r}: module {module_name!r} failed to import: {one_line(e)}"
        ) from None


def build_handler(spec: str, target: object, kwargs: dict[str, Any]) -> object:
    """
    The handler object: C{target} itself, or what C{target(**kwargs)}
    returns when it is a class (or a plain function, taken as a factory).
    """
    if isinstance(target, type) or inspect.isfunction(target):
        accepted = _accepted_keywords(target)
        if accepted is not None:
            # Defaults the daemon supplies (hostname) are dropped if the
            # class does not take them; the user's own options are not.
            kwargs = {k: v for k, v in kwargs.items() if k in accepted or k != "hostname"}
        try:
            return target(**kwargs)
        except Exception as e:
            raise usage.UsageError(f"--handler {spec!r} could not be created: {one_line(e)}") from None
    if kwargs:
        raise usage.UsageError(
            f"--handler-option needs a class or factory, but {spec!r} is an object"
        )
    return target


def _accepted_keywords(target: Any) -> set[str] | None:
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def asyncio_without_its_reactor(handler: object, reactor: Any) -> str | None:
    """
    A warning for a handler whose module imports asyncio while the reactor
    is not Twisted's asyncio reactor, or C{None}.  Such hooks fail at their
    first asyncio call ("no running event loop"); saying so at start, with
    the fix, spares the user a 451 and a traceback to decode.  A module that
    imports asyncio without using it in hooks gets the warning too: it is a
    hint, not an error.
    """
    import asyncio

    module = sys.modules.get(getattr(type(handler), "__module__", "") or "")
    if module is None or not any(v is asyncio for v in vars(module).values()):
        return None
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if isinstance(reactor, AsyncioSelectorReactor):
        return None
    return (
        f"the handler's module {module.__name__} imports asyncio, but the reactor is "
        f"{type(reactor).__name__}: hooks that use asyncio need "
        "twistd --reactor=asyncio -n smtpsession ... (or smtpsession --reactor=asyncio ...)"
    )

