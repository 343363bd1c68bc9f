"""The planner's cost model, measured: what one recorded call, one branch event and one statement
event cost, and what a call the plan's rate leaves out costs; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_plan_costs.py [--repeat 3]

Method as in bench_capture.py: each variant runs ``work`` (a small loop: a for, an if, an
assignment) ``CALLS`` times in its own process, rewritten at one level (or under a plan) and recorded
by the ExecscopeSpanProcessor into a spool, flushed at exit; its cost is the process's CPU time
(user + sys, every thread, from ``wait4``) minus that of the same process making no call, minus the
plain function's. Per call at ``functions``; per event (counted in the spool) at ``branches`` and
``statements`` beyond the call. The figures are what :class:`execscope.queries.planner.CostModel`
defaults to (the median of ``--repeat`` runs, on this project's 2-core CI machine).
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
VARIANTS = ("plain", "functions", "branches", "statements", "rate_0")


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


def run(variant: str, calls: int) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        counts = Path(tmp) / "counts"
        proc = subprocess.Popen([sys.executable, __file__, "--child", variant, str(calls), tmp + "/spool", str(counts)],
                                cwd=ROOT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{variant} failed")
        spans, events = json.loads(counts.read_text())
        return usage.ru_utime + usage.ru_stime, spans, events


def measure(repeat: int) -> dict:
    cost: dict[str, list[float]] = {v: [] for v in VARIANTS}
    events: dict[str, int] = {}
    for _ in range(repeat):
        for v in VARIANTS:
            full, _spans, ev = run(v, CALLS)
            empty, _, _ = run(v, 0)
            cost[v].append(full - empty)
            events[v] = ev
    ns = {v: statistics.median(c) * 1e9 for v, c in cost.items()}
    call_ns = (ns["functions"] - ns["plain"]) / CALLS
    return {
        "python": sys.version.split()[0], "calls": CALLS, "repeat": repeat,
        "events_per_call": {v: events[v] / CALLS for v in ("branches", "statements")},
        "call_ns": round(call_ns, 1),
        "branch_event_ns": round((ns["branches"] - ns["functions"]) / max(1, events["branches"]), 1),
        "statement_event_ns": round((ns["statements"] - ns["branches"])
                                    / max(1, events["statements"] - events["branches"]), 1),
        "skipped_call_ns": round((ns["rate_0"] - ns["plain"]) / CALLS, 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    print(json.dumps(measure(ap.parse_args().repeat)))


if __name__ == "__main__":
    main()
