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


def record(level: str, program: str = PROGRAM, name: str = "soundness_app") -> tuple[list[Cfg], list]:
    tree, nodes, stats = rewrite_source(program, name, f"/v/{name}.py", LEVELS[level])
    assert stats.unmatched == []
    cfgs = build_cfgs(ast.parse(program), nodes, program)
    _, dropped_before = fast_capture.take_pending()  # the count is cumulative over the process
    fast_capture.activate()
    module = types.ModuleType(name)
    module.__file__ = f"/v/{name}.py"
    sys.modules[name] = module
    try:
        exec(compile(tree, module.__file__, "exec"), module.__dict__)
        module.main()
        frames, dropped = fast_capture.take_pending()
    finally:
        runtime.deactivate()
        sys.modules.pop(name, None)
    assert dropped == dropped_before  # none dropped here
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


# The two shapes of issue 13, as recorded on a real suite before the fix. Each time the CFG was right
# about what runs; the runtime did not report what the CFG expected in between (or skipped it):
# 1. an arm reached right before the BoolOp in the conditional expression's test: the CFG expected
#    the arms of a lambda's default and of a comprehension's first iterable (they run in this frame;
#    the rewriter left them unprobed with the rest of the lambda/comprehension), and of the last
#    operand of a comparison chain (which runs only when the comparison before it was true);
# 2. in a for body, if/elif (multi-line)/else, then `if` after the loop: same, from the else arm's
#    comprehension and the first arm's comparison chain.
SHAPES = textwrap.dedent('''
    from urllib.parse import quote, unquote

    class Url:
        def __init__(self, d, e, port):
            if d.get('safe'):
                self.quote = lambda s, safe=(d['safe'] or '/'): quote(s, safe)
            else:
                try:
                    self.port = int(port)
                except (TypeError, ValueError):
                    self.hosts = [h.strip() for h in (d.get('hosts') or ['localhost'])]
                else:
                    self.valid = 0 < self.port < (d.get('max') or 65536)
            self.user = (unquote(d['user']) if '%' in (d['user'] or e) else d['user'] or e)

    def kinds(lines, quotes, limit, strict):
        out = []
        for line in lines:
            if not line:
                out.append(0 < len(out) < (limit or 10))
            elif (line[0] in quotes and line[-1] in quotes
                  and len(line) > 1):
                out.append('quoted')
            else:
                out.append(''.join(c for c in (line.strip() or '?')))
        if strict:
            out.append('strict')
        return out

    def main():
        for d, e, port in [({'user': 'a%20b', 'max': 10}, 'z', '80'), ({'user': ''}, 'q%41', 'x'),
                           ({'user': 'u', 'safe': ':'}, '', 0), ({'user': '', 'hosts': ['h ']}, 'w', None),
                           ({'user': 'v'}, '', '-1')]:
            Url(d, e, port)
        kinds(['', '"a"', 'b'], '"', 0, True)
        kinds(['"a"', ''], '"', 3, False)
        kinds(['b'], '"', 0, False)
        kinds(['b', '  '], '"', 0, True)
        kinds([''], '"', 0, True)
''')


@pytest.mark.parametrize("level", ["branches", "statements"])
def test_issue_shapes_are_explained(level: str) -> None:
    cfgs, frames = record(level, SHAPES, "shapes_app")
    found, _ = violations(cfgs, frames)
    assert found == []
    seen = set()
    for frame in frames:
        arms = [e[1].split(":", 1)[-1] for e in (frame.events or ()) if e[0] == EV_BRANCH]
        seen |= set(zip(arms, arms[1:]))
    if level == "branches":
        # still observed, now CFG paths: the comparison chain stopped before its `or`
        assert ("Url.__init__:try#0.else", "Url.__init__:bool_op#3.op0") in seen  # #3: in the test
        assert ("kinds:if#0.true", "kinds:if#2.true") in seen
        # now reported in between: the lambda's default, the comprehensions' first iterables
        assert {("Url.__init__:if#0.true", "Url.__init__:bool_op#0.op0"),
                ("Url.__init__:except#0", "Url.__init__:bool_op#1.op0"),
                ("kinds:if#1.false", "kinds:bool_op#2.op0")} <= seen


# Every construct that branches inside an expression, nested in the others and in statements' heads:
# what is evaluated conditionally (and/or, x if c else y, a comparison chain's later operands, an
# assert's message, an except clause's type), what runs in this frame although it belongs to a nested
# scope (lambda defaults, a comprehension's first iterable), for targets, walrus, while tests.
EXPRESSIONS = textwrap.dedent('''
    import contextlib

    class Stop(Exception):
        pass

    def r(v, boom=False):
        if boom:
            raise Stop(v)
        return v

    def exprs(a, b, c, d):
        t = (a or b) if (c and (d or a)) else (b if a else c) and d
        t = a < (b or c) < (d if a else b) < (c and 5)
        t = [x for x in (a and range(3) or [b]) if x or c]
        t = (lambda v=(a and b), *, w=(c or d): v or w)()
        if (n := (a or b)) and (c
                                or d):
            t = n
        elif (a and
              b and c):
            t = 1
        else:
            t = sum([y for y in range((2 if d else 1)) if y])
        while t and (a or t < 3) and t < 4:
            t += 1 if b else 2
        box = [0, 0]
        for box[(a or 0) % 2] in range(b or 2):
            t = box
        try:
            assert a or b, (c and "m") or "n"
        except AssertionError:
            t = 0
        try:
            r(a, boom=not b)
        except (Stop if (c or d) else KeyError) as exc:
            t = exc
        except (a and KeyError or Stop):
            t = 2
        with contextlib.suppress(Stop if a else KeyError):
            r(b, boom=c and not d)
        return t

    def main():
        for a in (0, 1, 2):
            for b in (0, 1):
                for c in (0, 1):
                    for d in (0, 1):
                        try:
                            exprs(a, b, c, d)
                        except Stop:
                            pass
''')


@pytest.mark.parametrize("level", ["branches", "statements"])
def test_nested_expression_branches_are_explained(level: str) -> None:
    cfgs, frames = record(level, EXPRESSIONS, "expressions_app")
    found, pairs = violations(cfgs, frames)
    assert pairs > 500
    assert found == []


def _probed_arms(tree: ast.AST) -> set[str]:
    # an except handler's arm is reported by its `caught` probe (which first records the exception)
    return {n.args[1].value for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("arm", "branch", "caught")
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "_execscope_rt"}


@pytest.mark.parametrize("program", ["PROGRAM", "SHAPES", "EXPRESSIONS", "stdlib"])
def test_the_cfg_expects_exactly_the_arms_the_rewriter_probes(program: str) -> None:
    # the two halves agree statically: an arm in a function's or module's CFG that no probe reports
    # (or a probe no CFG expects) is a violation waiting for the input that takes it
    from execscope.instrumentation.rewrite.rewriter import _own_scope_facts

    if program == "stdlib":
        import argparse
        import dataclasses
        import inspect
        import typing
        sources = [open(m.__file__, encoding="utf-8").read() for m in (argparse, dataclasses, inspect, typing)]
    else:
        sources = [globals()[program]]
    for source in sources:
        tree, nodes, _stats = rewrite_source(source, "m", "m.py", LEVELS["branches"])
        expected: set[str] = set()
        for cfg in build_cfgs(ast.parse(source), nodes, source):
            if cfg.kind not in ("function", "module"):
                continue  # lambdas and comprehensions report to no frame
            if isinstance(cfg.source_ast, (ast.FunctionDef, ast.AsyncFunctionDef)) and _own_scope_facts(
                    cfg.source_ast.body)[2]:
                continue  # left unrecorded on purpose
            expected |= {n for n, kind in cfg.kinds.items() if kind == "arm"}
            expected |= {n for n in cfg.nodes if n.rsplit(":", 1)[-1].startswith("except#")}
        assert _probed_arms(tree) == expected
