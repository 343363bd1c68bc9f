"""The local spool: where instrumented processes leave OTLP batches and node rows for the store owner.

Layout under the spool directory (one per store)::

    traces/<time_ns>-<pid>-<n>[-s<spans>-e<events>].pb   one serialized ExportTraceServiceRequest per batch
    cpg/<code_version>-<module>.json   node rows of one module version, written once
    known_versions                     <code_version>:<module> pairs the store already holds (by the owner)

Every file appears atomically (written under a ``.tmp`` name, then renamed), so a reader never sees
a partial batch and a crash loses at most the batch being written. Writers never raise from here:
callers get ``False`` and count the loss.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from pathlib import Path

from execscope.instrumentation.nodes.node_ids import ModuleNodes, NodeInfo

TRACES = "traces"
CPG = "cpg"
KNOWN_VERSIONS = "known_versions"
_counter = itertools.count()


def write_atomic(directory: Path, name: str, data: bytes) -> bool:
    tmp = directory / f".{name}.{os.getpid()}.tmp"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, directory / name)
        return True
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        return False


class Spool:
    """A spool directory. Safe to use from many processes at once (names carry the pid).

    ``max_bytes`` (0: no limit) bounds what writers leave waiting: :meth:`over_limit` says when the
    batches not yet stored, by every process, exceed it (a directory scan, at most once per
    ``check_interval_s``)."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 0, check_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self._known: frozenset[str] | None = None
        self.max_bytes = max_bytes
        self.check_interval_s = check_interval_s
        self._checked_at = -1e18
        self._over = False

    def pending_bytes(self) -> int:
        """Bytes of the batches waiting to be stored (a scan of the directory)."""
        total = 0
        try:
            with os.scandir(self.traces_dir) as entries:
                for entry in entries:
                    if entry.name.endswith(".pb"):
                        try:
                            total += entry.stat().st_size
                        except OSError:  # taken by the reader meanwhile
                            pass
        except OSError:
            return 0
        return total

    def over_limit(self) -> bool:
        if self.max_bytes <= 0:
            return False
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval_s:
            self._checked_at = now
            self._over = self.pending_bytes() > self.max_bytes
        return self._over

    @property
    def traces_dir(self) -> Path:
        return self.path / TRACES

    @property
    def cpg_dir(self) -> Path:
        return self.path / CPG

    def write_batch(self, payload: bytes, spans: int | None = None, events: int | None = None) -> bool:
        """Write one serialized ExportTraceServiceRequest; ``spans``/``events``, when the writer knows
        them, travel in the file name so that the reader need not count them (see batch_counts)."""
        counts = f"-s{spans}-e{events}" if spans is not None and events is not None else ""
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}{counts}.pb"
        return write_atomic(self.traces_dir, name, payload)

    def known_versions(self) -> frozenset[str]:
        if self._known is None:
            try:
                self._known = frozenset((self.path / KNOWN_VERSIONS).read_text().split())
            except OSError:
                self._known = frozenset()
        return self._known

    def write_known_versions(self, versions: set[str]) -> None:
        write_atomic(self.path, KNOWN_VERSIONS, "\n".join(sorted(versions)).encode())

    def write_nodes(self, nodes: ModuleNodes) -> bool:
        """Publish a module's node rows unless the store already has that version."""
        if f"{nodes.code_version}:{nodes.module}" in self.known_versions():
            return True
        name = f"{nodes.code_version}-{nodes.module}.json"
        if (self.cpg_dir / name).exists():
            return True
        return write_atomic(self.cpg_dir, name, module_document(nodes))

    def pending_batches(self) -> list[Path]:
        return sorted(self.traces_dir.glob("*.pb")) if self.traces_dir.exists() else []

    def pending_nodes(self) -> list[Path]:
        return sorted(self.cpg_dir.glob("*.json")) if self.cpg_dir.exists() else []


def module_document(nodes: ModuleNodes) -> bytes:
    """The JSON document of one module version's node rows (spool file, or Kafka ``<topic>.cpg`` value)."""
    doc = {"module": nodes.module, "file": nodes.file, "code_version": nodes.code_version,
           "fields": list(NodeInfo.__slots__),
           "nodes": [[getattr(n, f) for f in NodeInfo.__slots__] for n in nodes.nodes]}
    return json.dumps(doc, separators=(",", ":")).encode()


_COUNTS = re.compile(r"-s(\d+)-e(\d+)\.pb$")


def batch_counts(path: Path) -> tuple[int, int] | None:
    """(spans, events) of a spool file as its writer named them, or None when it did not."""
    m = _COUNTS.search(path.name)
    return (int(m.group(1)), int(m.group(2))) if m else None
