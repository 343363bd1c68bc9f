"""The Kafka exporter: OTLP batches to the topic ``otlp_spans``, one message per trace batch.

Message contract (the OpenTelemetry Collector's ``otlp_proto`` encoding, so the stock collector's
``kafkareceiver`` reads it too): value = one serialized ``ExportTraceServiceRequest`` holding the
spans of one trace (up to ``BATCH_SPANS`` per message), key = the trace id as 32 lowercase hex
characters (so a trace's batches stay in one partition, in order). Node rows of the modules a
process instruments go to ``<topic>.cpg`` (value = the spool's JSON module document, key =
``<code_version>:<module>``).

:class:`KafkaSink` owns a bounded local queue and a sender thread with a kafka-python producer:

* ``submit`` is called on the capture worker's (or span processor's) thread: it never blocks and
  never raises; when the queue is full (broker down for longer than the queue lasts) the message is
  dropped and counted (:attr:`KafkaSink.dropped_spans`).
* The producer is idempotent (``acks=all``, ``enable_idempotence``): the broker drops its retries,
  so a broker restart neither loses nor duplicates what was queued. It is created by the sender
  thread, retried with backoff while the broker is unreachable.
* ``force_flush(timeout_s) -> bool`` waits until everything queued is acknowledged; ``shutdown`` is
  idempotent, flushes with a bounded wait and reports what could not be delivered.
* After ``os.fork`` the child starts with an empty queue and its own producer and thread.
* Security (SASL, TLS: :mod:`.kafka_security`) comes as a :class:`KafkaSecurity`. A broker that
  refuses the login or presents an untrusted certificate is not an outage to wait out: the sink
  writes one warning on stderr saying why, drops what it holds and every later message (counted),
  and the program runs on unrecorded; forked children of such a process stay silent.

Producer tuning (chosen for many small-to-medium OTLP messages from a recording program):
``compression_type=lz4`` (OTLP attributes compress ~5-10x; lz4 is the cheapest CPU-wise),
``linger_ms=20`` (batches a capture flush's messages into few requests while adding little
latency next to the 500 ms capture interval), ``batch_size=512 KiB`` and ``max_request_size=8 MiB``
(a trace batch of 2048 spans with statement events can be a few MiB), at most
``MAX_INFLIGHT_BYTES`` handed to the producer and not yet acknowledged (kafka-python's accumulator
is unbounded), ``delivery_timeout_ms=600000`` (a broker restart does not turn queued messages into
losses).
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from execscope.instrumentation.export.held_while_tracing import HeldWhileTracing
from execscope.instrumentation.export.kafka_security import KafkaAccessError, KafkaSecurity, connect
from execscope.instrumentation.export.otlp_encode import redact_sdk_request

DEFAULT_TOPIC = "otlp_spans"
DEFAULT_MAX_QUEUE_BYTES = 64 << 20
MAX_INFLIGHT_BYTES = 32 << 20
RECREATE_AFTER_S = 5.0

PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "compression_type": "lz4",
    "linger_ms": 20,
    "batch_size": 512 * 1024,
    "max_request_size": 8 * 1024 * 1024,
    "bootstrap_timeout_ms": 5_000,
    "delivery_timeout_ms": 600_000,
    "request_timeout_ms": 30_000,
    "max_block_ms": 1_000,
    "reconnect_backoff_max_ms": 1_000,
}


def cpg_topic(topic: str) -> str:
    """Where node rows travel next to ``topic``."""
    return f"{topic}.cpg"


class KafkaSink:
    """A bounded queue of (topic, key, value, spans) drained into Kafka by one sender thread.

    Thread contract: :meth:`submit` may be called from any thread, never blocks, never raises.
    :meth:`force_flush` and :meth:`shutdown` may be called from any thread and are bounded by their
    timeout. Counters are plain ints, read without locks (monotonic, informational).
    """

    def __init__(self, bootstrap: str, topic: str = DEFAULT_TOPIC, max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
                 producer_config: dict[str, Any] | None = None,
                 producer_factory: Callable[..., Any] | None = None, meter_provider: Any = None,
                 security: KafkaSecurity | None = None, on_access_error: Callable[[str], None] | None = None
                 ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_queue_bytes = max_queue_bytes
        self.security = security or KafkaSecurity()
        self._on_access_error = on_access_error  # called once with the warning's text (sender thread)
        self.producer_config = {**PRODUCER_CONFIG, **(producer_config or {})}  # security's are added by connect
        # Imported here, on the thread that sets recording up: an import running on the sender thread
        # when the program forks leaves the child that module's import lock held by a thread it does
        # not have, and the child's own sender blocks on it for good (its spans lost at its flush
        # timeout). The first getaddrinfo() of a host name imports the idna codec: seen in 1 of 3
        # runs of a forked pool (test_kafka_path_stores_exactly_what_the_embedded_path_stores).
        import encodings.idna  # noqa: F401
        if producer_factory is None:
            from kafka import KafkaProducer

            producer_factory = KafkaProducer
        self._factory = producer_factory
        self.sent_messages = 0
        self.sent_spans = 0
        self.dropped_messages = 0
        self.dropped_spans = 0
        self.last_error = ""
        self.access_error = ""  # set once the broker refused us (login, certificate): see _give_up
        self._stopped = False
        self._init_state()
        os.register_at_fork(after_in_child=self._after_fork_in_child)
        self._register_metrics(meter_provider)

    def _register_metrics(self, meter_provider: Any) -> None:
        """Counters as OTel metrics (``execscope.exporter.*``), read when the provider collects."""
        try:
            from opentelemetry import metrics
            from opentelemetry.metrics import CallbackOptions, Observation

            meter = (meter_provider or metrics.get_meter_provider()).get_meter("execscope.exporter")

            def observe(name: str) -> Any:
                def callback(_options: CallbackOptions) -> list[Observation]:
                    return [Observation(getattr(self, name), {"topic": self.topic})]
                return callback

            for name, unit in (("sent_spans", "{span}"), ("dropped_spans", "{span}"),
                               ("sent_messages", "{message}"), ("dropped_messages", "{message}")):
                meter.create_observable_counter(f"execscope.exporter.{name}", [observe(name)], unit)
            meter.create_observable_gauge("execscope.exporter.queued_messages",
                                          [lambda _o: [Observation(self.pending(), {"topic": self.topic})]],
                                          "{message}")
        except Exception:  # metrics are informational: never a reason not to export
            pass

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[str, bytes, bytes, int]] = collections.deque()
        self._queued_bytes = 0
        self._unacked = 0
        self._unacked_bytes = 0
        self._producer: Any = None
        self._thread: threading.Thread | None = None

    def _after_fork_in_child(self) -> None:
        self._init_state()
        self.sent_messages = self.sent_spans = self.dropped_messages = self.dropped_spans = 0

    # -- called by producers of data -------------------------------------------------------------

    def submit(self, key: bytes, value: bytes, spans: int, topic: str | None = None) -> bool:
        """Queue one message; False (and counted as dropped) when the queue is full or shut down."""
        try:
            with self._cond:
                if self._stopped or self._queued_bytes + len(value) > self.max_queue_bytes:
                    self.dropped_messages += 1
                    self.dropped_spans += spans
                    return False
                self._queue.append((topic or self.topic, key, value, spans))
                self._queued_bytes += len(value)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="execscope-kafka", daemon=True)
                    self._thread.start()
                self._cond.notify()
            return True
        except Exception:  # never into the program
            self.dropped_messages += 1
            self.dropped_spans += spans
            return False

    # -- sender thread ---------------------------------------------------------------------------

    def _make_producer(self) -> Any:
        try:  # an unreachable broker raises the client's error after bootstrap_timeout_ms
            producer = connect(self._factory, self.bootstrap, self.security, f"execscope-{os.getpid()}",
                               self.producer_config)
        except KafkaAccessError as exc:  # the broker refused us: no retry helps
            self._give_up(str(exc))
            raise
        # kafka-python closes every producer from its own atexit hook with a 1 s timeout, which runs
        # before ours (registered earlier) and would cut our bounded exit flush short: we close it.
        unregister = getattr(producer, "_unregister_cleanup", None)
        if unregister is not None:
            unregister()
        return producer

    def _run(self) -> None:
        from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value

        attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        backoff = 0.1
        failing_since: float | None = None
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait(1.0)
                if not self._queue and self._stopped:
                    return
            if self._producer is None:
                try:
                    self._producer = self._make_producer()
                    backoff = 0.1
                except Exception as exc:  # broker unreachable: the queue keeps (and bounds) the data
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    if self.access_error:
                        return  # refused: nothing can be sent (said on stderr once)
                    with self._cond:
                        if self._stopped:
                            return
                        self._cond.wait(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
            with self._cond:
                while self._unacked_bytes > MAX_INFLIGHT_BYTES and not self._stopped:
                    self._cond.wait(0.5)  # the broker is slow or down: the local queue takes the rest
                if not self._queue:
                    continue
                topic, key, value, spans = self._queue[0]
            try:
                future = self._producer.send(topic, value=value, key=key)
            except Exception as exc:  # metadata unavailable (broker down) or a client error: retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                now = time.monotonic()
                failing_since = failing_since or now
                if getattr(self._producer, "_closed", False):
                    self._producer = None  # closed under us (fatal producer error): make a new one
                elif now - failing_since > RECREATE_AFTER_S and self._unacked == 0:
                    # kafka-python's metadata refresh can stay stuck after the broker came back;
                    # nothing is in flight, so a new producer loses nothing
                    self._close_producer(0.0)
                    failing_since = None
                with self._cond:
                    if self._stopped:
                        return
                    self._cond.wait(0.2)
                continue
            failing_since = None
            with self._cond:
                self._queue.popleft()
                self._queued_bytes -= len(value)
                self._unacked += 1
                self._unacked_bytes += len(value)
            future.add_callback(self._acked, spans, len(value))
            future.add_errback(self._failed, spans, len(value))

    def _give_up(self, message: str) -> None:
        """The broker refused us: say so once, drop what is queued and all that comes (counted). It is
        said before the queue empties: a program's exit flush waits for that, so it cannot end first."""
        with self._cond:
            if self.access_error:
                return
            self.access_error = message
            self._stopped = True  # later submits are dropped and counted
        try:
            sys.stderr.write(f"execscope: cannot record to Kafka: {message}. This process (pid {os.getpid()}) "
                             "runs on unrecorded.\n")
            sys.stderr.flush()
            if self._on_access_error is not None:
                self._on_access_error(message)
        except Exception:
            pass
        with self._cond:
            self._drop_queued()

    def _drop_queued(self) -> None:
        """Count what is still queued as dropped and empty the queue (the caller holds ``_cond``)."""
        for _topic, _key, _value, spans in self._queue:
            self.dropped_messages += 1
            self.dropped_spans += spans
        self._queue.clear()
        self._queued_bytes = 0
        self._cond.notify_all()

    def _acked(self, spans: int, size: int, _metadata: Any) -> None:
        with self._cond:
            self._unacked -= 1
            self._unacked_bytes -= size
            self.sent_messages += 1
            self.sent_spans += spans
            self._cond.notify_all()

    def _failed(self, spans: int, size: int, exc: BaseException) -> None:
        with self._cond:
            self._unacked -= 1
            self._unacked_bytes -= size
            self.dropped_messages += 1
            self.dropped_spans += spans
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._cond.notify_all()

    # -- lifecycle -------------------------------------------------------------------------------

    def pending(self) -> int:
        """Messages queued or sent but not yet acknowledged."""
        return len(self._queue) + self._unacked

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until every queued message is acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            producer = self._producer
            if producer is not None:
                try:
                    producer.flush(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                except Exception:
                    pass
            with self._cond:
                if not self._queue and self._unacked == 0:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush (bounded), then stop: what is still queued is counted as dropped. Idempotent."""
        if self._stopped:
            return
        self.force_flush(timeout_s)
        with self._cond:
            self._stopped = True
            self._drop_queued()
        self._close_producer(1.0)

    def _close_producer(self, timeout_s: float) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=timeout_s)
            except Exception:
                pass

    def report(self) -> str:
        """One line for stderr when something was not delivered ('' otherwise, and after an access
        error: its warning said it)."""
        if not self.dropped_spans and not self.dropped_messages or self.access_error:
            return ""
        error = f" (last error: {self.last_error})" if self.last_error else ""
        return (f"execscope: {self.dropped_spans} spans in {self.dropped_messages} messages were not delivered "
                f"to Kafka {self.bootstrap} topic {self.topic}{error}\n")


def trace_key(trace_id: int) -> bytes:
    return f"{trace_id:032x}".encode()


def group_by_trace(items: Iterable[Any], trace_id_of: Callable[[Any], int]) -> dict[int, list[Any]]:
    """Items grouped by trace id, each group in the original order."""
    groups: dict[int, list[Any]] = {}
    for item in items:
        tid = trace_id_of(item)
        group = groups.get(tid)
        if group is None:
            groups[tid] = [item]
        else:
            group.append(item)
    return groups


class KafkaSpanExporter(SpanExporter):
    """OTel SDK exporter into a :class:`KafkaSink`: one OTLP message per trace in each export.

    ``export`` runs on the span processor's worker thread and only encodes and queues."""

    def __init__(self, sink: KafkaSink) -> None:
        self.sink = sink
        self._shutdown = False
        self._held = HeldWhileTracing()  # while the program traces its allocations

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        return self._held.export(spans, self._submit)

    def _submit(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ok = True
        for trace_id, group in group_by_trace(spans, lambda s: s.context.trace_id).items():
            try:
                payload = redact_sdk_request(encode_spans(group)).SerializeToString()
            except Exception:
                self.sink.dropped_spans += len(group)
                ok = False
                continue
            ok = self.sink.submit(trace_key(trace_id), payload, len(group)) and ok
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.sink.force_flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._submit(self._held.take((), force=True) or [])  # what the program's tracing kept back
        self._shutdown = True


def write_report(sink: KafkaSink) -> None:
    text = sink.report()
    if text:
        try:
            sys.stderr.write(text)
        except Exception:
            pass
