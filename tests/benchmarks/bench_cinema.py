"""Cinema and query latency on a large embedded store. Prints one JSON object.

Builds a store holding SPANS spans (default 10M): one real recording of a program that makes a trace
with ~100k events (`execscope run --level statements`), plus synthetic spans generated inside the
engine (100 per trace, 500 functions, realistic attributes). Then measures, each the median of a few
cold runs: time to the first cinema frame of the big trace, time to step back across a window
boundary, a step-over (a search in SQL), and the `hot-nodes` query.

usage: python tests/benchmarks/bench_cinema.py [--spans N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from execscope.queries.cinema import Cinema, open_cinema
from execscope.queries.named import run_named
from execscope.storage.store import open_store

PROGRAM = textwrap.dedent('''
    def step(state, i):
        if i % 3 == 0:
            state = state + i
        else:
            state = state - 1
        return state

    def main():
        state = 0
        for i in range(12000):
            state = step(state, i)
        return state

    if __name__ == "__main__":
        print(main())
''')

SYNTHETIC = """
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName,
                         ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode)
SELECT now64(9) - toIntervalMillisecond(number % 3600000),
       lower(hex(MD5(toString(intDiv(number, 100) + {base:UInt64})))),
       lower(hex(cityHash64(number + {base:UInt64}))),
       if(number % 100 = 0, '', lower(hex(cityHash64(number + {base:UInt64} - 1 - (number % 7 = 0))))),
       concat('synthetic.mod', toString(number % 50), '.f', toString(number % 500)),
       'SPAN_KIND_INTERNAL', 'synthetic',
       map('service.name', 'synthetic', 'process.pid', '1', 'telemetry.sdk.name', 'execscope'),
       'execscope', '0', map('execscope.node_id', concat('synthetic.mod', toString(number % 50), ':f',
                                                           toString(number % 500)),
                             'execscope.code_version', 'synthetic0000000',
                             'code.function.name', concat('synthetic.mod', toString(number % 50), '.f',
                                                          toString(number % 500)),
                             'execscope.seq', toString(number % 100 * 2),
                             'execscope.seq.end', toString(number % 100 * 2 + 1),
                             'execscope.arg.x', toString(number % 1000),
                             'execscope.child_ns', toString(if(number % 100 = 99, 0, 500 + number % 900))),
       1000 + (cityHash64(number) % 5000000), if(number % 997 = 0, 'STATUS_CODE_ERROR', 'STATUS_CODE_UNSET')
FROM numbers({count:UInt64})
"""


def median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--keep", default=None, help="build (or reuse) the store in this directory")
    args = ap.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="execscope-bench-cinema-"))
    work.mkdir(parents=True, exist_ok=True)
    store_dsn = f"chdb://{work / 'db'}"
    build_s = 0.0
    if not (work / "built").exists():
        start = time.perf_counter()
        (work / "bench_app.py").write_text(PROGRAM)
        subprocess.run([sys.executable, "-m", "execscope", "run", "--include", "bench_app", "--level", "statements",
                        "--store", store_dsn, "--", sys.executable, "bench_app.py"], cwd=work, check=True,
                       capture_output=True)
        with open_store(store_dsn) as store:
            have = store.query("SELECT count() FROM otel_traces").rows[0][0]
            chunk = 1_000_000
            base = 10**12
            while have < args.spans:
                n = min(chunk, args.spans - have)
                store.command(SYNTHETIC, parameters={"count": n, "base": base + have})
                have += n
        (work / "built").write_text("ok")
        build_s = time.perf_counter() - start
    with open_store(store_dsn) as store:
        spans = store.query("SELECT count() FROM otel_traces").rows[0][0]
        trace, events = store.query(
            "SELECT TraceId, count() AS n FROM execscope_events GROUP BY TraceId ORDER BY n DESC LIMIT 1").rows[0]
        first, back, over = [], [], []
        for _ in range(5):
            t0 = time.perf_counter()
            film = open_cinema(store, trace)
            film.frame(0)
            first.append(time.perf_counter() - t0)
            film = Cinema(store, trace)
            w = film.window
            film.frame(3 * w)  # positioned at the start of the fourth window
            t0 = time.perf_counter()
            film.frame(3 * w - 1)  # one step back: the previous window is loaded
            back.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            film.step_over(3 * w)
            over.append(time.perf_counter() - t0)
        hot = []
        for _ in range(3):
            t0 = time.perf_counter()
            run_named(store, "hot-nodes", {"limit": "20"})
            hot.append(time.perf_counter() - t0)
        frames = film.total
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({
        "cores": os.cpu_count(), "spans_in_store": spans, "trace_events": events, "trace_frames": frames,
        "build_seconds": round(build_s, 1),
        "first_frame_ms": median_ms(first), "step_back_across_window_ms": median_ms(back),
        "step_over_ms": median_ms(over), "hot_nodes_ms": median_ms(hot),
        "targets_ms": {"first_frame": 300, "step": 50, "hot_nodes": 1000},
    }))


if __name__ == "__main__":
    main()
