"""The runs ``execscope plan -- COMMAND`` measures before it plans: the command plain (its wall time
is the baseline a budget is a ratio of), recorded at ``functions`` level (the profile), then run
again under a plan that records nothing (every function ``off``) into the same store: its wall time
less the plain one is the recording's fixed cost, what any plan pays before its first recorded call
(starting the recorder and its store, reading and rewriting the included modules at import, storing
what little is recorded). It is measured after the profile so that, as on any run after the first,
the store exists and holds the code's CPG.

The command's own output goes to stderr, so that ``--format json`` keeps stdout one JSON document.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MeasuredRuns:
    """Wall times, in nanoseconds, of the plain runs, the profile and the run recording nothing, and
    the exit codes of the last plain run and of the profile."""

    plain_ns: tuple[int, ...]
    recorded_ns: int
    nothing_ns: int
    plain_returncode: int
    recorded_returncode: int

    @property
    def baseline_ns(self) -> float:
        """The median plain run (what one run is expected to take, not the luckiest)."""
        return float(statistics.median(self.plain_ns))

    @property
    def fixed_ns(self) -> float:
        """What recording costs before its first recorded call: the run recording nothing less plain."""
        return max(0.0, self.nothing_ns - self.baseline_ns)


def _timed(args: Sequence[str]) -> tuple[int, int]:
    t0 = time.perf_counter_ns()
    returncode = subprocess.run(list(args), stdout=sys.stderr).returncode
    return time.perf_counter_ns() - t0, returncode


NOTHING_PLAN = '[default]\nlevel = "off"\nrate = 1.0\n'


def measure(command: Sequence[str], include: Sequence[str], exclude: Sequence[str], store_dsn: str | None,
            plain_runs: int = 1) -> MeasuredRuns:
    """Run ``command`` plain ``plain_runs`` times (at least one), recorded at ``functions`` level
    with every call kept (``--adaptive 0``) into ``store_dsn``, then under a plan recording nothing
    into the same store. Raises FileNotFoundError when the command does not exist."""
    plain = []
    plain_rc = 0
    for _ in range(max(1, plain_runs)):
        ns, plain_rc = _timed(command)
        plain.append(ns)
    scope = [*(a for g in include for a in ("--include", g)), *(a for g in exclude for a in ("--exclude", g)),
             *(["--store", store_dsn] if store_dsn else [])]
    recorded_ns, recorded_rc = _timed([sys.executable, "-m", "execscope", "run", "--level", "functions",
                                       "--adaptive", "0", *scope, "--", *command])
    with tempfile.TemporaryDirectory(prefix="execscope-plan-") as tmp:
        nothing = os.path.join(tmp, "nothing.toml")
        with open(nothing, "w", encoding="utf-8") as f:
            f.write(NOTHING_PLAN)
        nothing_ns, _ = _timed([sys.executable, "-m", "execscope", "run", "--plan", nothing, *scope, "--", *command])
    return MeasuredRuns(tuple(plain), recorded_ns, nothing_ns, plain_rc, recorded_rc)
