"""The Kafka source: a consumer group reading OTLP from ``otlp_spans`` into the store.

Reads the topic (value = serialized ``ExportTraceServiceRequest``: what execscope's exporter and the
stock OpenTelemetry Collector's Kafka exporter with ``otlp_proto`` encoding write) and
``<topic>.cpg`` (node rows), and writes them through the processor chain (:mod:`.processors`) and
the ClickHouse writer. Node rows that came inside the OTLP data (carrier spans of scope
``execscope.cpg``, sent by the execscope instrumentor through any collector: :mod:`.cpg_carrier`)
go to the CPG tables instead of ``otel_traces``; a carrier whose document is unreadable is counted
in ``cpg_errors`` (the rest of its message is stored).

Delivery contract (at-least-once from Kafka, exactly-once in query results):

* Records are batched per partition; a batch is a contiguous offset range ``[first, last]``.
* Before inserting, the batch's range is committed as the partition's offset *metadata*
  (``execscope-plan:<first>-<last>``, offset unchanged); the insert carries the deduplication token
  ``kafka:<topic>:<partition>:<first>-<last>`` (with ``deduplicate_blocks_in_dependent_materialized_views``
  so ``execscope_events`` is deduplicated too); only then is ``last + 1`` committed.
* A collector that (re)starts on a partition whose committed metadata holds a plan for the committed
  offset replays exactly that range first, under the same token: a batch inserted before a crash
  (SIGKILL between insert and commit) adds nothing the second time.
* A store failure is retried with exponential backoff (0.2 s to 5 s) until it succeeds or the
  collector is stopped; nothing is committed meanwhile.
* A poison record (not protobuf, truncated, wrong schema) goes to ``<topic>.dlq`` with headers
  ``execscope.error`` (the reason) and ``execscope.source`` (``topic:partition:offset``) before the
  batch's offsets are committed; the rest of its batch is inserted as usual.

Security: a :class:`KafkaSecurity` (SASL, TLS) applies to the consumer and the dead-letter producer.
A broker that refuses the login or presents an untrusted certificate makes :meth:`KafkaSource.run`
raise :class:`KafkaAccessError` with one sentence saying why, within seconds (kafka-python alone
waits out its bootstrap timeout and says only "Unable to bootstrap").

On the embedded engine a batch is converted into one ClickHouse Native block in C
(:mod:`.native_block`) and inserted in one statement (without the C converter, or for a batch it
refuses, the engine parses the length-delimited protobuf itself: :mod:`.native_ingest`) unless the
chain has processors, which need Python-decoded columns; a batch every processor lets through
(``ProcessorChain.native_ok_for`` its spans' instrumentation scopes: the default ``redact`` of
``execscope collect`` trusts execscope's own) keeps the fast path.
"""

from __future__ import annotations

import datetime
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execscope.collector import native_block, native_ingest
from execscope.collector.clickhouse_writer import ClickHouseWriter, load_module_doc
from execscope.collector.columns import TRACE_COLUMNS
from execscope.collector.cpg_carrier import SCOPE as CARRIER_SCOPE
from execscope.collector.cpg_carrier import take_carriers
from execscope.collector.otlp_decode import DecodeError, decode_columns
from execscope.collector.processors import ProcessorChain, SpanBatch
from execscope.instrumentation.export.kafka_security import KafkaSecurity, connect
from execscope.storage.store import Store, StoreError

DEFAULT_TOPIC = "otlp_spans"
DEFAULT_GROUP = "execscope-collector"
STATS_TABLE = "execscope_collector_stats"
PLAN_PREFIX = "execscope-plan:"
REJOIN_AFTER_S = 30.0
ENV_FAULT = "EXECSCOPE_COLLECT_FAULT"  # test hook: "kill-after-insert:N" (SIGKILL before the Nth commit)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def cpg_topic(topic: str) -> str:
    return f"{topic}.cpg"


@dataclass
class CollectStats:
    """What the collector did; :meth:`as_dict` is what ``execscope collect --stats`` prints."""

    messages: int = 0
    spans: int = 0
    batches: int = 0
    nodes: int = 0
    cpg_errors: int = 0
    last_cpg_error: str = ""
    dead_letters: int = 0
    store_errors: int = 0
    replayed_batches: int = 0
    rejoins: int = 0
    assigned_partitions: int = 0
    batch_spans_min: int = 0
    batch_spans_max: int = 0
    lag: dict[str, int] = field(default_factory=dict)
    last_error: str = ""
    started: float = field(default_factory=time.monotonic)
    insert_seconds: float = 0.0

    def record_batch(self, spans: int) -> None:
        self.batches += 1
        self.spans += spans
        self.batch_spans_min = spans if self.batches == 1 else min(self.batch_spans_min, spans)
        self.batch_spans_max = max(self.batch_spans_max, spans)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {
            "messages": self.messages, "spans": self.spans, "batches": self.batches, "nodes": self.nodes,
            "cpg_errors": self.cpg_errors, "dead_letters": self.dead_letters, "store_errors": self.store_errors,
            "replayed_batches": self.replayed_batches, "rejoins": self.rejoins,
            "assigned_partitions": self.assigned_partitions,
            "batch_spans": {"min": self.batch_spans_min, "max": self.batch_spans_max,
                            "mean": round(self.spans / self.batches, 1) if self.batches else 0},
            "rows_per_s": round(self.spans / elapsed, 1), "insert_seconds": round(self.insert_seconds, 3),
            "elapsed_s": round(elapsed, 3), "lag": dict(self.lag), "total_lag": sum(self.lag.values()),
            "last_error": self.last_error,
        }


class _Metrics:
    """The pipeline's own OTel metrics (``execscope.collector.*``) on the given meter provider."""

    def __init__(self, meter_provider: Any, stats: CollectStats) -> None:
        from opentelemetry import metrics
        from opentelemetry.metrics import CallbackOptions, Observation

        meter = (meter_provider or metrics.get_meter_provider()).get_meter("execscope.collector")
        self.spans = meter.create_counter("execscope.collector.spans", "{span}", "Spans inserted")
        self.batches = meter.create_counter("execscope.collector.batches", "{batch}", "Batches inserted")
        self.errors = meter.create_counter("execscope.collector.store_errors", "{error}", "Failed inserts")
        self.dead = meter.create_counter("execscope.collector.dead_letters", "{message}", "Poison messages")
        self.batch_size = meter.create_histogram("execscope.collector.batch.spans", "{span}", "Spans per batch")

        def lag(_options: CallbackOptions) -> list[Observation]:
            return [Observation(v, {"partition": k}) for k, v in list(stats.lag.items())]

        meter.create_observable_gauge("execscope.collector.lag", [lag], "{message}", "Records not yet consumed")


@dataclass
class _Plan:
    first: int
    last: int


class KafkaSource:
    """Consumes ``topic`` (and its ``.cpg`` topic) in consumer group ``group`` into ``store``.

    One thread: :meth:`run` until stopped (:meth:`stop`, from any thread) or idle. Not reusable
    after :meth:`run` returns."""

    def __init__(self, bootstrap: str, store: Store, topic: str = DEFAULT_TOPIC, group: str = DEFAULT_GROUP,
                 chain: ProcessorChain | None = None, meter_provider: Any = None,
                 consumer_config: dict[str, Any] | None = None, work_dir: str | None = None,
                 instance_id: str | None = None, security: KafkaSecurity | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity()
        self.store = store
        self.topic = topic
        self.group = group
        self.chain = chain or ProcessorChain()
        self.writer = ClickHouseWriter(store)
        self.stats = CollectStats()
        self.metrics = _Metrics(meter_provider, self.stats)
        self.native_capable = store.address.kind == "chdb"  # the engine can parse OTLP itself
        self.native = self.native_capable and self.chain.native_ok
        self.blocks = native_block.AVAILABLE  # batches converted in C (native_block), else parsed by the engine
        self.consumer_config = dict(consumer_config or {})
        if instance_id:  # static membership: a restarted collector takes its partitions back at once
            self.consumer_config["group_instance_id"] = instance_id
        self._stop = threading.Event()
        self._on_tick: Callable[[CollectStats], None] | None = None
        self._tick_s = 5.0
        self._last_tick = time.monotonic()
        self._buffers: dict[Any, list[Any]] = {}
        self._buffer_bytes: dict[Any, int] = {}
        self._buffer_since: dict[Any, float] = {}
        self._plans: dict[Any, _Plan] = {}
        self._assigned: set[Any] = set()
        self._need_plan: set[Any] = set()
        # first unstored offset of each partition revoked with records buffered: a rebalance that gives
        # the partition back keeps the consumer's fetch position (kafka-python 3 preserves it), which is
        # past those dropped records, so the listener seeks back there
        self._resume_at: dict[Any, int] = {}
        self._consumer: Any = None
        self._dlq: Any = None
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self._work = Path(tempfile.mkdtemp(prefix="execscope-collect-", dir=work_dir or shm))
        self._fault_kill_after = _parse_fault(os.environ.get(ENV_FAULT, ""))
        self._inserts = 0
        self.name = instance_id or f"execscope-collector-{os.getpid()}"
        self._stats_mark = (time.monotonic(), 0)

    def stop(self) -> None:
        self._stop.set()

    # -- main loop -------------------------------------------------------------------------------

    def run(self, exit_when_idle: float | None = None, on_tick: Callable[[CollectStats], None] | None = None,
            tick_s: float = 5.0) -> CollectStats:
        """Consume until :meth:`stop`, or until ``exit_when_idle`` seconds passed with every assigned
        partition read to its end and every read record stored. Returns the stats."""
        from kafka import KafkaConsumer
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        source = self

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                for tp in revoked:  # nothing of an unflushed buffer was inserted: safe to drop
                    buffered = source._buffers.get(tp)
                    if buffered:  # read again from its first offset: counted when polled again
                        source._resume_at[tp] = buffered[0].offset
                        source.stats.messages -= len(buffered)
                    source._drop_buffer(tp)
                    source._assigned.discard(tp)

            def on_partitions_assigned(self, assigned: Any) -> None:
                for tp in assigned:  # blocking calls are not allowed here: plans load in run()
                    source._assigned.add(tp)
                    source._plans.pop(tp, None)
                    source._need_plan.add(tp)
                    resume = source._resume_at.pop(tp, None)
                    if resume is not None and source._consumer is not None:
                        try:  # a local position change, allowed in a rebalance listener
                            source._consumer.seek(tp, resume)
                        except Exception as exc:
                            source.stats.last_error = f"seek after rebalance: {type(exc).__name__}: {exc}"
                # a partition not given back: its next owner starts from the committed offset
                source._resume_at.clear()

        config: dict[str, Any] = {
            "group_id": self.group, "enable_auto_commit": False, "auto_offset_reset": "earliest",
            "max_poll_records": 2000, "fetch_max_bytes": 64 << 20, "max_partition_fetch_bytes": 16 << 20,
            "max_poll_interval_ms": 1_800_000, "session_timeout_ms": 10_000, "heartbeat_interval_ms": 1_000,
            "client_id": f"execscope-collector-{os.getpid()}",
        }
        config.update(self.consumer_config)

        def subscribe() -> Any:
            consumer = connect(KafkaConsumer, self.bootstrap, self.security, config["client_id"], config)
            # the topics' partitions known before the first join: a join without them (kafka-python
            # asks for subscribed topics' metadata only after subscribing) assigns nothing and rejoins
            # at once, and that rejoin can hang, the SyncGroup answer never applied (kafka-python
            # 3.0.12; seen in 1 of 6 collects here), until REJOIN_AFTER_S
            consumer.topics()
            consumer.subscribe([self.topic, cpg_topic(self.topic)], listener=Listener())
            return consumer

        self._consumer = consumer = subscribe()
        self._on_tick, self._tick_s = on_tick, tick_s
        idle_since: float | None = None
        self._last_tick = unassigned_since = time.monotonic()
        try:
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=200)
                now = time.monotonic()
                if self._assigned:
                    unassigned_since = now
                elif now - unassigned_since > REJOIN_AFTER_S:
                    # no partitions for this long: the group join is stuck (seen rarely after a
                    # member was SIGKILLed mid-rebalance); a new consumer joins afresh
                    self.stats.rejoins += 1
                    self.stats.last_error = f"no partitions assigned in {REJOIN_AFTER_S:.0f} s: rejoining the group"
                    consumer.close()
                    self._consumer = consumer = subscribe()
                    unassigned_since = now
                    continue
                for tp, records in polled.items():
                    if tp not in self._buffers:
                        self._buffers[tp] = []
                        self._buffer_bytes[tp] = 0
                        self._buffer_since[tp] = now
                    self._buffers[tp].extend(records)
                    self._buffer_bytes[tp] += sum(len(r.value or b"") for r in records)
                    self.stats.messages += len(records)
                self._flush_ready(force=not polled)
                self._tick_if_due()
                if polled or any(self._buffers.values()) or not self._assigned:
                    idle_since = None
                    continue
                if idle_since is None:
                    idle_since = now
                if exit_when_idle is not None and now - idle_since >= exit_when_idle:
                    if (not any(tp.topic == self.topic for tp in self._assigned)
                            and self.topic in consumer.topics()):
                        # the group formed before this consumer saw the topic (created meanwhile):
                        # idle only because nothing of it is assigned; a new consumer joins afresh
                        self.stats.rejoins += 1
                        consumer.close()
                        self._assigned.clear()
                        self._consumer = consumer = subscribe()
                        unassigned_since = now
                        idle_since = None
                        continue
                    current = {f"{tp.topic}:{tp.partition}" for tp in self._assigned}
                    if self._update_lag() and sum(self.stats.lag.get(k, 0) for k in current) == 0:
                        break  # every assigned partition read to its end, just now
                    idle_since = None
        finally:
            self._update_lag()
            self._store_stats()
            self._close()
        return self.stats

    def _close(self) -> None:
        for closer in (self._consumer, self._dlq):
            if closer is not None:
                try:
                    closer.close()
                except Exception:
                    pass
        self.chain.shutdown()
        for path in self._work.glob("*"):
            path.unlink(missing_ok=True)
        try:
            self._work.rmdir()
        except OSError:
            pass

    def _store_stats(self) -> None:
        """One row of ``execscope_collector_stats`` (the Pipeline Health dashboard reads it); a failing
        store only sets ``last_error``: the next tick writes again."""
        st = self.stats
        now = time.monotonic()
        since, spans_then = self._stats_mark
        rate = (st.spans - spans_then) / max(now - since, 1e-3)
        self._stats_mark = (now, st.spans)
        row = {"Timestamp": datetime.datetime.now(datetime.timezone.utc), "Collector": self.name,
               "Topic": self.topic, "Messages": st.messages, "Spans": st.spans, "Batches": st.batches,
               "Nodes": st.nodes, "DeadLetters": st.dead_letters, "StoreErrors": st.store_errors,
               "ReplayedBatches": st.replayed_batches, "Rejoins": st.rejoins,
               "AssignedPartitions": st.assigned_partitions, "BatchSpansMin": st.batch_spans_min,
               "BatchSpansMax": st.batch_spans_max,
               "BatchSpansMean": st.spans / st.batches if st.batches else 0.0, "RowsPerS": round(rate, 1),
               "InsertSeconds": st.insert_seconds, "TotalLag": sum(st.lag.values()), "Lag": dict(st.lag),
               "LastError": st.last_error}
        try:
            self.store.insert_columns(STATS_TABLE, [[v] for v in row.values()], list(row))
        except StoreError as exc:
            st.last_error = f"stats: {exc}"[:500]

    def _update_lag(self) -> bool:
        """Refresh ``stats.lag`` for the assigned partitions; True only when every assigned partition's
        lag was read now (a failed or partial read says nothing about being caught up)."""
        self.stats.assigned_partitions = len(self._assigned)
        consumer = self._consumer
        if consumer is None or not self._assigned:
            return False
        try:
            assigned = list(self._assigned)
            ends = consumer.end_offsets(assigned)
            for tp, end in ends.items():
                position = consumer.position(tp)
                self.stats.lag[f"{tp.topic}:{tp.partition}"] = max(0, int(end) - int(position))
            return all(tp in ends for tp in assigned)
        except Exception as exc:
            self.stats.last_error = f"lag: {type(exc).__name__}: {exc}"
            return False

    # -- batches ---------------------------------------------------------------------------------

    def _drop_buffer(self, tp: Any) -> None:
        self._buffers.pop(tp, None)
        self._buffer_bytes.pop(tp, None)
        self._buffer_since.pop(tp, None)
        self._plans.pop(tp, None)
        self._need_plan.discard(tp)

    def _load_plan(self, tp: Any) -> None:
        """The range a previous owner was inserting when it stopped (before any batch of ``tp``)."""
        self._plans.pop(tp, None)
        try:
            committed = self._consumer.committed(tp, metadata=True)
        except Exception as exc:  # retried before the next flush
            self.stats.last_error = f"committed: {type(exc).__name__}: {exc}"
            return
        self._need_plan.discard(tp)
        if committed is None or not committed.metadata or not committed.metadata.startswith(PLAN_PREFIX):
            return
        try:
            first, last = (int(x) for x in committed.metadata[len(PLAN_PREFIX):].split("-"))
        except ValueError:
            return
        if committed.offset == first:
            self._plans[tp] = _Plan(first, last)

    def _flush_ready(self, force: bool) -> None:
        for tp in list(self._need_plan):
            self._load_plan(tp)
        batch_cfg = self.chain.batch
        now = time.monotonic()
        nodes_topic = cpg_topic(self.topic)
        for tp in sorted(self._buffers, key=lambda tp: tp.topic != nodes_topic):  # nodes first (enrichment)
            if tp in self._need_plan:
                continue
            records = self._buffers[tp]
            while records and not self._stop.is_set():
                plan = self._plans.get(tp)
                if plan is not None and records[0].offset != plan.first:
                    plan = None
                    self._plans.pop(tp, None)
                if plan is not None:
                    if records[-1].offset < plan.last:
                        break  # the rest of the planned range is still being fetched
                    n = next(i for i, r in enumerate(records) if r.offset >= plan.last) + 1
                else:
                    full = (len(records) >= batch_cfg.max_messages
                            or self._buffer_bytes[tp] >= batch_cfg.max_bytes)
                    aged = now - self._buffer_since[tp] >= batch_cfg.max_wait_ms / 1000
                    if not (full or aged or force):
                        break
                    n = min(len(records), batch_cfg.max_messages)
                batch, rest = records[:n], records[n:]
                if not self._write_batch(tp, batch, replay=plan is not None):
                    return  # stopped while the store was failing: nothing committed
                self._plans.pop(tp, None)
                self._buffers[tp] = records = rest
                self._buffer_bytes[tp] = sum(len(r.value or b"") for r in rest)
                self._buffer_since[tp] = now

    def _write_batch(self, tp: Any, records: list[Any], replay: bool) -> bool:
        from kafka.structs import OffsetAndMetadata

        first, last = records[0].offset, records[-1].offset
        consumer = self._consumer
        if replay:
            self.stats.replayed_batches += 1
        else:
            consumer.commit({tp: OffsetAndMetadata(first, f"{PLAN_PREFIX}{first}-{last}", -1)})
        token = f"kafka:{tp.topic}:{tp.partition}:{first}-{last}"
        if tp.topic == cpg_topic(self.topic):
            ok = self._write_nodes(tp, records)
        else:
            ok = self._write_spans(tp, records, token)
        if not ok:
            return False
        self._inserts += 1
        if self._fault_kill_after and self._inserts >= self._fault_kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die between insert and commit
        consumer.commit({tp: OffsetAndMetadata(last + 1, "", -1)})
        return True

    def _tick_if_due(self) -> None:
        """Every ``tick_s``: read the lag, store the stats and hand them to ``on_tick`` (``--stats``)."""
        now = time.monotonic()
        if now - self._last_tick < self._tick_s:
            return
        self._last_tick = now
        self._update_lag()
        self._store_stats()
        if self._on_tick is not None:
            self._on_tick(self.stats)

    def _retry(self, action: Callable[[], None]) -> bool:
        """Run ``action`` until it does not raise StoreError; False when stopped meanwhile. The stats
        keep ticking meanwhile, so a watcher sees the store errors while the store is failing."""
        backoff = 0.2
        while True:
            try:
                action()
                return True
            except StoreError as exc:
                self.stats.store_errors += 1
                self.stats.last_error = str(exc)[:500]
                self.metrics.errors.add(1)
            self._tick_if_due()
            if self._stop.wait(backoff):
                return False
            backoff = min(backoff * 2, 5.0)

    def _write_nodes(self, tp: Any, records: list[Any]) -> bool:
        docs = []
        for r in records:
            try:
                docs.append(load_module_doc(r.value or b""))
            except (ValueError, TypeError) as exc:
                self._dead_letter(r, f"bad node document: {exc}")
        self._flush_dlq()

        def write() -> None:
            for doc in docs:
                self.stats.nodes += self.writer.write_module_nodes(doc)

        return self._retry(write)

    def _write_spans(self, tp: Any, records: list[Any], token: str) -> bool:
        good: list[bytes] = []
        spans = 0
        scopes: set[str] = set()
        documents: list[dict[str, Any]] = []
        # On the embedded engine, one pass in C checks every record and converts the batch: a record
        # it leaves out is checked by the Python decoder (validate), which names the poison. The
        # block holds exactly the good records unless one of them was taken by Python alone or
        # carries node rows (then the batch is converted again below, from ``good``).
        block: bytes | None = None
        results: list[Any] = [None] * len(records)
        if self.native_capable and self.blocks:
            block, _spans, _events, results = native_block.convert_each([r.value or b"" for r in records])
        for r, result in zip(records, results):
            found: set[str] = set()
            if isinstance(result, tuple) and r.value is not None:
                n, names = result
                found.update(names)
                reason = "" if n or not r.value else "wrong schema: no spans in a non-empty message"
            else:
                reason, n = validate(r.value, found)
                if not reason and n:
                    block = None
            if reason:
                self._dead_letter(r, reason)
                continue
            value = r.value
            if CARRIER_SCOPE in found:  # node rows sent inside the OTLP data (cpg_carrier)
                block = None
                carriers = take_carriers(value)
                documents.extend(carriers.documents)
                for error in carriers.errors:
                    self.stats.cpg_errors += 1
                    reason = f"{r.topic}:{r.partition}:{r.offset}: {error}"[:500]
                    self.stats.last_error = self.stats.last_cpg_error = reason
                found.discard(CARRIER_SCOPE)
                n -= carriers.spans
                value = carriers.rest
            scopes |= found
            if n:
                good.append(value)
                spans += n
        self._flush_dlq()
        if documents:  # before the spans (enrichment reads them); idempotent, so a replay adds nothing
            def write_documents() -> None:
                self.stats.nodes += self.writer.write_modules(documents)

            if not self._retry(write_documents):
                return False
        if not good or not spans:
            self.stats.record_batch(0)
            return True
        started = time.monotonic()
        ok = self._retry(lambda: self._insert(good, token, tp, scopes, block))
        self.stats.insert_seconds += time.monotonic() - started
        if ok:
            self.stats.record_batch(spans)
            self.metrics.spans.add(spans)
            self.metrics.batches.add(1)
            self.metrics.batch_size.record(spans)
        return ok

    def _insert(self, payloads: list[bytes], token: str, tp: Any, scopes: set[str] | None = None,
                block: bytes | None = None) -> None:
        """``block``: the payloads already converted (:func:`native_block.convert_each`)."""
        if self.native or (self.native_capable and scopes and self.chain.native_ok_for(scopes)):
            if self._insert_native(payloads, token, tp, block):
                return
        columns: list[list[Any]] = [[] for _ in TRACE_COLUMNS]
        for payload in payloads:
            cols, _events = decode_columns(payload)
            for acc, col in zip(columns, cols):
                acc.extend(col)
        batch = self.chain.process(SpanBatch(columns))
        self.writer.write_spans(batch.columns, dedup_token=token)

    def _insert_native(self, payloads: list[bytes], token: str, tp: Any, block: bytes | None = None) -> bool:
        """The batch as one Native block converted in C (``block``, or converted now), or (without
        the converter, or for a batch it refuses) parsed by the engine itself. False when the insert
        failed: the caller decodes in Python, which stores the batch or raises the store's error for
        a retry."""
        if self.blocks:
            path = self._work / f"{tp.partition}.native"
            try:
                if block is None:
                    native_block.write(path, payloads)
                else:
                    native_block.write_block(path, block)
                native_block.ingest(self.store, path, token)
                return True
            except ValueError as exc:  # the engine parses the batch instead
                self.stats.last_error = f"native block refused, the engine parses the batch: {exc}"[:500]
            except StoreError as exc:
                self.stats.last_error = f"native insert failed, decoding in Python: {exc}"[:500]
                return False
            finally:
                path.unlink(missing_ok=True)
        path = self._work / f"{tp.partition}.bin"
        path.write_bytes(native_ingest.frame(payloads))
        try:
            native_ingest.ingest_framed(self.store, path, token)
            return True
        except StoreError as exc:
            self.stats.last_error = f"native insert failed, decoding in Python: {exc}"[:500]
            return False
        finally:
            path.unlink(missing_ok=True)

    # -- dead letters ----------------------------------------------------------------------------

    def _dead_letter(self, record: Any, reason: str) -> None:
        if self._dlq is None:
            from kafka import KafkaProducer

            self._dlq = connect(KafkaProducer, self.bootstrap, self.security,
                                f"execscope-collector-dlq-{os.getpid()}", {"acks": "all", "linger_ms": 5})
        headers = [("execscope.error", reason.encode()),
                   ("execscope.source", f"{record.topic}:{record.partition}:{record.offset}".encode())]
        self._dlq.send(dlq_topic(self.topic), value=record.value, key=record.key, headers=headers)
        self.stats.dead_letters += 1
        self.metrics.dead.add(1)

    def _flush_dlq(self) -> None:
        if self._dlq is not None:
            self._dlq.flush(timeout=60)


def validate(payload: bytes | None, scopes: set[str] | None = None) -> tuple[str, int]:
    """('', span count) for a well-formed ExportTraceServiceRequest; (reason, 0) for a poison one.
    The instrumentation scope names of its spans are added to ``scopes`` when given."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    if payload is None:
        return "empty message (tombstone)", 0
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(payload)
    except Exception as exc:
        return f"not an OTLP ExportTraceServiceRequest: {DecodeError(exc)}", 0
    n = 0
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            if scopes is not None and scope_spans.spans:
                scopes.add(scope_spans.scope.name)
            for span in scope_spans.spans:
                if len(span.trace_id) != 16 or len(span.span_id) != 8:
                    return "wrong schema: a span without a 16-byte trace id and 8-byte span id", 0
                n += 1
    if payload and not n:
        return "wrong schema: no spans in a non-empty message", 0
    return "", n


def _parse_fault(value: str) -> int:
    if value.startswith("kill-after-insert:"):
        try:
            return int(value.split(":", 1)[1])
        except ValueError:
            return 0
    return 0
