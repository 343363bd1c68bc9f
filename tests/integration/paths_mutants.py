"""Mutants of the path-prediction fixture (tests/integration/paths_apps/pathsapp/core.py) and the
real recordings of its test suite, shared by tests/integration/test_paths.py and
tests/benchmarks/bench_paths.py.

A mutant flips the operator of one comparison (``<`` to ``<=``, ``>`` to ``<``, ...); the text is
edited in place at the operator's position, so every node ID stays what it was (node IDs do not
depend on operators) and the model learned on the original applies to the mutant.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from execscope.queries.paths import load_paths, unusual_paths
from execscope.storage.store import Store

APP = Path(__file__).parent / "paths_apps" / "pathsapp"
CORE = APP / "core.py"

# One flip per operator (the default) and the reversed comparison (``wide``: more mutants per site).
FLIPS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=", ast.NotEq: "=="}
REVERSE = {ast.Lt: ">", ast.LtE: ">=", ast.Gt: "<", ast.GtE: "<=", ast.Eq: None, ast.NotEq: None}
SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


@dataclass(frozen=True)
class Mutant:
    name: str  # function:line:column old -> new, e.g. "clamp:6:7 < -> <="
    source: str


def mutants(source: str, wide: bool = False) -> list[Mutant]:
    """Every single-comparison flip of ``source`` (comparisons with one operator)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef):
            continue
        for node in ast.walk(fn):
            if not (isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in FLIPS):
                continue
            left, right = node.left, node.comparators[0]
            assert left.end_lineno == right.lineno == node.lineno and left.end_col_offset is not None
            op = type(node.ops[0])
            line = lines[node.lineno - 1]
            between = line[left.end_col_offset:right.col_offset]
            assert between.strip() == SYMBOL[op], (between, node.lineno)
            for new in (FLIPS[op], REVERSE[op] if wide else None):
                if new is None:
                    continue
                edited = line[:left.end_col_offset] + f" {new} " + line[right.col_offset:]
                text = "".join([*lines[:node.lineno - 1], edited, *lines[node.lineno:]])
                out.append(Mutant(f"{fn.name}:{node.lineno}:{node.col_offset} {SYMBOL[op]} -> {new}", text))
    return out


def execscope(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "execscope", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def record_suite(root: Path, store: str, service: str, source: str | None = None, select: str = "") -> None:
    """Record the fixture's own tests (one trace per test) at ``--level branches`` under ``service``,
    with ``source`` in place of core.py when given. A test a mutant breaks may fail; one that hangs
    is deselected."""
    work = root / service
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(APP, work / "pathsapp")
    if source is not None:
        (work / "pathsapp" / "core.py").write_text(source)
    args = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "pathsapp"]
    if select:
        args += ["-k", select]
    # Tests that loop forever are left out (found by a plain run, where the fixture's alarm ends
    # them): recorded, each fills its span to the 65,536-event limit, and a mutant with 11 of them
    # (bisect_left's `lo <= hi`) did not finish recording within 5 minutes.
    plain = subprocess.run([sys.executable, *args[1:], "-rf"], cwd=work, capture_output=True, text=True, timeout=300)
    for line in plain.stdout.splitlines():
        if line.startswith("FAILED ") and "TimeoutError" in line:
            args += ["--deselect", line.split()[1]]
    proc = execscope("run", "--include", "pathsapp.core", "--level", "branches", "--service", service,
                     "--store", store, "--", *args, cwd=work)
    if "execscope: stored" not in proc.stderr:
        raise AssertionError(f"recording {service} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@dataclass(frozen=True)
class Detection:
    mutants: int  # mutants recorded
    changed: int  # mutants that changed a path of at least one test (the others cannot be told by paths)
    detected: int  # mutants with a flagged changed trace
    flagged_mutant_traces: int  # changed traces of mutants, flagged (true positives)
    mutant_traces: int  # changed traces of mutants
    flagged_original_traces: int  # original traces flagged (false positives)
    original_traces: int

    @property
    def recall(self) -> float:
        """Mutants detected among those that changed a path (``changed``)."""
        return self.detected / self.changed if self.changed else 0.0

    @property
    def precision(self) -> float:
        flagged = self.flagged_mutant_traces + self.flagged_original_traces
        return self.flagged_mutant_traces / flagged if flagged else 0.0


def detect(store: Store, services: Iterable[str], threshold: float, order: int = 2, rank: str = "mean"
           ) -> Detection:
    """Flag traces holding a call whose score (``rank``: NLL per decision, or ``max``: the surprise of
    its least probable decision) is at least ``threshold`` under the model of
    the original runs (service ``orig``), every trace scored without the original run of its own
    test (held out by test, as unusual-paths does). Positives are the traces of mutants whose paths
    differ from the original run of the same test; negatives are the original traces. A mutant is
    detected when one of its changed traces is flagged."""
    rows = unusual_paths(store, order=order, min_nll=threshold, limit=10**9, train_service="orig", rank=rank).dicts()
    flagged = {r["trace_id"] for r in rows}
    runs: dict[tuple[str, str], tuple[str, list[tuple[str, tuple[str, ...]]]]] = {}
    for p in load_paths(store):
        trace, calls = runs.setdefault((p.service, p.held_out_with), (p.trace_id, []))
        calls.append((p.function, p.arms))
    original = {test: sorted(calls) for (service, test), (_, calls) in runs.items() if service == "orig"}
    names = list(services)
    changed: dict[str, list[str]] = {s: [] for s in names}
    for (service, test), (trace, calls) in runs.items():
        if service in changed and sorted(calls) != original.get(test):
            changed[service].append(trace)
    originals = [trace for (service, _), (trace, _) in runs.items() if service == "orig"]
    return Detection(
        mutants=len(names), changed=sum(1 for s in names if changed[s]),
        detected=sum(1 for s in names if any(t in flagged for t in changed[s])),
        flagged_mutant_traces=sum(1 for s in names for t in changed[s] if t in flagged),
        mutant_traces=sum(len(v) for v in changed.values()),
        flagged_original_traces=sum(1 for t in originals if t in flagged), original_traces=len(originals))
