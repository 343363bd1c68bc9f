"""From a finished frame to a stored row, stage by stage, on the embedded engine; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_store.py [--traces 60] [--depth 14] [--level functions]

Spans are real fast-core frames of a recursive ``fib`` (one trace per root call), encoded as execscope
records them (one OTLP request per trace, as :mod:`bench_kafka` does). Every figure is spans per
core-second: spans / CPU time (user + sys, every thread) of this process, which runs the stage and
the embedded engine (chDB) alike. Stages:

* ``encode``: frames -> OTLP ``ExportTraceServiceRequest`` bytes (:mod:`...export.otlp_encode`);
* ``spool_write``: those requests written as spool files (:class:`...export.spool.Spool`);
* ``decode_python``: spool files read and decoded into ``otel_traces`` columns in Python (the path of
  a server store, or of a chain with processors);
* ``processors``: the ``redact`` and ``attribute_limits`` processors over the decoded columns;
* ``insert_columns``: the decoded columns inserted into ``otel_traces`` (clickhouse-connect);
* ``parse_engine``: the engine parsing the spool files and building the rows, into a ``Null`` table
  (the native ingest's statement, nothing stored);
* ``insert_no_views``: the native ingest into a copy of ``otel_traces`` (same columns, materialized
  columns and indexes) with no materialized view reading it;
* ``insert_views``: the native ingest into ``otel_traces`` with every view of the store's migrations;
* ``insert_views_table_derived``: the same with the MATERIALIZED columns left to the table (the
  statement before :data:`native_ingest.DERIVED`), side by side with ``insert_views``;
* ``convert_native``: the spool files' requests converted into Native blocks in C
  (:mod:`...collector.native_block`), one block per insert batch, nothing stored;
* ``insert_native``: those blocks inserted into ``otel_traces`` with every view (the new fast path's
  insert; compare with ``insert_views``, the engine parsing the protobuf itself);
* ``spool_drain``: :class:`SpoolSource` draining the spool (what ``execscope run`` does): Native
  blocks converted in C; ``spool_drain_protobuf``: the same with the engine parsing the protobuf
  (the fallback without the C converter);
* ``end_to_end_spool``: encode + spool write + drain, per span (``end_to_end_spool_protobuf``: with
  the protobuf drain);
* ``spool_drain_warm`` / ``end_to_end_spool_warm``: the same drain into a store that has taken one
  small batch of other spans first, as a recording's or collector's store has after its first
  second: a store's first insert also loads its tables and views, a cost per opening and not per
  span (``spool_drain`` and ``end_to_end_spool`` include it);
* ``spool_drain_own_process`` / ``end_to_end_spool_own_process``: the drain into a fresh store opened
  by a process of its own, as ``execscope run`` opens one store per process (the other stages share
  this process, where a store opened after another pays about 35 ms more on its first insert: 55-65
  ms where the process's first store pays 25 ms, measured on 2 cores); the opening is not counted,
  as ``run`` opens its store while the program starts. The median of :data:`OWN_PROCESS_RUNS` runs
  (each into a new store, ``runs_cpu_s`` lists them all): one run of 0.25 s of CPU moves by 20%;
* ``insert_fixed``: what one insert costs whatever its size (CPU ms, median of a dozen small ones into
  a store that has taken one already), with every view and with none (:func:`insert_fixed_cost`);
* ``bound_native_bare``: the decoded columns inserted by clickhouse-connect (Native blocks) into a
  bare MergeTree with the same columns (no materialized columns, indexes or views): the engine's own
  bound on this machine, with no decoding counted.

The engine stages run each in a fresh store, over the same files, in batches of
``SpoolSource.MAX_BATCH_FILES`` files, the way the spool source inserts them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_kafka import encode, make_frames  # noqa: E402

from execscope.collector import native_block, native_ingest  # noqa: E402
from execscope.collector.otlp_decode import TRACE_COLUMNS, decode_columns  # noqa: E402
from execscope.collector.processors import AttributeLimitsProcessor, ProcessorChain, RedactProcessor, SpanBatch  # noqa: E402
from execscope.collector.spool_source import SpoolSource  # noqa: E402
from execscope.instrumentation.export.spool import Spool  # noqa: E402
from execscope.storage import open_store  # noqa: E402
from execscope.storage.store import Store  # noqa: E402

OWN_PROCESS_RUNS = 3  # the drain in a process of its own, a fresh one each time: the median is printed


def measure(spans: int, work: Callable[[], Any]) -> tuple[dict[str, float], Any]:
    w0, c0 = time.perf_counter(), time.process_time()
    result = work()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "spans_per_cpu_s": round(spans / max(cpu, 1e-9))}, result


def batches(files: list[Path], size: int) -> list[list[Path]]:
    return [files[i:i + size] for i in range(0, len(files), size)]


def stage_dirs(root: Path, files: list[Path], size: int) -> list[Path]:
    """Copies of the spool files, one directory per insert batch (the spool source's inflight batch)."""
    out = []
    for n, group in enumerate(batches(files, size)):
        d = root / f"b{n:04d}"
        d.mkdir(parents=True)
        for f in group:
            (d / f.name).write_bytes(f.read_bytes())
        out.append(d)
    return out


def table_derived_sql() -> str:
    """The native statement without the MATERIALIZED columns: the table computes them (as before)."""
    derived = native_ingest.DERIVED
    sql = native_ingest.INSERT_SQL.replace(", " + ", ".join(derived) + ")", ")", 1)
    sql = sql.replace(",\n    " + ", ".join(derived.values()) + "\nFROM", "\nFROM", 1)
    assert "NodeId" not in sql and "span_attributes['execscope.seq']" not in sql, sql
    return sql


def native_into(store: Store, table: str, dirs: list[Path], tag: str, table_derived: bool = False) -> None:
    sql = table_derived_sql() if table_derived else native_ingest.INSERT_SQL
    sql = sql.replace("INSERT INTO otel_traces", f"INSERT INTO {table}", 1)
    for d in dirs:
        store.command(sql, parameters={"path": str(d / "*.pb")},
                      settings=native_ingest.native_settings(f"{tag}-{d.name}"))


def count(store: Store, table: str) -> int:
    return int(store.query(f"SELECT count() FROM {table}").rows[0][0])


def drain_in_own_process(spool_dir: Path, db: Path, spans: int) -> dict[str, float]:
    """The spool at ``spool_dir`` drained into a fresh store at ``db`` by a new process (its first)."""
    proc = subprocess.run([sys.executable, __file__, "--drain-only", str(spool_dir), str(db)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"the drain in its own process failed: {proc.stderr[-2000:]}")
    figures = json.loads(proc.stdout)
    assert figures["spans"] == spans, figures
    cpu = float(figures["cpu_s"])
    return {"cpu_s": round(cpu, 3), "wall_s": figures["wall_s"], "spans_per_cpu_s": round(spans / max(cpu, 1e-9))}


def drain_only(spool_dir: str, db: str) -> None:
    """The child of :func:`drain_in_own_process`: open the store (not measured), drain (measured)."""
    with open_store(f"chdb://{db}") as store:
        source = SpoolSource(Spool(spool_dir), store)
        figures, report = measure(0, source.drain)
        assert not report.errors, report.errors
        assert count(store, "otel_traces") == report.spans
    print(json.dumps({"cpu_s": figures["cpu_s"], "wall_s": figures["wall_s"], "spans": report.spans}))


FIXED_INSERTS = 12  # small inserts per store for the fixed cost: the median is printed


def insert_fixed_cost(tmp: Path, level: str) -> dict[str, float]:
    """What an insert costs whatever its size: CPU ms (median) of a block of one small trace (under 100
    spans) into a store that has taken one already, with every view and with none. ``execscope run``
    drains the spool at most twice a second (``DRAIN_INTERVAL_S``), so a recording pays it at most
    twice a second; a batch pays it once for all its files."""
    paths = []
    for k in range(FIXED_INSERTS + 1):
        block = native_block.convert([v for _k, v, _s in encode(make_frames(1, 6, level))])[0]
        paths.append(tmp / f"small-{k}.native")
        paths[-1].write_bytes(block)
    out: dict[str, float] = {}
    for key, views in (("views_ms", True), ("no_views_ms", False)):
        with open_store(f"chdb://{tmp}/db-fixed-{key}") as store:
            if not views:
                for (view,) in store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                           "AND engine = 'MaterializedView'").rows:
                    store.command(f"DROP VIEW {view}")
            native_block.ingest(store, paths[0], f"{key}-first")
            costs = []
            for k, path in enumerate(paths[1:]):
                c0 = time.process_time()
                native_block.ingest(store, path, f"{key}-{k}")
                costs.append(time.process_time() - c0)
            out[key] = round(statistics.median(costs) * 1000, 1)
    return out


def run(traces: int, depth: int, level: str) -> dict[str, Any]:
    frames = make_frames(traces, depth, level)
    warm_up = [v for _k, v, _s in encode(make_frames(1, 8, level))]  # other traces: nothing deduplicated
    n = len(frames)
    out: dict[str, Any] = {"machine_cores": os.cpu_count(), "python": sys.version.split()[0], "level": level,
                           "traces": traces, "spans": n}
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp_s:
        tmp = Path(tmp_s)
        out["encode"], messages = measure(n, lambda: encode(frames))
        out["bytes"] = sum(len(v) for _k, v, _s in messages)
        spool = Spool(tmp / "spool")
        out["spool_write"], _ = measure(n, lambda: [spool.write_batch(v, s, 0) for _k, v, s in messages])
        files = spool.pending_batches()

        def decode_all() -> list[list[list[Any]]]:
            return [decode_columns(f.read_bytes())[0] for f in files]

        out["decode_python"], decoded = measure(n, decode_all)
        chain = ProcessorChain([RedactProcessor(), AttributeLimitsProcessor()])
        out["processors"], _ = measure(n, lambda: [chain.process(SpanBatch(c)) for c in decoded])
        merged = [[v for cols in decoded for v in cols[i]] for i in range(len(TRACE_COLUMNS))]
        size = SpoolSource.MAX_BATCH_FILES

        with open_store(f"chdb://{tmp}/db-columns") as store:
            def insert_columns() -> None:
                for k, group in enumerate(batches(list(range(len(decoded))), size)):
                    cols = [[v for j in group for v in decoded[j][i]] for i in range(len(TRACE_COLUMNS))]
                    store.insert_columns("otel_traces", cols, TRACE_COLUMNS, dedup_token=f"cols-{k}")
            out["insert_columns"], _ = measure(n, insert_columns)
            assert count(store, "otel_traces") == n

        dirs = stage_dirs(tmp / "copies", files, size)
        with open_store(f"chdb://{tmp}/db-parse") as store:
            store.command("CREATE TABLE parsed AS otel_traces ENGINE = Null")
            out["parse_engine"], _ = measure(n, lambda: native_into(store, "parsed", dirs, "p"))
        with open_store(f"chdb://{tmp}/db-noviews") as store:
            store.command("CREATE TABLE bare_traces AS otel_traces")  # same engine, columns, indexes; no view
            out["insert_no_views"], _ = measure(n, lambda: native_into(store, "bare_traces", dirs, "nv"))
            assert count(store, "bare_traces") == n
        for key, table_derived in (("insert_views_table_derived", True), ("insert_views", False)):
            with open_store(f"chdb://{tmp}/db-{key}") as store:
                out[key], _ = measure(n, lambda s=store, t=table_derived: native_into(s, "otel_traces", dirs, "v", t))
                assert count(store, "otel_traces") == n
        payloads = [[f.read_bytes() for f in sorted(d.glob("*.pb"))] for d in dirs]

        def convert_all() -> list[bytes]:
            return [native_block.convert(group)[0] for group in payloads]

        out["convert_native"], blocks = measure(n, convert_all)
        block_files = []
        for d, block in zip(dirs, blocks):
            (d / "batch.native").write_bytes(block)
            block_files.append(d / "batch.native")
        with open_store(f"chdb://{tmp}/db-native") as store:
            def insert_blocks() -> None:
                for k, path in enumerate(block_files):
                    native_block.ingest(store, path, f"n-{k}")
            out["insert_native"], _ = measure(n, insert_blocks)
            assert count(store, "otel_traces") == n
        for key, blocks_on in (("spool_drain_protobuf", False), ("spool_drain", True)):
            spool_copy = Spool(tmp / f"spool-{key}")
            spool_copy.traces_dir.mkdir(parents=True)
            for f in files:
                (spool_copy.traces_dir / f.name).write_bytes(f.read_bytes())
            with open_store(f"chdb://{tmp}/db-{key}") as store:
                source = SpoolSource(spool_copy, store, blocks=blocks_on)
                assert source.blocks == blocks_on
                out[key], report = measure(n, source.drain)
                assert report.spans == n and not report.errors, report
                assert count(store, "otel_traces") == n
        own = []
        for k in range(OWN_PROCESS_RUNS):
            spool_own = Spool(tmp / f"spool-own-{k}")
            spool_own.traces_dir.mkdir(parents=True)
            for f in files:
                (spool_own.traces_dir / f.name).write_bytes(f.read_bytes())
            own.append(drain_in_own_process(spool_own.path, tmp / f"db-own-{k}", n))
        own.sort(key=lambda figures: figures["cpu_s"])
        out["spool_drain_own_process"] = {**own[len(own) // 2],
                                          "runs_cpu_s": [figures["cpu_s"] for figures in own]}
        spool_warm = Spool(tmp / "spool-warm")
        spool_warm.traces_dir.mkdir(parents=True)
        for f in files:
            (spool_warm.traces_dir / f.name).write_bytes(f.read_bytes())
        with open_store(f"chdb://{tmp}/db-warm") as store:
            first = Spool(tmp / "spool-first")
            for payload in warm_up:
                first.write_batch(payload)
            assert not SpoolSource(first, store).drain().errors
            warm_spans = count(store, "otel_traces")
            out["spool_drain_warm"], report = measure(n, SpoolSource(spool_warm, store).drain)
            assert report.spans == n and not report.errors, report
            assert count(store, "otel_traces") == n + warm_spans
        for key, drain in (("end_to_end_spool", "spool_drain"), ("end_to_end_spool_protobuf", "spool_drain_protobuf"),
                           ("end_to_end_spool_warm", "spool_drain_warm"),
                           ("end_to_end_spool_own_process", "spool_drain_own_process")):
            e2e = out["encode"]["cpu_s"] + out["spool_write"]["cpu_s"] + out[drain]["cpu_s"]
            out[key] = {"cpu_s": round(e2e, 3), "spans_per_cpu_s": round(n / max(e2e, 1e-9))}

        out["insert_fixed"] = insert_fixed_cost(tmp, level)

        with open_store(f"chdb://{tmp}/db-bound") as store:
            store.command("CREATE TABLE bound_traces AS otel_traces")
            indexes = store.query("SELECT name FROM system.data_skipping_indices "
                                  "WHERE database = currentDatabase() AND table = 'bound_traces'").rows
            for (index,) in indexes:
                store.command(f"ALTER TABLE bound_traces DROP INDEX {index}")
            for column in ("NodeId", "CodeVersion", "Seq", "SeqEnd", "ChildNs", "Hlc", "HlcEnd"):
                store.command(f"ALTER TABLE bound_traces DROP COLUMN IF EXISTS {column}")
            client = store._client  # clickhouse-connect's own insert: Native blocks

            def bound() -> None:
                for k in range(0, n, size * 2048):
                    client.insert("bound_traces", [c[k:k + size * 2048] for c in merged], column_names=TRACE_COLUMNS,
                                  column_oriented=True)
            out["bound_native_bare"], _ = measure(n, bound)
            assert count(store, "bound_traces") == n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=60)
    ap.add_argument("--depth", type=int, default=14)
    ap.add_argument("--level", default="functions")
    ap.add_argument("--drain-only", nargs=2, metavar=("SPOOL", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.drain_only:
        drain_only(*args.drain_only)
        return
    print(json.dumps(run(args.traces, args.depth, args.level)))


if __name__ == "__main__":
    main()
