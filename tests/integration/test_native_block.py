"""Rows stored through the C converter's Native blocks equal, column by column, those stored through
the Python decoder and through the engine's own protobuf parse; the spool source keeps its poison,
split and crash-resume contract on the new path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from execscope.collector import native_block
from execscope.collector.spool_source import BLOCK_NAME, SpoolSource
from execscope.instrumentation.export.spool import Spool
from execscope.storage import open_store
from tests.otlp_payloads import encode_varint, requests

pytestmark = pytest.mark.skipif(not native_block.AVAILABLE, reason=native_block.REASON)

COLUMNS = ", ".join(f"`{name}`" for name, _type in native_block.COLUMNS)  # every column a block writes


def stored(tmp_path: Path, name: str, payloads: list[bytes], **source: Any) -> list[tuple]:
    spool = Spool(tmp_path / name / "spool")
    for payload in payloads:
        spool.write_batch(payload)
    with open_store(f"chdb://{tmp_path / name / 'db'}") as store:
        report = SpoolSource(spool, store, **source).drain()
        assert not report.errors and report.dead == 0
        rows = store.query(f"SELECT {COLUMNS} FROM otel_traces ORDER BY TraceId, SpanId").rows
        assert report.spans == len(rows) and rows
        return rows


def assert_same_rows(a: list[tuple], b: list[tuple]) -> None:
    assert len(a) == len(b)
    names = [name for name, _type in native_block.COLUMNS]
    for row_a, row_b in zip(a, b):
        for name, x, y in zip(names, row_a, row_b):
            assert x == y, (name, x, y)


def test_blocks_store_what_the_engine_parse_and_the_python_decoder_store(tmp_path: Path) -> None:
    payloads = requests(seed=3, engine_safe=True)
    blocks = stored(tmp_path, "blocks", payloads, native=True, blocks=True)
    assert_same_rows(blocks, stored(tmp_path, "engine", payloads, native=True, blocks=False))
    assert_same_rows(blocks, stored(tmp_path, "python", payloads, native=False))
    assert len(blocks) > 50


def test_blocks_store_array_kvlist_and_repeated_keys_as_the_python_decoder(tmp_path: Path) -> None:
    payloads = requests(seed=4)
    blocks = stored(tmp_path, "blocks", payloads, native=True, blocks=True)
    assert_same_rows(blocks, stored(tmp_path, "python", payloads, native=False))
    attributes = [v for row in blocks for v in row[11].values()]
    assert any(v.startswith("[") for v in attributes) and any(v.startswith("{") for v in attributes)


def test_dictionaries_past_one_and_two_byte_indexes_store_what_the_python_decoder_stores(tmp_path: Path) -> None:
    """LowCardinality indexes one, two and four bytes wide: 300 distinct span names and keys in one
    block, then 70,000 distinct attribute keys on one span."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def request(spans: list[Any]) -> bytes:
        return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
                                         ).SerializeToString()

    def span(i: int, keys: list[str]) -> Any:
        return Span(trace_id=(i + 1).to_bytes(16, "big"), span_id=(i + 1).to_bytes(8, "big"), name=f"f{i % 300}",
                    start_time_unix_nano=1_780_000_000_000_000_000 + i,
                    attributes=[KeyValue(key=k, value=AnyValue(string_value=k[::-1])) for k in keys])

    small = request([span(i, ["same", "k" * (i % 3)]) for i in range(20)])  # one-byte indexes
    wide = request([span(100 + i, ["same", f"key-{i}", f"key-{i + 1}"]) for i in range(400)])  # distinct ids
    huge = request([span(1000, [f"k{i}" for i in range(70_000)])])
    for name, payloads in (("two", [small, wide]), ("four", [wide, huge])):
        blocks = stored(tmp_path, f"{name}-blocks", payloads, native=True, blocks=True)
        assert_same_rows(blocks, stored(tmp_path, f"{name}-python", payloads, native=False))
    with open_store(f"chdb://{tmp_path / 'four-blocks' / 'db'}") as store:
        keys = store.query("SELECT uniqExact(arrayJoin(mapKeys(SpanAttributes))) FROM otel_traces").rows[0][0]
        spans = store.query("SELECT count() FROM otel_traces").rows[0][0]
    assert (keys, spans) == (70_000 + 402, 401)


def test_native_layout_is_what_the_engine_writes(tmp_path: Path) -> None:
    """A block byte for byte against chDB's own SELECT ... FORMAT Native of the rows it stored."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    def kvs(*pairs: str) -> list[Any]:
        return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in zip(pairs[::2], pairs[1::2])]

    now = 1_780_000_000_123_456_789
    spans = [Span(trace_id=bytes([i]) * 16, span_id=bytes([i]) * 8, parent_span_id=b"\x09" * 8 if i else b"",
                  name=f"f{i}", kind=1, start_time_unix_nano=now + i, end_time_unix_nano=now + 1000 * i,
                  attributes=kvs("execscope.node_id", f"m:f{i}", "execscope.seq", str(i), "é", "✓"),
                  events=[Span.Event(time_unix_nano=now + j, name=f"e{j}", attributes=kvs("a", str(j)) * (j % 2))
                          for j in range(i)],
                  links=[Span.Link(trace_id=b"\x07" * 16, span_id=b"\x08" * 8, attributes=kvs("l", "1"))] * (i % 2))
             for i in range(1, 4)]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=kvs("service.name", "svc", "host", "h")),
        scope_spans=[ScopeSpans(spans=spans)])])
    block, n, events = native_block.convert([request.SerializeToString()])
    assert (n, events) == (3, 6)
    ours, engines = tmp_path / "ours.native", tmp_path / "engine.native"
    ours.write_bytes(block)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        native_block.ingest(store, ours, "layout")
        casts = ", ".join(f"CAST(`{name}`, '{type_}') AS `{name}`" for name, type_ in native_block.COLUMNS)
        store.command(f"SELECT {casts} FROM otel_traces ORDER BY SpanId INTO OUTFILE '{engines}' FORMAT Native")
    assert engines.read_bytes() == block


def test_a_refused_file_is_stored_by_the_python_decoder_and_poison_set_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    good = requests(seed=6, engine_safe=True)[:3]
    for payload in good:
        spool.write_batch(payload)
    # name (field 5) sent as a varint: protobuf keeps it as an unknown field, the converter refuses it
    def field(number: int, wire: int, body: bytes) -> bytes:
        return encode_varint(number << 3 | wire) + (encode_varint(len(body)) + body if wire == 2 else body)
    odd_span = field(1, 2, b"t" * 16) + field(2, 2, b"s" * 8) + field(5, 0, b"\x07")
    spool.write_batch(field(1, 2, field(2, 2, field(2, 2, odd_span))))
    spool.write_batch(b"\x0a\x05\x12")  # truncated: poison
    with pytest.raises(ValueError):
        native_block.convert([field(1, 2, field(2, 2, field(2, 2, odd_span)))])
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        report = SpoolSource(spool, store).drain()
        expected = sum(native_block.convert([p])[1] for p in good) + 1
        assert (report.spans, report.dead) == (expected, 1)
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == expected
        assert store.query("SELECT SpanName FROM otel_traces WHERE SpanId = '7373737373737373'").rows == [("",)]
    assert spool.pending_batches() == [] and len(list((spool.path / "dead").glob("*.pb"))) == 1
    assert not any((spool.path / "inflight").iterdir())


def test_a_batch_left_with_its_block_by_a_crash_is_stored_once(tmp_path: Path) -> None:
    payloads = requests(seed=8, engine_safe=True)[:4]
    spool = Spool(tmp_path / "spool")
    for payload in payloads:
        spool.write_batch(payload)
    files = {p.name: p.read_bytes() for p in spool.pending_batches()}
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        first = SpoolSource(spool, store).drain()
        count = store.query("SELECT count() FROM otel_traces").rows[0][0]
        assert first.spans == count > 0
        # the owner died after the insert, before deleting the batch: files and block still there
        batch = spool.path / "inflight" / sorted(files)[0][:-3]
        batch.mkdir(parents=True)
        for name, data in files.items():
            (batch / name).write_bytes(data)
        native_block.write(batch / BLOCK_NAME, list(files.values()))
        (batch / (BLOCK_NAME + ".part")).write_bytes(b"half a blo")  # and one died while writing
        again = SpoolSource(spool, store).drain()
        assert again.errors == [] and again.spans == count
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == count
        assert store.query("SELECT count() FROM execscope_events").rows[0][0] == first.events
    assert not any((spool.path / "inflight").iterdir()) or os.listdir(spool.path / "inflight") == []


def test_an_insert_repeated_under_its_token_adds_nothing_whatever_the_token(tmp_path: Path) -> None:
    block, spans, _events = native_block.convert(requests(seed=2, engine_safe=True)[:2])
    path = tmp_path / "b.native"
    path.write_bytes(block)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        for token in ("kafka:it's:0:1-2", "a\\'b", "kafka:it's:0:1-2", "a\\'b", "plain"):
            native_block.ingest(store, path, token)
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == 3 * spans


def _record(offset: int, value: bytes | None) -> Any:
    from kafka.consumer.fetcher import ConsumerRecord

    return ConsumerRecord("otlp_spans", 0, 0, offset, 0, 0, None, value, [], None, 0, len(value or b""), 0)


@pytest.mark.parametrize("odd", [False, True])
def test_kafka_batches_go_through_one_block_unless_python_alone_takes_a_record(tmp_path: Path, odd: bool) -> None:
    """KafkaSource's batch path (no broker needed past the consumer): one C pass checks the records
    and converts them; a record only the Python decoder takes sends the batch to the engine's parse."""
    from kafka.structs import TopicPartition

    from execscope.collector.kafka_source import KafkaSource

    def field(number: int, wire: int, body: bytes) -> bytes:
        return encode_varint(number << 3 | wire) + (encode_varint(len(body)) + body if wire == 2 else body)

    payloads = requests(seed=13, engine_safe=True)[:3]
    if odd:  # a span name sent as a varint: protobuf keeps it as an unknown field, the converter refuses
        payloads.insert(1, field(1, 2, field(2, 2, field(2, 2, field(1, 2, b"t" * 16) + field(2, 2, b"s" * 8)
                                                            + field(5, 0, b"\x07")))))
    expected = sum(1 if odd and i == 1 else native_block.convert([p])[1] for i, p in enumerate(payloads))
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source = KafkaSource("127.0.0.1:1", store, work_dir=str(tmp_path))
        assert source.blocks and source.native
        ok = source._write_spans(TopicPartition("otlp_spans", 0), [_record(i, p) for i, p in enumerate(payloads)],
                                 "kafka:otlp_spans:0:0-3")
        assert ok and source.stats.spans == expected
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == expected
        # the odd record: refused by the converter, then by the engine's parse; the Python decoder stores it
        assert ("decoding in Python" in source.stats.last_error) == odd
        source._close()


def count_files_per_insert(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The spool files of each Native block insert, in order (native_block.ingest, still inserting)."""
    inserts: list[int] = []
    real_ingest = native_block.ingest
    monkeypatch.setattr(native_block, "ingest", lambda store, path, dedup_token: (
        inserts.append(len(list(path.parent.glob("*.pb")))), real_ingest(store, path, dedup_token))[1])
    return inserts


def test_block_batches_are_cut_at_their_own_byte_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MAX_BLOCK_BATCH_BYTES bounds a Native block batch (MAX_BATCH_BYTES the engine parse's)."""
    spool = Spool(tmp_path / "spool")
    payloads = requests(seed=8, engine_safe=True)[:5]
    for payload in payloads:
        spool.write_batch(payload)
    sizes = [p.stat().st_size for p in spool.pending_batches()]
    inserts = count_files_per_insert(monkeypatch)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source = SpoolSource(spool, store, blocks=True)
        source.MAX_BATCH_BYTES = 1  # not this one's
        source.MAX_BLOCK_BATCH_BYTES = sizes[0] + sizes[1]
        report = source.drain()
        assert not report.errors and report.batches == 5
        assert sum(inserts) == 5 and len(inserts) >= 3 and max(inserts) == 2, inserts
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == report.spans > 0


def test_block_batches_take_more_files_than_the_engine_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small spool files go into one Native block up to MAX_BLOCK_BATCH_FILES of them (an insert
    costs the same whatever its size), past the engine parse's MAX_BATCH_FILES."""
    spool = Spool(tmp_path / "spool")
    payloads = requests(seed=9, engine_safe=True)
    for i in range(150):
        spool.write_batch(payloads[i % len(payloads)])
    inserts = count_files_per_insert(monkeypatch)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        source = SpoolSource(spool, store, blocks=True)
        source.MAX_BLOCK_BATCH_FILES = 100
        report = source.drain()
        assert not report.errors and report.batches == 150 and inserts == [100, 50], inserts
        assert source.MAX_BATCH_FILES < 100 < SpoolSource.MAX_BLOCK_BATCH_FILES
        assert store.query("SELECT count() FROM otel_traces").rows[0][0] == report.spans > 0


def _request(name: str, start: int, end: int, event_ns: int | None = None, kind: int = 1, code: int = 0) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

    span = Span(trace_id=b"\x01" * 16, span_id=name.encode()[:8].ljust(8, b"-"), name=name, kind=kind,  # type: ignore[arg-type]
                start_time_unix_nano=start, end_time_unix_nano=end, status=Status(code=code))  # type: ignore[arg-type]
    if event_ns is not None:
        span.events.add(time_unix_nano=event_ns, name="e")
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
                                     ).SerializeToString()


@pytest.mark.parametrize("path", ["blocks", "engine", "python"])
def test_times_beyond_datetime64_are_poison_on_every_path_and_the_drain_goes_on(tmp_path: Path, path: str) -> None:
    # A span time from 2^63 ns on is not a DateTime64(9): the engine's parse wrapped it to 1677, and
    # the Python decoder's insert failed as a failing store would (the file kept, the drain stuck).
    t = 10 ** 18
    spool = Spool(tmp_path / "spool")
    spool.write_batch(_request("before", t, t + 5, kind=9, code=7))  # out-of-range kind and status
    for name, start, end, event in (("start", 1 << 63, (1 << 63) + 5, None), ("end", t, (1 << 64) - 1, None),
                                    ("event", t, t + 5, 1 << 63)):
        spool.write_batch(_request(name, start, end, event))
    spool.write_batch(_request("after", t, t + 5, (1 << 63) - 1))  # the last representable time is kept
    with open_store(f"chdb://{tmp_path / 'db'}") as store:  # "python": a server store's path, or a chain's
        report = SpoolSource(spool, store, native=path != "python", blocks=path == "blocks").drain()
        assert (report.spans, report.dead) == (2, 3), report.errors
        assert all("beyond 2262-04-11" in e for e in report.errors)
        rows = store.query("SELECT SpanName, SpanKind, StatusCode, toString(`Events.Timestamp`[1]) "
                           "FROM otel_traces ORDER BY SpanName").rows
    assert rows == [("after", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET", "2262-04-11 23:47:16.854775807"),
                    ("before", "SPAN_KIND_UNSPECIFIED", "STATUS_CODE_UNSET", "1970-01-01 00:00:00.000000000")]
    assert spool.pending_batches() == [] and len(list((spool.path / "dead").glob("*.pb"))) == 3


def _index_bytes(store: Any) -> dict[str, int]:
    rows = store.query("SELECT name, data_compressed_bytes FROM system.data_skipping_indices "
                       "WHERE database = currentDatabase() AND table = 'otel_traces'").rows
    return {name: int(size) for name, size in rows}


@pytest.mark.parametrize("path", ["blocks", "engine", "python"])
def test_the_maps_bloom_filters_are_left_to_the_merges_and_filters_read_the_same_rows(tmp_path: Path,
                                                                                        path: str) -> None:
    from execscope.storage.migrations import INDEXES_BUILT_BY_MERGES

    payloads = requests(seed=5, engine_safe=True)
    spool = Spool(tmp_path / "spool")
    for payload in payloads[: len(payloads) // 2]:
        spool.write_batch(payload)
    with open_store(f"chdb://{tmp_path / 'db'}") as store:
        store.command("SYSTEM STOP MERGES otel_traces")  # the parts as the inserts wrote them (the Python
        source = SpoolSource(spool, store, native=path != "python", blocks=path == "blocks")  # path: many)
        assert not source.drain().errors
        for payload in payloads[len(payloads) // 2:]:
            spool.write_batch(payload)
        assert not source.drain().errors
        key, value = store.query("SELECT k, v FROM otel_traces ARRAY JOIN mapKeys(SpanAttributes) AS k, "
                                 "mapValues(SpanAttributes) AS v ORDER BY k, v LIMIT 1").rows[0]
        filters = ("SELECT count() FROM otel_traces WHERE mapContains(SpanAttributes, {k:String})",
                   "SELECT count() FROM otel_traces WHERE has(mapValues(SpanAttributes), {v:String})")

        def counts() -> list[int]:
            return [int(store.query(sql, parameters={"k": key, "v": value}).rows[0][0]) for sql in filters]

        before = counts()
        assert all(before) and len(store.query("SELECT name FROM system.parts WHERE database = currentDatabase() "
                                               "AND table = 'otel_traces' AND active").rows) >= 2
        built = _index_bytes(store)
        assert set(INDEXES_BUILT_BY_MERGES) < set(built)
        assert all(built[name] == 0 for name in INDEXES_BUILT_BY_MERGES), built
        assert built["idx_trace_id"] > 0 and built["idx_node_id"] > 0, built  # the others built on insert
        store.command("SYSTEM START MERGES otel_traces")
        store.command("OPTIMIZE TABLE otel_traces FINAL")
        merged = _index_bytes(store)
        assert all(merged[name] > 0 for name in INDEXES_BUILT_BY_MERGES), merged
        assert counts() == before
