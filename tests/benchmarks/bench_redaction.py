"""What the default secrets policy costs a recording, side by side in one run; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_redaction.py [--repeat 5] [--calls 20000]

A function recorded at level ``statements`` (arguments, 8 assignments and a return value per call,
typical values: ints, floats, names, paths, sentences, small lists and dicts) is called ``--calls``
times in a fresh process per variant and recorded the way ``execscope run``'s processes record: the
fast capture core, the ExecscopeSpanProcessor, OTLP encoding, spool files, flushed at exit. Its cost
is the process's CPU time (user + sys of every thread, read by ``wait4``) minus that of the same
process making no call, so start-up is subtracted and everything is counted: capture, rendering,
the policy's scan, encoding, writing. Variants take turns; the median of ``--repeat`` runs is kept.

For each core (native C accelerator, pure Python) and workload, the default policy (value patterns
on) is set against the same recording with value patterns off (``EXECSCOPE_REDACT_PATTERNS=0``;
names are redacted in both): ``overhead_pct`` is the extra CPU per recorded call, ``ns_per_value``
the extra CPU per recorded value. Workloads:

* ``nomatch``: values the scan finds no trigger in (what the goal is about: < 5% per recorded call);
* ``urls``: the same with one value a URL (``https://...``): the scan's ``://`` trigger fires and the
  URL-password rule runs its regex on it (the cost when a trigger is a false alarm).

Whole-process figures drift with the machine's load (other processes share its caches and cores).
So each core also runs an in-process A/B (``ab_<core>``): the same recorded calls, then the same
frames encoded, with the default policy and with patterns off in turns (``--ab-rounds`` each, the
fastest round of each kept), giving the policy's extra CPU per recorded call and per value with
little noise; ``overhead_pct`` there is that extra cost over the whole-process cost per recorded
call with patterns off.

Also printed: the scan alone per value (C and Python) on the workload's values, and the number of
cores (the figures are CPU time, not wall time: a loaded machine slows both sides alike).
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

WORK = '''
def handle(i, name, path, size):
    user_id = i * 7
    label = name + "-" + str(i % 10)
    where = path + "/file_%04d.json" % (i % 1000)
    message = "processed item %d for %s in the nightly batch" % (i, name)
    items = [i, i + 1, name, 2.5]
    record = {"id": i, "name": name, "tags": ["red", "blue"], "size": size}
    ratio = i / 3.0
    ok = i % 2 == 0
    return {"user": user_id, "label": label, "ok": ok}
'''
VALUES_PER_CALL = 4 + 8 + 1  # arguments, assignments, the return value
WORKLOADS = {"nomatch": "/srv/app/data", "urls": "https://api.example.com/v1/items"}
VARIANTS = {  # name: (EXECSCOPE_NATIVE, EXECSCOPE_REDACT_PATTERNS)
    "native_default": ("1", "1"), "native_patterns_off": ("1", "0"),
    "python_default": ("0", "1"), "python_patterns_off": ("0", "0"),
}


def child(calls: int, path: str, spool_dir: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
    from execscope.instrumentation.export.otlp_encode import count_events, encode_request
    from execscope.instrumentation.export.spool import Spool
    from execscope.instrumentation.process_bootstrap import SPOOL_BATCH_SPANS
    from tests.conftest import load_rewritten

    spool = Spool(spool_dir)
    provider = TracerProvider()

    def sink(frames: list, dropped: int) -> None:
        attrs = processor.resource_attributes()
        for i in range(0, len(frames), SPOOL_BATCH_SPANS):
            chunk = frames[i:i + SPOOL_BATCH_SPANS]
            spool.write_batch(processor.encode(chunk, dropped, attrs), len(chunk), count_events(chunk))

    processor = ExecscopeSpanProcessor.install(provider, sink, encode_request)
    handle = load_rewritten(WORK, "statements", name="bench_work").handle
    names = ["alice", "bob", "carol", "dave"]
    for i in range(calls):
        handle(i, names[i % 4], path, i * 3)
    processor.shutdown()


def ab_child(calls: int, rounds: int, path: str) -> None:
    """In one process: record ``calls`` calls and encode their frames, default policy and patterns
    off in turns; prints the fastest round of each (CPU seconds)."""
    from execscope.instrumentation.capture import fast_capture, redaction, runtime, values
    from execscope.instrumentation.export.otlp_encode import encode_request
    from tests.conftest import load_rewritten

    policies = {"default": values.policy(), "off": redaction.policy_from(patterns=False)}
    fast_capture.take_pending()
    fast_capture.activate()
    handle = load_rewritten(WORK, "statements", name="bench_ab").handle
    names = ["alice", "bob", "carol", "dave"]
    best: dict[str, list[float]] = {f"{phase}_{p}": [] for phase in ("capture", "encode") for p in policies}
    for _ in range(rounds):
        for name, policy in policies.items():
            values.use_policy(policy)
            c0 = time.process_time()
            for i in range(calls):
                handle(i, names[i % 4], path, i * 3)
            c1 = time.process_time()
            frames, _ = fast_capture.take_pending()
            for j in range(0, len(frames), 2048):
                encode_request(frames[j:j + 2048], {"service.name": "bench"}, "bench")
            c2 = time.process_time()
            best[f"capture_{name}"].append(c1 - c0)
            best[f"encode_{name}"].append(c2 - c1)
    runtime.deactivate()
    print(json.dumps({k: min(v) for k, v in best.items()}))


def ab(core: str, calls: int, rounds: int, path: str) -> dict[str, float]:
    env = {**os.environ, "EXECSCOPE_NATIVE": "1" if core == "native" else "0"}
    out = subprocess.run([sys.executable, __file__, "--ab-child", str(calls), str(rounds), path], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_of(variant: str, calls: int, path: str) -> float:
    native, patterns = VARIANTS[variant]
    env = {**os.environ, "EXECSCOPE_NATIVE": native, "EXECSCOPE_REDACT_PATTERNS": patterns}
    with tempfile.TemporaryDirectory() as spool_dir:
        proc = subprocess.Popen([sys.executable, __file__, "--child", str(calls), path, spool_dir], cwd=ROOT, env=env)
        _pid, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{variant} failed")
        return usage.ru_utime + usage.ru_stime


def scan_ns() -> dict[str, float]:
    """The scan alone, per value, on the values the workload records (rendered as they are scanned)."""
    from execscope.instrumentation.capture import values

    policy = values.policy()
    texts = ["7", "alice-3", "/srv/app/data/file_0012.json", "processed item 12 for alice in the nightly batch",
             "0.3333333333333333", "True", "alice", "36", "red", "blue"]
    out = {}
    scans = {"python": policy._python_scan}
    if values._native_repr is not None:
        from execscope.instrumentation.capture import _capture

        scans["c"] = _capture.may_hold_secret
    n = 200_000
    for name, scan in scans.items():
        t0 = time.process_time_ns()
        for _ in range(n // len(texts)):
            for text in texts:
                scan(text)
        out[f"scan_{name}_ns_per_value"] = round((time.process_time_ns() - t0) / n, 1)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--ab-child":
        ab_child(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--ab-rounds", type=int, default=15)
    ap.add_argument("--ab-only", action="store_true", help="only the in-process A/B (quicker, steadier)")
    args = ap.parse_args()
    result: dict[str, object] = {"cores": os.cpu_count(), "calls": args.calls, "values_per_call": VALUES_PER_CALL,
                                 "repeat": args.repeat}
    for workload, path in WORKLOADS.items():
        figures: dict[str, object] = {}
        for core in ("native", "python"):
            calls = args.calls // (1 if core == "native" else 4)
            best = ab(core, calls, args.ab_rounds, path)
            extra = (best["capture_default"] - best["capture_off"] + best["encode_default"] - best["encode_off"])
            whole = (best["capture_off"] + best["encode_off"])
            figures[f"ab_{core}_us_per_call_patterns_off"] = round(whole / calls * 1e6, 2)
            figures[f"ab_{core}_extra_us_per_call"] = round(extra / calls * 1e6, 3)
            figures[f"ab_{core}_ns_per_value"] = round(extra / calls / VALUES_PER_CALL * 1e9, 1)
            figures[f"ab_{core}_overhead_pct"] = round(extra / whole * 100, 2)
        result[workload] = figures
        if args.ab_only:
            continue
        costs: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.repeat):
            for variant in VARIANTS:  # take turns: a machine getting slower weighs on all alike
                costs[variant].append(cpu_of(variant, args.calls, path) - cpu_of(variant, 0, path))
        per_call = {v: statistics.median(c) / args.calls * 1e6 for v, c in costs.items()}
        figures.update({f"{v}_us_per_call": round(us, 2) for v, us in per_call.items()})
        for core in ("native", "python"):
            on, off = per_call[f"{core}_default"], per_call[f"{core}_patterns_off"]
            figures[f"{core}_overhead_pct"] = round((on - off) / off * 100, 2)
            figures[f"{core}_ns_per_value"] = round((on - off) * 1000 / VALUES_PER_CALL, 1)
    result.update(scan_ns())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
