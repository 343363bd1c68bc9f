"""Recording set up from the environment, in every process `execscope run` starts.

``execscope run`` puts ``execscope/bootstrap`` on ``PYTHONPATH``; its ``sitecustomize`` calls
:func:`start_from_environment` in the program and in every Python child it starts (subprocesses,
multiprocessing workers of any start method, pytest-xdist workers), because they inherit the
environment:

``EXECSCOPE_SPOOL``    spool directory (required with the spool exporter; its presence turns recording on)
``EXECSCOPE_EXPORTER`` spool (default) | kafka
``EXECSCOPE_KAFKA``    bootstrap servers HOST:PORT[,HOST:PORT] (the kafka exporter; turns recording on)
``EXECSCOPE_KAFKA_TOPIC`` topic of the kafka exporter (default ``otlp_spans``)
``EXECSCOPE_KAFKA_SECURITY_PROTOCOL``, ``EXECSCOPE_KAFKA_SASL_*``, ``EXECSCOPE_KAFKA_SSL_*`` SASL and TLS
                       settings of the kafka exporter (see :mod:`.export.kafka_security`; invalid ones
                       are said on stderr and the program runs unrecorded)
``EXECSCOPE_KAFKA_REFUSED_FILE`` where a process the broker refused (login, certificate) notes it, besides
                       its warning on stderr (``execscope run`` then claims nothing was sent)
``EXECSCOPE_KAFKA_EXIT_FLUSH_S`` how long a process waits at exit for the broker to acknowledge (default 15)
``EXECSCOPE_INCLUDE``  comma-separated module globs to rewrite
``EXECSCOPE_EXCLUDE``  comma-separated module globs to leave alone
``EXECSCOPE_LEVEL``    functions | branches | statements
``EXECSCOPE_PLAN``     a plan file (TOML, see :mod:`.rewrite.plan`): per function a level and a rate, in
                       place of ``EXECSCOPE_LEVEL``; its ``include``/``exclude`` add to the globs above.
                       A plan that cannot be read is said on stderr and the program runs unrecorded
``EXECSCOPE_SAMPLE``   head sampling ratio of new traces, 0..1 (default 1: every trace)
``EXECSCOPE_MAX_EVENTS_PER_S`` budget of statement/branch/assignment events per second (default 0: none)
``EXECSCOPE_ADAPTIVE`` per-node adaptive sampling budget (default 0: every call recorded)
``EXECSCOPE_SERVICE``  ``service.name`` of the resource
``EXECSCOPE_FLUSH_MS`` batch delay in milliseconds (bounds what a crash can lose; default 500)
``EXECSCOPE_MAX_SPOOL_MB`` batches waiting to be stored beyond this are dropped and counted (default 1024; 0: none)
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Any

ENV_SPOOL = "EXECSCOPE_SPOOL"
ENV_INCLUDE = "EXECSCOPE_INCLUDE"
ENV_EXCLUDE = "EXECSCOPE_EXCLUDE"
ENV_LEVEL = "EXECSCOPE_LEVEL"
ENV_PLAN = "EXECSCOPE_PLAN"
ENV_SAMPLE = "EXECSCOPE_SAMPLE"
ENV_EVENT_RATE = "EXECSCOPE_MAX_EVENTS_PER_S"
ENV_ADAPTIVE = "EXECSCOPE_ADAPTIVE"
ENV_SERVICE = "EXECSCOPE_SERVICE"
ENV_FLUSH_MS = "EXECSCOPE_FLUSH_MS"
ENV_EXPORTER = "EXECSCOPE_EXPORTER"
ENV_KAFKA = "EXECSCOPE_KAFKA"
ENV_KAFKA_TOPIC = "EXECSCOPE_KAFKA_TOPIC"
ENV_KAFKA_EXIT_FLUSH_S = "EXECSCOPE_KAFKA_EXIT_FLUSH_S"
ENV_KAFKA_REFUSED = "EXECSCOPE_KAFKA_REFUSED_FILE"
ENV_MAX_SPOOL_MB = "EXECSCOPE_MAX_SPOOL_MB"
MAX_SPOOL_MB = 1024.0  # batches waiting in the spool beyond this are dropped and counted (0: no limit)
KAFKA_EXIT_FLUSH_S = 15.0
MAX_EVENTS_PER_SPAN = 65536

BATCH_SPANS = 2048  # per Kafka message (brokers refuse messages over 1 MB by default)
SPOOL_BATCH_SPANS = 2048  # per spool file; measured with bench_capture: 16384 cost ~1.7x more CPU
# per recorded call (buffers and copies past the caches) while dropping fewer calls on busy programs
_provider: Any = None
_processor: Any = None
_kafka: Any = None
_spool_writer: SpoolBatchWriter | None = None


def split_globs(value: str | None) -> list[str]:
    return [g.strip() for g in (value or "").split(",") if g.strip()]


def make_tracer_provider(service: str, exporter: Any, flush_ms: int = 500, sample: float = 1.0) -> Any:
    """A TracerProvider that keeps statement-level event volumes, samples new traces at ``sample``
    (parent-based) and batches into ``exporter``."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    from execscope.instrumentation.capture import clocks
    from execscope.instrumentation.capture.ids import PrivateIdGenerator

    provider = TracerProvider(
        resource=Resource.create({"service.name": service, **clocks.process_attributes()}),
        id_generator=PrivateIdGenerator(),
        span_limits=SpanLimits(max_events=MAX_EVENTS_PER_SPAN, max_span_attributes=512),
        sampler=ParentBased(TraceIdRatioBased(sample)), shutdown_on_exit=True,
    )
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=1 << 17, schedule_delay_millis=flush_ms, max_export_batch_size=4096))
    return provider


def start_from_environment() -> bool:
    """Configure recording from the environment; returns False when not asked to record.

    The program's calls are captured by the fast core (:mod:`.fast_capture`) and written as OTLP
    batches to the spool (default) or to Kafka (``EXECSCOPE_EXPORTER=kafka``: one message per trace
    batch, see :mod:`.kafka_exporter`); spans the program makes itself through OpenTelemetry go
    through a global SDK TracerProvider to the same place."""
    global _provider, _processor, _kafka, _spool_writer
    exporter_name = os.environ.get(ENV_EXPORTER) or "spool"
    spool_path = os.environ.get(ENV_SPOOL)
    bootstrap = os.environ.get(ENV_KAFKA)
    include = split_globs(os.environ.get(ENV_INCLUDE))
    exclude = split_globs(os.environ.get(ENV_EXCLUDE))
    plan = None
    if os.environ.get(ENV_PLAN):
        from execscope.instrumentation.rewrite.plan import PlanError, load_plan

        try:
            plan = load_plan(os.environ[ENV_PLAN])
        except PlanError as exc:
            print(f"execscope: not recording: {exc}", file=sys.stderr)
            return False
        include += [g for g in plan.include if g not in include]
        exclude += [g for g in plan.exclude if g not in exclude]
    if not include or _provider is not None:
        return False
    if exporter_name == "kafka" and not bootstrap or exporter_name != "kafka" and not spool_path:
        return False
    from opentelemetry import trace

    from execscope.instrumentation.capture import fast_capture, runtime
    from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
    from execscope.instrumentation.export.otlp_encode import encode_request
    from execscope.instrumentation.rewrite import import_hook
    from execscope.instrumentation.rewrite.import_hook import HookConfig

    service = os.environ.get(ENV_SERVICE) or "execscope"
    flush_ms = int(os.environ.get(ENV_FLUSH_MS) or 500)
    level = os.environ.get(ENV_LEVEL) or "functions"
    sample = 1.0
    try:
        sample = float(os.environ.get(ENV_SAMPLE) or 1.0)
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sampling ratio must be within 0..1, got {sample}")
    except ValueError as exc:
        sample = 1.0
        print(f"execscope: ignoring {ENV_SAMPLE}: {exc}", file=sys.stderr)
    for env_name, setter in ((ENV_EVENT_RATE, fast_capture.set_event_rate), (ENV_ADAPTIVE, fast_capture.set_adaptive)):
        try:
            setter(int(os.environ.get(env_name) or 0))
        except ValueError as exc:
            print(f"execscope: ignoring {env_name}: {exc}", file=sys.stderr)
    sink: Any
    write_nodes: Any
    if exporter_name == "kafka":
        from execscope.instrumentation.export import kafka_exporter as kx
        from execscope.instrumentation.export.kafka_security import KafkaSecurity, KafkaSettingsError
        from execscope.instrumentation.export.spool import module_document

        try:
            security = KafkaSecurity.resolve()
        except KafkaSettingsError as exc:
            print(f"execscope: not recording: {exc}", file=sys.stderr)
            return False
        topic = os.environ.get(ENV_KAFKA_TOPIC) or kx.DEFAULT_TOPIC
        kafka = _kafka = kx.KafkaSink(str(bootstrap), topic, security=security,
                                      on_access_error=_note_refusal(os.environ.get(ENV_KAFKA_REFUSED)))
        _provider = make_tracer_provider(service, kx.KafkaSpanExporter(kafka), flush_ms, sample)
        sent_nodes: set[str] = set()

        def sink(frames: list, dropped: int) -> None:
            attrs = _processor.resource_attributes()
            for trace_id, group in kx.group_by_trace(frames, _trace_id_of).items():
                key = kx.trace_key(trace_id)
                for i in range(0, len(group), BATCH_SPANS):
                    chunk = group[i:i + BATCH_SPANS]
                    kafka.submit(key, _processor.encode(chunk, dropped, attrs), len(chunk))

        def write_nodes(nodes: Any) -> bool:
            key = f"{nodes.code_version}:{nodes.module}"
            if key in sent_nodes:
                return True
            sent_nodes.add(key)
            return kafka.submit(key.encode(), module_document(nodes), 0, topic=kx.cpg_topic(topic))
    else:
        from execscope.instrumentation.export.spool import Spool
        from execscope.instrumentation.export.spool_exporter import SpoolSpanExporter

        # the spool is measured at most about once per batch delay (a directory scan)
        spool = Spool(str(spool_path), max_bytes=_max_spool_bytes(), check_interval_s=flush_ms / 2000)
        _provider = make_tracer_provider(service, SpoolSpanExporter(spool), flush_ms, sample)
        write_nodes = spool.write_nodes
        sink = _spool_writer = SpoolBatchWriter(spool, lambda: _processor)

    trace.set_tracer_provider(_provider)
    from execscope.instrumentation import propagator

    propagator.install()  # the process's hybrid logical clock travels with its trace context
    # the execscope span processor on the program's provider: its resource and sampler, our capture
    _processor = ExecscopeSpanProcessor.install(_provider, sink, encode_request, flush_ms / 1000)
    import_hook.install(HookConfig(include=tuple(include), exclude=tuple(exclude),
                                   level=runtime.LEVELS.get(level, 1), plan=plan), write_nodes)
    _flush_forked_multiprocessing_children()
    if "--multiprocessing-fork" in getattr(sys, "orig_argv", sys.argv):
        runtime.set_root_end_hook(_flush_soon)  # spawned worker: may be terminated at any time
    atexit.register(_flush_at_exit)
    return True


def _note_refusal(path: str | None) -> Any:
    """The exporter's ``on_access_error``: one line appended to ``path`` (O_APPEND: several processes)."""
    if not path:
        return None

    def note(message: str) -> None:
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(message.replace("\n", " ") + "\n")
        except OSError:
            pass

    return note


def _max_spool_bytes() -> int:
    try:
        mb = float(os.environ.get(ENV_MAX_SPOOL_MB) or MAX_SPOOL_MB)
    except ValueError:
        print(f"execscope: ignoring {ENV_MAX_SPOOL_MB}: not a number", file=sys.stderr)
        mb = MAX_SPOOL_MB
    return max(0, int(mb * (1 << 20)))


class SpoolBatchWriter:
    """The capture worker's sink on the embedded path: finished frames as OTLP batches of
    ``SPOOL_BATCH_SPANS`` spans into the spool.

    While the spool holds more than its ``max_bytes`` waiting to be stored (the program records
    faster than the store owner stores), batches are dropped and counted like a full buffer's
    frames (``execscope.dropped_spans`` on every later batch), so that the spool, and the time
    storing it takes after the program ends, stay bounded. The newest batch left out is held back
    (one batch of memory) until a newer one replaces it or the spool has room: :meth:`finish`,
    called by every explicit flush (exit included), writes it anyway, so that the final count
    reaches the store on a span of its own.
    Thread-safe; raises ``OSError`` when the spool cannot be written (the worker counts the frames
    as dropped).
    """

    def __init__(self, spool: Any, processor: Any) -> None:
        self.spool = spool
        self.processor = processor  # callable() -> the ExecscopeSpanProcessor (set after this)
        self._held: list | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:  # the parent's frames stay the parent's
        self._held = None
        self._lock = threading.Lock()

    def _drop_held(self) -> int:
        from execscope.instrumentation.capture import fast_capture

        held, self._held = self._held, None
        if not held:
            return 0
        fast_capture._state.dropped += len(held)  # later batches carry it
        return len(held)

    def __call__(self, frames: list, dropped: int, force: bool = False) -> None:
        from execscope.instrumentation.export.otlp_encode import count_events

        with self._lock:
            processor = self.processor()
            attrs = processor.resource_attributes()  # read per batch: right after a fork too
            for i in range(0, len(frames), SPOOL_BATCH_SPANS):
                chunk = frames[i:i + SPOOL_BATCH_SPANS]
                dropped += self._drop_held()
                if not force and self.spool.over_limit():
                    self._held = chunk
                    continue
                payload = processor.encode(chunk, dropped, attrs)
                if not self.spool.write_batch(payload, len(chunk), count_events(chunk)):
                    raise OSError(f"cannot write to the spool {self.spool.path}")

    def finish(self) -> None:
        """Write the batch held back, whatever the spool holds (at exit). Never raises."""
        from execscope.instrumentation.capture import fast_capture

        with self._lock:
            held, self._held = self._held, None
        if held:
            try:
                self(held, fast_capture._state.dropped, force=True)
            except Exception:  # the spool is gone: nothing more can be said
                fast_capture._state.dropped += len(held)


def _trace_id_of(frame: Any) -> int:
    return int(frame.trace_id)


def recording_active() -> bool:
    """True in a process that records for `execscope run` (the fast core owns the runtime)."""
    return _processor is not None


def _flush(timeout_s: float = 5.0) -> None:
    try:
        if _processor is not None:
            _processor.force_flush(int(timeout_s * 1000))
        if _spool_writer is not None:  # a process may end any time after (forked workers): the
            _spool_writer.finish()     # batch held back by a full spool goes now, with the count
        if _provider is not None:
            _provider.force_flush(int(timeout_s * 1000))
        if _kafka is not None:
            _kafka.force_flush(timeout_s)
    except Exception:
        pass


def _flush_at_exit() -> None:
    if _processor is not None:  # what the program's threads still call while it exits is not kept
        from execscope.instrumentation.capture import fast_capture

        fast_capture.stop_new_calls()
    timeout = 5.0
    if _kafka is not None:
        try:
            timeout = float(os.environ.get(ENV_KAFKA_EXIT_FLUSH_S) or KAFKA_EXIT_FLUSH_S)
        except ValueError:
            timeout = KAFKA_EXIT_FLUSH_S
    _flush(timeout)
    if _kafka is not None:
        from execscope.instrumentation.export.kafka_exporter import write_report

        _kafka.shutdown(1.0)
        write_report(_kafka)


def _flush_soon() -> None:
    # a multiprocessing worker may be terminated as soon as its task returns; a Kafka child's first
    # flush also connects (metadata, API versions, producer id): a few hundred ms, but seconds on a
    # loaded machine (seen: both pool workers of a test losing their spans at 5 s)
    _flush(15.0 if _kafka is not None else 1.0)


def _flush_forked_multiprocessing_children() -> None:
    from execscope.instrumentation.capture import runtime

    # A forked multiprocessing child ends with os._exit(), skipping atexit; its finalizers still run.
    # Process._bootstrap clears finalizers after the fork, then runs the after-fork callbacks, so the
    # finalizer is registered from one of those (multiprocessing is only touched if already loaded).
    def _register(_: object) -> None:
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.Finalize(None, _flush, exitpriority=-100)

    def _after_fork_in_child() -> None:
        runtime.set_root_end_hook(_flush_soon)  # forked children are often ended without atexit
        mp_util = sys.modules.get("multiprocessing.util")
        if mp_util is not None:
            mp_util.register_after_fork(sys.modules[__name__], _register)

    os.register_at_fork(after_in_child=_after_fork_in_child)
