"""Recording cost and ingestion throughput, side by side in one run; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_capture.py [--calls-depth 20]

Figures (CPU time of this process, user + sys, per recorded call of recursive ``fib``, level
``functions``, every call kept):

* ``plain_us``: the function without execscope;
* ``fast_hot_us``: the fast capture core's hot path only (frames buffered, nothing encoded);
* ``fast_total_us``: hot path + OTLP encoding of every frame (what `execscope run` pays in total);
* ``sampled_out_us``: the instrumented function with head sampling leaving every trace out;
* ``sdk_total_us``: the SDK core (one OTel SDK span per call, BatchSpanProcessor, discarding exporter,
  flushed before the clock stops);
* ingestion, spans/s into the embedded engine from spool files written by the fast core: the engine
  parsing OTLP itself (``native``) and the Python decoder (``python``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from execscope.collector.spool_source import SpoolSource  # noqa: E402
from execscope.instrumentation import fast_capture, runtime  # noqa: E402
from execscope.instrumentation.otlp_encode import encode_request  # noqa: E402
from execscope.instrumentation.spool import Spool  # noqa: E402
from execscope.storage import open_store  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from tests.conftest import load_plain, load_rewritten  # noqa: E402

FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"


class Discard(SpanExporter):
    def export(self, spans):  # type: ignore[no-untyped-def]
        return SpanExportResult.SUCCESS


def calls_of(depth: int) -> int:
    a, b = 1, 1
    for _ in range(depth):
        a, b = b, a + b + 1
    return a


def cpu() -> float:
    return time.process_time()  # user + sys of every thread of this process


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=20)
    args = ap.parse_args()
    depth = args.depth
    n_calls = calls_of(depth)

    plain = load_plain(FIB, name="fib_plain")
    c0 = cpu()
    plain.fib(depth)
    plain_us = (cpu() - c0) / n_calls * 1e6

    fast_capture.take_pending()
    fast_capture.activate()
    fast = load_rewritten(FIB, "functions", name="fib_fast")
    fast_capture.take_pending()
    c0 = cpu()
    fast.fib(depth)
    hot = cpu() - c0
    frames, dropped = fast_capture.take_pending()
    c1 = cpu()
    payloads = [encode_request(frames[i:i + 2048], {"service.name": "bench"}, "bench")
                for i in range(0, len(frames), 2048)]
    encode = cpu() - c1
    fast_capture.set_sampling(0.0)  # installed but sampled out: every fib call is left out
    c0 = cpu()
    fast.fib(depth)
    sampled_out = cpu() - c0
    fast_capture.set_sampling(1.0)
    runtime.deactivate()

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard(), max_queue_size=1 << 21))
    runtime.activate(runtime.Recorder(provider), 1)
    sdk = load_rewritten(FIB, "functions", name="fib_sdk")
    c0 = cpu()
    sdk.fib(depth)
    provider.force_flush()
    sdk_total = cpu() - c0
    runtime.deactivate()
    provider.shutdown()

    ingest = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("native", "python"):
            spool = Spool(Path(tmp) / mode / "spool")
            for payload in payloads:
                spool.write_batch(payload)
            with open_store(f"chdb://{Path(tmp) / mode / 'db'}") as store:
                source = SpoolSource(spool, store, native=(mode == "native"))
                t0 = time.perf_counter()
                report = source.drain()
                seconds = time.perf_counter() - t0
            ingest[mode] = {"spans": report.spans, "seconds": round(seconds, 3),
                            "spans_per_s": round(report.spans / seconds)}

    result = {
        "machine_cores": os.cpu_count(), "python": sys.version.split()[0], "calls": n_calls,
        "frames_kept": len(frames), "frames_dropped": dropped,
        "plain_us": round(plain_us, 3),
        "fast_hot_us": round(hot / n_calls * 1e6, 3),
        "fast_total_us": round((hot + encode) / n_calls * 1e6, 3),
        "sdk_total_us": round(sdk_total / n_calls * 1e6, 3),
        "fast_vs_sdk": round(sdk_total / (hot + encode), 2),
        "sampled_out_us": round(sampled_out / n_calls * 1e6, 3),
        "sampled_out_vs_plain": round(sampled_out / n_calls * 1e6 / plain_us, 2),
        "ingest": ingest,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
