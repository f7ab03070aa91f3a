"""
The fuzz harnesses of C{fuzz/}, each run for a bounded number of
executions: the bounded CI run of docs/fuzzing.md.

Each harness runs in its own process (libFuzzer ends its process), from
a fixed seed so that a run is repeatable, with its seed corpus and its
dictionary, writing new inputs and any crash file to a temporary
directory.  A harness that finds a crash (an exception, or one of its
checks failing) exits with libFuzzer's status 77 and fails the test,
whose message holds the harness's report: the traceback and the input.
To reproduce: C{python fuzz/<name>.py <crash file>}.

The long runs are documented in docs/fuzzing.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parent.parent.parent
FUZZ = ROOT / "fuzz"

#: Executions per harness: together well under a minute on a slow two-core
#: machine (the harnesses differ a hundredfold in speed: a whole session
#: is played three times per input, a PROXY header parsed a few times).
RUNS = {
    "fuzz_session": 3000,
    "fuzz_commands": 3000,
    "fuzz_data_framer": 2000,
    "fuzz_bdat_framer": 8000,
    "fuzz_sasl": 8000,
    "fuzz_proxy": 8000,
}


def test_every_harness_has_a_bounded_run() -> None:
    """A new harness in fuzz/ must be given its number of executions here."""
    assert sorted(p.stem for p in FUZZ.glob("fuzz_*.py")) == sorted(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_harness_finds_nothing(name: str, tmp_path: Path) -> None:
    pytest.importorskip(
        "atheris", reason="atheris is not installed (pip install '.[test]' installs it)"
    )
    if os.environ.get("SMTPSESSION_EXPECT_COMPILED") == "1":
        # run-tests.sh's second run: atheris instruments Python bytecode,
        # which a compiled core has none of; the first run fuzzed the source.
        pytest.skip("the core is compiled: the pure-Python run fuzzes it")
    runs = RUNS[name]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            str(FUZZ / f"{name}.py"),
            f"-runs={runs}",
            "-seed=1",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
    )
    report = result.stderr[-6000:]
    assert result.returncode == 0, f"{name} exited with {result.returncode}:\n{report}"
    executed = re.search(r"stat::number_of_executed_units: (\d+)", result.stderr)
    assert executed is not None and int(executed.group(1)) == runs, report
    assert not list(tmp_path.glob("crash-*")), report
