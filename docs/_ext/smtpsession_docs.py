"""
Sphinx helpers for the smtpsession manual.

Everything here exists so that the reference pages are generated from the
code they describe and cannot drift from it:

- ``epytext``: smtpsession's docstrings use epytext markup (``L{...}``,
  ``C{...}``, ``@param``), as Twisted does.  They are converted to reST
  before autodoc renders them.  ``L{...}`` becomes a cross-reference that
  quietly falls back to literal text when its target is not documented
  (private helpers), so a docstring can never break the build by naming
  one.
- ``.. smtpsession-options::``: every field of ``SMTPServerOptions`` with
  its type, default, twistd flag and help text, read from the dataclass
  fields and their metadata.
- ``.. smtpsession-daemon-flags::``: every flag of ``twistd smtpsession``,
  read from ``smtpsession.tap.Options`` (or, while that module does not
  exist yet, from the options' metadata plus the daemon flags that the
  API contract promises).
- ``.. smtpsession-replies::`` and ``.. smtpsession-enhanced-codes::``:
  the fixed replies and the default enhanced status codes, read from
  ``smtpsession._core.replies``.
- ``.. smtpsession-interface::``: a zope.interface ``Interface`` (which
  autodoc does not understand) as a class with its methods and attributes.
- ``.. smtpsession-docstring::``: a module docstring (the core's "theory of
  operation") rendered in a page.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.domains.python import PyXRefRole
from sphinx.environment import BuildEnvironment
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

# ---------------------------------------------------------------------------
# Epytext → reST
# ---------------------------------------------------------------------------

#: Epytext fields and the reST info fields they become.
_FIELDS = {
    "param": "param",
    "type": "type",
    "keyword": "keyword",
    "kwarg": "keyword",
    "ivar": "ivar",
    "cvar": "cvar",
    "var": "var",
    "return": "returns",
    "returns": "returns",
    "rtype": "rtype",
    "raise": "raises",
    "raises": "raises",
    "note": "note",
    "see": "see",
    "since": "since",
}
_FIELD = re.compile(r"^(\s*)@(\w+)(\s+[^:]+?)?\s*:(.*)$")
_MARKUP = re.compile(r"(?<![A-Za-z0-9_])([LCIBUEMX])\{")
_WORDISH = re.compile(r"[A-Za-z0-9_]")


def _braced(text: str, start: int) -> int:
    """The index of the C{}} closing the C{{} at C{start - 1}, or -1."""
    depth = 1
    i = start
    while i < len(text):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _inline(kind: str, inner: str) -> str:
    """One epytext inline markup as reST."""
    if kind == "E":
        return {"lb": "{", "rb": "}"}.get(inner, inner)
    if kind == "C":
        inner = inner.strip()
        return f"``{inner}``" if inner else ""
    if kind == "I":
        return f"*{inner}*"
    if kind == "B":
        return f"**{inner}**"
    if kind == "U":
        m = re.match(r"(.*?)\s*<(.+)>\s*$", inner, re.DOTALL)
        if m:
            return f"`{m.group(1)} <{m.group(2)}>`_"
        return inner
    if kind == "L":
        inner = inner.strip()
        m = re.match(r"(.*?)\s*<(.+)>\s*$", inner, re.DOTALL)
        if m and m.group(1):
            return f":epy:`{m.group(1)} <{m.group(2).strip()}>`"
        return f":epy:`{inner}`"
    return inner  # M{}, X{}: keep the text


def epytext_inline(text: str) -> str:
    """Convert the inline markup of one paragraph-ish string."""
    out: list[str] = []
    pos = 0
    while True:
        m = _MARKUP.search(text, pos)
        if m is None:
            out.append(text[pos:])
            break
        end = _braced(text, m.end())
        if end < 0:
            out.append(text[pos:])
            break
        out.append(text[pos : m.start()])
        rendered = _inline(m.group(1), epytext_inline(text[m.end() : end]))
        if rendered and m.group(1) in "CILBU":
            # reST inline markup must be delimited by space or punctuation.
            before = "".join(out)[-1:]
            if before and _WORDISH.match(before):
                rendered = "\\ " + rendered
            after = text[end + 1 : end + 2]
            if after and _WORDISH.match(after):
                rendered += "\\ "
        out.append(rendered)
        pos = end + 1
    return "".join(out)


_LIST_ITEM = re.compile(r"\s*(?:[-*+]|\d+[.)]|#[.)]|:\w|\.\. |>>>)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _mark_code_blocks(lines: list[str]) -> list[str]:
    """
    Make indented blocks literal.  Docstrings often show code indented
    under a paragraph without the C{::} that reST (and epytext) want; as a
    block quote it renders badly and breaks the build when it nests.
    Lists, directives, doctests and field bodies are left alone.
    """
    out: list[str] = []
    prev = ""  # the last non-blank line before the current blank run
    blank = False
    in_literal = -1  # indent of the paragraph that opened a literal block
    for line in lines:
        if not line.strip():
            blank = True
            out.append(line)
            continue
        indent = _indent(line)
        if in_literal >= 0 and indent > in_literal:
            out.append(line)
            prev, blank = line, False
            continue
        in_literal = -1
        if (
            blank
            and prev
            and indent > _indent(prev)
            and not _LIST_ITEM.match(line)
            and not _FIELD.match(prev)
            and not prev.lstrip().startswith((".. ", ":"))
        ):
            if not prev.rstrip().endswith("::"):
                out[-1:-1] = ["", " " * _indent(prev) + "::"]
            in_literal = _indent(prev)
        elif prev.rstrip().endswith("::"):
            in_literal = _indent(prev)
        out.append(line)
        prev, blank = line, False
    return out


def epytext_to_rest(lines: list[str]) -> list[str]:
    """Convert a docstring's lines (fields and inline markup)."""
    lines = _mark_code_blocks(lines)
    out = []
    in_literal = -1
    buffer: list[str] = []

    def flush() -> None:
        text = "\n".join(buffer)
        if "{" in text:
            text = epytext_inline(text)
        for line in text.split("\n") if buffer else []:
            m = _FIELD.match(line)
            if m is not None and m.group(2) in _FIELDS:
                indent, name, arg, rest = m.groups()
                arg = f" {arg.strip()}" if arg else ""
                line = f"{indent}:{_FIELDS[name]}{arg}:{rest}"
            out.append(line)
        buffer.clear()

    prev = ""
    for line in lines:
        stripped = line.strip()
        # Literal blocks are code: no epytext in them.
        if in_literal >= 0:
            if not stripped or _indent(line) > in_literal:
                out.append(line)
                continue
            in_literal = -1
        if stripped and prev.rstrip().endswith("::") and _indent(line) > _indent(prev):
            flush()
            in_literal = _indent(prev)
            out.append(line)
            prev = line
            continue
        buffer.append(line)
        if stripped:
            prev = line
    flush()
    return out


def _process_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    lines[:] = epytext_to_rest(lines)


class EpyRole(PyXRefRole):
    """
    The role C{L{...}} becomes: a Python cross-reference that falls back to
    literal text when its target is not documented.
    """

    def run(self) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        self.name = "py:obj"
        return super().run()

    def result_nodes(
        self,
        document: nodes.document,
        env: BuildEnvironment,
        node: nodes.Element,
        is_ref: bool,
    ) -> tuple[list[nodes.Node], list[nodes.system_message]]:
        node["smtpsession_epytext"] = True
        return [node], []


def _missing_reference(
    app: Sphinx, env: BuildEnvironment, node: nodes.Element, contnode: nodes.Element
) -> nodes.Element | None:
    if node.get("smtpsession_epytext"):
        return contnode
    return None


# ---------------------------------------------------------------------------
# Small helpers for generated reST
# ---------------------------------------------------------------------------

_ESCAPE = re.compile(r"([\\`*_|<>\[\]])")


def rst_escape(text: str) -> str:
    """Plain text that reST shows as is."""
    return _ESCAPE.sub(r"\\\1", text)


def literal(text: str) -> str:
    """Inline literal that survives any content (backquotes included)."""
    if "`" in text or text != text.strip() or not text:
        return f":literal:`{rst_escape(text)}`" if text.strip() else "(empty)"
    return f"``{text}``"


class _GeneratedDirective(SphinxDirective):
    """A directive that writes reST and parses it in place."""

    has_content = False

    def generate(self) -> Iterable[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        source = f"<generated by {self.name}>"
        content = StringList()
        for i, line in enumerate(self.generate()):
            content.append(line, source, i)
        node = nodes.section()
        node.document = self.state.document
        nested_parse_with_titles(self.state, content, node)
        return list(node.children)


def _table(header: list[str], rows: list[list[str]], widths: str = "auto") -> list[str]:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        first = True
        for cell in row:
            out.append(("   * - " if first else "     - ") + (cell or " "))
            first = False
    out.append("")
    return out


# ---------------------------------------------------------------------------
# Options and flags
# ---------------------------------------------------------------------------

#: The daemon flags API.md promises besides the options' own, used only
#: while smtpsession.tap does not exist: (flag, value, help).
CONTRACT_DAEMON_FLAGS = [
    ("port", "ENDPOINT", "Twisted endpoint string to listen on (repeatable); default tcp:2525."),
    (
        "handler",
        "HANDLER",
        "The handler: module.Class (instantiated) or module:attr (an object). "
        "Default: the built-in Maildir handler.",
    ),
    ("handler-option", "KEY=VALUE", "Keyword argument for the handler class (repeatable)."),
    ("maildir", "PATH", "Directory of the default Maildir handler; default ./Maildir."),
    ("auth-file", "PATH", "Password file (hashed passwords) checked for PLAIN and LOGIN."),
    ("hide", "EXTENSION", "Do not advertise an extension (repeatable)."),
    ("xclient-trusted", "CIDR,...", "Networks allowed to use XCLIENT."),
    ("xforward-trusted", "CIDR,...", "Networks allowed to use XFORWARD."),
    ("proxy-protocol-trusted", "CIDR,...", "Networks allowed to send a PROXY header."),
]

#: Placeholders shown after flags that take a value.
_METAVARS = {
    "port": "ENDPOINT",
    "handler": "HANDLER",
    "handler-option": "KEY=VALUE",
    "workers": "N",
    "maildir": "PATH",
    "auth-file": "PATH",
    "tls-cert": "PATH",
    "tls-key": "PATH",
    "tls-ca": "PATH",
    "tls-sni-dir": "DIR",
    "hide": "EXTENSION",
    "disable-command": "COMMAND",
    "auth-methods": "METHODS",
    "hostname": "NAME",
    "banner": "TEXT",
    "helo-response": "TEXT",
    "tls-min-version": "VERSION",
    "tls-ciphers": "CIPHERS",
}


def _metavar(flag: str, field: dataclasses.Field[Any] | None) -> str:
    if flag in _METAVARS:
        return _METAVARS[flag]
    if flag.endswith("-trusted"):
        return "CIDR,..."
    ftype = str(field.type) if field is not None else ""
    if ftype.startswith("int"):
        return "N"
    if ftype.startswith("float"):
        return "SECONDS"
    return "VALUE"


def _module_source(module: Any) -> str:
    """
    A module's source text, also when it is compiled (the optional mypyc
    core sits beside its C{.py} file; C{inspect.getsource} cannot see it).
    """
    path = Path(module.__file__ or "")
    if path.suffix != ".py":
        path = path.with_name(module.__name__.rpartition(".")[2] + ".py")
    return path.read_text(encoding="utf-8")


def option_groups() -> list[tuple[str, list[dataclasses.Field[Any]]]]:
    """
    The option fields in source order, grouped under the section comments
    of C{options.py} (C{# --- title ---}).
    """
    from smtpsession import options as module

    fields = {f.name: f for f in dataclasses.fields(module.SMTPServerOptions)}
    groups: list[tuple[str, list[dataclasses.Field[Any]]]] = []
    title = "Options"
    seen: set[str] = set()
    in_class = False
    for line in _module_source(module).splitlines():
        if line.startswith("class SMTPServerOptions"):
            in_class = True
            continue
        if not in_class:
            continue
        if line and not line[0].isspace():
            break
        head = re.match(r"\s+# -+ (.+?) -*$", line)
        if head:
            title = head.group(1).strip()
            title = title[:1].upper() + title[1:]
            continue
        m = re.match(r"    (\w+)\s*:", line)
        if m and m.group(1) in fields and m.group(1) not in seen:
            seen.add(m.group(1))
            if not groups or groups[-1][0] != title:
                groups.append((title, []))
            groups[-1][1].append(fields[m.group(1)])
    missing = [f for name, f in fields.items() if name not in seen]
    if missing:
        groups.append(("Other options", missing))
    return groups


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        qual = getattr(factory, "__qualname__", None)
        if qual is not None and not isinstance(factory, type):
            mod = getattr(factory, "__module__", "") or ""
            public = mod.lstrip("_")
            if public != mod:
                # socket.gethostname lives in _socket: show the public name.
                try:
                    if getattr(importlib.import_module(public), qual, None) is factory:
                        mod = public
                except ImportError:
                    pass
            return literal(f"{mod}.{qual}()" if mod and mod != "builtins" else f"{qual}()")
        return literal(repr(factory()))
    return literal(repr(f.default))


class Daemon:
    """What the daemon's option parser says, or the contract's fallback."""

    def __init__(self) -> None:
        self.available = True
        # name -> (takes_value, help, default, aliases)
        self.flags: dict[str, tuple[bool, str, Any, list[str]]] = {}
        try:
            tap = importlib.import_module("smtpsession.tap")
        except ModuleNotFoundError as e:
            if e.name != "smtpsession.tap":
                raise
            self.available = False
            self._from_contract()
            return
        opts = tap.Options()
        aliases: dict[str, list[str]] = {}
        for name, canonical in opts.synonyms.items():
            if name != canonical:
                aliases.setdefault(canonical, []).append(name)
        for entry in opts.longOpt:
            name = entry.rstrip("=")
            canonical = opts.synonyms.get(name, name)
            if canonical in ("help", "version") or canonical in self.flags:
                continue
            doc = opts.docs.get(canonical) or ""
            doc = " ".join(inspect.cleandoc(doc).split())
            self.flags[canonical] = (
                entry.endswith("="),
                doc,
                opts.defaults.get(canonical),
                sorted(aliases.get(canonical, []), key=len),
            )

    def _from_contract(self) -> None:
        from smtpsession.options import SMTPServerOptions

        for name, _, doc in CONTRACT_DAEMON_FLAGS:
            self.flags[name] = (True, doc, None, [])
        for f in dataclasses.fields(SMTPServerOptions):
            flag = f.metadata.get("flag")
            if flag:
                takes = str(f.type) != "bool" and not str(f.type).startswith("bool |")
                self.flags[flag] = (takes, f.metadata.get("help", ""), None, [])

    def related(self, f: dataclasses.Field[Any]) -> list[str]:
        """The flags that set field C{f}."""
        out = []
        flag = f.metadata.get("flag")
        if flag:
            out.append(flag)
            if f"{flag}-trusted" in self.flags:
                out.append(f"{flag}-trusted")
        if f.name.startswith("hide_") and "hide" in self.flags:
            out.append("hide")
        if f.name == "credentials_checker" and "auth-file" in self.flags:
            out.append("auth-file")
        return out


def _flag_signature(name: str, info: tuple[bool, str, Any, list[str]], field: Any) -> str:
    takes, _, _, aliases = info
    metavar = f" {_metavar(name, field)}" if takes else ""
    names = [("-" if len(a) == 1 else "--") + a for a in aliases] + [f"--{name}"]
    return ", ".join(n + metavar for n in names)


def _field_by_flag() -> dict[str, dataclasses.Field[Any]]:
    from smtpsession.options import SMTPServerOptions

    out = {}
    for f in dataclasses.fields(SMTPServerOptions):
        flag = f.metadata.get("flag")
        if flag:
            out[flag] = f
    return out


class OptionsDirective(_GeneratedDirective):
    """C{.. smtpsession-options::}: every option, grouped, with its flag."""

    def generate(self) -> Iterator[str]:
        daemon = Daemon()
        yield ".. py:currentmodule:: smtpsession"
        yield ""
        yield ".. program:: twistd smtpsession"
        yield ""
        for title, fields in option_groups():
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            yield f".. _options-{slug}:"
            yield ""
            yield title
            yield "-" * len(title)
            yield ""
            for f in fields:
                yield f".. py:attribute:: SMTPServerOptions.{f.name}"
                yield f"   :type: {f.type}"
                yield ""
                help_text = f.metadata.get("help") or ""
                yield f"   {rst_escape(help_text)}"
                yield ""
                yield f"   :Default: {_default_text(f)}"
                flags = daemon.related(f)
                if flags:
                    shown = []
                    for name in flags:
                        info = daemon.flags.get(name)
                        takes = info[0] if info else str(f.type) not in ("bool",)
                        metavar = f" {_metavar(name, f)}" if takes else ""
                        if name == "hide":
                            metavar = f" {f.name[5:].upper()}"
                        shown.append(f":option:`--{name}{metavar} <--{name}>`")
                    yield "   :Daemon flag: " + ", ".join(shown)
                else:
                    yield "   :Daemon flag: none (set it in Python)"
                yield ""


class DaemonFlagsDirective(_GeneratedDirective):
    """C{.. smtpsession-daemon-flags::}: every flag of C{twistd smtpsession}."""

    option_spec = {"only": directives.unchanged}

    def generate(self) -> Iterator[str]:
        daemon = Daemon()
        by_flag = _field_by_flag()
        related_to: dict[str, str] = {}
        for f in by_flag.values():
            for name in daemon.related(f):
                related_to.setdefault(name, f.name)
        from smtpsession.options import SMTPServerOptions

        for f in dataclasses.fields(SMTPServerOptions):
            if f.name.startswith("hide_") and "hide" in daemon.flags:
                related_to.setdefault("hide", "hide_*")
            if f.name == "credentials_checker" and "auth-file" in daemon.flags:
                related_to.setdefault("auth-file", f.name)
        only = self.options.get("only", "all")
        yield ".. program:: twistd smtpsession"
        yield ""
        if not daemon.available and only != "options":
            yield ".. note::"
            yield ""
            yield "   This build of the manual was made without ``smtpsession.tap``;"
            yield "   the daemon-only flags below are the ones the API contract promises."
            yield ""
        field_names = [f.name for f in dataclasses.fields(SMTPServerOptions)]

        def order(name: str) -> tuple[int, int, str]:
            # Daemon flags in the order a reader needs them; option flags in
            # the order of the options above them on the page.
            target = related_to.get(name)
            if target is None:
                first = ["port", "handler", "handler-option", "maildir"]
                return (0, first.index(name) if name in first else len(first), name)
            if target == "hide_*":
                target = next(n for n in field_names if n.startswith("hide_"))
            return (1, field_names.index(target), name)

        for name in sorted(daemon.flags, key=order):
            info = daemon.flags[name]
            field = by_flag.get(name)
            is_option_flag = name in related_to
            if only == "daemon" and is_option_flag:
                continue
            if only == "options" and not is_option_flag:
                continue
            yield f".. option:: {_flag_signature(name, info, field)}"
            yield ""
            yield f"   {rst_escape(info[1]) or 'Undocumented.'}"
            yield ""
            target = related_to.get(name)
            if target == "hide_*":
                yield "   Sets the ``hide_*`` options (see :ref:`options-capability-hiding`)."
                yield ""
            elif target is not None:
                yield (
                    f"   Sets :py:attr:`SMTPServerOptions.{target} "
                    f"<smtpsession.SMTPServerOptions.{target}>`."
                )
                yield ""
            default = info[2]
            if default not in (None, "", False, 0) and not isinstance(default, (list, dict)):
                yield f"   Default: {literal(str(default))}."
                yield ""


# ---------------------------------------------------------------------------
# Replies
# ---------------------------------------------------------------------------


def reply_groups() -> list[tuple[str, list[tuple[str, bytes, bytes]]]]:
    """The catalogue's replies in source order, under its section comments."""
    from smtpsession._core import replies as module

    groups: list[tuple[str, list[tuple[str, bytes, bytes]]]] = []
    title = ""
    started = False
    for line in _module_source(module).splitlines():
        if not started:
            started = line.startswith("# ---- the catalogue")
            continue
        head = re.match(r"# (\w.*)$", line)
        if head:
            title = head.group(1).strip()
            continue
        m = re.match(r"([A-Z][A-Z0-9_]*) = ", line)
        if not m:
            continue
        value = getattr(module, m.group(1))
        if (
            isinstance(value, tuple)
            and len(value) == 2
            and all(isinstance(v, bytes) for v in value)
        ):
            if not groups or groups[-1][0] != title:
                groups.append((title, []))
            groups[-1][1].append((m.group(1), value[0], value[1]))
    if not groups:
        raise RuntimeError("no replies found in smtpsession._core.replies")
    return groups


class RepliesDirective(_GeneratedDirective):
    """C{.. smtpsession-replies::}: the fixed replies, as sent after EHLO."""

    def generate(self) -> Iterator[str]:
        for title, replies in reply_groups():
            yield title
            yield "~" * len(title)
            yield ""
            rows = []
            for name, _plain, esc in replies:
                text = esc.decode("utf-8").rstrip("\r\n").replace("\r\n", " / ")
                rows.append([literal(text), literal(name)])
            yield from _table(["Reply (after EHLO/LHLO)", "Name in replies.py"], rows, "70 30")


class EnhancedCodesDirective(_GeneratedDirective):
    """C{.. smtpsession-enhanced-codes::}: default RFC 3463 codes."""

    option_spec = {"by": directives.unchanged_required}

    def generate(self) -> Iterator[str]:
        from smtpsession._core import replies as module

        if self.options.get("by") == "context":
            table = module._ENHANCED_BY_CONTEXT
            rows = [
                [literal(ctx), literal(str(code)), literal(esc)]
                for (ctx, code), esc in table.items()
            ]
            yield from _table(["After", "Reply code", "Enhanced code"], rows)
        else:
            table = module._ENHANCED_BY_CODE
            rows = [[literal(str(code)), literal(esc)] for code, esc in table.items()]
            yield from _table(["Reply code", "Enhanced code"], rows)


# ---------------------------------------------------------------------------
# zope.interface, module docstrings
# ---------------------------------------------------------------------------


def _dedent_doc(doc: str | None) -> list[str]:
    return epytext_to_rest(inspect.cleandoc(doc or "").splitlines())


class InterfaceDirective(_GeneratedDirective):
    """C{.. smtpsession-interface:: dotted.name}: an Interface and its members."""

    required_arguments = 1

    def generate(self) -> Iterator[str]:
        path = self.arguments[0]
        module_name, _, name = path.rpartition(".")
        iface = getattr(importlib.import_module(module_name), name)
        from zope.interface.interface import Attribute, Method

        yield f".. py:class:: {name}"
        yield f"   :module: {module_name}"
        yield ""
        for line in _dedent_doc(iface.__doc__):
            yield f"   {line}"
        yield ""
        for member_name in iface.names():
            desc = iface[member_name]
            if isinstance(desc, Method):
                yield f"   .. py:method:: {member_name}{desc.getSignatureString()}"
            elif isinstance(desc, Attribute):
                yield f"   .. py:attribute:: {member_name}"
            else:  # pragma: no cover - nothing else exists in zope.interface
                continue
            yield ""
            for line in _dedent_doc(desc.getDoc()):
                yield f"      {line}"
            yield ""


def _module_docstring(name: str) -> str:
    """
    A module's docstring, read from its source: a module compiled with mypyc
    (the compiled core) has no C{__doc__}.
    """
    module = importlib.import_module(name)
    return ast.get_docstring(ast.parse(_module_source(module))) or ""


class DocstringDirective(_GeneratedDirective):
    """
    C{.. smtpsession-docstring:: module}: a module docstring, without its
    summary line, with its section titles shown as rubrics.
    """

    required_arguments = 1
    option_spec = {"from": directives.unchanged_required}

    def generate(self) -> Iterator[str]:
        lines = inspect.cleandoc(_module_docstring(self.arguments[0])).splitlines()
        start = self.options.get("from")
        if start:
            # From the paragraph that starts with this text to the end.
            for i, line in enumerate(lines):
                if line.startswith(start) and (i == 0 or not lines[i - 1].strip()):
                    lines = lines[i:]
                    break
            else:
                raise self.error(f"no paragraph starts with {start!r}")
        else:
            # Drop the summary paragraph: the page says what the module is.
            while lines and lines[0].strip():
                lines.pop(0)
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if (
                line.strip()
                and nxt.strip()
                and set(nxt.strip()) <= set("=-~^")
                and len(nxt.strip()) >= len(line.strip())
            ):
                out.extend([f".. rubric:: {line.strip()}", ""])
                i += 2
                continue
            out.append(line)
            i += 1
        yield from epytext_to_rest(out)


class OptionalModuleDirective(_GeneratedDirective):
    """
    C{.. smtpsession-optional-module:: package}: autodoc a package that is
    being written in parallel: the package and, unless its C{__all__}
    re-exports them, each of its modules.  A package that does not exist
    yet gets a short note instead of an import error.
    """

    required_arguments = 1

    def generate(self) -> Iterator[str]:
        yield from self._generate()
        # automodule changed the current module: give the page its own back.
        previous = self.env.ref_context.get("py:module")
        yield f".. py:currentmodule:: {previous or 'None'}"
        yield ""

    def _generate(self) -> Iterator[str]:
        import pkgutil

        name = self.arguments[0]
        try:
            package = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            package = None
        if package is None or getattr(package, "__file__", None) is None:
            yield f".. py:module:: {name}"
            yield ""
            yield f"``{name}`` is not part of this build of the manual."
            yield ""
            return
        yield f".. automodule:: {name}"
        yield "   :members:"
        yield "   :show-inheritance:"
        yield ""
        if getattr(package, "__all__", None) is not None:
            return
        for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
            if info.name.startswith("_"):
                continue
            yield f".. automodule:: {name}.{info.name}"
            yield "   :members:"
            yield "   :show-inheritance:"
            yield ""


def _format_value(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1024:
        for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
            if value % size == 0:
                return f"{value // size} {unit}"
    return str(value)


def value_role(
    name: str,
    rawtext: str,
    text: str,
    lineno: int,
    inliner: Any,
    options: Any = None,
    content: Any = (),
) -> tuple[list[nodes.Node], list[nodes.system_message]]:
    """
    C{:smtpsession-value:`module.CONSTANT`}: the value of a constant, so
    that a number quoted in prose follows the code (C{256 KiB}).
    """
    parts = text.strip().split(".")
    value: Any = None
    for i in range(len(parts) - 1, 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                value = getattr(value, attr)
        except AttributeError:
            break
        return [nodes.literal(rawtext, _format_value(value))], []
    msg = inliner.reporter.error(f"no such constant: {text}", line=lineno)
    return [inliner.problematic(rawtext, rawtext, msg)], [msg]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_role("smtpsession-value", value_role)
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("missing-reference", _missing_reference)
    app.add_role("epy", EpyRole())
    app.add_directive("smtpsession-options", OptionsDirective)
    app.add_directive("smtpsession-daemon-flags", DaemonFlagsDirective)
    app.add_directive("smtpsession-replies", RepliesDirective)
    app.add_directive("smtpsession-enhanced-codes", EnhancedCodesDirective)
    app.add_directive("smtpsession-interface", InterfaceDirective)
    app.add_directive("smtpsession-docstring", DocstringDirective)
    app.add_directive("smtpsession-optional-module", OptionalModuleDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
