"""Soundness against reality: every consecutive pair of nodes a recorded call reports is explained by
the static CFG, at --level branches and statements; a CFG missing an edge is caught."""

from __future__ import annotations

import ast
import sys
import textwrap
import types

import pytest

from execscope.instrumentation.analysis.cfg import Cfg, build_cfgs
from execscope.instrumentation.analysis.cfg_check import Violation, check_sequence, scope_graphs
from execscope.instrumentation.capture import fast_capture, runtime
from execscope.instrumentation.capture.fast_capture import EV_BRANCH, EV_LINE
from execscope.instrumentation.capture.runtime import LEVELS
from execscope.instrumentation.rewrite.rewriter import rewrite_source

PROGRAM = textwrap.dedent('''
    import contextlib, threading

    def loops(xs):
        total = 0
        for x in xs:
            if x > 3 and x < 8 or x == 0:
                continue
            elif x == 5:
                break
            try:
                if x % 2:
                    raise ValueError(x)
                total += x
            except ValueError as e:
                total -= 1
            else:
                total += 100
            finally:
                total *= 1
        else:
            total = -total
        while total > 10:
            total -= 7 if total > 20 else 3
        with contextlib.suppress(KeyError):
            {}[1]
            total += 1000
        return total

    def finally_routes(n):
        try:
            for i in range(n):
                try:
                    if i == 2:
                        return i
                finally:
                    if i == 1:
                        continue
            return -1
        finally:
            pass

    def nested_raise(k):
        try:
            try:
                if k:
                    raise KeyError(k)
                return 0
            except KeyError:
                raise ValueError(k) from None
            finally:
                k = k and 1
        except ValueError:
            return 1

    def matcher(v):
        match v:
            case [a, b] if a > b:
                return 1
            case {"k": x}:
                return 2
            case int() | float():
                return 3
            case _:
                return 4

    def gen(n):
        for i in range(n):
            try:
                yield i
            finally:
                pass

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    class K:
        X = 1 if True else 2
        def m(self):
            assert self is not None, "never"
            return [y for y in range(3) if y]

    def main():
        loops([1, 2, 3, 4, 0, 9, 6, 5]); loops([11, 12]); loops([])
        for n in range(4):
            finally_routes(n)
        nested_raise(0); nested_raise(3)
        for v in ([2, 1], [1, 2], {"k": 1}, 3, 2.0, "s"):
            matcher(v)
        list(gen(3))
        it = gen(3); next(it); it.close()
        it = gen(3); next(it)
        try:
            it.throw(KeyError("x"))
        except KeyError:
            pass
        fib(6)
        K().m()
        t = threading.Thread(target=loops, args=([7, 1],)); t.start(); t.join()
''')


def record(level: str) -> tuple[list[Cfg], list]:
    tree, nodes, stats = rewrite_source(PROGRAM, "soundness_app", "/v/soundness_app.py", LEVELS[level])
    assert stats.unmatched == []
    cfgs = build_cfgs(ast.parse(PROGRAM), nodes, PROGRAM)
    fast_capture.take_pending()
    fast_capture.activate()
    module = types.ModuleType("soundness_app")
    module.__file__ = "/v/soundness_app.py"
    sys.modules["soundness_app"] = module
    try:
        exec(compile(tree, module.__file__, "exec"), module.__dict__)
        module.main()
        frames, dropped = fast_capture.take_pending()
    finally:
        runtime.deactivate()
        sys.modules.pop("soundness_app", None)
    assert dropped == 0
    return cfgs, frames


def violations(cfgs: list[Cfg], frames: list) -> tuple[list[Violation], int]:
    graphs = scope_graphs([(c.scope, s, d) for c in cfgs for (s, d, _) in c.edges],
                          [n for c in cfgs for n, k in c.kinds.items() if k == "arm"])
    found: list[Violation] = []
    pairs = 0
    for frame in frames:
        events = [e for e in (frame.events or ()) if e[0] in (EV_LINE, EV_BRANCH)]
        statements = any(e[0] == EV_LINE for e in events)
        pairs += max(0, len(events) - 1)
        found += check_sequence(graphs, frame.info[0], [e[1] for e in events], statements)
    return found, pairs


@pytest.mark.parametrize("level", ["branches", "statements"])
def test_every_recorded_transition_is_a_cfg_path(level: str) -> None:
    cfgs, frames = record(level)
    found, pairs = violations(cfgs, frames)
    assert pairs > 100  # the program really exercised its flow (139 at branches, more at statements)
    assert found == []


@pytest.mark.parametrize("level", ["branches", "statements"])
def test_a_cfg_missing_an_observed_edge_is_reported(level: str) -> None:
    cfgs, frames = record(level)
    loops = next(c for c in cfgs if c.scope == "soundness_app:loops")
    # break the handler's flow: the edge from the raise site into `except ValueError`
    broken = [e for e in loops.edges if e[1] == "soundness_app:loops:except#0"]
    assert broken
    for e in broken:
        del loops.edges[e]
    found, _ = violations(cfgs, frames)
    assert found and all(v.scope == "soundness_app:loops" for v in found)
    assert any(v.dst == "soundness_app:loops:except#0" for v in found)
