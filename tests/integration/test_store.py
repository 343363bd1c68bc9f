"""The store, embedded (chdb://) and on a server (http://, the loopback ClickHouse HTTP interface):
schema versions, one owner at a time (embedded), idempotent ingestion, poison files. Tests taking
``new_store`` run once on each kind of address."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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
from tests.integration.clickhouse_server import ClickHouseServer, start_server, stop_server


def test_migrations_record_the_schema_version(new_store: Callable[[str], str]) -> None:
    address = new_store("db")
    with open_store(address) as store:
        rows = store.query(f"SELECT version FROM {VERSION_TABLE} ORDER BY version").rows
        assert [r[0] for r in rows] == list(range(1, latest_version() + 1))
        tables = {r[0] for r in store.query("SHOW TABLES").rows}
        assert {"otel_traces", "otel_traces_trace_id_ts", "execscope_events", "cpg_nodes", "cpg_edges"} <= tables
    with open_store(address) as store:  # reopening applies nothing twice
        assert store.query(f"SELECT count() FROM {VERSION_TABLE}").rows[0][0] == latest_version()


def test_newer_schema_version_is_refused(new_store: Callable[[str], str]) -> None:
    address = new_store("db")
    with open_store(address) as store:
        store.insert_columns(VERSION_TABLE, [[999], ["from_the_future"]], ["version", "name"])
    with pytest.raises(StoreVersionError, match="schema version 999, newer"):
        open_store(address)


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


def test_spool_ingest_is_idempotent_and_sets_poison_aside(tmp_path: Path, new_store: Callable[[str], str]) -> None:
    spool = _spool_with_spans(tmp_path, 3)
    batches = spool.pending_batches()
    assert len(batches) == 3
    (spool.traces_dir / "00000000000000000000-1-poison.pb").write_bytes(b"\xff\xfenot protobuf at all")
    spool.write_nodes(assign_node_ids("def f0():\n    pass\n", "m", "m.py"))
    with open_store(new_store("db")) as store:
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
    inflight = spool.path / "inflight"  # the embedded engine's batches (a server store reads files one by one)
    assert not (inflight.exists() and any(inflight.iterdir()))


def test_span_parts_are_compact_with_lz4_attributes(tmp_path: Path) -> None:
    """Migration 0011 (storage only): a batch's part is one compact file set, the attribute map LZ4."""
    spool = _spool_with_spans(tmp_path, 3)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        assert SpoolSource(spool, store).drain().spans == 3
        parts = store.query("SELECT part_type FROM system.parts WHERE database = currentDatabase() "
                            "AND table = 'otel_traces' AND active").rows
        assert parts == [("Compact",)]
        codec = store.query("SELECT compression_codec FROM system.columns WHERE database = currentDatabase() "
                            "AND table = 'otel_traces' AND name = 'SpanAttributes'").rows
        assert codec == [("CODEC(LZ4)",)]
        create = store.query("SHOW CREATE TABLE otel_traces").rows[0][0]
        assert "min_bytes_for_wide_part = 268435456" in create  # the engine's default (10 MiB) is the table's no more


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


def test_one_file_imported_under_two_names_gets_nodes_under_both(tmp_path: Path,
                                                                 new_store: Callable[[str], str]) -> None:
    source = "def f():\n    return 1\n"
    spool = Spool(tmp_path / "spool")
    with open_store(new_store("db")) as store:
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


def test_node_files_of_many_modules_are_stored_together_and_a_bad_one_is_set_aside(
        tmp_path: Path, new_store: Callable[[str], str]) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(3):
        spool.write_nodes(assign_node_ids(f"def f{i}():\n    return {i}\n", f"m{i}", f"/nowhere/m{i}.py"))
    (spool.path / "cpg" / "0000000000000000-garbage.json").write_text("{not json")
    with open_store(new_store("db")) as store:
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


def test_a_file_stored_again_after_a_crash_adds_nothing(tmp_path: Path, new_store: Callable[[str], str]) -> None:
    """The Python path (the only one on a server): a file stored, then left behind by an owner that
    died before deleting it, is stored again under the same deduplication token and adds no span
    and no event (the events' materialized view deduplicates too)."""
    spool = _spool_with_spans(tmp_path, 3)
    files = {p.name: p.read_bytes() for p in spool.pending_batches()}
    with open_store(new_store("db")) as store:
        assert SpoolSource(spool, store, native=False).drain().spans == 3
        for name, data in files.items():  # the crash: every file is back
            (spool.traces_dir / name).write_bytes(data)
        again = SpoolSource(spool, store, native=False).drain()
        assert (again.errors, again.spans) == ([], 3)  # inserted, and dropped by the engine
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 3
        assert store.query("SELECT count() FROM execscope_events").rows[0][0] == 3
        assert spool.pending_batches() == []


def test_the_server_path_stores_what_the_embedded_path_stores(tmp_path: Path, clickhouse_server) -> None:
    """One spool stored by the embedded engine's own OTLP parser and, through the HTTP interface, by
    the Python decoder: the same rows in every table the spans feed."""
    rows = {}
    for kind in ("chdb", "http"):
        spool = _spool_with_spans(tmp_path / kind, 3)
        spool.write_nodes(assign_node_ids("def f0():\n    pass\n", "m", "m.py"))
        address = f"chdb://{tmp_path / kind / 'db'}" if kind == "chdb" else clickhouse_server.dsn(f"same_{os.getpid()}")
        with open_store(address) as store:
            assert SpoolSource(spool, store).native is (kind == "chdb")
            SpoolSource(spool, store).drain()
            rows[kind] = [store.query(sql).rows for sql in (
                "SELECT SpanName, ParentSpanId = '', SpanKind, ServiceName, ResourceAttributes, ScopeName, "
                "SpanAttributes, StatusCode, Events.Name, Events.Attributes, Duration > 0, NodeId FROM otel_traces "
                "ORDER BY SpanName",
                "SELECT SpanName, EventName, NodeId, Seq, LineNumber FROM execscope_events ORDER BY SpanName",
                "SELECT NodeId, executions FROM execscope_node_stats FINAL ORDER BY NodeId",
                "SELECT node_id, kind, line FROM cpg_nodes FINAL ORDER BY node_id")]
    assert rows["chdb"] == rows["http"] and len(rows["http"][0]) == 3 and len(rows["http"][3]) == 3


def test_server_errors_read_as_the_engine_writes_them(tmp_path: Path, clickhouse_server) -> None:
    """A failing statement says the same on both paths (the engine's text, not the HTTP wrapping); a
    wrong password is refused as a server refuses it; a missing database is created on first open."""
    messages = []
    for address in (f"chdb://{tmp_path / 'db'}", clickhouse_server.dsn(f"errs_{os.getpid()}")):
        with open_store(address) as store:
            with pytest.raises(StoreError) as info:
                store.query("SELECT nope FROM otel_traces")
            messages.append(str(info.value))
    assert messages[0] == messages[1] and messages[0].startswith("Code: 47. DB::Exception: ")
    assert messages[0].endswith("(UNKNOWN_IDENTIFIER)"), messages[0]
    wrong = clickhouse_server.dsn("errs").replace(clickhouse_server.password.replace(":", "%3A").replace("@", "%40"),
                                                  "wrong")
    with pytest.raises(StoreError, match=r"cannot reach store http://execscope:\*\*\*@.*Code: 516\. DB::Exception: "
                                         r"execscope: Authentication failed"):
        open_store(wrong)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl (Debian's openssl package) makes the certificate")
def test_a_server_store_over_tls_with_a_password(tmp_path: Path) -> None:
    """``https://user:pass@host:port/db?ca_cert=FILE``: the store over TLS to a server whose certificate
    the given CA signed; without it the certificate is refused, in one line."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    proc, url = start_server(tmp_path, "recorder", "pw 1", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        address = ClickHouseServer(url, "recorder", "pw 1").dsn("tls_db")
        assert address.startswith("https://recorder:pw%201@127.0.0.1:")
        with open_store(f"{address}?ca_cert={cert}") as store:
            store.insert_columns(VERSION_TABLE, [[100], ["over tls"]], ["version", "name"])
            assert store.query(f"SELECT name FROM {VERSION_TABLE} WHERE version = 100").rows == [("over tls",)]
            assert str(store.address).startswith("https://recorder:***@")  # the password never printed
        with pytest.raises(StoreError) as refused:
            open_store(address)
        assert str(refused.value) == (f"cannot reach store {address.replace('pw%201', '***')}: "
                                      "certificate verify failed: self-signed certificate")
    finally:
        stop_server(proc)


def test_a_read_only_session_refuses_writes_and_setting_changes(new_store: Callable[[str], str]) -> None:
    """What the MCP `sql` tool relies on, on both kinds of store: the engine itself refuses."""
    with open_store(new_store("db")) as store:
        with store.read_only({"max_result_rows": 3}) as ro:
            assert ro.query("SELECT number FROM numbers(3)").rows == [(0,), (1,), (2,)]
            with pytest.raises(StoreError, match=r"^Code: 396\..*max rows: 3"):
                ro.query("SELECT number FROM numbers(10)")
            with pytest.raises(StoreError, match=r"^Code: 164\..*readonly mode"):
                ro.command(f"INSERT INTO {VERSION_TABLE} (version, name) VALUES (7007, 'x')")
            for lift in ("SELECT number FROM numbers(10) SETTINGS max_result_rows = 100", "SET max_result_rows = 100"):
                with pytest.raises(StoreError, match=r"^Code: 164\..*Cannot modify 'max_result_rows' setting"):
                    ro.query(lift)
        assert store.query(f"SELECT count() FROM {VERSION_TABLE} WHERE version = 7007").rows == [(0,)]


PANDAS_PROBE = """
import sys
from execscope.storage import open_store
with open_store(sys.argv[1]) as store:  # migrations insert their version rows
    store.insert_columns("cpg_files", [["a.py"], ["a"], ["v1"], [1]], ["file", "module", "code_version", "lines"])
    loaded = "pandas" in sys.modules
    frame = store._client.query_df("SELECT 1 AS x")  # clickhouse-connect's pandas still there when asked
    print(loaded, type(frame).__module__.split(".")[0], int(frame["x"][0]))
"""


def test_storing_never_loads_pandas_yet_dataframes_still_work(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PANDAS_PROBE, f"chdb://{tmp_path / 'db'}"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "pandas", "1"]
