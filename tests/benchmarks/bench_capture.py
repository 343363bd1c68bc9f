"""Recording cost, side by side in one run, as whole-process CPU time; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_capture.py [--repeat 3]

Every variant runs recursive ``fib`` in its own process, twice: with a real depth and with depth 0
(the same imports and set-up, one call). Its cost is the CPU time (user + sys of every thread, read
by ``wait4``) of the first minus that of the second, so interpreter start-up is subtracted and
everything the process does before it exits is counted: its capture, its span processor, its
exporter, the final flush. The variants take turns; the median of ``--repeat`` runs is reported,
per call.

* ``plain``: fib as written;
* ``execscope``: fib rewritten at level ``functions``, every call kept, recorded by the
  ExecscopeSpanProcessor on a TracerProvider into a spool (OTLP protobuf files, the embedded
  default's exporter), flushed at exit;
* ``execscope_sampled_out``: the same, with the provider's sampler keeping no trace;
* ``sdk``: one OpenTelemetry SDK span per call (``start_as_current_span``), BatchSpanProcessor to an
  exporter that discards, flushed at exit.

Targets (issue "fast capture"): ``execscope_per_sdk_span`` <= 1/25; ``execscope_sampled_out_vs_plain``
<= 1.3; moonshot ``execscope_vs_plain`` <= 4. Also printed: spans/s on one core through the
ExecscopeSpanProcessor's encoding to a sink that discards, next to the SDK's BatchSpanProcessor
exporting the same number of spans (same attributes) to an exporter that discards; and spans/s
ingested from the spool into the embedded engine.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
DEPTHS = {"plain": 30, "execscope_sampled_out": 30, "execscope": 25, "sdk": 22}


def calls_of(depth: int) -> int:
    a, b = 1, 1
    for _ in range(depth):
        a, b = b, a + b + 1
    return a


# --- the measured processes -------------------------------------------------------------------
def child(variant: str, depth: int, spool_dir: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    from tests.conftest import load_plain, load_rewritten

    if variant == "plain":
        load_plain(FIB, name="fib_plain").fib(depth)
        return
    if variant == "sdk":
        class Discard(SpanExporter):
            def export(self, spans):  # type: ignore[no-untyped-def]
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        tracer = provider.get_tracer("bench")

        def fib(n: int) -> int:
            with tracer.start_as_current_span("fib"):
                return n if n < 2 else fib(n - 1) + fib(n - 2)

        fib(depth)
        provider.shutdown()
        return
    from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
    from execscope.instrumentation.export.otlp_encode import count_events, encode_request
    from execscope.instrumentation.export.spool import Spool
    from execscope.instrumentation.process_bootstrap import SPOOL_BATCH_SPANS

    spool = Spool(spool_dir)
    provider = TracerProvider(sampler=TraceIdRatioBased(0.0 if variant == "execscope_sampled_out" else 1.0))

    def sink(frames: list, dropped: int) -> None:  # as `execscope run`'s processes write the spool
        attrs = processor.resource_attributes()
        for i in range(0, len(frames), SPOOL_BATCH_SPANS):
            chunk = frames[i:i + SPOOL_BATCH_SPANS]
            spool.write_batch(processor.encode(chunk, dropped, attrs), len(chunk), count_events(chunk))

    processor = ExecscopeSpanProcessor.install(provider, sink, encode_request)
    load_rewritten(FIB, "functions", name="fib_recorded").fib(depth)
    processor.shutdown()


def cpu_of(variant: str, depth: int) -> float:
    with tempfile.TemporaryDirectory() as spool_dir:
        proc = subprocess.Popen([sys.executable, __file__, "--child", variant, str(depth), spool_dir], cwd=ROOT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{variant} at depth {depth} failed ({proc.returncode})")
        return usage.ru_utime + usage.ru_stime


def per_call_us(repeat: int) -> dict[str, float]:
    """Median per-call cost of every variant; the variants take turns, so that a machine getting
    faster or slower during the run weighs on all of them alike."""
    costs: dict[str, list[float]] = {variant: [] for variant in DEPTHS}
    for _ in range(repeat):
        for variant, depth in DEPTHS.items():
            costs[variant].append(cpu_of(variant, depth) - cpu_of(variant, 0))
    return {variant: statistics.median(c) / calls_of(DEPTHS[variant]) * 1e6 for variant, c in costs.items()}


# --- throughput of the processors on the same spans ---------------------------------------------
def processor_throughput(n_target: int = 200_000) -> dict:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from execscope.instrumentation.capture import fast_capture, runtime
    from execscope.instrumentation.export.otlp_encode import encode_request
    from tests.conftest import load_rewritten

    fast_capture.take_pending()
    fast_capture.activate()
    module = load_rewritten(FIB, "functions", name="fib_frames")
    fast_capture.take_pending()
    depth = 1
    while calls_of(depth) < n_target:
        depth += 1
    module.fib(depth)
    frames, _ = fast_capture.take_pending()
    runtime.deactivate()
    c0 = time.process_time()
    for i in range(0, len(frames), 2048):
        encode_request(frames[i:i + 2048], {"service.name": "bench"}, "bench")
    execscope_s = time.process_time() - c0

    class Discard(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    tracer = provider.get_tracer("bench")
    spans = []
    for f in frames:  # the same spans: name, attributes and argument/return values of each frame
        span = tracer.start_span("fib_frames.fib", attributes={
            "code.function.name": "fib_frames.fib", "code.file.path": f.info[2], "code.line.number": f.info[3],
            "execscope.node_id": f.info[0], "execscope.code_version": f.info[4], "execscope.kind": "call",
            "execscope.seq": f.seq0, "execscope.seq.end": f.seq1, "execscope.arg.n": str(f.args[0]),
            "execscope.return.value": str(f.ret)})
        span.end()
        spans.append(span)
    bsp = BatchSpanProcessor(Discard(), max_queue_size=len(spans) + 1)
    c0 = time.process_time()
    for span in spans:
        bsp.on_end(span)
    bsp.force_flush()
    sdk_s = time.process_time() - c0
    bsp.shutdown()
    return {"spans": len(frames), "execscope_processor_spans_per_s": round(len(frames) / execscope_s),
            "sdk_batch_processor_spans_per_s": round(len(spans) / sdk_s),
            "ratio": round(sdk_s / execscope_s, 1), "_frames": frames}


def ingest_throughput(frames: list) -> dict:
    from execscope.collector.spool_source import SpoolSource
    from execscope.instrumentation.export.otlp_encode import encode_request
    from execscope.instrumentation.export.spool import Spool
    from execscope.storage import open_store

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("native", "python"):
            spool = Spool(Path(tmp) / mode / "spool")
            for i in range(0, len(frames), 2048):
                spool.write_batch(encode_request(frames[i:i + 2048], {"service.name": "bench"}, "bench"))
            with open_store(f"chdb://{Path(tmp) / mode / 'db'}") as store:
                source = SpoolSource(spool, store, native=(mode == "native"))
                t0 = time.perf_counter()
                report = source.drain()
                seconds = time.perf_counter() - t0
            out[mode] = {"spans": report.spans, "seconds": round(seconds, 3),
                         "spans_per_s": round(report.spans / seconds)}
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-ingest", action="store_true", help="skip the ingestion figures")
    args = ap.parse_args()
    from execscope.instrumentation.capture import fast_capture

    us = per_call_us(args.repeat)
    throughput = processor_throughput()
    frames = throughput.pop("_frames")
    result = {
        "machine_cores": os.cpu_count(), "python": sys.version.split()[0], "capture_core": fast_capture.CORE,
        "calls": {v: calls_of(d) for v, d in DEPTHS.items()}, "repeat": args.repeat,
        "per_call_us": {k: round(v, 3) for k, v in us.items()},
        "execscope_per_sdk_span": round(us["execscope"] / us["sdk"], 4),
        "sdk_span_per_execscope_call": round(us["sdk"] / us["execscope"], 1),
        "execscope_vs_plain": round(us["execscope"] / us["plain"], 1),
        "execscope_sampled_out_vs_plain": round(us["execscope_sampled_out"] / us["plain"], 2),
        "processor_throughput_one_core": throughput,
    }
    if not args.no_ingest:
        result["ingest"] = ingest_throughput(frames[:50_000])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
