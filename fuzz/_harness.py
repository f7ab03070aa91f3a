"""
What every fuzz harness shares: the checkout on C{sys.path}, the
instrumented import of the core, and a launcher that gives libFuzzer a
seed corpus and a dictionary without leaving files behind.

A harness is run as a script (C{python fuzz/fuzz_proxy.py [libFuzzer
flags] [corpus dirs]}).  The script's process is a small supervisor: it
writes the harness's seeds and dictionary to a temporary directory, runs
itself again as the fuzzing child with those added to the arguments, and
removes the directory when the child exits (libFuzzer ends a process with
C{exit()}, which skips Python's own clean-up).  Arguments are libFuzzer's:

  - no corpus directory: new inputs go to a scratch directory that is
    removed afterwards; give one (C{python fuzz/x.py work/}) to keep them;
  - a file instead of a directory reproduces that input (a crash file),
    and no seeds are added;
  - C{-dict=FILE} replaces the harness's dictionary.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import atheris

__all__ = ["ROOT", "instrumented", "main"]

#: The checkout: its C{smtpsession} is the one fuzzed, not an installed one.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: Set in the fuzzing child (the supervisor's environment does not have it).
_CHILD = "SMTPSESSION_FUZZ_CHILD"

#: The package whose code libFuzzer sees (coverage, comparisons).  Atheris
#: instruments whole top-level packages, so the driver's modules are
#: instrumented too, but only the core runs; Twisted is not instrumented.
_INSTRUMENTED = ["smtpsession"]


@contextmanager
def instrumented() -> Iterator[None]:
    """
    Import the core inside this block to give libFuzzer its coverage (in
    the fuzzing child only: the supervisor just imports).
    """
    if os.environ.get(_CHILD) == "1":
        with atheris.instrument_imports(include=_INSTRUMENTED):
            yield
    else:
        yield
    import smtpsession

    origin = Path(smtpsession.__file__).resolve()
    if ROOT not in origin.parents:
        raise SystemExit(f"smtpsession was imported from {origin}, not from the checkout")
    core = sys.modules["smtpsession._core.connection"]
    if not str(core.__file__).endswith(".py"):
        # A compiled (mypyc) core runs no Python bytecode to instrument.
        raise SystemExit("the core is compiled; fuzz a pure-Python checkout")


def _dictionary_entry(token: bytes) -> str:
    """One line of a libFuzzer dictionary: the token, quoted and escaped."""
    out = []
    for b in token:
        if 0x20 <= b < 0x7F and b not in (0x22, 0x5C):
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02X}")
    return '"' + "".join(out) + '"'


def _prepare(
    argv: Sequence[str], seeds: Iterable[bytes], dictionary: Iterable[bytes], scratch: Path
) -> list[str]:
    """The child's arguments: the user's, plus seeds, a dictionary and defaults."""
    args = list(argv)
    flags = [a for a in args if a.startswith("-")]
    inputs = [a for a in args if not a.startswith("-")]
    if not any(Path(a).is_file() for a in inputs):
        if not inputs:
            new = scratch / "new"
            new.mkdir()
            args.append(str(new))  # the first directory receives new inputs
        seed_dir = scratch / "seeds"
        seed_dir.mkdir()
        for i, seed in enumerate(seeds):
            (seed_dir / f"seed-{i:03d}").write_bytes(seed)
        args.append(str(seed_dir))
    if not any(f.startswith("-dict=") for f in flags):
        path = scratch / "tokens.dict"
        path.write_text("".join(_dictionary_entry(t) + "\n" for t in dictionary), "ascii")
        args.append(f"-dict={path}")
    if not any(f.startswith("-print_final_stats=") for f in flags):
        args.append("-print_final_stats=1")
    return args


def main(
    test_one_input: Callable[[bytes], None],
    seeds: Callable[[], Iterable[bytes]],
    dictionary: Iterable[bytes],
) -> None:
    """Run the harness: supervise (first process) or fuzz (the child)."""
    script = os.path.abspath(sys.argv[0])
    if os.environ.get(_CHILD) == "1":
        atheris.Setup(sys.argv, test_one_input)
        atheris.Fuzz()  # does not return
    scratch = Path(tempfile.mkdtemp(prefix="smtpsession-fuzz-"))
    try:
        args = _prepare(sys.argv[1:], seeds(), dictionary, scratch)
        env = dict(os.environ)
        env[_CHILD] = "1"
        code = subprocess.call([sys.executable, script, *args], env=env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(code)
