"""``execscope analyze``: the code property graph of whole projects, in parallel, incrementally.

Files are named as Python imports them (``pkg/sub/mod.py`` under a directory without
``__init__.py`` is ``pkg.sub.mod``), so the node IDs equal those the import hook gives at run time.
Each file is analysed in a worker process (one per ``--jobs``) and streamed back; the parent is the
only writer of the store and holds at most ``2 * jobs`` results at a time, so memory stays flat
however large the project. A file whose ``(code_version, module)`` is already stored is skipped.
A file that cannot be read, decoded or parsed, is too large or too deeply nested is reported
(``cpg_files.status = 'error'``) and skipped; the rest goes on.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 8 << 20
"""Larger files (generated tables, vendored bundles) are reported and skipped."""
_SKIP_DIRS = {"__pycache__", "node_modules", "site-packages", "build", "dist"}


@dataclass(slots=True)
class FileResult:
    file: str
    module: str
    code_version: str
    lines: int
    status: str  # ok | error | unchanged
    message: str = ""
    cpg: Any = None


@dataclass(slots=True)
class AnalyzeReport:
    files: int = 0
    analysed: int = 0
    unchanged: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    lines: int = 0
    nodes: int = 0
    edges: int = 0
    functions: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"files": self.files, "analysed": self.analysed, "unchanged": self.unchanged,
                "errors": len(self.errors), "lines": self.lines, "nodes": self.nodes, "edges": self.edges,
                "functions": self.functions, "seconds": round(self.seconds, 3),
                "lines_per_second": int(self.lines / self.seconds) if self.seconds else 0,
                "failed": [{"file": f, "reason": r} for f, r in self.errors]}


def module_name(path: Path) -> str:
    """The dotted name Python imports ``path`` under (packages found by their ``__init__.py``)."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    parent = path.parent
    while (parent / "__init__.py").exists() and parent.name.isidentifier():
        parts.append(parent.name)
        parent = parent.parent
    return ".".join(reversed(parts)) or path.stem


def python_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every ``.py`` file under ``paths`` (files as given), sorted, skipping hidden and build dirs."""
    for p in paths:
        p = Path(p)
        if p.is_file():
            yield p
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
            for name in sorted(files):
                if name.endswith(".py"):
                    yield Path(root) / name


def analyse_file(path: str, module: str, known: frozenset[str] | set[str] = frozenset()) -> FileResult:
    """Analyse one file (runs in a worker). Never raises: failures come back as ``status='error'``."""
    from execscope.instrumentation.analysis.cpg import build_module_cpg
    from execscope.instrumentation.nodes.node_ids import code_version_of

    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            return FileResult(path, module, "", 0, "error", f"too large ({size} bytes > {MAX_FILE_BYTES})")
        data = Path(path).read_bytes()
    except OSError as exc:
        return FileResult(path, module, "", 0, "error", f"unreadable: {exc}")
    version = code_version_of(data)
    lines = data.count(b"\n") + (not data.endswith(b"\n") and bool(data))
    if f"{version}:{module}" in known:
        return FileResult(path, module, version, lines, "unchanged")
    try:
        source = importlib.util.decode_source(data)
    except (UnicodeDecodeError, SyntaxError, LookupError) as exc:
        return FileResult(path, module, version, lines, "error", f"not decodable: {exc}")
    try:
        cpg = build_module_cpg(source, module, path, version, is_package=path.endswith("__init__.py"))
    except SyntaxError as exc:
        return FileResult(path, module, version, lines, "error", f"syntax error: {exc}")
    except RecursionError:
        return FileResult(path, module, version, lines, "error", "too deeply nested to analyse")
    except MemoryError:
        return FileResult(path, module, version, lines, "error", "out of memory")
    except Exception as exc:  # anything unforeseen, per file: reported, the rest goes on
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return FileResult(path, module, version, lines, "error", f"{type(exc).__name__}: {first}")
    cpg.cfgs = []  # not needed by the writer; keeps what crosses the process boundary small
    return FileResult(path, module, version, lines, "ok", cpg=cpg)


def _worker_init() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))


def analyse_project(paths: Iterable[str | Path], writer: Any, jobs: int = 0,
                    progress: Any = None) -> AnalyzeReport:
    """Analyse every file under ``paths`` into ``writer`` (a ClickHouseWriter). ``jobs`` 0 = cores."""
    import time

    start = time.perf_counter()
    report = AnalyzeReport()
    files = [(str(p), module_name(p)) for p in python_files(paths)]
    report.files = len(files)
    known = frozenset(writer.known_versions())
    jobs = jobs or os.cpu_count() or 1

    file_rows: list[tuple[Any, ...]] = []

    def write_file_rows() -> None:  # one insert per batch of files, not one part per file
        if file_rows:
            writer.store.insert_columns("cpg_files", [list(c) for c in zip(*file_rows)],
                                        ("file", "module", "code_version", "lines", "status", "message"))
            file_rows.clear()

    def record(result: FileResult) -> None:
        report.lines += result.lines
        if result.status == "unchanged":
            report.unchanged += 1
            return
        if result.status == "error":
            report.errors.append((result.file, result.message))
        else:
            cpg = result.cpg
            report.analysed += 1
            report.nodes += writer.write_module_cpg(cpg)
            report.edges += len(cpg.edges)
            report.functions += len(cpg.functions)
        file_rows.append((result.file, result.module, result.code_version, result.lines, result.status,
                          result.message))
        if len(file_rows) >= 1000:
            write_file_rows()
        if progress is not None:
            progress(result)

    if jobs == 1 or len(files) < 2:
        for path, module in files:
            record(analyse_file(path, module, known))
    else:
        with ProcessPoolExecutor(jobs, initializer=_worker_init) as pool:
            queue = iter(files)
            running: set[Future[FileResult]] = set()
            while True:
                while len(running) < 2 * jobs:
                    nxt = next(queue, None)
                    if nxt is None:
                        break
                    running.add(pool.submit(analyse_file, nxt[0], nxt[1], known))
                if not running:
                    break
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: f.result().file):
                    record(fut.result())
    write_file_rows()
    report.seconds = time.perf_counter() - start
    return report
