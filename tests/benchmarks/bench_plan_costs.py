"""The planner's cost model, measured: what one recorded call, one branch event and one statement
event cost, and what a call the plan's rate leaves out costs; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_plan_costs.py [--repeat 3]

Method as in bench_capture.py: each variant runs ``work`` (a small loop: a for, an if, an
assignment) ``CALLS`` times in its own process, rewritten at one level (or under a plan) and recorded
by the ExecscopeSpanProcessor into a spool, flushed at exit; its cost is the process's CPU time
(user + sys, every thread, from ``wait4``) minus that of the same process making no call, minus the
plain function's. Per call at ``functions``; per event (counted in the spool) at ``branches`` and
``statements`` beyond the call; per call a plan's rate leaves out (``rate_0``); and per call
adaptive sampling leaves out and counts on its recorded caller (``counted``: the calls come from a
recorded ``outer``, at a budget of one; ``counted_statements`` likewise at statements level, where a
call left out still runs its statement hooks, each doing nothing: per event the call would record,
``unrecorded_event_ns``). The figures are what :class:`execscope.queries.planner.CostModel`
defaults to (the median of ``--repeat`` runs, on this project's 2-core CI machine).

Storing costs too: ``execscope run``'s own process drains the spool into the store while the program
runs, and on a machine with no idle core (or after the program ends, for what is left) that is wall
time the program waits. So the spools of the ``functions`` and ``statements`` variants are drained,
each in a process of its own, into a new embedded store (``SpoolSource``, with the chain ``run``
uses); the CPU time of the drain alone (``time.process_time``: every thread, the engine's too) per
span is ``stored_span_ns``, and the statements spool's beyond its spans, per event,
``stored_event_ns``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

WORK = "def work(n):\n    t = 0\n    for i in range(n):\n        if i % 2:\n            t += i\n    return t\n"
CALLS = 40_000
VARIANTS = ("plain", "functions", "branches", "statements", "rate_0", "counted", "counted_statements")
# the counted variant: ``work`` called from a recorded ``outer``, with adaptive sampling at a budget of
# one, so that all but a handful of its calls are left out and counted on outer's span
OUTER = "def outer(calls):\n    for _ in range(calls):\n        work(8)\n"


def child(variant: str, calls: int, spool_dir: str, counts_file: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
    from execscope.instrumentation.export.otlp_encode import count_events, encode_request
    from execscope.instrumentation.export.spool import Spool
    from execscope.instrumentation.rewrite.plan import parse_plan
    from execscope.instrumentation.rewrite.rewriter import rewrite_source
    from tests.conftest import load_plain

    spool = Spool(spool_dir)
    provider = TracerProvider()
    totals = [0, 0]

    def sink(frames: list, dropped: int) -> None:
        attrs = processor.resource_attributes()
        for i in range(0, len(frames), 2048):
            chunk = frames[i:i + 2048]
            totals[0] += len(chunk)
            totals[1] += count_events(chunk)
            spool.write_batch(processor.encode(chunk, dropped, attrs), len(chunk), count_events(chunk))

    processor = ExecscopeSpanProcessor.install(provider, sink, encode_request)
    if variant == "plain":
        work = load_plain(WORK, name="work_plain").work
    elif variant in ("counted", "counted_statements"):
        from execscope.instrumentation.capture import fast_capture

        tree, _nodes, _stats = rewrite_source(WORK + OUTER, "work_mod", "/virtual/work_mod.py",
                                              level=3 if variant == "counted_statements" else 1)
        namespace = {"__name__": "work_mod"}
        exec(compile(tree, "/virtual/work_mod.py", "exec"), namespace)
        fast_capture.set_adaptive(1)
        namespace["outer"](calls)
        processor.shutdown()
        Path(counts_file).write_text(json.dumps(totals))
        return
    else:
        level = "functions" if variant == "rate_0" else variant
        rate = 0.0001 if variant == "rate_0" else 1.0  # one call in 10000 recorded
        plan = parse_plan(f'[default]\nlevel = "{level}"\nrate = {rate}\n')
        tree, _nodes, _stats = rewrite_source(WORK, "work_mod", "/virtual/work_mod.py", plan=plan)
        namespace: dict = {"__name__": "work_mod"}
        exec(compile(tree, "/virtual/work_mod.py", "exec"), namespace)
        work = namespace["work"]
    for _ in range(calls):
        work(8)
    processor.shutdown()
    Path(counts_file).write_text(json.dumps(totals))


def store_child(spool_dir: str, store_dir: str, out_file: str) -> None:
    """Drain ``spool_dir`` into a new embedded store; writes [drain CPU seconds, spans, events]."""
    import time

    from execscope.collector.processors import build_chain, load_config
    from execscope.collector.spool_source import SpoolSource
    from execscope.instrumentation.export.spool import Spool
    from execscope.storage.store import open_store

    store = open_store(f"chdb://{store_dir}")
    source = SpoolSource(Spool(spool_dir), store, chain=build_chain(load_config(None), store))
    spans = events = 0
    t0 = time.process_time()
    while True:
        report = source.drain()
        spans, events = spans + report.spans, events + report.events
        if report.errors or not report.batches:
            break
    cpu = time.process_time() - t0
    store.close()
    if report.errors:
        raise SystemExit(f"drain failed: {report.errors[:3]}")
    Path(out_file).write_text(json.dumps([cpu, spans, events]))


def run(variant: str, calls: int, stored: dict[str, list] | None = None) -> tuple[float, int, int]:
    """CPU seconds, spans and events of ``variant`` making ``calls`` calls; with ``stored``, its spool
    is also drained into a store and [drain CPU seconds, spans, events] appended to stored[variant]."""
    with tempfile.TemporaryDirectory() as tmp:
        counts = Path(tmp) / "counts"
        proc = subprocess.Popen([sys.executable, __file__, "--child", variant, str(calls), tmp + "/spool", str(counts)],
                                cwd=ROOT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{variant} failed")
        spans, events = json.loads(counts.read_text())
        if stored is not None:
            drained = Path(tmp) / "drained"
            subprocess.run([sys.executable, __file__, "--store-child", tmp + "/spool", tmp + "/db", str(drained)],
                           cwd=ROOT, check=True)
            stored.setdefault(variant, []).append(json.loads(drained.read_text()))
        return usage.ru_utime + usage.ru_stime, spans, events


# the cheap variants make ten times the calls, so that a process's own noise (milliseconds of CPU)
# stays small beside what they measure
CHEAP = ("plain", "rate_0", "counted", "counted_statements")


def calls_of(variant: str) -> int:
    return 10 * CALLS if variant in CHEAP else CALLS


def measure(repeat: int) -> dict:
    cost: dict[str, list[float]] = {v: [] for v in VARIANTS}
    events: dict[str, int] = {}
    stored: dict[str, list] = {}
    for _ in range(repeat):
        for v in VARIANTS:
            full, _spans, ev = run(v, calls_of(v), stored if v in ("functions", "statements") else None)
            empty, _, _ = run(v, 0)
            cost[v].append((full - empty) * CALLS / calls_of(v))  # per CALLS calls
            events[v] = ev
    ns = {v: statistics.median(c) * 1e9 for v, c in cost.items()}
    call_ns = (ns["functions"] - ns["plain"]) / CALLS
    span_ns = statistics.median(cpu / max(1, n) for cpu, n, _e in stored["functions"]) * 1e9
    event_ns = statistics.median((cpu - n * span_ns / 1e9) / max(1, e) for cpu, n, e in stored["statements"]) * 1e9
    return {
        "python": sys.version.split()[0], "calls": CALLS, "repeat": repeat,
        "events_per_call": {v: events[v] / CALLS for v in ("branches", "statements")},
        "call_ns": round(call_ns, 1),
        "branch_event_ns": round((ns["branches"] - ns["functions"]) / max(1, events["branches"]), 1),
        "statement_event_ns": round((ns["statements"] - ns["branches"])
                                    / max(1, events["statements"] - events["branches"]), 1),
        "skipped_call_ns": round((ns["rate_0"] - ns["plain"]) / CALLS, 1),
        "counted_call_ns": round((ns["counted"] - ns["plain"]) / CALLS, 1),
        # a call left out runs its statement hooks when it is not a leaf (or is counted by adaptive
        # sampling): each such hook, with nothing to record, per statements-level event it would record
        "unrecorded_event_ns": round((ns["counted_statements"] - ns["counted"]) / max(1, events["statements"]), 1),
        "stored_span_ns": round(span_ns, 1), "stored_event_ns": round(event_ns, 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--store-child":
        store_child(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    print(json.dumps(measure(ap.parse_args().repeat)))


if __name__ == "__main__":
    main()
