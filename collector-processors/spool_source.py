"""The spool source: drains a local spool into the store (the embedded default's collector).

Contract: a spool file is deleted only after its rows are inserted; an insert retried after a crash
is deduplicated (by batch or file name). A file that cannot be decoded (poison) is moved to
``<spool>/dead/`` with a ``.reason`` file next to it, and the drain goes on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from execscope.collector import native_block, native_ingest
from execscope.collector.clickhouse_writer import ClickHouseWriter, load_module_doc
from execscope.collector.otlp_decode import DecodeError, decode_columns
from execscope.collector.processors import ProcessorChain, SpanBatch
from execscope.instrumentation.export.spool import Spool, batch_counts
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
    started_ns: int = 0

    def add(self, other: DrainReport) -> None:
        for name in ("spans", "events", "batches", "modules", "nodes", "dead"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors += other.errors


BLOCK_NAME = "batch.native"  # the batch's Native block, next to its spool files


class SpoolSource:
    """Drains one spool into one store. Call :meth:`drain` repeatedly from one thread.

    On the embedded engine, batches of spool files are moved into ``<spool>/inflight/<batch>/``,
    converted into one ClickHouse Native block there (:mod:`.native_block`, in C) and inserted in one
    statement; without the C converter the engine parses the files itself (:mod:`.native_ingest`).
    A batch that fails (a file the converter refuses, or a failing insert) is retried file by file
    through the Python decoder, which tells a poison file (set aside) from a failing store (kept for
    the next drain). An ``inflight`` batch left by a crash is converted and inserted again under the
    same deduplication token, so it is never counted twice.
    """

    MAX_BATCH_FILES = 64
    MAX_BATCH_BYTES = 24 << 20  # the engine's protobuf parse: one statement parses the whole batch in memory
    # Native blocks: a batch's block is about 0.9x its files (LowCardinality keys), and every insert
    # costs about 16 ms whatever its size (the views' pipelines and parts): larger batches amortize it
    # (measured on 2 cores: 73k spans drained in 0.214 s instead of 0.229 s), at about 4x the batch
    # in memory at the peak (files, block, the engine's read of it).
    MAX_BLOCK_BATCH_BYTES = 48 << 20
    # ... and up to this many files: an insert costs about 20 ms of CPU whatever its size (measured on
    # 2 cores into a warm store, merges stopped: the statement's and its four views' planning, a part
    # for each table with rows), about 0.3 us a span for a batch of 64 full files; a program writing
    # small spool files (flushed every half second) paid it for every 64 of them.
    MAX_BLOCK_BATCH_FILES = 1024

    def __init__(self, spool: Spool, store: Store, native: bool | None = None,
                 chain: ProcessorChain | None = None, blocks: bool | None = None) -> None:
        """``chain``: the collector's processor chain (:mod:`.processors`); with processors in it,
        batches are decoded in Python and go through it before the insert. ``blocks``: convert
        batches in C (:mod:`.native_block`; default: when the converter is built), else the engine
        parses them."""
        self.spool = spool
        self.store = store
        self.writer = ClickHouseWriter(store)
        self.chain = chain or ProcessorChain()
        native_ok = store.address.kind == "chdb" and self.chain.native_ok
        self.native = native_ok if native is None else native and self.chain.native_ok
        self.blocks = native_block.AVAILABLE and blocks is not False

    def publish_known_versions(self) -> None:
        self.spool.write_known_versions(self.writer.known_versions())

    def drain(self) -> DrainReport:
        report = DrainReport()
        self._drain_nodes(report)
        if self.native:
            for batch in sorted(self._inflight_dir().glob("*")):  # left behind by a crash
                if batch.name.endswith(".split"):
                    self._ingest_split(batch, report)
                else:
                    self._ingest_batch(batch, report)
            while not report.errors:
                pending = self._next_batch()
                if not pending:
                    break
                batch = self._inflight_dir() / pending[0].stem
                batch.mkdir(parents=True, exist_ok=True)
                for path in pending:
                    os.replace(path, batch / path.name)
                self._ingest_batch(batch, report)
        else:
            for path in self.spool.pending_batches():
                if not self._ingest_one(path, report):
                    break  # the store is failing; retry the same files later, in order
        return report

    def _next_batch(self) -> list[Path]:
        """The oldest pending files, up to MAX_BATCH_FILES of them and MAX_BATCH_BYTES (MAX_BLOCK_BATCH_FILES
        and MAX_BLOCK_BATCH_BYTES converted into Native blocks), at least one."""
        limit = self.MAX_BLOCK_BATCH_BYTES if self.blocks else self.MAX_BATCH_BYTES
        files = self.MAX_BLOCK_BATCH_FILES if self.blocks else self.MAX_BATCH_FILES
        batch: list[Path] = []
        size = 0
        for path in self.spool.pending_batches()[:files]:
            try:
                size += path.stat().st_size
            except OSError:
                continue
            if batch and size > limit:
                break
            batch.append(path)
        return batch

    def _inflight_dir(self) -> Path:
        return self.spool.path / "inflight"

    def _drain_nodes(self, report: DrainReport) -> None:
        docs: list[tuple[Path, dict]] = []
        for path in self.spool.pending_nodes():
            try:
                docs.append((path, load_module_doc(path.read_bytes())))
            except OSError as exc:
                report.errors.append(f"{path.name}: {exc}")
            except ValueError as exc:
                self._dead(path, f"bad node file: {exc}", report)
        if not docs:
            return
        try:  # all of them in one insert per table
            report.nodes += self.writer.write_modules([doc for _, doc in docs])
        except StoreError as exc:
            report.errors.append(f"{len(docs)} node files: {exc}")
            return  # kept for the next drain
        except (ValueError, KeyError, IndexError, TypeError):
            for path, doc in docs:  # one of them is malformed: find it
                try:
                    report.nodes += self.writer.write_module_nodes(doc)
                except StoreError as exc:
                    report.errors.append(f"{path.name}: {exc}")
                    continue
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    self._dead(path, f"bad node file: {exc}", report)
                    continue
                report.modules += 1
                _unlink(path)
            return
        report.modules += len(docs)
        for path, _ in docs:
            _unlink(path)

    def _ingest_batch(self, batch: Path, report: DrainReport) -> None:
        files = sorted(batch.glob("*.pb"))
        if not files:
            _rmdir(batch)
            return
        token = f"spool-batch-{batch.name}"
        block = batch / BLOCK_NAME
        try:
            if self.blocks:  # converted in C, inserted as a Native block
                with native_block.mapped(files) as payloads:
                    spans, events = native_block.write(block, payloads)
                native_block.ingest(self.store, block, dedup_token=token)
            else:  # parsed by the engine itself
                spans, events = self._count(files, batch)
                native_ingest.ingest_file(self.store, batch / "*.pb", dedup_token=token)
        except (StoreError, ValueError, OSError):
            # Find the poison, or learn that the store is failing: file by file, under per-file
            # tokens. The batch is renamed first so that a crash from here on resumes file by file.
            _unlink(block)
            split = batch.with_name(batch.name + ".split")
            os.replace(batch, split)
            self._ingest_split(split, report)
            return
        report.spans += spans
        report.events += events
        report.batches += len(files)
        for path in files:
            _unlink(path)
        _unlink(block)
        _rmdir(batch)

    def _count(self, files: list[Path], batch: Path) -> tuple[int, int]:
        """(spans, events) of a batch: from the files' names (counted by their writers), else parsed."""
        named = [batch_counts(path) for path in files]
        if all(c is not None for c in named):
            return sum(c[0] for c in named if c), sum(c[1] for c in named if c)
        return native_ingest.count_spans(self.store, batch / "*.pb")

    def _ingest_split(self, split: Path, report: DrainReport) -> None:
        for path in sorted(split.glob("*.pb")):
            if not self._ingest_one(path, report):
                return
        _rmdir(split)

    def _ingest_one(self, path: Path, report: DrainReport) -> bool:
        """One file through the Python decoder; False when the store failed (file kept)."""
        try:
            columns, events = decode_columns(path.read_bytes())
        except DecodeError as exc:
            self._dead(path, str(exc), report)
            return True
        except OSError as exc:
            report.errors.append(f"{path.name}: {exc}")
            return True
        try:
            if self.chain.processors:
                columns = self.chain.process(SpanBatch(columns)).columns
            report.spans += self.writer.write_spans(columns, dedup_token=f"spool-file-{path.name}")
        except StoreError as exc:
            report.errors.append(f"{path.name}: {exc}")
            return False
        report.events += events
        report.batches += 1
        _unlink(path)
        return True

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


def _rmdir(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
