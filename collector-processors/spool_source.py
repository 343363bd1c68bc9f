"""The spool source: drains a local spool into the store (the embedded default's collector).

Contract: a spool file is deleted only after its rows are inserted; an insert retried after a crash
is deduplicated by the file name. A file that cannot be decoded (poison) is moved to
``<spool>/dead/`` with a ``.reason`` file next to it, and the drain goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from execscope.collector.clickhouse_writer import ClickHouseWriter, load_module_doc
from execscope.collector.otlp_decode import DecodeError, decode_columns
from execscope.instrumentation.spool import Spool
from execscope.storage.store import Store, StoreError


@dataclass
class DrainReport:
    spans: int = 0
    events: int = 0
    batches: int = 0
    modules: int = 0
    nodes: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, other: DrainReport) -> None:
        for name in ("spans", "events", "batches", "modules", "nodes", "dead"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


class SpoolSource:
    """Drains one spool into one store. Call :meth:`drain` repeatedly from one thread."""

    def __init__(self, spool: Spool, store: Store) -> None:
        self.spool = spool
        self.writer = ClickHouseWriter(store)

    def publish_known_versions(self) -> None:
        self.spool.write_known_versions(self.writer.known_versions())

    def drain(self) -> DrainReport:
        report = DrainReport()
        for path in self.spool.pending_nodes():
            try:
                doc = load_module_doc(path.read_bytes())
                report.nodes += self.writer.write_module_nodes(doc)
                report.modules += 1
            except StoreError as exc:
                report.errors.append(f"{path.name}: {exc}")
                continue  # keep the file for the next drain
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                self._dead(path, f"bad node file: {exc}", report)
                continue
            _unlink(path)
        for path in self.spool.pending_batches():
            try:
                columns, events = decode_columns(path.read_bytes())
            except DecodeError as exc:
                self._dead(path, str(exc), report)
                continue
            except OSError as exc:
                report.errors.append(f"{path.name}: {exc}")
                continue
            try:
                report.spans += self.writer.write_spans(columns, dedup_token=f"spool-{path.name}")
            except StoreError as exc:
                report.errors.append(f"{path.name}: {exc}")
                break  # the store is failing; retry the same files later, in order
            report.events += events
            report.batches += 1
            _unlink(path)
        return report

    def _dead(self, path: Path, reason: str, report: DrainReport) -> None:
        dead = self.spool.path / "dead"
        try:
            dead.mkdir(exist_ok=True)
            os.replace(path, dead / path.name)
            (dead / (path.name + ".reason")).write_text(reason + "\n")
        except OSError:
            pass
        report.dead += 1
        report.errors.append(f"{path.name}: {reason} (moved to {dead})")


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
