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

from execscope.queries.paths import unusual_paths
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
    with ``source`` in place of core.py when given. A test a mutant breaks may fail; a hang ends at
    the suite's per-test alarm (conftest.py of the fixture)."""
    work = root / service
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(APP, work / "pathsapp")
    if source is not None:
        (work / "pathsapp" / "core.py").write_text(source)
    args = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "pathsapp"]
    if select:
        args += ["-k", select]
    # Tests that loop forever are left out: the alarm of the fixture's conftest ends them when run
    # plainly, but under recording its TimeoutError (raised inside a capture hook) does not stop them.
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
    mutants: int
    detected: int
    flagged_mutant_traces: int
    flagged_original_traces: int
    original_traces: int

    @property
    def recall(self) -> float:
        return self.detected / self.mutants if self.mutants else 0.0

    @property
    def precision(self) -> float:
        flagged = self.flagged_mutant_traces + self.flagged_original_traces
        return self.flagged_mutant_traces / flagged if flagged else 0.0


def detect(store: Store, services: Iterable[str], threshold: float, order: int = 2) -> Detection:
    """Flag traces with a call whose NLL per decision is at least ``threshold`` under the model of
    the original runs (service ``orig``; an original trace is scored by the model of the other
    original traces). A mutant is detected when one of its traces is flagged. Precision counts
    flagged traces: from mutant runs (true) vs from original runs (false)."""
    rows = unusual_paths(store, order=order, min_nll=threshold, limit=10**9, train_service="orig").dicts()
    flagged_traces = {r["trace_id"] for r in rows}
    service_of = dict(store.query("SELECT DISTINCT TraceId, ServiceName FROM otel_traces").rows)
    flagged_by_service: dict[str, int] = {}
    for trace in flagged_traces:
        flagged_by_service[service_of[trace]] = flagged_by_service.get(service_of[trace], 0) + 1
    names = list(services)
    originals = sum(1 for s in service_of.values() if s == "orig")
    return Detection(len(names), sum(1 for s in names if flagged_by_service.get(s)),
                     sum(n for s, n in flagged_by_service.items() if s != "orig"),
                     flagged_by_service.get("orig", 0), originals)
