"""Bursts of calls against the capture buffers: how many calls a recording keeps when a program makes
them faster than the capture worker drains; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_burst.py [--calls 400000] [--bursts 4] [--runs 2]

The program (written to a temporary directory) makes ``--calls`` calls of a one-line function as fast
as it can, sleeps 0.6 s (longer than the worker's 0.5 s interval: the buffers drain between bursts),
and does that ``--bursts`` times. It runs plain, then under ``execscope run --level functions
--adaptive 0`` (every call recorded unless the buffers, ``max_pending`` = 262,144 frames, are
full) into a fresh embedded store, ``--runs`` times. Printed per run: the burst's mean wall time, plain
and recorded, the calls made, stored (spans of the burst function) and not kept (dropped, from
``execscope run``'s report). The capture worker drains every interval and, since this benchmark was
written, at once when a quarter of the bound waits (``fast_capture.EARLY_DRAIN_FILL``, looked at
every ``POLL_S``); before, a burst filling the buffers within one interval lost what did not fit.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

APP = '''
import sys, time

def leaf(x):
    return x + 1

def burst(n):
    t = 0
    for _ in range(n):
        t = leaf(t)
    return t

def main():
    n, bursts = int(sys.argv[1]), int(sys.argv[2])
    spent = 0.0
    for _ in range(bursts):
        t0 = time.perf_counter()
        burst(n)
        spent += time.perf_counter() - t0
        time.sleep(0.6)
    print(f"BURST_S {spent / bursts:.4f}")

main()
'''


def burst_seconds(out: str) -> float:
    m = re.search(r"BURST_S ([0-9.]+)", out)
    if not m:
        raise SystemExit(f"no burst time in the program's output: {out[-2000:]}")
    return float(m.group(1))


def run(calls: int, bursts: int, runs: int) -> dict:
    out: dict = {"machine_cores": os.cpu_count(), "python": sys.version.split()[0], "calls_per_burst": calls,
                 "bursts": bursts, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-burst-") as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "burstapp.py").write_text(APP, encoding="utf-8")
        program = [sys.executable, "burstapp.py", str(calls), str(bursts)]
        for k in range(runs):
            plain = subprocess.run(program, cwd=tmp, capture_output=True, text=True, timeout=600, check=True)
            store = f"chdb://{tmp}/db-{k}"
            rec = subprocess.run([sys.executable, "-m", "execscope", "run", "--level", "functions", "--adaptive", "0",
                                  "--store", store, "--include", "burstapp", "--", *program],
                                 cwd=tmp, capture_output=True, text=True, timeout=600, check=True)
            query = subprocess.run([sys.executable, "-m", "execscope", "sql", "--store", store, "--format", "json",
                                    "SELECT count() AS n FROM otel_traces WHERE SpanName = 'burstapp.leaf'"],
                                   cwd=tmp, capture_output=True, text=True, timeout=600, check=True)
            stored = int(json.loads(query.stdout)[0]["n"])
            m = re.search(r"(\d+) calls were not kept", rec.stderr)
            made = calls * bursts
            out["runs"].append({"plain_burst_s": burst_seconds(plain.stdout),
                                "recorded_burst_s": burst_seconds(rec.stdout), "calls": made,
                                "stored": stored, "not_kept": int(m.group(1)) if m else 0,
                                "kept_share": round(stored / made, 4)})
    out["kept_share_median"] = statistics.median(r["kept_share"] for r in out["runs"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=400_000)
    ap.add_argument("--bursts", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    print(json.dumps(run(args.calls, args.bursts, args.runs)))


if __name__ == "__main__":
    main()
