"""The embedded store: schema versions, one owner at a time, idempotent ingestion, poison files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from execscope.collector.spool_source import DrainReport, SpoolSource
from execscope.instrumentation.export.spool import Spool
from execscope.instrumentation.export.spool_exporter import SpoolSpanExporter
from execscope.instrumentation.nodes.node_ids import assign_node_ids
from execscope.storage import StoreError, StoreLockedError, StoreVersionError, open_store
from execscope.storage.migrations import VERSION_TABLE, latest_version


def test_migrations_record_the_schema_version(tmp_path: Path) -> None:
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        rows = store.query(f"SELECT version FROM {VERSION_TABLE} ORDER BY version").rows
        assert [r[0] for r in rows] == list(range(1, latest_version() + 1))
        tables = {r[0] for r in store.query("SHOW TABLES").rows}
        assert {"otel_traces", "otel_traces_trace_id_ts", "execscope_events", "cpg_nodes", "cpg_edges"} <= tables
    with open_store(f"chdb://{tmp_path / 'db'}") as store:  # reopening applies nothing twice
        assert store.query(f"SELECT count() FROM {VERSION_TABLE}").rows[0][0] == latest_version()


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        store.insert_columns(VERSION_TABLE, [[999], ["from_the_future"]], ["version", "name"])
    with pytest.raises(StoreVersionError, match="schema version 999, newer"):
        open_store(f"chdb://{tmp_path / 'db'}")


def test_second_owner_gets_a_clear_error(tmp_path: Path) -> None:
    with open_store(f"chdb://{tmp_path / 'db'}"):
        holder = subprocess.run(
            [sys.executable, "-c", "from execscope.storage import open_store; import sys\n"
             f"try:\n    open_store('chdb://{tmp_path / 'db'}')\nexcept Exception as e:\n"
             "    print(type(e).__name__, e); sys.exit(3)"], capture_output=True, text=True)
        assert holder.returncode == 3
        assert holder.stdout.startswith("StoreLockedError")
        assert f"locked by process {os.getpid()}" in holder.stdout
        with pytest.raises(StoreLockedError):
            open_store(f"chdb://{tmp_path / 'db'}")


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot be created"):
        open_store(f"chdb://{blocker / 'db'}")
    with pytest.raises(StoreError, match="unsupported store address"):
        open_store("ftp://example/db")


def _spool_with_spans(tmp_path: Path, n: int) -> Spool:
    spool = Spool(tmp_path / "spool")
    provider = TracerProvider(resource=Resource.create({"service.name": "svc"}))
    provider.add_span_processor(SimpleSpanProcessor(SpoolSpanExporter(spool)))
    tracer = provider.get_tracer("t")
    for i in range(n):
        with tracer.start_as_current_span(f"s{i}", attributes={"execscope.node_id": f"m:f{i}", "n": i}) as span:
            span.add_event("execscope.line", {"execscope.node_id": f"m:f{i}:expr#0", "execscope.seq": 1,
                                              "code.line.number": 7})
    provider.shutdown()
    return spool


def test_spool_ingest_is_idempotent_and_sets_poison_aside(tmp_path: Path) -> None:
    spool = _spool_with_spans(tmp_path, 3)
    batches = spool.pending_batches()
    assert len(batches) == 3
    (spool.traces_dir / "00000000000000000000-1-poison.pb").write_bytes(b"\xff\xfenot protobuf at all")
    spool.write_nodes(assign_node_ids("def f0():\n    pass\n", "m", "m.py"))
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source = SpoolSource(spool, store)
        report = source.drain()
        assert (report.spans, report.events, report.batches, report.dead) == (3, 3, 3, 1)
        assert report.modules == 1 and report.nodes == 3  # module, f0, its pass
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 3
        assert store.query("SELECT count() FROM execscope_events").rows[0][0] == 3
        row = store.query("SELECT ServiceName, SpanKind, StatusCode, NodeId, SpanAttributes['n'] "
                          "FROM otel_traces WHERE SpanName = 's1'").rows[0]
        assert row == ("svc", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET", "m:f1", "1")
        event = store.query("SELECT NodeId, Seq, LineNumber FROM execscope_events WHERE SpanName = 's2'").rows
        assert event == [("m:f2:expr#0", 1, 7)]
        assert store.query("SELECT count() FROM cpg_edges WHERE kind = 'AST'").rows[0][0] == 2
    dead = spool.path / "dead"
    assert (dead / "00000000000000000000-1-poison.pb").exists()
    assert "not an OTLP" in (dead / "00000000000000000000-1-poison.pb.reason").read_text()
    assert spool.pending_batches() == []
    assert not any((spool.path / "inflight").iterdir())


@pytest.mark.parametrize("crashed_in", ["batch", "split"])
def test_a_batch_replayed_after_a_crash_adds_nothing(tmp_path: Path, crashed_in: str) -> None:
    spool = _spool_with_spans(tmp_path, 4)
    files = {p.name: p.read_bytes() for p in spool.pending_batches()}
    first_name = sorted(files)[0]
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        if crashed_in == "batch":
            # the engine inserted a batch, then the owner died before deleting its files
            assert SpoolSource(spool, store, native=True).drain().spans == 4
            replay = spool.path / "inflight" / first_name[:-3]
        else:
            # a batch failed, and the owner died retrying it file by file after inserting one file
            split = spool.path / "inflight" / "b.split"
            split.mkdir(parents=True)
            os.replace(spool.traces_dir / first_name, split / first_name)
            assert SpoolSource(spool, store, native=True)._ingest_one(split / first_name, DrainReport())
            files = {first_name: files[first_name]}
            replay = split
            assert SpoolSource(spool, store, native=True).drain().spans == 3  # the other files
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 4
        replay.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (replay / name).write_bytes(data)
        again = SpoolSource(spool, store, native=True).drain()
        assert again.errors == []
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 4
        assert store.query("SELECT count() FROM execscope_events").rows[0][0] == 4
        assert not replay.exists()


def test_python_and_native_decoding_store_the_same_rows(tmp_path: Path) -> None:
    rows = {}
    for native in (True, False):
        spool = _spool_with_spans(tmp_path / str(native), 2)
        with open_store(f"chdb://{tmp_path / str(native) / 'db'}") as store:
            SpoolSource(spool, store, native=native).drain()
            rows[native] = store.query(
                "SELECT SpanName, ParentSpanId = '', SpanKind, ServiceName, ResourceAttributes, ScopeName, "
                "SpanAttributes, StatusCode, Events.Name, Events.Attributes, Duration > 0 "
                "FROM otel_traces ORDER BY SpanName").rows
    assert rows[True] == rows[False] and len(rows[True]) == 2


def test_one_file_imported_under_two_names_gets_nodes_under_both(tmp_path: Path) -> None:
    source = "def f():\n    return 1\n"
    spool = Spool(tmp_path / "spool")
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source_ = SpoolSource(spool, store)
        spool.write_nodes(assign_node_ids(source, "pkg.mod", "mod.py"))
        source_.drain()
        source_.publish_known_versions()
        later = Spool(tmp_path / "spool")  # a new process reads the published list
        assert later.write_nodes(assign_node_ids(source, "pkg.mod", "mod.py"))  # known: skipped
        assert later.pending_nodes() == []
        later.write_nodes(assign_node_ids(source, "alias.mod", "mod.py"))
        assert source_.drain().nodes == 3
        ids = {r[0] for r in store.query("SELECT node_id FROM cpg_nodes").rows}
        assert {"pkg.mod:f", "alias.mod:f"} <= ids


def test_node_files_of_many_modules_are_stored_together_and_a_bad_one_is_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.write_nodes(assign_node_ids(f"def f{i}():\n    return {i}\n", f"m{i}", f"/nowhere/m{i}.py"))
    (spool.path / "cpg" / "0000000000000000-garbage.json").write_text("{not json")
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        report = SpoolSource(spool, store).drain()
        assert (report.modules, report.dead) == (3, 1)
        assert {r[0] for r in store.query("SELECT DISTINCT module FROM cpg_nodes").rows} == {"m0", "m1", "m2"}
        (spool.path / "cpg" / "0000000000000001-shape.json").write_text(json.dumps(
            {"module": "bad", "file": "/x.py", "code_version": "v", "fields": ["node_id"], "nodes": [[1]]}))
        spool.write_nodes(assign_node_ids("def g():\n    return 0\n", "m3", "/nowhere/m3.py"))
        report = SpoolSource(spool, store).drain()  # a malformed document: found by storing one by one
        assert (report.modules, report.dead) == (1, 1)
        assert "m3" in {r[0] for r in store.query("SELECT DISTINCT module FROM cpg_nodes").rows}
        assert spool.pending_nodes() == []
