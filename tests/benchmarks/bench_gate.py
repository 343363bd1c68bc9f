"""Where a sampled-out call's cost goes, side by side in one process; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_gate.py [--depth 25] [--repeat 7]

Every variant is recursive ``fib(depth)`` timed in the same process, taking turns, best of
``--repeat``, as a ratio to plain fib. Each variant adds one thing to the last:

* ``bool_gate``: ``if not G:`` on a module-level ``False`` (a load and a jump);
* ``int_gate``: the same test on the int ``0`` (CPython calls ``PyObject_IsTrue``);
* ``gate_off``: on execscope's native GATE with nothing recording (its ``nb_bool``, no lookup);
* ``gate_sampled_out``: on the GATE inside a sampled-out trace (the per-thread current-frame lookup);
* ``gate_and_two_locals``: the same with two more locals in the recorded path (what the rewrite's
  ``_execscope_frame``/``_execscope_exc`` used to cost: CPython 3.11 clears every local on every call);
* ``rewritten``: fib as the rewrite emits it (the no-variable form), inside a sampled-out trace;
* ``rewritten_with_local``: a fib with one local of its own, rewritten, against its own plain twin.

``bench_capture.py`` gives the issue's whole-process figure (``execscope_sampled_out_vs_plain``);
this one explains it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

FIB = "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
GATED = "def fib(n):\n    if not G:\n        return n if n < 2 else fib(n - 1) + fib(n - 2)\n    return 0\n"
TWO_LOCALS = ("def fib(n):\n    if not G:\n        return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
              "    a = b = n\n    return a + b\n")
WITH_LOCAL = "def fib(n):\n    m = n - 1\n    return n if n < 2 else fib(m) + fib(n - 2)\n"


def best_of(run: Any, fn: Any, depth: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run(lambda: fn(depth))
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=25)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

    from execscope.instrumentation.capture import fast_capture, runtime
    from execscope.instrumentation.capture.span_processor import ExecscopeSpanProcessor
    from execscope.instrumentation.export.otlp_encode import encode_request
    from tests.conftest import load_plain, load_rewritten

    def gated(name: str, gate: Any) -> Any:
        module = load_plain(GATED, name=name)
        module.G = gate
        return module.fib

    plain = load_plain(FIB, name="plain").fib
    direct = {"bool_gate": gated("g_bool", False), "int_gate": gated("g_int", 0),
              "gate_off": gated("g_off", runtime.GATE)}
    runtime._set_gate(runtime.GATE_OFF)
    off = {name: best_of(lambda f: f(), fn, args.depth, args.repeat) for name, fn in direct.items()}

    # a provider whose sampler keeps no trace: every call below a root runs in a sampled-out trace
    processor = ExecscopeSpanProcessor.install(TracerProvider(sampler=TraceIdRatioBased(0.0)), lambda f, d: None,
                                               encode_request)
    outer = load_rewritten("def outer(p):\n    return p()\n", "functions", name="outer").outer
    two = load_plain(TWO_LOCALS, name="g_two")
    two.G = runtime.GATE
    in_trace = {"gate_sampled_out": gated("g_on", runtime.GATE), "gate_and_two_locals": two.fib,
                "rewritten": load_rewritten(FIB, "functions", name="rewritten").fib}
    times = {name: best_of(outer, fn, args.depth, args.repeat) for name, fn in in_trace.items()}
    plain_s = best_of(lambda f: f(), plain, args.depth, args.repeat)
    local_plain = best_of(lambda f: f(), load_plain(WITH_LOCAL, name="lp").fib, args.depth, args.repeat)
    local_rewritten = best_of(outer, load_rewritten(WITH_LOCAL, "functions", name="lr").fib, args.depth, args.repeat)
    processor.shutdown()

    ratios = {name: round(t / plain_s, 3) for name, t in {**off, **times}.items()}
    ratios["rewritten_with_local"] = round(local_rewritten / local_plain, 3)
    print(json.dumps({"machine_cores": os.cpu_count(), "python": sys.version.split()[0],
                      "capture_core": fast_capture.CORE, "depth": args.depth,
                      "plain_ns_per_call": round(plain_s / calls(args.depth) * 1e9, 1), "vs_plain": ratios}))


def calls(depth: int) -> int:
    a, b = 1, 1
    for _ in range(depth):
        a, b = b, a + b + 1
    return a


if __name__ == "__main__":
    main()
