"""What recording exceptions caught in their own frame costs, side by side; prints one JSON object.

    .venv/bin/python tests/benchmarks/bench_caught.py [--calls 20000] [--repeat 9]

A handler's probe is ``caught(frame, handler, raise_points)`` (it records the exception it caught,
then the handler's arm); before, it was ``branch(frame, handler)``. Only a handler that runs calls
either, so a call that raises nothing should cost the same. Measured on a recorded function whose
``try`` raises nothing (``div(a, 3)``), and, for scale, on the same function when it does raise and
catch (``div(a, 0)``), in one process per capture core (native, then pure Python), at ``branches``
and ``statements``:

* ``before``: the rewritten module with every ``caught(...)`` probe turned back into
  ``branch(frame, handler)`` (the form this change replaced);
* ``after``: the module as the rewrite emits it now.

Each variant calls ``div`` ``--calls`` times in a recorded root, the variants taking turns; the best
of ``--repeat`` rounds is kept (finished frames are taken off between rounds, outside the timing).
Times are the thread's CPU time (``time.thread_time``): on a shared machine, wall time mostly
measures the neighbours.
``raise_nothing`` is after/before for calls that raise nothing (the claim: 1.0 within noise);
``caught`` is after/before for calls that raise and catch (the price of recording the exception).
``*_opcodes``: the bytecode instructions ``div`` itself executes per call (``sys.settrace`` opcode
events), a figure no neighbour can disturb: equal before and after for calls that raise nothing.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DIV = '''
def div(a, b):
    try:
        q = a // b
    except ZeroDivisionError:
        q = 0
    return q


def loop(n, b):
    for i in range(n):
        div(i, b)
'''


class _Before(ast.NodeTransformer):
    """``_execscope_rt.caught(frame, handler, points)`` -> ``_execscope_rt.branch(frame, handler)``."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Attribute) and node.func.attr == "caught":
            node.func.attr = "branch"
            node.args = node.args[:2]
        return node


def module(level: str, before: bool, name: str) -> Any:
    import types

    from execscope.instrumentation.capture.runtime import LEVELS
    from execscope.instrumentation.rewrite.rewriter import rewrite_source

    tree, _nodes, _stats = rewrite_source(DIV, name, f"/bench/{name}.py", LEVELS[level])
    if before:
        tree = ast.fix_missing_locations(_Before().visit(tree))
    text = ast.unparse(tree)
    assert ("caught(" in text) != before and "branch(_execscope_frame, '" in text
    mod = types.ModuleType(name)
    exec(compile(tree, f"/bench/{name}.py", "exec"), mod.__dict__)
    return mod


def opcodes(mod: Any, b: int) -> int:
    """Bytecode instructions ``div`` itself executes in one recorded call (load-independent)."""
    count = 0

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code is mod.div.__code__:
            frame.f_trace_opcodes = True
            count += event == "opcode"
            return tracer
        return None

    sys.settrace(tracer)
    try:
        mod.div(7, b)
    finally:
        sys.settrace(None)
    return count


def child(calls: int, repeat: int) -> dict[str, Any]:
    from execscope.instrumentation.capture import fast_capture, runtime

    fast_capture.activate()
    out: dict[str, Any] = {"capture_core": fast_capture.CORE}
    for level in ("branches", "statements"):
        variants = {(v, b): module(level, v == "before", f"{v}_{level}_{b}") for v in ("before", "after")
                    for b in (3, 0)}
        best = {key: float("inf") for key in variants}
        for _ in range(repeat):
            for (variant, b), mod in variants.items():
                fast_capture.take_pending()
                t0 = time.thread_time()
                mod.loop(calls, b)
                best[(variant, b)] = min(best[(variant, b)], time.thread_time() - t0)
        fast_capture.take_pending()
        per_call = {f"{v}_{'raise_nothing' if b else 'caught'}_ns": round(t / calls * 1e9)
                    for (v, b), t in best.items()}
        out[level] = {
            **per_call,
            **{f"{v}_{'raise_nothing' if b else 'caught'}_opcodes": opcodes(mod, b)
               for (v, b), mod in variants.items()},
            "raise_nothing": round(best[("after", 3)] / best[("before", 3)], 3),
            "caught": round(best[("after", 0)] / best[("before", 0)], 3),
        }
    runtime.deactivate()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.calls, args.repeat)))
        return
    cores = []
    for native in ("1", "0"):
        proc = subprocess.run([sys.executable, __file__, "--child", "--calls", str(args.calls),
                               "--repeat", str(args.repeat)], capture_output=True, text=True, check=True,
                              env={**os.environ, "EXECSCOPE_NATIVE": native}, cwd=ROOT)
        cores.append(json.loads(proc.stdout))
    print(json.dumps({"machine_cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                      "python": sys.version.split()[0], "calls": args.calls, "repeat": args.repeat,
                      "cores": cores}))


if __name__ == "__main__":
    main()
