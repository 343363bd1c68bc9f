"""Kafka throughput, producer and collector, on a real broker; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_kafka.py [--traces 200] [--depth 14] [--bootstrap HOST:PORT]

Without ``--bootstrap`` a broker is started with tests/infra/kafka.sh in a temporary directory (and
stopped at the end). Spans are real fast-core frames of a recursive ``fib`` (level ``functions``,
one trace per root call), encoded as execscope records them.

Figures (``cpu`` = user + sys time of this process, every thread, the embedded engine included;
the broker runs in its own JVM on the same machine and is not counted):

* ``producer``: frames -> OTLP messages (one per trace batch) -> :class:`KafkaSink` -> acknowledged
  by the broker: ``spans_per_s`` (wall) and ``spans_per_cpu_s``; ``send_only`` is the same for
  already-encoded messages.
* ``collector``: ``KafkaSource`` from the topic into the embedded engine (chDB; batches converted
  into Native blocks in C, :mod:`execscope.collector.native_block`): ``spans_per_cpu_s`` is spans per
  second of one core, ``spans_per_s`` wall clock (the idle wait at the end excluded; the end is seen
  by a thread of the bench's own, the collector ticking at its default of 5 s);
  ``collector_protobuf``: the same topic again (another consumer group, a fresh store) with the
  engine parsing the OTLP batches itself (the fallback without the C converter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from execscope.collector.kafka_source import KafkaSource  # noqa: E402
from execscope.instrumentation.capture import fast_capture  # noqa: E402
from execscope.instrumentation.export.kafka_exporter import KafkaSink, group_by_trace, trace_key  # noqa: E402
from execscope.instrumentation.export.otlp_encode import encode_request  # noqa: E402
from execscope.storage import open_store  # noqa: E402
from tests.conftest import load_rewritten  # noqa: E402

FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
KAFKA_SH = Path(__file__).resolve().parents[1] / "infra" / "kafka.sh"
BATCH_SPANS = 2048


def cpu() -> float:
    return time.process_time()


def make_frames(traces: int, depth: int, level: str = "functions") -> list:
    fast_capture.take_pending()
    fast_capture.activate()
    module = load_rewritten(FIB, level, name=f"fib_bench_{level}")
    fast_capture.take_pending()
    frames: list = []
    for _ in range(traces):
        module.fib(depth)
        batch, _dropped = fast_capture.take_pending()
        frames += batch
    return frames


def encode(frames: list) -> list[tuple[bytes, bytes, int]]:
    out = []
    resource = {"service.name": "bench", "process.pid": os.getpid()}
    for trace_id, group in group_by_trace(frames, lambda f: f.trace_id).items():
        for i in range(0, len(group), BATCH_SPANS):
            chunk = group[i:i + BATCH_SPANS]
            out.append((trace_key(trace_id), encode_request(chunk, resource, "bench"), len(chunk)))
    return out


def produce(bootstrap: str, topic: str, frames: list | None, messages: list | None) -> dict:
    sink = KafkaSink(bootstrap, topic, max_queue_bytes=1 << 30)
    sink.submit(b"warm-up", b"", 0, topic=f"{topic}.warmup")  # connect outside the clock
    sink.force_flush(30)
    w0, c0 = time.perf_counter(), cpu()
    todo = messages if messages is not None else encode(frames or [])
    for key, value, spans in todo:
        sink.submit(key, value, spans)
    ok = sink.force_flush(300)
    wall, used = time.perf_counter() - w0, cpu() - c0
    sink.shutdown()
    spans = sum(s for _k, _v, s in todo)
    assert ok and sink.dropped_spans == 0, sink.report()
    return {"spans": spans, "messages": len(todo), "bytes": sum(len(v) for _k, v, _s in todo),
            "seconds": round(wall, 3), "cpu_s": round(used, 3),
            "spans_per_s": round(spans / wall), "spans_per_cpu_s": round(spans / used)}


def collect(bootstrap: str, topic: str, expected: int, blocks: bool = True) -> dict:
    """``blocks``: batches converted into Native blocks in C (the default path); False: parsed by the
    engine from the protobuf (the fallback without the C converter)."""
    with tempfile.TemporaryDirectory() as tmp, open_store(f"chdb://{tmp}/db") as store:
        source = KafkaSource(bootstrap, store, topic=topic, group=f"bench-{topic}-{blocks}")
        source.blocks = blocks and source.blocks
        marks: dict[str, float] = {}
        running, finished = threading.Event(), threading.Event()

        def watch() -> None:
            # the end seen from a thread of the bench's own, not from the collector's ticks: a tick
            # reads the lag and inserts a stats row, every 5 s in a collector (``collect``'s default);
            # ticking every 50 ms to notice the end cost the collector about 20 inserts a second
            running.wait()
            while not finished.is_set():
                if source.stats.spans >= expected:
                    marks["done_wall"], marks["done_cpu"] = time.perf_counter(), cpu()
                    source.stop()
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        w0, c0 = time.perf_counter(), cpu()
        running.set()
        stats = source.run(exit_when_idle=30)
        finished.set()
        watcher.join(timeout=5)
        wall = marks.get("done_wall", time.perf_counter()) - w0
        used = marks.get("done_cpu", cpu()) - c0
        stored = store.query("SELECT count() FROM otel_traces").rows[0][0]
    assert stored == expected == stats.spans, (stored, expected, stats.spans)
    return {"spans": stats.spans, "batches": stats.batches, "seconds": round(wall, 3), "cpu_s": round(used, 3),
            "insert_s": round(stats.insert_seconds, 3), "spans_per_s": round(stats.spans / wall),
            "spans_per_cpu_s": round(stats.spans / used)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=200)
    ap.add_argument("--depth", type=int, default=14)
    ap.add_argument("--bootstrap", default="")
    args = ap.parse_args()
    broker_dir = None
    bootstrap = args.bootstrap
    if not bootstrap:
        broker_dir = tempfile.mkdtemp(prefix="bench-kafka-")
        out = subprocess.run(["bash", str(KAFKA_SH), "start", broker_dir], capture_output=True, text=True, check=True)
        # kafka.sh prints bootstrap=HOST:PORT first, then the secured listeners, one a line
        bootstrap = next(line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("bootstrap="))
    try:
        frames = make_frames(args.traces, args.depth)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        producer = produce(bootstrap, topic, frames, None)
        messages = encode(frames)
        send_only = produce(bootstrap, f"{topic}-b", None, messages)
        collector = collect(bootstrap, topic, producer["spans"])
        collector_protobuf = collect(bootstrap, topic, producer["spans"], blocks=False)
    finally:
        if broker_dir:
            subprocess.run(["bash", str(KAFKA_SH), "stop", broker_dir], check=False)
    print(json.dumps({
        "machine_cores": os.cpu_count(), "python": sys.version.split()[0], "traces": args.traces,
        "spans": len(frames), "producer": producer, "producer_send_only": send_only, "collector": collector,
        "collector_spans_per_core_s": collector["spans_per_cpu_s"], "collector_protobuf": collector_protobuf,
        "collector_protobuf_spans_per_core_s": collector_protobuf["spans_per_cpu_s"],
    }))


if __name__ == "__main__":
    main()
